//! `standby controller`: the controller, the config center and the status listener in one
//! process, on real tokio.

use crate::config_center::ConfigCenter;
use crate::control_plane::replica::run_replica;
use crate::control_plane::store::Guarded;
use crate::control_plane::EtcdOptions;
use crate::real::config::{connectable, Config};
use crate::real::observer::RealObserver;
use crate::real::redis_node::{CurrentTerm, LinkError, NodeDisk, RedisNode, RedisNodeOptions};
use crate::real::replica::Reporter;
use crate::real::status::{self, PlaneSnapshot, Snapshot};
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
use std::pin::Pin;
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
    /// etcd refused this replica's login: wrong user or password (a config error).
    #[error(transparent)]
    Login(#[from] crate::real::config::ConfigError),
    /// The controller's loop ended (a failed save stops it on purpose).
    #[error("the controller stopped: {0}")]
    Stopped(String),
}

/// Where the controller's durable state lives, and whether it runs alone.
enum Mode {
    /// One controller, its state in a file (locked, so that a second one is refused).
    Alone(Arc<FileStore>),
    /// One replica of several on etcd: it leads when it wins the election.
    Replica {
        name: String,
        etcd: EtcdOptions,
        /// The term it leads in, for the nodes' state in etcd.
        term: Arc<CurrentTerm>,
    },
}

/// A controller process with its state file open (or its etcd options read) and its
/// listeners bound, not yet running. Binding first lets a caller (a test) ask for port 0 and
/// learn the ports taken.
pub struct Bound {
    config: Config,
    mode: Mode,
    links: BTreeMap<NodeId, Arc<RedisNode>>,
    center: TcpListener,
    status: TcpListener,
}

