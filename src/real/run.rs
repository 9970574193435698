//! `standby controller`: the controller, the config center and the status listener in one
//! process, on real tokio.

use crate::config_center::ConfigCenter;
use crate::real::config::{connectable, Config};
use crate::real::observer::RealObserver;
use crate::real::redis_node::{LinkError, RedisNode, RedisNodeOptions};
use crate::real::status::{self, Snapshot};
use crate::real::store::{FileStore, StoreError};
use crate::service::config_center::{CenterService, LogCenterObserver};
use crate::service::controller::{run_controller, ControllerOptions, NodeLink, Store};
use crate::service::Tasks;
use crate::time::Clock;
use crate::types::NodeId;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// A node's state file, a password or the quarantine directory cannot be used.
    #[error("node {node}: {source}")]
    Node {
        /// The node.
        node: NodeId,
        /// Why.
        source: LinkError,
    },
    /// A password file cannot be read.
    #[error("redis password: {0}")]
    Secret(std::io::Error),
    /// The controller's loop ended (a failed save stops it on purpose).
    #[error("the controller stopped: {0}")]
    Stopped(String),
}

/// A controller process with its state file open and its listeners bound, not yet running.
/// Binding first lets a caller (a test) ask for port 0 and learn the ports taken.
pub struct Bound {
    config: Config,
    store: Arc<FileStore>,
    links: BTreeMap<NodeId, Arc<RedisNode>>,
    center: TcpListener,
    status: TcpListener,
}

impl Bound {
    /// Opens the state file (a corrupt one is refused here, before anything runs) and binds
    /// the config center's and the status listener's addresses.
    pub async fn bind(config: Config) -> Result<Bound, RunError> {
        let store = Arc::new(FileStore::open(&config.state_file)?);
        let links = redis_links(&config)?;
        let center = listen("config center", config.config_center_listen).await?;
        let status = listen("status", config.status_listen).await?;
        Ok(Bound {
            config,
            store,
            links,
            center,
            status,
        })
    }

    /// The link to each node's Redis server (to look at the node's state, in tests).
    pub fn links(&self) -> &BTreeMap<NodeId, Arc<RedisNode>> {
        &self.links
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
            links,
            center,
            status,
        } = self;
        tracing::info!(
            state_file = %store.path().display(),
            epoch = ?store.loaded().map(|d| d.epoch),
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
        let links = links
            .into_iter()
            .map(|(node, link)| (node, link as Arc<dyn NodeLink>))
            .collect();
        let options =
            ControllerOptions::new(config.params, config.topology, center_address.to_string())
                .with_links(links);
        let store: Arc<dyn Store> = store;
        let mut controller = tokio::spawn(run_controller(options, Clock::new(0), store, observer));
        tokio::select! {
            _ = shutdown => {
                // Awaited, so that its state file (and the file's lock) is closed on return:
                // a controller started next in this process may open it at once.
                controller.abort();
                let _ = (&mut controller).await;
                tracing::info!("controller stopped");
                Ok(())
            }
            ended = &mut controller => Err(RunError::Stopped(match ended {
                Ok(why) => why.to_string(),
                Err(e) => e.to_string(),
            })),
        }
    }
}

/// A link to each node's Redis server, its state file next to the controller's:
/// `state.json` has `state.node-a-0.json` and so on.
fn redis_links(config: &Config) -> Result<BTreeMap<NodeId, Arc<RedisNode>>, RunError> {
    let password = config
        .redis
        .agent_password
        .read()
        .map_err(RunError::Secret)?;
    let mut links = BTreeMap::new();
    for (&node, address) in &config.topology.addresses {
        let options = RedisNodeOptions {
            node,
            address: address.clone(),
            user: config.redis.agent_user.clone(),
            password: password.clone(),
            state_file: node_state_file(&config.state_file, node),
            quarantine_dir: config.redis.quarantine_dir.clone(),
        };
        let link = RedisNode::open(options).map_err(|source| RunError::Node { node, source })?;
        links.insert(node, Arc::new(link));
    }
    Ok(links)
}

/// `dir/state.json` -> `dir/state.node-a-0.json`.
pub fn node_state_file(state_file: &Path, node: NodeId) -> PathBuf {
    let stem = state_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let name = format!("{stem}.node-{}-{}.json", node.cluster, node.index);
    state_file.with_file_name(name)
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
