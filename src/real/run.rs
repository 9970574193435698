//! `standby controller`: the controller, the config center and the status listener in one
//! process, on real tokio.

use crate::config_center::ConfigCenter;
use crate::real::config::{connectable, Config};
use crate::real::observer::RealObserver;
use crate::real::status::{self, Snapshot};
use crate::real::store::{FileStore, StoreError};
use crate::service::config_center::{CenterService, LogCenterObserver};
use crate::service::controller::{run_controller, ControllerOptions, Store};
use crate::service::Tasks;
use crate::time::Clock;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Why the controller process stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The state file cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listen address is taken or not ours.
    #[error("cannot listen on {address} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Its address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The controller's loop ended (a failed save stops it on purpose).
    #[error("the controller stopped: {0}")]
    Stopped(String),
}

/// A controller process with its state file open and its listeners bound, not yet running.
/// Binding first lets a caller (a test) ask for port 0 and learn the ports taken.
pub struct Bound {
    config: Config,
    store: Arc<FileStore>,
    center: TcpListener,
    status: TcpListener,
}

impl Bound {
    /// Opens the state file (a corrupt one is refused here, before anything runs) and binds
    /// the config center's and the status listener's addresses.
    pub async fn bind(config: Config) -> Result<Bound, RunError> {
        let store = Arc::new(FileStore::open(&config.state_file)?);
        let center = listen("config center", config.config_center_listen).await?;
        let status = listen("status", config.status_listen).await?;
        Ok(Bound {
            config,
            store,
            center,
            status,
        })
    }

    /// The status listener's address, as bound.
    pub fn status_address(&self) -> SocketAddr {
        self.status.local_addr().expect("a bound listener")
    }

    /// The config center's address, as bound (loopback if it listens on every interface).
    pub fn config_center_address(&self) -> SocketAddr {
        connectable(self.center.local_addr().expect("a bound listener"))
    }

    /// Runs until `shutdown` completes (then `Ok`) or the controller's loop ends (an error).
    /// Every task started here is stopped when this returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        let center_address = self.config_center_address();
        let status_address = self.status_address();
        let Bound {
            config,
            store,
            center,
            status,
        } = self;
        let durable = store.load();
        tracing::info!(
            state_file = %store.path().display(),
            epoch = ?durable.as_ref().map(|d| d.epoch),
            config_center = %center_address,
            status = %status_address,
            "controller starting"
        );
        let mut tasks = Tasks::default();
        let state = Arc::new(Mutex::new(ConfigCenter::new()));
        tasks.spawn(CenterService::new(state, Arc::new(LogCenterObserver)).run(center));
        let snapshot: Snapshot = Arc::new(Mutex::new(None));
        tasks.spawn(status::serve(status, snapshot.clone()));
        let observer = Arc::new(RealObserver::new(snapshot, config.alarm_command));
        let options =
            ControllerOptions::new(config.params, config.topology, center_address.to_string());
        let store: Arc<dyn Store> = store;
        let mut controller = tokio::spawn(run_controller(options, Clock::new(0), store, observer));
        tokio::select! {
            _ = shutdown => {
                controller.abort();
                tracing::info!("controller stopped");
                Ok(())
            }
            ended = &mut controller => Err(RunError::Stopped(match ended {
                Ok(()) => "its loop returned".to_string(),
                Err(e) => e.to_string(),
            })),
        }
    }
}

async fn listen(what: &'static str, address: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| RunError::Bind {
            what,
            address,
            source,
        })
}

/// Completes on Ctrl-C or SIGTERM (a supervisor's stop).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            },
            Err(e) => {
                tracing::warn!(%e, "no SIGTERM handler; stop with Ctrl-C");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
