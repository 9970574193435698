// The same service code on real tokio: real sockets on 127.0.0.1, real time.
//
// Compiled only WITHOUT `--cfg madsim`. The workspace's .cargo/config.toml sets that cfg for
// every normal build, and under it madsim-tokio swaps in the simulated net, time and task: no
// real network, no real runtime (the simulator, standby-sim, covers that build). In that build
// this file compiles to nothing. Run it as a non-simulated build (an empty RUSTFLAGS replaces
// the config's flags; a separate target dir keeps the two builds from evicting each other):
//
//     RUSTFLAGS="" cargo test --release -p standby --target-dir target/real --test real_loopback
#![cfg(not(madsim))]
//! A failover over loopback TCP, with the real services on the real tokio runtime.
//!
//! Three nodes per cluster, a config center and the controller, each a "process": a thread
//! with a tokio runtime of its own. Killing a process drops its runtime, and with it every
//! task the service spawned (its connection tasks and its replicator as well as the accept
//! loop), so a killed node stops answering on new and on already open connections alike, as a
//! killed process would.
//!
//! The story: users subscribe to the config center and get epoch 1 (cluster `a`), write to
//! `a`, then two of `a`'s three nodes are killed (1/3 available <= 0.5: `a` has failed). The
//! users must be pushed epoch 2 (cluster `b`), `b` must take epoch-2 writes, and the surviving
//! `a/2` must refuse epoch-1 writes.

use standby::config_center::ConfigCenter;
use standby::controller::{Durable, Topology};
use standby::node::Node;
use standby::params::Params;
use standby::protocol::{ConfigAck, RejectReason, Route, Subscribe, Write, WriteReply};
use standby::service::config_center::{CenterService, LogCenterObserver};
use standby::service::controller::{
    run_controller, ControllerOptions, LogControllerObserver, Store, StoreFuture,
};
use standby::service::node::{LogObserver, NodeOptions, NodeService, ReplicationMode};
use standby::service::rpc::{Peer, RpcError};
use standby::time::Clock;
use standby::types::{Cluster, Epoch, NodeId, Shard, UserConfig, UserId, WriteId};
use standby::wire::{read_frame, write_frame, Message};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Nodes per cluster (and shards, and users).
const NODES: u16 = 3;
/// The deadline of one request to a node.
const CALL: Duration = Duration::from_millis(500);
/// The pause between two attempts of a write that was not accepted yet.
const RETRY: Duration = Duration::from_millis(20);
/// The longest wait for the cluster to come up (epoch 1 published, first leases granted).
const STARTUP: Duration = Duration::from_secs(5);
/// The longest wait from the kill to epoch 2 at every user (the brief's bound).
const FAILOVER: Duration = Duration::from_secs(5);
/// The longest wait for anything else (a write to a new primary, a fence, an ack).
const SETTLE: Duration = Duration::from_secs(2);
/// The longest wait for a process to die once told to.
const STOP: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Processes: a thread with a runtime of its own
// ---------------------------------------------------------------------------------------------

/// How a process ended.
#[derive(Debug, PartialEq)]
enum Exit {
    /// Killed while its service was still running (the only healthy outcome).
    Killed,
    /// The service returned on its own.
    Returned,
    /// The service panicked.
    Panicked(String),
}

/// A service running on a runtime of its own, on a thread of its own. Dropping the runtime
/// drops every task the service spawned and closes every socket they held, as a crash would.
struct Process {
    name: String,
    /// Dropping (or sending on) it kills the process; so does dropping the `Process`.
    stop: oneshot::Sender<()>,
    /// Says how the process ended, once its runtime is gone.
    dead: oneshot::Receiver<Exit>,
    thread: std::thread::JoinHandle<()>,
}

