//! Redis Sentinel's side of a run: the same six servers with no ACL, b/i `replicaof a/i`,
//! three `redis-sentinel` processes (`sentinel monitor shard<i> 127.0.0.1 <a/i> 2`,
//! `down-after-milliseconds` = the setting, every other Sentinel setting at its default), and
//! the two writers.
//!
//! - Following writer: a Sentinel-aware client. It keeps one connection to the master that
//!   `SENTINEL get-master-addr-by-name shard0` names, asking the sentinels in turn, and
//!   checks that `ROLE` says `master` whenever it (re)connects. On any error (refused, reset,
//!   timeout, `READONLY`, ...) it drops the connection and discovers the master again before
//!   its next write (see [`Following::discover`]: it tries the address that just failed last,
//!   and never sits out a hung check while a sentinel already names another master, so its
//!   own timeouts add as little as they can to Sentinel's failover time). Writes are plain
//!   `SET key value`; an ack is `OK`. A failed write is not retried (the next one comes 5 ms
//!   later).
//! - Old-address writer: plain `SET` to a/0's address, reconnecting after a transport error.

use crate::procs::{a, b, Proc, Servers};
use crate::redis_io::{self, server_error, Auth};
use crate::writers::{Outcome, WriteOnce};
use redis::aio::MultiplexedConnection;
use standby::types::NodeId;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest wait for the sentinels to know each other and the replicas.
const SETTLE: Duration = Duration::from_secs(30);

/// The master names, shard by shard.
pub fn master_name(shard: u16) -> String {
    format!("shard{shard}")
}

/// The three sentinels of a run.
pub struct Sentinels {
    pub addresses: Vec<String>,
    procs: Vec<Proc>,
}

/// The servers' extra config lines for Sentinel: the same persistence as standby's
/// (`redis-setup` prints these two), b/i a replica of a/i, and with `min_replicas` on every
/// server (as is usual: any of them may be master), `min-replicas-to-write 1`
/// (`min-replicas-max-lag` stays at its default, 10 s).
pub fn server_lines(
    ports: &BTreeMap<NodeId, u16>,
    node: NodeId,
    min_replicas: bool,
) -> Vec<String> {
    let mut lines = vec![
        "appendonly yes".to_string(),
        "appendfsync always".to_string(),
    ];
    if min_replicas {
        lines.push("min-replicas-to-write 1".to_string());
    }
    if node.cluster == standby::types::Cluster::B {
        lines.push(format!("replicaof 127.0.0.1 {}", ports[&a(node.index)]));
    }
    lines
}