impl Bound {
    /// Opens the state file (a corrupt one is refused here, before anything runs) or reads
    /// the etcd password, and binds the config center's and the status listener's addresses.
    pub async fn bind(config: Config) -> Result<Bound, RunError> {
        let mode = match (&config.etcd, &config.state_file) {
            (Some(etcd_config), _) => {
                let etcd = etcd_config
                    .options(&config.params)
                    .map_err(RunError::Secret)?;
                check_login(&config, etcd_config, &etcd).await?;
                Mode::Replica {
                    name: etcd_config.name.clone(),
                    etcd,
                    term: Arc::new(CurrentTerm::default()),
                }
            }
            (None, Some(file)) => Mode::Alone(Arc::new(FileStore::open(file)?)),
            (None, None) => unreachable!("a config has a state file or an [etcd] table"),
        };
        let links = redis_links(&config, &mode)?;
        let center = listen("config center", config.config_center_listen).await?;
        let status = listen("status", config.status_listen).await?;
        Ok(Bound {
            config,
            mode,
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

    /// Runs until `shutdown` completes (then `Ok`) or the controller's loop ends (an error;
    /// a replica's never does: it campaigns again). Every task started here is stopped when
    /// this returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        let center_address = self.config_center_address();
        let status_address = self.status_address();
        let Bound {
            config,
            mode,
            links,
            center,
            status,
        } = self;
        let mut tasks = Tasks::default();
        let state = Arc::new(Mutex::new(ConfigCenter::new()));
        // The center takes publications from this process's controller only.
        let center_service =
            CenterService::closed_to_publications(state, Arc::new(LogCenterObserver));
        tasks.spawn(center_service.clone().run(center));
        let snapshot: Snapshot = Arc::new(Mutex::new(None));
        let observer = Arc::new(RealObserver::new(
            snapshot.clone(),
            config.alarm_command.clone(),
        ));
        let links: BTreeMap<NodeId, Arc<dyn NodeLink>> = links
            .into_iter()
            .map(|(node, link)| (node, link as Arc<dyn NodeLink>))
            .collect();
        let options = ControllerOptions::new(
            config.params.clone(),
            config.topology.clone(),
            center_address.to_string(),
        )
        .with_links(links);
        // A replica asked to stop gives its etcd lease back first, within this long.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let mut grace = std::time::Duration::ZERO;
        let running = match mode {
            Mode::Alone(store) => {
                tracing::info!(
                    state_file = %store.path().display(),
                    epoch = ?store.loaded().map(|d| d.epoch),
                    config_center = %center_address,
                    status = %status_address,
                    "controller starting"
                );
                tasks.spawn(status::serve(status, snapshot, None));
                let store: Arc<dyn Store> = store;
                let options = options.with_center_link(center_service);
                let run = run_controller(options, Clock::new(0), store, observer);
                Box::pin(async move { run.await.to_string() })
                    as Pin<Box<dyn Future<Output = String> + Send>>
            }
            Mode::Replica { name, etcd, term } => {
                tracing::info!(
                    replica = %name,
                    etcd = ?etcd.endpoints,
                    config_center = %center_address,
                    status = %status_address,
                    "controller replica starting"
                );
                let plane: PlaneSnapshot = Arc::new(Mutex::new(None));
                tasks.spawn(status::serve(status, snapshot.clone(), Some(plane.clone())));
                tasks.spawn(
                    Reporter {
                        name: name.clone(),
                        status_address: status_address.to_string(),
                        options: etcd.clone(),
                        snapshot,
                        plane,
                    }
                    .run(),
                );
                let per_term = move |guarded: &Guarded| {
                    term.begin(guarded.clone());
                    options.clone()
                };
                grace = etcd.call_timeout * 2;
                let (clock, center) = (Clock::new(0), center_service);
                let run = run_replica(name, etcd, per_term, clock, observer, center, stopping);
                Box::pin(async move {
                    run.await;
                    "the replica stopped".to_string()
                })
            }
        };
        let mut controller = tokio::spawn(running);
        tokio::select! {
            _ = shutdown => {
                // A replica stops acting and revokes its lease (bounded); then everything is
                // aborted and awaited, so that a state file (and the file's lock) is closed on
                // return: a controller started next in this process may open it at once.
                let _ = stop.send(true);
                if tokio::time::timeout(grace, &mut controller).await.is_err() {
                    controller.abort();
                    let _ = (&mut controller).await;
                }
                tracing::info!("controller stopped");
                Ok(())
            }
            ended = &mut controller => Err(RunError::Stopped(match ended {
                Ok(why) => why,
                Err(e) => e.to_string(),
            })),
        }
    }
}

/// Tries etcd once: a login it refuses is a config error (the process exits); etcd not
/// answering is not (the replica says so, and keeps trying until it does).
async fn check_login(
    config: &Config,
    etcd_config: &crate::real::config::EtcdConfig,
    etcd: &EtcdOptions,
) -> Result<(), RunError> {
    // The client connects lazily unless it logs in: a read makes it reach etcd.
    let tried = async {
        let client = crate::control_plane::connect(etcd).await?;
        let mut kv = client.kv_client();
        let read = kv.get(etcd.state_key(), None);
        crate::control_plane::call(etcd, "read the state", read).await
    };
    match tried.await {
        Ok(_) => Ok(()),
        Err(e) if is_refused_login(&e.to_string()) => {
            let why = e.to_string();
            let why = why
                .split_once("connect: ")
                .map_or(why.as_str(), |(_, why)| why);
            let reason = format!("etcd refused the login: {why}");
            Err(etcd_config.refused_login(&config.file, reason).into())
        }
        Err(e) => {
            tracing::warn!(error = %e, endpoints = ?etcd.endpoints, "etcd does not answer; the replica keeps trying");
            Ok(())
        }
    }
}

/// Whether etcd's error says the user or password is wrong (etcd's own wording, in every
/// version since 3.2), or that authentication is off while a user was given.
fn is_refused_login(error: &str) -> bool {
    [
        "authentication failed",
        "invalid user ID or password",
        "authentication is not enabled",
    ]
    .iter()
    .any(|text| error.contains(text))
}

/// A link to each node's Redis server. Alone, its state file is next to the controller's:
/// `state.json` has `state.node-a-0.json` and so on; as a replica, its state is in etcd.
fn redis_links(config: &Config, mode: &Mode) -> Result<BTreeMap<NodeId, Arc<RedisNode>>, RunError> {
    let password = config
        .redis
        .agent_password
        .read()
        .map_err(RunError::Secret)?;
    let mut links = BTreeMap::new();
    for (&node, address) in &config.topology.addresses {
        let disk = match mode {
            Mode::Alone(store) => NodeDisk::File(node_state_file(store.path(), node)),
            Mode::Replica { etcd, term, .. } => NodeDisk::Etcd {
                term: term.clone(),
                key: etcd.node_key(node),
            },
        };
        let options = RedisNodeOptions {
            node,
            address: address.clone(),
            user: config.redis.agent_user.clone(),
            password: password.clone(),
            disk,
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