impl Process {
    /// Starts `main()` as the one top-level task of a fresh current-thread runtime. The future
    /// is made on that runtime, so sockets it registers belong to it.
    fn start<F, Fut>(name: &str, main: F) -> Process
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let (died, dead) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                let exit = runtime.block_on(async move {
                    let mut service: JoinHandle<()> = tokio::spawn(async move { main().await });
                    tokio::select! {
                        _ = stopped => {
                            service.abort();
                            Exit::Killed
                        }
                        result = &mut service => match result {
                            Ok(()) => Exit::Returned,
                            Err(error) => Exit::Panicked(error.to_string()),
                        },
                    }
                });
                // Every task of the process is dropped here: listener, connections, timers.
                drop(runtime);
                let _ = died.send(exit);
            })
            .expect("a thread");
        Process {
            name: name.to_string(),
            stop,
            dead,
            thread,
        }
    }

    /// Kills the process and waits until it is gone: when this returns, nothing of it runs
    /// and none of its sockets is open. Fails the test if the service had ended on its own.
    async fn kill(self) {
        let Process {
            name,
            stop,
            dead,
            thread,
        } = self;
        let _ = stop.send(());
        let exit = timeout(STOP, dead)
            .await
            .unwrap_or_else(|_| panic!("{name} did not stop within {STOP:?}"))
            .unwrap_or_else(|_| panic!("{name}'s thread died without a word"));
        thread.join().expect("the thread ended after its last word");
        assert_eq!(
            exit,
            Exit::Killed,
            "{name}'s service had ended before the kill"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The world's parts
// ---------------------------------------------------------------------------------------------

/// The controller's durable state, in memory (it outlives the controller's process).
#[derive(Default)]
struct MemoryStore(Mutex<Option<Durable>>);

impl Store for MemoryStore {
    fn load(&self) -> StoreFuture<'_, Option<Durable>> {
        Box::pin(std::future::ready(Ok(self
            .0
            .lock()
            .expect("store")
            .clone())))
    }
    fn save<'a>(&'a self, state: &'a Durable) -> StoreFuture<'a, ()> {
        *self.0.lock().expect("store") = Some(state.clone());
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A listener on a free loopback port, ready to be handed to a runtime.
fn bind() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
    listener.set_nonblocking(true).expect("non-blocking");
    let address = listener.local_addr().expect("bound address").to_string();
    (listener, address)
}

fn start_node(id: NodeId, listener: std::net::TcpListener, peer_address: String) -> Process {
    Process::start(&id.to_string(), move || async move {
        let listener = TcpListener::from_std(listener).expect("listener on the runtime");
        let options = NodeOptions {
            mode: ReplicationMode::Async,
            peer_address,
            replication_timeout: Duration::from_millis(200),
            replication_batch: 64,
            sync_timeout: Duration::from_millis(500),
        };
        let node = Arc::new(Mutex::new(Node::new(id)));
        let service = NodeService::new(node, Clock::new(0), options, Arc::new(LogObserver));
        service.run(listener).await;
    })
}

/// A user's subscription to the config center: every pushed config arrives on `configs`
/// (and is acknowledged to the center). One reader task owns the stream's read half, so no
/// timed-out wait ever cancels a read halfway through a frame.
struct Subscription {
    user: UserId,
    configs: mpsc::UnboundedReceiver<UserConfig>,
    task: JoinHandle<()>,
    newest: Epoch,
}

impl Subscription {
    async fn open(center: &str, user: UserId) -> Subscription {
        let stream = timeout(CALL, TcpStream::connect(center))
            .await
            .expect("config center connect in time")
            .expect("config center reachable");
        let (mut reader, mut writer) = stream.into_split();
        write_frame(&mut writer, &Message::Subscribe(Subscribe { user }))
            .await
            .expect("subscribe sent");
        let (pushed, configs) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(Message::Config(config)) = read_frame(&mut reader).await {
                let ack = Message::ConfigAck(ConfigAck {
                    user,
                    epoch: config.epoch,
                });
                if pushed.send(config).is_err() || write_frame(&mut writer, &ack).await.is_err() {
                    return;
                }
            }
        });
        Subscription {
            user,
            configs,
            task,
            newest: Epoch(0),
        }
    }

    /// The next pushed config, within `within`. Epochs pushed to a user never go back.
    async fn next(&mut self, within: Duration) -> UserConfig {
        let user = self.user;
        let config = timeout(within, self.configs.recv())
            .await
            .unwrap_or_else(|_| panic!("{user}: no config pushed within {within:?}"))
            .unwrap_or_else(|| panic!("{user}: the config center closed the subscription"));
        assert_eq!(config.user, user, "a config for someone else");
        assert!(
            config.epoch > self.newest,
            "{user}: pushed {} after {}",
            config.epoch,
            self.newest
        );
        self.newest = config.epoch;
        config
    }
}