impl Sentinels {
    /// Writes each sentinel's config file and starts it, one on each of `sentinel_ports`.
    pub fn start(
        dir: &Path,
        ports: &BTreeMap<NodeId, u16>,
        sentinel_ports: &[u16],
        down_after_ms: u64,
    ) -> Result<Sentinels, String> {
        let mut procs = Vec::new();
        let mut addresses = Vec::new();
        for (k, port) in sentinel_ports.iter().enumerate() {
            let home = dir.join(format!("sentinel-{k}"));
            std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {home}\nlogfile {home}/sentinel.log\n",
                home = home.display()
            );
            for shard in 0..3 {
                let name = master_name(shard);
                text.push_str(&format!(
                    "sentinel monitor {name} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {name} {down_after_ms}\n",
                    ports[&a(shard)]
                ));
            }
            let conf = home.join("sentinel.conf");
            std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
            let mut command = Command::new("redis-sentinel");
            // Sentinel logs local time; UTC keeps it comparable with t0 (milestones.rs).
            command
                .arg(&conf)
                .env("TZ", "UTC")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            procs.push(Proc::spawn(&format!("redis-sentinel {k}"), command)?);
            addresses.push(format!("127.0.0.1:{port}"));
        }
        Ok(Sentinels { addresses, procs })
    }

    /// Waits until every sentinel sees shard 0's and shard 1's master at a/i, its replica b/i
    /// with its link up, and the two other sentinels.
    pub async fn wait_ready(&mut self, servers: &Servers) -> Result<(), String> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let mut missing = Vec::new();
            for (k, address) in self.addresses.iter().enumerate() {
                for shard in [0u16, 1] {
                    if let Err(why) = ready(address, shard, servers).await {
                        missing.push(format!("sentinel {k}, shard {shard}: {why}"));
                    }
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if let Some(why) = self.exited() {
                return Err(why);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the sentinels were not ready within {SETTLE:?}: {}",
                    missing.join("; ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A sentinel that exited by itself.
    pub fn exited(&mut self) -> Option<String> {
        self.procs.iter_mut().find_map(Proc::exited)
    }
}

/// `SENTINEL <what> <name>`'s entries, each a field map.
async fn entries(
    con: &mut MultiplexedConnection,
    what: &str,
    name: &str,
) -> Result<Vec<BTreeMap<String, String>>, String> {
    let raw: Vec<Vec<String>> = redis::cmd("SENTINEL")
        .arg(what)
        .arg(name)
        .query_async(con)
        .await
        .map_err(|e| format!("SENTINEL {what} {name}: {e}"))?;
    Ok(raw
        .into_iter()
        .map(|fields| {
            fields
                .chunks(2)
                .filter_map(|p| Some((p.first()?.clone(), p.get(1)?.clone())))
                .collect()
        })
        .collect())
}

async fn ready(address: &str, shard: u16, servers: &Servers) -> Result<(), String> {
    let mut con = redis_io::connect(address, &None).await?;
    let name = master_name(shard);
    let master: Option<(String, String)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(&name)
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    let expected = servers.ports[&a(shard)].to_string();
    if master.as_ref().map(|m| m.1.as_str()) != Some(expected.as_str()) {
        return Err(format!("master {master:?}"));
    }
    let replicas = entries(&mut con, "replicas", &name).await?;
    let replica_port = servers.ports[&b(shard)].to_string();
    let good = replicas.iter().any(|r| {
        r.get("port") == Some(&replica_port)
            && r.get("flags").map(String::as_str) == Some("slave")
            && r.get("master-link-status").map(String::as_str) == Some("ok")
    });
    if !good {
        return Err(format!("replicas {replicas:?}"));
    }
    let sentinels = entries(&mut con, "sentinels", &name).await?;
    let known = sentinels
        .iter()
        .filter(|s| s.get("flags").map(String::as_str) == Some("sentinel"))
        .count();
    if known != 2 {
        return Err(format!("{known} other sentinels known"));
    }
    Ok(())
}

/// The Sentinel-aware writer (see the module's doc).
pub struct Following {
    pub sentinels: Vec<String>,
    pub sentinel_cons: Vec<Option<MultiplexedConnection>>,
    /// The master's address and a connection to it.
    pub master: Option<(String, MultiplexedConnection)>,
    /// The address that failed last (connection, `ROLE` or a write): tried last.
    pub failed: Option<String>,
    /// Our servers by address, to name the node written to.
    pub nodes: BTreeMap<String, NodeId>,
    /// When a sentinel first named b/0.
    pub named: Named,
}

/// When the tool first named the new primary b/0 to the following writer.
#[derive(Clone)]
pub struct Named {
    pub address: String,
    pub at: Arc<Mutex<Option<Instant>>>,
}

impl Named {
    fn saw(&self, answers: &[String]) {
        if answers.contains(&self.address) {
            let mut at = self.at.lock().expect("named");
            at.get_or_insert_with(Instant::now);
        }
    }
}

impl Following {
    pub fn new(sentinels: Vec<String>, servers: &Servers, named: Named) -> Following {
        let nodes = servers
            .ports
            .keys()
            .map(|&n| (servers.address(n), n))
            .collect();
        Following {
            sentinel_cons: sentinels.iter().map(|_| None).collect(),
            sentinels,
            master: None,
            failed: None,
            nodes,
            named,
        }
    }

    /// Finds the master: asks every sentinel, then tries the addresses they name (the one
    /// that failed last after the others, since a sentinel that has not yet heard of a
    /// failover still names it) until one answers `ROLE` with `master`. While a check hangs
    /// (a SIGSTOPped server accepts the connection but never answers), the sentinels are
    /// asked again every 5 ms, and the check is given up as soon as one names another
    /// address. On failure: the last address tried, and why.
    async fn discover(&mut self) -> Result<(), (Option<String>, String)> {
        let (answers, mut why) = ask_all(&self.sentinels, &mut self.sentinel_cons).await;
        self.named.saw(&answers);
        let mut candidates: Vec<String> = Vec::new();
        for address in answers {
            if !candidates.contains(&address) {
                candidates.push(address);
            }
        }
        candidates.sort_by_key(|c| Some(c) == self.failed.as_ref());
        let mut last = None;
        for address in candidates {
            last = Some(address.clone());
            let cons = &mut self.sentinel_cons;
            let other = other_address(&self.sentinels, cons, &address, &self.named);
            tokio::select! {
                checked = check_master(&address) => match checked {
                    Ok(con) => {
                        self.master = Some((address, con));
                        self.failed = None;
                        return Ok(());
                    }
                    Err(e) => why.push(e),
                },
                named = other => {
                    why.push(format!("{address}: no answer yet, and a sentinel now names {named}"));
                }
            }
            self.failed = Some(address);
        }
        Err((last, why.join("; ")))
    }
}

/// Asks sentinel `address` for shard 0's master.
async fn ask(address: &str, con: &mut Option<MultiplexedConnection>) -> Result<String, String> {
    if con.is_none() {
        *con = Some(redis_io::connect(address, &None).await?);
    }
    let reply: redis::RedisResult<Option<(String, String)>> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master_name(0))
        .query_async(con.as_mut().expect("connected"))
        .await;
    match reply {
        Ok(Some((host, port))) => Ok(format!("{host}:{port}")),
        Ok(None) => Err(format!("sentinel {address}: no master for shard0")),
        Err(e) => {
            *con = None;
            Err(format!("sentinel {address}: {e}"))
        }
    }
}

/// Every sentinel's answer, in turn: the addresses named, and the errors.
async fn ask_all(
    sentinels: &[String],
    cons: &mut [Option<MultiplexedConnection>],
) -> (Vec<String>, Vec<String>) {
    let (mut answers, mut errors) = (Vec::new(), Vec::new());
    for (address, con) in sentinels.iter().zip(cons.iter_mut()) {
        match ask(address, con).await {
            Ok(master) => answers.push(master),
            Err(e) => errors.push(e),
        }
    }
    (answers, errors)
}

/// Completes when a sentinel names a master other than `address` (asked every 5 ms).
async fn other_address(
    sentinels: &[String],
    cons: &mut [Option<MultiplexedConnection>],
    address: &str,
    named: &Named,
) -> String {
    loop {
        tokio::time::sleep(crate::writers::EVERY).await;
        let (answers, _) = ask_all(sentinels, cons).await;
        named.saw(&answers);
        if let Some(other) = answers.into_iter().find(|a| a != address) {
            return other;
        }
    }
}

/// A connection to `address` if it says it is a master.
async fn check_master(address: &str) -> Result<MultiplexedConnection, String> {
    let mut con = redis_io::connect(address, &None).await?;
    match redis_io::role(&mut con).await {
        Ok(role) if role == "master" => Ok(con),
        Ok(role) => Err(format!("{address} is {role}")),
        Err(e) => Err(format!("{address}: ROLE: {e}")),
    }
}

impl WriteOnce for Following {
    async fn write(&mut self, key: &str, value: &str) -> (Option<NodeId>, Outcome) {
        if self.master.is_none() {
            if let Err((address, why)) = self.discover().await {
                let target = address.and_then(|a| self.nodes.get(&a).copied());
                return (target, Outcome::Unreachable(format!("no master: {why}")));
            }
        }
        let (address, con) = self.master.as_mut().expect("a master");
        let target = self.nodes.get(address.as_str()).copied();
        let (outcome, keep) = set(con, key, value).await;
        if !keep {
            self.failed = Some(address.clone());
            self.master = None;
        }
        (target, outcome)
    }
}

/// `SET key value` on `con`: the outcome, and whether the connection is still good (false
/// after any error, for the Sentinel-aware writer's rule; the old-address writer keeps it
/// after a server's refusal).
async fn set(con: &mut MultiplexedConnection, key: &str, value: &str) -> (Outcome, bool) {
    let reply: redis::RedisResult<redis::Value> =
        redis::cmd("SET").arg(key).arg(value).query_async(con).await;
    match reply {
        Ok(redis::Value::Okay) => (Outcome::Ack, true),
        Ok(redis::Value::SimpleString(s)) if s == "OK" => (Outcome::Ack, true),
        Ok(other) => (Outcome::Unknown(format!("reply {other:?}")), false),
        Err(e) => match server_error(&e) {
            Some(text) => (Outcome::Refused(text), false),
            None => (Outcome::Unknown(e.to_string()), false),
        },
    }
}

/// The writer that keeps writing to a/0's address.
pub struct OldAddress {
    pub address: String,
    pub con: Option<MultiplexedConnection>,
}

impl WriteOnce for OldAddress {
    async fn write(&mut self, key: &str, value: &str) -> (Option<NodeId>, Outcome) {
        let target = Some(a(0));
        if self.con.is_none() {
            match redis_io::connect(&self.address, &None).await {
                Ok(con) => self.con = Some(con),
                Err(e) => return (target, Outcome::Unreachable(e)),
            }
        }
        let con = self.con.as_mut().expect("connected");
        let (outcome, _) = set(con, key, value).await;
        if matches!(outcome, Outcome::Unknown(_)) {
            self.con = None;
        }
        (target, outcome)
    }
}

/// Whether a/0 is b/0's connected replica.
pub async fn old_primary_rejoined(servers: &Servers, auth: &Auth) -> bool {
    redis_io::is_replica_of(&servers.address(a(0)), auth, servers.ports[&b(0)]).await
}
