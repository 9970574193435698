//! What the real-Redis tests share: six redis-server processes (clusters a and b, three
//! shards) prepared with the ACL file of `standby redis-setup`, killed when their guard drops
//! (on success or a panic), the controller's config for them, and status polling.
//! Each test binary uses a part of it.
#![allow(dead_code)]

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use standby::real::config::Config;
use standby::real::redis_node::NodeState;
use standby::real::run::node_state_file;
use standby::real::status::{query, Status};
use standby::types::{Cluster, NodeId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const AGENT: (&str, &str) = ("agent", "agent-secret");
pub const WRITER: (&str, &str) = ("writer", "writer-secret");
/// A test-only superuser, added to the setup's ACL file to break replication on purpose.
pub const ADMIN: (&str, &str) = ("admin", "admin-secret");
/// The longest wait for anything the controller must bring about.
pub const SETTLE: Duration = Duration::from_secs(15);
/// The deadline of one Redis call made by the test.
pub const CALL: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------------
// Redis servers: child processes, all killed when the guard drops (on success or a panic)
// ---------------------------------------------------------------------------------------------

/// The six servers, by node. Dropping it SIGKILLs and reaps every one still running.
pub struct Servers {
    pub dir: PathBuf,
    pub acl_file: PathBuf,
    /// `standby redis-setup`'s settings, as command-line flags.
    pub settings: Vec<String>,
    pub ports: BTreeMap<NodeId, u16>,
    pub running: BTreeMap<NodeId, Child>,
    /// The running servers SIGSTOPped by [`Servers::pause`] and not yet resumed.
    pub paused: BTreeSet<NodeId>,
}

impl Servers {
    pub fn new(dir: &Path, acl_file: PathBuf, ports: BTreeMap<NodeId, u16>) -> Servers {
        Servers {
            dir: dir.to_path_buf(),
            acl_file,
            settings: Vec::new(),
            ports,
            running: BTreeMap::new(),
            paused: BTreeSet::new(),
        }
    }

    /// Starts `node`'s server on its port, with its data directory (kept across restarts).
    pub fn start(&mut self, node: NodeId) {
        let data = self
            .dir
            .join(format!("redis-{}-{}", node.cluster, node.index));
        std::fs::create_dir_all(&data).unwrap();
        let port = self.ports[&node].to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--daemonize", "no"])
            .args(["--save", "", "--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&data)
            .arg("--logfile")
            .arg(data.join("redis.log"))
            .args(&self.settings)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
        self.running.insert(node, child);
    }

    /// The process id of `node`'s running server.
    pub fn pid(&self, node: NodeId) -> Option<u32> {
        self.running.get(&node).map(Child::id)
    }

    /// Sends `signal` (a name `kill -s` knows: STOP, CONT) to `node`'s running server.
    fn signal(&self, node: NodeId, signal: &str) -> bool {
        let Some(pid) = self.pid(node) else {
            return false;
        };
        Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// SIGSTOPs `node`'s server (it keeps its sockets; requests queue up unanswered).
    pub fn pause(&mut self, node: NodeId) {
        assert!(self.signal(node, "STOP"), "cannot SIGSTOP {node}");
        self.paused.insert(node);
    }

    /// SIGCONTs `node`'s server.
    pub fn resume(&mut self, node: NodeId) {
        assert!(self.signal(node, "CONT"), "cannot SIGCONT {node}");
        self.paused.remove(&node);
    }

    /// SIGKILLs `node`'s server (SIGCONT first if it was paused) and reaps it.
    pub fn kill(&mut self, node: NodeId) {
        if self.paused.remove(&node) {
            let _ = self.signal(node, "CONT");
        }
        if let Some(mut child) = self.running.remove(&node) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn address(&self, node: NodeId) -> String {
        format!("127.0.0.1:{}", self.ports[&node])
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let nodes: Vec<NodeId> = self.running.keys().copied().collect();
        for node in nodes {
            self.kill(node);
        }
    }
}

/// Fails (never skips) when redis-server is missing: CI installs it.
pub fn require_redis_server() {
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "redis-server (Redis 7) is not installed: run `apt-get install -y redis-server` \
         (.ci/run does this), then run this test again"
    );
}

/// A port free on loopback now, and never handed out before in this process: the kernel may
/// give a port just released by one bind to the next, and tests running side by side each
/// ask for several (`.ci/run` once got one port for a/0 and a/1).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Redis clients
// ---------------------------------------------------------------------------------------------

/// A connection to `address` as `user` (`None`: the default user).
pub async fn connect(
    address: &str,
    user: Option<(&str, &str)>,
) -> redis::RedisResult<MultiplexedConnection> {
    connect_with_timeout(address, user, CALL).await
}

/// As [`connect`], waiting up to `response` for each reply.
pub async fn connect_with_timeout(
    address: &str,
    user: Option<(&str, &str)>,
    response: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    let (host, port) = address.rsplit_once(':').unwrap();
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp(host.to_string(), port.parse().unwrap()),
        redis: RedisConnectionInfo {
            username: user.map(|u| u.0.to_string()),
            password: user.map(|u| u.1.to_string()),
            ..RedisConnectionInfo::default()
        },
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(CALL)
        .set_response_timeout(response);
    Client::open(info)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Waits until `address` answers PING.
pub async fn wait_up(address: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Ok(mut con) = connect(address, Some(("reader", "any"))).await {
            if redis::cmd("PING")
                .query_async::<String>(&mut con)
                .await
                .is_ok()
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{address} did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------------

pub fn controller_config(dir: &Path, servers: &Servers) -> String {
    let list = |cluster| {
        (0..3u16)
            .map(|i| format!("\"{}\"", servers.address(NodeId::new(cluster, i))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"[controller]
state_file = "{dir}/state.json"
status_listen = "127.0.0.1:0"

[params]
heartbeat_interval_ms = 100
heartbeat_timeout_ms = 300
lease_duration_ms = 300

[config_center]
listen = "127.0.0.1:0"

[clusters]
a = [{a}]
b = [{b}]

[redis]
agent_user = "{agent}"
agent_password = "{agent_password}"
writer_user = "{writer}"
writer_password = "{writer_password}"
quarantine_dir = "{dir}/quarantine"

[users]
count = 3
"#,
        dir = dir.display(),
        a = list(Cluster::A),
        b = list(Cluster::B),
        agent = AGENT.0,
        agent_password = AGENT.1,
        writer = WRITER.0,
        writer_password = WRITER.1,
    )
}

/// Runs `check` every `every` until it gives `Ok`, for at most `limit`; then fails with the
/// last `Err` it gave (what it saw).
pub async fn eventually<T, F, Fut>(limit: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let seen = match check().await {
            Ok(done) => return done,
            Err(seen) => seen,
        };
        assert!(Instant::now() < deadline, "{seen}");
        tokio::time::sleep(every).await;
    }
}

/// Polls the status until `done` holds, for at most `SETTLE`.
pub async fn status_until(address: &str, what: &str, done: impl Fn(&Status) -> bool) -> Status {
    let done = &done;
    eventually(SETTLE, Duration::from_millis(50), || async move {
        match query(address, Duration::from_secs(1)).await {
            Ok((_, status)) if done(&status) => Ok(status),
            answer => Err(format!("{what}: last status: {answer:?}")),
        }
    })
    .await
}

pub fn cluster_role(status: &Status, cluster: &str) -> String {
    let c = status
        .clusters
        .iter()
        .find(|c| c.cluster == cluster)
        .unwrap();
    format!("{} {}", c.availability, c.role)
}

pub fn node_state(config: &Config, node: NodeId) -> NodeState {
    let file = node_state_file(config.state_file.as_ref().expect("a state file"), node);
    serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
}

/// Starts the six servers in a fresh directory named after `name` and the process, with the
/// controller's config written there (plus a test-only superuser, [`ADMIN`]), and waits until
/// every one answers. Also sets up test logging (RUST_LOG).
pub async fn start_servers(name: &str) -> (PathBuf, Servers, Config) {
    require_redis_server();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = std::env::temp_dir().join(format!("standby-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ports = [Cluster::A, Cluster::B]
        .into_iter()
        .flat_map(|c| (0..3).map(move |i| NodeId::new(c, i)))
        .map(|node| (node, free_port()))
        .collect();
    let mut servers = Servers::new(&dir, dir.join("users.acl"), ports);
    let file = dir.join("controller.toml");
    std::fs::write(&file, controller_config(&dir, &servers)).unwrap();
    let config = Config::load(&file).expect("a valid config");
    let mut acl = standby::real::redis_setup::acl_file(&config.redis).unwrap();
    acl.push_str(&format!("user {} on >{} ~* &* +@all\n", ADMIN.0, ADMIN.1));
    std::fs::write(&servers.acl_file, acl).unwrap();
    let acl_path = servers.acl_file.display().to_string();
    let settings = standby::real::redis_setup::server_settings(&config.redis, &acl_path).unwrap();
    servers.settings = settings
        .into_iter()
        .flat_map(|(key, value)| [format!("--{key}"), value])
        .collect();
    let nodes: Vec<NodeId> = servers.ports.keys().copied().collect();
    for &node in &nodes {
        servers.start(node);
    }
    for &node in &nodes {
        wait_up(&servers.address(node)).await;
    }
    (dir, servers, config)
}

/// The controller process's work, run in-process over `config`: its status and config center
/// addresses, and a clean stop.
pub struct RunningController {
    /// Where `standby status` asks.
    pub status_address: String,
    /// Where users subscribe.
    pub center: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), standby::real::run::RunError>>,
}

impl RunningController {
    /// Binds the controller's listeners and starts it.
    pub async fn start(config: Config) -> RunningController {
        let bound = standby::real::run::Bound::bind(config)
            .await
            .expect("bound");
        let status_address = bound.status_address().to_string();
        let center = bound.config_center_address().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bound.run(async {
            let _ = stopped.await;
        }));
        RunningController {
            status_address,
            center,
            stop,
            task,
        }
    }

    /// Stops it and checks that it stopped cleanly.
    pub async fn stop(self) {
        drop(self.stop);
        self.task.await.unwrap().expect("a clean stop");
    }
}

/// One write of a `standby::client::Client`, as the tests log it.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub key: String,
    pub value: String,
    pub result: Result<standby::client::Ack, standby::client::WriteError>,
    /// When `write` returned.
    pub done: Instant,
}

/// Writes `c<n>` = `<n>` through the client every 5 ms until `stop` is set.
pub async fn write_continuously(
    client: std::sync::Arc<standby::client::Client>,
    log: std::sync::Arc<std::sync::Mutex<Vec<Outcome>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        n += 1;
        let (key, value) = (format!("c{n}"), n.to_string());
        let result = client.write(&key, &value).await;
        let done = Instant::now();
        log.lock().unwrap().push(Outcome {
            key,
            value,
            result,
            done,
        });
    }
}

/// User 0's client and its writer (`write_continuously`); set `stop`, then await `task`.
pub struct FollowingWriter {
    pub client: std::sync::Arc<standby::client::Client>,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<Outcome>>>,
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts user 0's client on the config center at `center`, checks that its first route is
/// a/0 in epoch 1, and starts it writing every 5 ms.
pub async fn start_following_writer(center: String) -> FollowingWriter {
    start_following_writer_on(vec![center]).await
}

/// As [`start_following_writer`], following every config center in `centers` (one per
/// controller replica).
pub async fn start_following_writer_on(centers: Vec<String>) -> FollowingWriter {
    start_user_writing(0, centers).await
}

/// Starts user `user`'s client on every config center in `centers`, checks that its first
/// route is its shard's node in `a` (user `i` is on shard `i`, three users) in epoch 1, and
/// starts it writing every 5 ms.
pub async fn start_user_writing(user: u32, centers: Vec<String>) -> FollowingWriter {
    use standby::client::{Client, ClientOptions};
    let options = ClientOptions::new(
        String::new(),
        standby::types::UserId(user),
        WRITER.0,
        WRITER.1,
    )
    .with_config_centers(centers);
    let client = std::sync::Arc::new(Client::start(options));
    let first = client.wait_for_route(SETTLE).await.expect("a first route");
    let home = NodeId::new(Cluster::A, user as u16);
    assert_eq!(
        (first.epoch, first.node),
        (standby::types::Epoch(1), home),
        "{first:?}"
    );
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let task = tokio::spawn(write_continuously(
        client.clone(),
        log.clone(),
        stop.clone(),
    ));
    FollowingWriter {
        client,
        log,
        stop,
        task,
    }
}

/// Runs `standby promote --config <config>` (the binary, as an operator does) and returns
/// what it did.
pub fn standby_promote(config: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["promote", "--config"])
        .arg(config)
        .output()
        .expect("standby promote runs")
}

/// Breaks the replication of the shard `address` is primary of: its agent user may no longer
/// sync, and the connected replica is dropped. The writes the primary takes next never reach
/// its backup, and after a failover they are its divergent suffix.
pub async fn cut_replication(address: &str) {
    let mut admin = connect(address, Some(ADMIN)).await.unwrap();
    let _: String = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(AGENT.0)
        .arg("-psync")
        .arg("-sync")
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query_async(&mut admin)
        .await
        .unwrap();
}

/// Waits (bounded) until the controller's state file says `node` is a backup.
pub async fn until_backup(config: &Config, node: NodeId) {
    eventually(SETTLE, Duration::from_millis(50), || async move {
        match node_state(config, node) {
            state if state.role == standby::protocol::Role::Backup => Ok(()),
            state => Err(format!("{node}: {state:?}")),
        }
    })
    .await
}

/// Waits until the client has acknowledged `count` writes of `epoch` on `node` in all.
pub async fn acked(log: &std::sync::Mutex<Vec<Outcome>>, epoch: u64, node: NodeId, count: usize) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (n, last) = {
            let log = log.lock().unwrap();
            let n = (log.iter())
                .filter(|o| matches!(&o.result, Ok(a) if a.epoch == standby::types::Epoch(epoch) && a.node == node))
                .count();
            (n, log.iter().rev().take(3).cloned().collect::<Vec<_>>())
        };
        if n >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {count} epoch-{epoch} acks on {node}; last: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks that every write acknowledged in `outcomes` is on `new_primary` (b/0's address)
/// or in a/0's quarantine `file` (none when nothing diverged), and returns how many are in
/// the quarantine.
pub async fn every_ack_kept(outcomes: &[Outcome], new_primary: &str, file: &Path) -> usize {
    let quarantined: Vec<serde_json::Value> = match std::fs::read_to_string(file) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", file.display()),
    };
    let mut b = connect(new_primary, Some(WRITER)).await.unwrap();
    let (mut on_b, mut in_quarantine) = (0, 0usize);
    for outcome in outcomes {
        let Ok(ack) = &outcome.result else { continue };
        let value: Option<String> = redis::cmd("GET")
            .arg(&outcome.key)
            .query_async(&mut b)
            .await
            .unwrap();
        if value.as_deref() == Some(outcome.value.as_str()) {
            on_b += 1;
            continue;
        }
        let kept = quarantined.iter().any(|e| {
            e["lsn"] == ack.lsn.0
                && e["key"] == outcome.key.as_str()
                && e["value"] == outcome.value.as_str()
        });
        assert!(
            ack.node == NodeId::new(Cluster::A, 0) && kept,
            "acked write lost: {outcome:?} (b/0 has {value:?}; quarantine {})",
            file.display()
        );
        in_quarantine += 1;
    }
    let count = |f: &dyn Fn(&Result<standby::client::Ack, standby::client::WriteError>) -> bool| {
        outcomes.iter().filter(|o| f(&o.result)).count()
    };
    let unknown = count(&|r| matches!(r, Err(standby::client::WriteError::Unknown(_))));
    let failed =
        count(&|r| matches!(r, Err(e) if !matches!(e, standby::client::WriteError::Unknown(_))));
    let errors: Vec<String> = (outcomes.iter())
        .filter_map(|o| o.result.as_ref().err().map(|e| e.to_string()))
        .take(5)
        .collect();
    eprintln!(
        "writes {}, acked on b/0 {on_b}, acked and quarantined {in_quarantine}, unknown {unknown}, \
         not written {failed}; first errors: {errors:?}",
        outcomes.len()
    );

    in_quarantine
}