/// A user's writes: numbered per user, sent through one [`Peer`] per node.
struct Writer {
    user: UserId,
    seq: u64,
}

impl Writer {
    /// One write attempt.
    async fn write(&mut self, peer: &Peer, epoch: Epoch) -> Result<WriteReply, RpcError> {
        self.seq += 1;
        let write = Write {
            id: WriteId {
                user: self.user,
                seq: self.seq,
            },
            epoch,
            key: format!("k{}", self.user.0),
            value: self.seq,
        };
        match peer.call(&Message::Write(write), CALL).await? {
            Message::WriteReply(reply) => Ok(reply),
            other => panic!("{}: a write answered with {other:?}", peer.address()),
        }
    }

    /// Writes in `epoch` until the node accepts (a new primary needs its first lease), at
    /// most for `within`. Returns the epoch the node accepted it in.
    async fn write_until_ok(&mut self, peer: &Peer, epoch: Epoch, within: Duration) -> Epoch {
        let deadline = Instant::now() + within;
        loop {
            let answer = self.write(peer, epoch).await;
            if let Ok(WriteReply::Ok { epoch, .. }) = answer {
                return epoch;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no write in {epoch} accepted by {} within {within:?}; last answer {answer:?}",
                self.user,
                peer.address()
            );
            tokio::time::sleep(RETRY).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_over_real_tcp() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let started = Instant::now();

    // 1. Real addresses, then the topology over them.
    let mut listeners = BTreeMap::new();
    let mut addresses = BTreeMap::new();
    for cluster in Cluster::BOTH {
        for index in 0..NODES {
            let node = NodeId::new(cluster, index);
            let (listener, address) = bind();
            listeners.insert(node, listener);
            addresses.insert(node, address);
        }
    }
    let (center_listener, center_address) = bind();
    let users: BTreeMap<UserId, Shard> = (0..NODES).map(|i| (UserId(i as u32), Shard(i))).collect();
    let topology = Topology {
        nodes_per_cluster: NODES,
        addresses: addresses.clone(),
        users: users.clone(),
    };

    // 2. The services, each in a process of its own.
    let mut nodes: BTreeMap<NodeId, Process> = listeners
        .into_iter()
        .map(|(node, listener)| {
            let peer_address = addresses[&node.peer()].clone();
            (node, start_node(node, listener, peer_address))
        })
        .collect();
    let center_state = Arc::new(Mutex::new(ConfigCenter::new()));
    let center = {
        let state = center_state.clone();
        Process::start("config-center", move || async move {
            let listener = TcpListener::from_std(center_listener).expect("listener on runtime");
            CenterService::new(state, Arc::new(LogCenterObserver))
                .run(listener)
                .await;
        })
    };
    let params = Params {
        heartbeat_interval_ms: 50,
        heartbeat_timeout_ms: 150,
        lease_duration_ms: 150,
        ..Params::default()
    };
    params.validate().expect("valid parameters");
    let store = Arc::new(MemoryStore::default());
    let controller = {
        let options = ControllerOptions::new(params, topology, center_address.clone());
        let store: Arc<dyn Store> = store.clone();
        Process::start("controller", move || async move {
            let observer = Arc::new(LogControllerObserver);
            run_controller(options, Clock::new(0), store, observer).await;
        })
    };

    // 3. Every user subscribes, is pushed epoch 1 on cluster `a`, and writes there.
    let peers: BTreeMap<NodeId, Peer> = addresses
        .iter()
        .map(|(&node, address)| (node, Peer::new(address.clone())))
        .collect();
    let mut subscriptions = Vec::new();
    let mut writers = BTreeMap::new();
    for (&user, &shard) in &users {
        let mut subscription = Subscription::open(&center_address, user).await;
        let config = subscription.next(STARTUP).await;
        let primary = shard.node(Cluster::A);
        assert_eq!(
            (config.epoch, config.node, config.address.as_str()),
            (Epoch(1), primary, addresses[&primary].as_str()),
            "{user}: the first config"
        );
        let mut writer = Writer { user, seq: 0 };
        let accepted = writer
            .write_until_ok(&peers[&primary], Epoch(1), STARTUP)
            .await;
        assert_eq!(accepted, Epoch(1));
        subscriptions.push(subscription);
        writers.insert(user, writer);
    }
    eprintln!(
        "epoch 1 written on every shard after {:?}",
        started.elapsed()
    );

    // 4. Kill a/0 and a/1: 1 of 3 available is not more than half, so `a` has failed.
    let killed_at = Instant::now();
    for index in [0, 1] {
        let node = NodeId::new(Cluster::A, index);
        nodes.remove(&node).expect("running").kill().await;
        // Gone for real: no new connection, and no answer on the user's connection from
        // before the kill (a killed node must not keep serving the controller's either).
        let connect = timeout(CALL, TcpStream::connect(addresses[&node].as_str())).await;
        assert!(
            matches!(connect, Ok(Err(_))),
            "{node} still accepts connections after its kill: {connect:?}"
        );
        let user = UserId(index as u32);
        let writer = writers.get_mut(&user).expect("a writer");
        let late = writer.write(&peers[&node], Epoch(1)).await;
        assert!(late.is_err(), "{node} answered after its kill: {late:?}");
    }

    // 5. Every user is pushed epoch 2 on cluster `b`, in bounded time.
    for subscription in &mut subscriptions {
        let user = subscription.user;
        let left = FAILOVER.saturating_sub(killed_at.elapsed());
        let config = subscription.next(left).await;
        let backup = users[&user].node(Cluster::B);
        assert_eq!(
            (config.epoch, config.node, config.address.as_str()),
            (Epoch(2), backup, addresses[&backup].as_str()),
            "{user}: the config after the failover"
        );
    }
    let failover = killed_at.elapsed();
    eprintln!("epoch 2 pushed to every user {failover:?} after the kill");
    assert!(failover < FAILOVER);

    // ... `b` takes writes in epoch 2 ...
    for (&user, &shard) in &users {
        let writer = writers.get_mut(&user).expect("a writer");
        let backup = &peers[&shard.node(Cluster::B)];
        let accepted = writer.write_until_ok(backup, Epoch(2), SETTLE).await;
        assert_eq!(accepted, Epoch(2), "{user}: accepted in the wrong epoch");
    }

    // ... and the surviving a/2 refuses every epoch-1 write: at once, and soon (when it has
    // been fenced in epoch 2) with the new route, for a user the config center cannot reach.
    let survivor = NodeId::new(Cluster::A, 2);
    let new_primary = survivor.peer();
    let fenced_route = WriteReply::Rejected {
        reason: RejectReason::StaleEpoch,
        route: Some(Route {
            epoch: Epoch(2),
            node: new_primary,
            address: addresses[&new_primary].clone(),
        }),
    };
    let writer = writers.get_mut(&UserId(2)).expect("a writer");
    let deadline = Instant::now() + SETTLE;
    loop {
        let answer = writer.write(&peers[&survivor], Epoch(1)).await;
        match &answer {
            Ok(reply) if *reply == fenced_route => break,
            Ok(WriteReply::Rejected { .. }) => {}
            other => panic!("{survivor} answered an epoch-1 write with {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "{survivor} not fenced in epoch 2 within {SETTLE:?}; last answer {answer:?}"
        );
        tokio::time::sleep(RETRY).await;
    }

    // The config center heard every user acknowledge epoch 2; the controller persisted it.
    let deadline = Instant::now() + SETTLE;
    loop {
        let acks = center_state.lock().expect("center").acks().clone();
        if users.keys().all(|u| acks.get(u) == Some(&Epoch(2))) {
            break;
        }
        assert!(Instant::now() < deadline, "acknowledgements: {acks:?}");
        tokio::time::sleep(RETRY).await;
    }
    let durable =
        (store.0.lock().expect("store").clone()).expect("the controller persisted its state");
    assert_eq!(
        (durable.epoch, durable.sole_primary()),
        (Epoch(2), Some(Cluster::B))
    );

    // 6. Clean up: every process dies while its service still runs, every task ends.
    for subscription in subscriptions {
        subscription.task.abort();
    }
    controller.kill().await;
    center.kill().await;
    for (_, node) in nodes {
        node.kill().await;
    }
    eprintln!("done in {:?}", started.elapsed());
}
