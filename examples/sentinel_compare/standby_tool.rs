//! standby's side of a run: the controller config, `standby redis-setup`'s ACL file and server
//! settings, `standby controller` as a separate process (its log in the run directory), and
//! the two writers.
//!
//! - Following writer: `standby::client::Client` for user 0 (shard 0). An ack is `Ok(Ack)`:
//!   the server ran the write under a lease and its reply came back within the lease it
//!   reports (the library's rule). Its reply deadline is 500 ms like the other writers'. The
//!   client keeps a refused, lost or overtaken write going for up to `route_wait` (library
//!   default 2000 ms, `--client-route-wait-ms`): at once on a newer route, and every 5-50 ms
//!   on the same route while the node is only behind it (`STALE_EPOCH`/`FENCED` of an older
//!   epoch, `LEASE_EXPIRED`). So the new primary's refusals mostly happen inside one slow
//!   write; "named to first ack" measures how long the new primary made the writer wait.
//!   For a write that got no ack, the node recorded is the one of the route the client held
//!   when the write returned (where its last attempt went).
//! - Old-address writer: a plain connection to a/0 as the writer user sending
//!   `FCALL standby_write <key> 1 <value>` (epoch 1), acked by the same rule: a success whose
//!   reply came back, measured from the send, in less than the lease ms it reports.

use crate::procs::{a, b, Proc, Servers};
use crate::redis_io::{self, Auth, CALL};
use crate::writers::{Outcome, WriteOnce};
use redis::aio::MultiplexedConnection;
use standby::client::{Client, ClientOptions, WriteError};
use standby::protocol::Role;
use standby::real::config::Config;
use standby::real::redis_node::NodeState;
use standby::real::run::node_state_file;
use standby::real::status::{query, Status};
use standby::types::{Epoch, NodeId, UserId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const AGENT: (&str, &str) = ("agent", "agent-secret");
const WRITER: (&str, &str) = ("writer", "writer-secret");

/// The longest wait for the controller to start and settle.
const SETTLE: Duration = Duration::from_secs(20);

pub fn agent() -> Auth {
    Some((AGENT.0.into(), AGENT.1.into()))
}

/// The read-only ACL user of `standby redis-setup` (no password).
pub fn reader() -> Auth {
    Some(("reader".into(), "any".into()))
}

fn writer() -> Auth {
    Some((WRITER.0.into(), WRITER.1.into()))
}

/// The controller's parameters for a run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub heartbeat_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub lease_duration_ms: u64,
}

/// A running controller with its servers' config.
pub struct Standby {
    pub config: Config,
    pub status_address: String,
    pub center: String,
    controller: Proc,
    pub log_file: PathBuf,
}

fn controller_config(
    dir: &Path,
    ports: &BTreeMap<NodeId, u16>,
    status_port: u16,
    center_port: u16,
    params: Params,
) -> String {
    let list = |nodes: Vec<NodeId>| {
        nodes
            .iter()
            .map(|n| format!("\"127.0.0.1:{}\"", ports[n]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"# Written by examples/sentinel_compare.
[controller]
state_file = "{dir}/state.json"
status_listen = "127.0.0.1:{status_port}"

[params]
heartbeat_interval_ms = {interval}
heartbeat_timeout_ms = {timeout}
lease_duration_ms = {lease}

[config_center]
listen = "127.0.0.1:{center_port}"

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
        interval = params.heartbeat_interval_ms,
        timeout = params.heartbeat_timeout_ms,
        lease = params.lease_duration_ms,
        a = list((0..3).map(a).collect()),
        b = list((0..3).map(b).collect()),
        agent = AGENT.0,
        agent_password = AGENT.1,
        writer = WRITER.0,
        writer_password = WRITER.1,
    )
}

/// `standby redis-setup`: writes the ACL file and returns the redis.conf lines it prints.
fn redis_setup(bin: &Path, config: &Path, acl: &Path) -> Result<Vec<String>, String> {
    let out = Command::new(bin)
        .arg("redis-setup")
        .arg("--config")
        .arg(config)
        .arg("--acl-file")
        .arg(acl)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} redis-setup: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "standby redis-setup: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    for wanted in ["appendonly yes", "appendfsync always"] {
        if !lines.iter().any(|l| l == wanted) {
            return Err(format!(
                "standby redis-setup no longer prints `{wanted}`: {lines:?}"
            ));
        }
    }
    Ok(lines)
}

