//! The config center's service: stores publications from the controller, pushes each user's
//! config to it on every new epoch, and records the epochs users acknowledge.

use crate::config_center::ConfigCenter;
use crate::protocol::Subscribe;
use crate::service::Tasks;
use crate::types::{Epoch, UserId};
use crate::wire::{read_frame, write_frame, Message};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Receives what happens at the config center.
pub trait CenterObserver: Send + Sync {
    /// A publication of `epoch` was stored (`stored`) or refused as older.
    fn on_publish(&self, epoch: Epoch, stored: bool);
    /// `user` acknowledged `epoch`.
    fn on_ack(&self, user: UserId, epoch: Epoch);
}

/// An observer that only logs.
#[derive(Debug, Default)]
pub struct LogCenterObserver;

impl CenterObserver for LogCenterObserver {
    fn on_publish(&self, epoch: Epoch, stored: bool) {
        tracing::info!(%epoch, stored, "publication");
    }
    fn on_ack(&self, user: UserId, epoch: Epoch) {
        tracing::debug!(%user, %epoch, "config acknowledged");
    }
}

/// The config center's shared state.
pub struct CenterService {
    state: Arc<Mutex<ConfigCenter>>,
    /// Whether a `Publish` from a network connection is taken (the simulator's center, a
    /// process of its own) or refused (real mode, where the only publisher is the controller
    /// in the same process, through [`CenterService::publish`]).
    remote_publish: bool,
    /// One wake-up channel per subscriber, told of every stored publication in subscription
    /// order. (Not a `watch` channel: its wake-up order comes from tokio's own random number
    /// generator, which the simulator does not control.)
    subscribers: Mutex<Vec<mpsc::UnboundedSender<()>>>,
    observer: Arc<dyn CenterObserver>,
}

impl CenterService {
    /// A service over `state` (which may outlive it, as a disk does).
    pub fn new(state: Arc<Mutex<ConfigCenter>>, observer: Arc<dyn CenterObserver>) -> Arc<Self> {
        Self::with_remote_publish(state, observer, true)
    }

    /// A center that takes publications only from its own process ([`CenterService::publish`]):
    /// a `Publish` from the network is refused, so no one who can reach the port can change a
    /// route.
    pub fn closed_to_publications(
        state: Arc<Mutex<ConfigCenter>>,
        observer: Arc<dyn CenterObserver>,
    ) -> Arc<Self> {
        Self::with_remote_publish(state, observer, false)
    }

    fn with_remote_publish(
        state: Arc<Mutex<ConfigCenter>>,
        observer: Arc<dyn CenterObserver>,
        remote_publish: bool,
    ) -> Arc<Self> {
        Arc::new(CenterService {
            remote_publish,
            state,
            subscribers: Mutex::new(Vec::new()),
            observer,
        })
    }

    /// Serves on `listener` until the future is dropped, which stops every task it started.
    pub async fn run(self: Arc<Self>, listener: TcpListener) {
        let mut tasks = Tasks::default();
        while let Ok((stream, _)) = listener.accept().await {
            tasks.spawn(self.clone().serve_connection(stream));
        }
    }

    async fn serve_connection(self: Arc<Self>, mut stream: TcpStream) {
        loop {
            match read_frame(&mut stream).await {
                Ok(Message::Publish(publish)) if !self.remote_publish => {
                    let peer = stream
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    tracing::warn!(%peer, epoch = %publish.epoch, users = publish.configs.len(), "refused a publication from the network: only this process's controller publishes");
                    let epoch = self.state.lock().expect("center lock").epoch();
                    let reply = crate::protocol::PublishReply {
                        epoch,
                        stored: false,
                    };
                    let _ = write_frame(&mut stream, &Message::PublishReply(reply)).await;
                    return;
                }
                Ok(Message::Publish(publish)) => {
                    let reply = self.publish(publish);
                    if write_frame(&mut stream, &Message::PublishReply(reply))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(Message::Subscribe(subscribe)) => {
                    return self.clone().push(stream, subscribe).await
                }
                Ok(Message::ConfigAck(ack)) => self.ack(ack.user, ack.epoch),
                Ok(_) | Err(_) => return,
            }
        }
    }

    /// Stores `publish` (unless it is older than what is held) and wakes every subscriber.
    pub fn publish(&self, publish: crate::protocol::Publish) -> crate::protocol::PublishReply {
        let reply = self.state.lock().expect("center lock").publish(publish);
        self.observer.on_publish(reply.epoch, reply.stored);
        if reply.stored {
            let mut subscribers = self.subscribers.lock().expect("center lock");
            subscribers.retain(|s| s.send(()).is_ok());
        }
        reply
    }

    /// The newest epoch stored (zero before the first publication).
    pub fn epoch(&self) -> Epoch {
        self.state.lock().expect("center lock").epoch()
    }

    /// The epoch each user last acknowledged here.
    pub fn acks(&self) -> std::collections::BTreeMap<UserId, Epoch> {
        self.state.lock().expect("center lock").acks().clone()
    }

    fn ack(&self, user: UserId, epoch: Epoch) {
        self.state.lock().expect("center lock").ack(user, epoch);
        self.observer.on_ack(user, epoch);
    }

    /// Pushes the user's config now and on every new epoch; takes its acknowledgements on a
    /// reader task of its own (a read cancelled halfway through a frame would lose it).
    async fn push(self: Arc<Self>, stream: TcpStream, subscribe: Subscribe) {
        let user = subscribe.user;
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut acks = Tasks::default();
        {
            let service = self.clone();
            acks.spawn(async move {
                while let Ok(Message::ConfigAck(ack)) = read_frame(&mut reader).await {
                    if ack.user == user {
                        service.ack(ack.user, ack.epoch);
                    }
                }
            });
        }
        let (wake, mut changes) = mpsc::unbounded_channel();
        self.subscribers.lock().expect("center lock").push(wake);
        let mut sent = Epoch(0);
        loop {
            let config = self
                .state
                .lock()
                .expect("center lock")
                .config(user)
                .cloned();
            if let Some(config) = config.filter(|c| c.epoch > sent) {
                sent = config.epoch;
                if write_frame(&mut writer, &Message::Config(config))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            if acks.all_finished() || changes.recv().await.is_none() {
                break;
            }
        }
    }
}