/// The last lines of `file`, for error messages.
pub fn tail(file: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Standby {
    /// Prepares the servers (not started) and the controller config in `dir`, with the
    /// status listener and the config center on the two ports given.
    pub fn prepare(
        bin: &Path,
        dir: &Path,
        ports: BTreeMap<NodeId, u16>,
        [status_port, center_port]: [u16; 2],
        params: Params,
    ) -> Result<(Servers, Config), String> {
        let file = dir.join("controller.toml");
        let text = controller_config(dir, &ports, status_port, center_port, params);
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        let config = Config::load(&file).map_err(|e| e.to_string())?;
        let settings = redis_setup(bin, &file, &dir.join("users.acl"))?;
        let servers = Servers::new(dir, ports, |_| settings.clone())?;
        Ok((servers, config))
    }

    /// Starts `standby controller` and waits until it runs epoch 1 with a primary, b
    /// following, both clusters available.
    pub async fn start(bin: &Path, dir: &Path, config: Config) -> Result<Standby, String> {
        let log_file = dir.join("controller.log");
        let log = std::fs::File::create(&log_file).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(bin);
        command
            .arg("controller")
            .arg("--config")
            .arg(&config.file)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let controller = Proc::spawn("standby controller", command)?;
        let mut standby = Standby {
            status_address: config.status_listen.to_string(),
            center: config.config_center_address().to_string(),
            config,
            controller,
            log_file,
        };
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Some(why) = standby.controller.exited() {
                return Err(format!("{why}; log:\n{}", tail(&standby.log_file, 10)));
            }
            let status = standby.status().await;
            if let Ok(s) = &status {
                let b_follows = (0..3).all(|i| standby.node_role(b(i)) == Some((1, Role::Backup)));
                if s.epoch == 1
                    && s.primary == "a"
                    && s.phase == "normal"
                    && cluster(s, "a") == "available primary"
                    && cluster(s, "b") == "available backup"
                    && b_follows
                {
                    return Ok(standby);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the controller did not settle in epoch 1 within {SETTLE:?}: {status:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn status(&self) -> Result<Status, String> {
        query(&self.status_address, Duration::from_secs(1))
            .await
            .map(|(_, s)| s)
            .map_err(|e| e.to_string())
    }

    /// `(epoch, role)` from the controller's state file of `node`.
    pub fn node_role(&self, node: NodeId) -> Option<(u64, Role)> {
        let file = node_state_file(self.config.state_file.as_ref().expect("a state file"), node);
        let state: NodeState = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
        Some((state.epoch.0, state.role))
    }

    /// The controller process's own failure, if it stopped.
    pub fn exited(&mut self) -> Option<String> {
        self.controller.exited()
    }

    /// The client for user 0, once it has its epoch-1 route to a/0.
    pub async fn client(&self, route_wait: Duration) -> Result<Arc<Client>, String> {
        let options = ClientOptions {
            reply_timeout: CALL,
            route_wait,
            ..ClientOptions::new(self.center.clone(), UserId(0), WRITER.0, WRITER.1)
        };
        let client = Client::start(options);
        let route = client.wait_for_route(SETTLE).await;
        match route {
            Some(r) if r.epoch == Epoch(1) && r.node == a(0) => Ok(Arc::new(client)),
            other => Err(format!(
                "user 0's first route is {other:?}, not a/0 in epoch 1"
            )),
        }
    }

    /// Whether a/0 is back as b/0's backup: its state file says backup in epoch 2 or later,
    /// and Redis says it is b/0's connected replica.
    pub async fn old_primary_rejoined(&self, servers: &Servers) -> bool {
        let backup = matches!(self.node_role(a(0)), Some((e, Role::Backup)) if e >= 2);
        backup
            && redis_io::is_replica_of(&servers.address(a(0)), &agent(), servers.ports[&b(0)]).await
    }

    /// Every `(key, value)` in the quarantine files.
    pub fn quarantined(&self) -> Result<BTreeSet<(String, String)>, String> {
        let dir = &self.config.redis.quarantine_dir;
        let mut found = BTreeSet::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.extension().is_none_or(|x| x != "jsonl") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            for line in text.lines() {
                let value: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| format!("{}: {e}", path.display()))?;
                if let (Some(k), Some(v)) = (value["key"].as_str(), value["value"].as_str()) {
                    found.insert((k.to_string(), v.to_string()));
                }
            }
        }
        Ok(found)
    }
}

/// Records in `at` when `client`'s route first names b/0 (a task ending with the client).
pub fn watch_route(client: &Client, at: Arc<std::sync::Mutex<Option<Instant>>>) {
    let mut routes = client.watch_route();
    tokio::spawn(async move {
        while routes.changed().await.is_ok() {
            if routes
                .borrow_and_update()
                .as_ref()
                .is_some_and(|r| r.node == b(0))
            {
                at.lock().expect("named").get_or_insert_with(Instant::now);
                return;
            }
        }
    });
}

/// `"<availability> <role>"` of `name` in `status`.
pub fn cluster(status: &Status, name: &str) -> String {
    status
        .clusters
        .iter()
        .find(|c| c.cluster == name)
        .map(|c| format!("{} {}", c.availability, c.role))
        .unwrap_or_default()
}

/// The writer that follows standby: its client library.
pub struct Following {
    pub client: Arc<Client>,
}

impl WriteOnce for Following {
    async fn write(&mut self, key: &str, value: &str) -> (Option<NodeId>, Outcome) {
        match self.client.write(key, value).await {
            Ok(ack) => (Some(ack.node), Outcome::Ack),
            Err(e) => {
                let target = self.client.route().map(|r| r.node);
                let outcome = match e {
                    WriteError::Rejected(why) => Outcome::Refused(why),
                    WriteError::Unknown(why) => Outcome::Unknown(why),
                    WriteError::Unreachable(why) => Outcome::Unreachable(why),
                    WriteError::NoRoute => Outcome::Unreachable("no route".into()),
                };
                (target, outcome)
            }
        }
    }
}

/// The writer that keeps sending epoch-1 writes to a/0's address.
pub struct OldAddress {
    pub address: String,
    pub con: Option<MultiplexedConnection>,
}

impl WriteOnce for OldAddress {
    async fn write(&mut self, key: &str, value: &str) -> (Option<NodeId>, Outcome) {
        let target = Some(a(0));
        if self.con.is_none() {
            match redis_io::connect(&self.address, &writer()).await {
                Ok(con) => self.con = Some(con),
                Err(e) => return (target, Outcome::Unreachable(e)),
            }
        }
        let con = self.con.as_mut().expect("connected");
        let sent = Instant::now();
        let reply: redis::RedisResult<(u64, i64)> = redis::cmd("FCALL")
            .arg("standby_write")
            .arg(1)
            .arg(key)
            .arg(1)
            .arg(value)
            .query_async(con)
            .await;
        let elapsed = sent.elapsed();
        let outcome = match reply {
            Ok((lsn, left_ms)) => {
                if elapsed < Duration::from_millis(left_ms.max(0) as u64) {
                    Outcome::Ack
                } else {
                    Outcome::Unknown(format!(
                        "reply after {} ms, lease had {left_ms} ms left (lsn {lsn})",
                        elapsed.as_millis()
                    ))
                }
            }
            Err(e) => match redis_io::server_error(&e) {
                Some(text) => Outcome::Refused(text),
                None => {
                    self.con = None;
                    Outcome::Unknown(e.to_string())
                }
            },
        };
        (target, outcome)
    }
}
