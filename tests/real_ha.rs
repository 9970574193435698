// The control plane on a real etcd: three `standby controller` replicas (processes of the real
// binary), one local etcd and the six Redis servers. Compiled only WITHOUT `--cfg madsim`;
// needs `etcd` (Debian's etcd-server) and `redis-server` on the PATH. Run it as:
//
//     RUSTFLAGS="" cargo test --release -p standby --target-dir target/real --test real_ha
#![cfg(not(madsim))]
//! Every process a test starts (etcd, the replicas, the Redis servers) is killed and reaped
//! when its guard drops, on success or a panic. Each replica reaches etcd through a TCP relay
//! of the test's own, so that one replica can be cut from etcd while the others are not.

mod common;

use common::*;
use standby::real::redis_node::NodeState;
use standby::real::status::{query, Status};
use standby::types::{Cluster, Epoch, NodeId};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The replicas' etcd lease TTL: a dead leader is replaced about this long after its death.
const LEASE_TTL_S: u64 = 2;
/// The longest wait for a change of leader (two TTLs, a restore and a lease wait).
const TAKEOVER: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// etcd, and a relay that can cut one replica from it
// ---------------------------------------------------------------------------------------------

/// A single-member etcd on loopback, killed when dropped.
struct Etcd {
    child: Child,
    endpoint: String,
}

impl Etcd {
    /// Starts etcd with its data in `dir/etcd`, and waits until it answers.
    async fn start(dir: &Path) -> Etcd {
        require("etcd", "etcd-server");
        let (client, peer) = (free_port(), free_port());
        let url = |port| format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &url(client)])
            .args(["--advertise-client-urls", &url(client)])
            .args(["--listen-peer-urls", &url(peer)])
            .args(["--initial-advertise-peer-urls", &url(peer)])
            .args(["--initial-cluster", &format!("default={}", url(peer))])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
        let etcd = Etcd {
            child,
            endpoint: format!("127.0.0.1:{client}"),
        };
        let endpoint = etcd.endpoint.as_str();
        eventually(SETTLE, Duration::from_millis(50), || async move {
            let connect = etcd_client::Client::connect([endpoint], None);
            if let Ok(Ok(mut c)) = tokio::time::timeout(CALL, connect).await {
                if c.get("probe", None).await.is_ok() {
                    return Ok(());
                }
            }
            Err("etcd never answered".to_string())
        })
        .await;
        etcd
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails (never skips) when `program` is missing: CI installs it.
fn require(program: &str, package: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "{program} is not on the PATH: install Debian's {package}"
    );
}

/// A TCP relay to etcd. While cut, it forwards nothing either way and holds new connections
/// unanswered, as a network partition would (no refusal, no reset: timeouts only).
struct Relay {
    address: String,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, to.clone(), flag.clone()));
            }
        });
        Relay { address, cut, task }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways between `client` and `to`, holding every byte while `cut` is set.
async fn relay(client: tokio::net::TcpStream, to: String, cut: Arc<AtomicBool>) {
    while cut.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let Ok(server) = tokio::net::TcpStream::connect(&to).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pump(client_read, server_write, cut.clone()) => {}
        _ = pump(server_read, client_write, cut) => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buffer).await else {
            return;
        };
        if n == 0 {
            return;
        }
        while cut.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The replicas: processes of the real binary
// ---------------------------------------------------------------------------------------------

/// One `standby controller` replica process, SIGKILLed and reaped when dropped.
struct Replica {
    name: String,
    config: PathBuf,
    log: PathBuf,
    status: String,
    center: String,
    relay: Relay,
    child: Option<Child>,
    /// Where its alarm command writes each event.
    alarms: PathBuf,
}

impl Replica {
    /// Writes replica `index`'s config in `dir` (the shared test config with an `[etcd]` table
    /// through a relay of its own, and its own listeners) and starts it.
    async fn start(dir: &Path, servers: &Servers, etcd: &Etcd, index: usize) -> Replica {
        Replica::start_with(dir, servers, etcd, index, "").await
    }

    /// [`Replica::start`], with `params` (TOML lines) added to the config's `[params]`.
    async fn start_with(
        dir: &Path,
        servers: &Servers,
        etcd: &Etcd,
        index: usize,
        params: &str,
    ) -> Replica {
        let name = format!("controller-{index}");
        let (status, center) = (free_port(), free_port());
        let relay = Relay::start(etcd.endpoint.clone()).await;
        // Its alarm events go to a file of its own, one JSON object a line.
        let alarms = dir.join(format!("{name}.alarms.jsonl"));
        let alarm_command = format!(
            "[controller]\nalarm_command = [\"sh\", \"-c\", \"cat >> {}\"]",
            alarms.display()
        );
        let config = controller_config(dir, servers)
            .replacen("[params]\n", &format!("[params]\n{params}"), 1)
            .replacen("[controller]", &alarm_command, 1)
            .replace(&format!("state_file = \"{}/state.json\"\n", dir.display()), "")
            .replace(
                "status_listen = \"127.0.0.1:0\"",
                &format!("status_listen = \"127.0.0.1:{status}\""),
            )
            .replace(
                "[config_center]\nlisten = \"127.0.0.1:0\"",
                &format!("[config_center]\nlisten = \"127.0.0.1:{center}\""),
            )
            + &format!(
                "\n[etcd]\nname = \"{name}\"\nendpoints = [\"{}\"]\nlease_ttl_s = {LEASE_TTL_S}\ncall_timeout_ms = 500\n",
                relay.address
            );
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, config).unwrap();
        let mut replica = Replica {
            log: dir.join(format!("{name}.log")),
            alarms,
            name,
            config: file,
            status: format!("127.0.0.1:{status}"),
            center: format!("127.0.0.1:{center}"),
            relay,
            child: None,
        };
        replica.spawn();
        replica
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_standby"))
            .arg("controller")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let sent = Command::new("kill").args(["-s", signal, &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -s {signal} {pid}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-s", "CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Everything one story needs, dropped (every process killed) in reverse order.
struct World {
    dir: PathBuf,
    servers: Servers,
    replicas: Vec<Replica>,
    _etcd: Etcd,
}

impl World {
    async fn start(name: &str) -> World {
        World::start_with(name, "").await
    }

    /// [`World::start`], with `params` (TOML lines) in every replica's `[params]`.
    async fn start_with(name: &str, params: &str) -> World {
        let (dir, servers, _) = start_servers(name).await;
        let etcd = Etcd::start(&dir).await;
        let mut replicas = Vec::new();
        for index in 0..3 {
            replicas.push(Replica::start_with(&dir, &servers, &etcd, index, params).await);
        }
        World {
            dir,
            servers,
            replicas,
            _etcd: etcd,
        }
    }

    /// A world with a first leader in epoch 1 and user 0 writing to a/0 through every
    /// replica's config center (20 writes acknowledged already): the leader's index too.
    async fn writing(name: &str) -> (World, usize, FollowingWriter) {
        let world = World::start(name).await;
        let (leader, _) = (world.leader(None, "a first leader", |s| steady(s, 1, "a"))).await;
        let writer = start_following_writer_on(world.centers()).await;
        acked(&writer.log, 1, NodeId::new(Cluster::A, 0), 20).await;
        (world, leader, writer)
    }

    fn centers(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.center.clone()).collect()
    }

    /// Waits until a running replica other than `not` says it leads and `done` holds of its
    /// status; returns its index and status.
    async fn leader(
        &self,
        not: Option<usize>,
        what: &str,
        done: impl Fn(&Status) -> bool,
    ) -> (usize, Status) {
        let done = &done;
        eventually(TAKEOVER, Duration::from_millis(50), || async move {
            let mut seen = Vec::new();
            for (i, replica) in self.replicas.iter().enumerate() {
                if Some(i) == not || replica.child.is_none() {
                    continue;
                }
                let answer = query(&replica.status, Duration::from_millis(500)).await;
                if let Ok((_, status)) = &answer {
                    let leading = status.control_plane.as_ref().is_some_and(|p| p.leading);
                    if leading && done(status) {
                        return Ok((i, status.clone()));
                    }
                }
                seen.push(format!("{}: {answer:?}", replica.name));
            }
            Err(format!("{what}: last statuses: {seen:#?}"))
        })
        .await
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.replicas.clear();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn steady(status: &Status, epoch: u64, primary: &str) -> bool {
    status.epoch == epoch
        && status.primary == primary
        && status.phase == "normal"
        && status
            .clusters
            .iter()
            .all(|c| c.availability == "available")
}

/// How many writes in `log` were acknowledged in `epoch`.
fn acks_in(log: &std::sync::Mutex<Vec<Outcome>>, epoch: u64) -> usize {
    let log = log.lock().unwrap();
    (log.iter())
        .filter(|o| matches!(&o.result, Ok(a) if a.epoch == Epoch(epoch)))
        .count()
}

// ---------------------------------------------------------------------------------------------
// The stories
// ---------------------------------------------------------------------------------------------

/// The leader is SIGKILLed at the moment the primary loses two of its three servers. Another
/// replica wins the election, restores the state from etcd, and fails over, once. The client
/// moves to b by itself; every write it saw acknowledged is on b/0 or in a/0's quarantine.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_killed_as_the_primary_fails_is_replaced_and_fails_over_once() {
    let (mut world, leader, writer) = World::writing("ha-kill").await;
    let (a0, a1, b0) = (
        NodeId::new(Cluster::A, 0),
        NodeId::new(Cluster::A, 1),
        NodeId::new(Cluster::B, 0),
    );

    world.servers.kill(a0);
    world.servers.kill(a1);
    world.replicas[leader].kill();
    let (_, status) =
        (world.leader(Some(leader), "a failover by a new leader", |s| s.epoch >= 2)).await;
    let promoted = Instant::now();
    assert_eq!(
        (status.epoch, status.primary.as_str()),
        (2, "b"),
        "{status:?}"
    );
    acked(&writer.log, 2, b0, 20).await;

    // The old primary's servers return and rejoin; the killed replica returns as a candidate.
    world.servers.start(a0);
    world.servers.start(a1);
    world.replicas[leader].spawn();
    let (_, status) = (world.leader(None, "a rejoins as backup", |s| {
        s.epoch == 2 && s.phase == "normal" && cluster_role(s, "a") == "available backup"
    }))
    .await;
    assert_eq!(status.epoch, 2, "one failover only: {status:?}");
    until_backup_in_etcd(&world._etcd, a0).await;
    writer.stop.store(true, Ordering::Relaxed);
    writer.task.await.unwrap();
    let outcomes = writer.log.lock().unwrap().clone();
    let late: Vec<&Outcome> = (outcomes.iter())
        .filter(|o| matches!(&o.result, Ok(a) if a.epoch == Epoch(1)) && o.done >= promoted)
        .collect();
    assert!(late.is_empty(), "epoch-1 acks after epoch 2: {late:?}");
    let quarantine = world.dir.join("quarantine").join("a-0.epoch-2.jsonl");
    every_ack_kept(&outcomes, &world.servers.address(b0), &quarantine).await;
}

/// The config center lives in etcd: a user that follows one replica standing by, and no
/// other, gets its first config from there, and the failover's when the leader is SIGKILLed
/// with the primary (whichever replica leads next). Any replica's status shows the configs
/// in etcd and the user's acknowledgement of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_following_one_replica_standing_by_gets_every_config_from_etcd() {
    let mut world = World::start("ha-center").await;
    let (leader, _) = (world.leader(None, "a first leader", |s| steady(s, 1, "a"))).await;
    let by = (0..3).find(|&i| i != leader).expect("three replicas");
    let writer = start_following_writer_on(vec![world.replicas[by].center.clone()]).await;
    let (a0, a1, b0) = (
        NodeId::new(Cluster::A, 0),
        NodeId::new(Cluster::A, 1),
        NodeId::new(Cluster::B, 0),
    );
    acked(&writer.log, 1, a0, 20).await;
    until_configs(&world.replicas[by], 1).await;

    world.servers.kill(a0);
    world.servers.kill(a1);
    world.replicas[leader].kill();
    (world.leader(Some(leader), "a failover by a new leader", |s| s.epoch >= 2)).await;
    acked(&writer.log, 2, b0, 20).await;
    let others = (0..3).filter(|&i| i != leader);
    for i in others {
        until_configs(&world.replicas[i], 2).await;
    }
    writer.stop.store(true, Ordering::Relaxed);
    writer.task.await.unwrap();
}

/// Waits (bounded) until `replica`'s alarm command has been given an event of `kind`.
async fn until_alarm(replica: &Replica, kind: &str) {
    eventually(SETTLE, Duration::from_millis(100), || async move {
        let alarms = std::fs::read_to_string(&replica.alarms).unwrap_or_default();
        let events: Vec<serde_json::Value> = (alarms.lines())
            .map(|line| serde_json::from_str(line).expect("one JSON object a line"))
            .collect();
        match events.iter().any(|e| e.get(kind).is_some()) {
            true => Ok(()),
            false => Err(format!("{}: no {kind} alarm event: {alarms}", replica.name)),
        }
    })
    .await
}

/// Waits (bounded) until `replica`'s own status says it leads; fails with `what` otherwise.
async fn until_leading(replica: &Replica, what: &str) {
    eventually(TAKEOVER, Duration::from_millis(100), || async move {
        match query(&replica.status, Duration::from_secs(1)).await {
            Ok((_, status)) if status.control_plane.as_ref().is_some_and(|p| p.leading) => Ok(()),
            answer => Err(format!("{what}: {answer:?}")),
        }
    })
    .await
}

/// Waits (bounded) until `replica`'s status says etcd holds the configs of `epoch`, and user
/// 0 acknowledged them.
async fn until_configs(replica: &Replica, epoch: u64) {
    eventually(TAKEOVER, Duration::from_millis(100), || async move {
        let answer = query(&replica.status, Duration::from_millis(500)).await;
        let configs = (answer.as_ref().ok())
            .and_then(|(_, s)| s.control_plane.as_ref())
            .and_then(|plane| plane.configs.clone());
        match configs.is_some_and(|c| c.epoch == epoch && c.acknowledged >= 1) {
            true => Ok(()),
            false => Err(format!(
                "{}: no configs of epoch {epoch} acknowledged in etcd: {answer:?}",
                replica.name
            )),
        }
    })
    .await
}

/// The leader is SIGSTOPped for 5 s (past its etcd lease) while the primary is healthy and a
/// client writes. Another replica takes the lead in the same epoch; when the old one resumes
/// it stands down (its deadline has passed) and takes no action. No failover, and the writes
/// go on to a/0 once the new leader grants its leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_paused_past_its_lease_is_replaced_without_a_failover() {
    let (world, leader, writer) = World::writing("ha-pause").await;
    let a0 = NodeId::new(Cluster::A, 0);

    world.replicas[leader].signal("STOP");
    let (next, _) = (world.leader(Some(leader), "a new leader", |s| steady(s, 1, "a"))).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    world.replicas[leader].signal("CONT");
    let before = acks_in(&writer.log, 1);
    acked(&writer.log, 1, a0, before + 50).await;
    // The resumed replica stands by: the new leader still leads, in epoch 1.
    let (still, status) = world
        .leader(None, "the new leader still leads", |s| steady(s, 1, "a"))
        .await;
    assert_eq!(still, next, "{status:?}");
    standing_by(&world.replicas[leader], false).await;
    writer.stop.store(true, Ordering::Relaxed);
    writer.task.await.unwrap();
    let outcomes = writer.log.lock().unwrap().clone();
    assert_eq!(acks_in(&writer.log, 2), 0, "no failover: no epoch-2 write");
    let quarantine = world.dir.join("quarantine").join("a-0.epoch-2.jsonl");
    assert!(!quarantine.exists(), "nothing diverged: no quarantine");
    every_ack_on(&outcomes, &world.servers.address(a0)).await;
}

/// The leader is cut from etcd (its relay holds every byte) but not from the nodes or users.
/// It stops acting at its deadline; a replica that reaches etcd takes the lead in the same
/// epoch. After the heal the cut replica stands by.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_from_etcd_stands_down_and_another_leads() {
    let (world, leader, writer) = World::writing("ha-cut").await;
    let a0 = NodeId::new(Cluster::A, 0);

    world.replicas[leader].relay.set_cut(true);
    let (next, _) = (world.leader(Some(leader), "a new leader", |s| steady(s, 1, "a"))).await;
    let before = acks_in(&writer.log, 1);
    acked(&writer.log, 1, a0, before + 50).await;
    // The cut replica's own status says it does not lead, and that etcd does not answer it.
    standing_by(&world.replicas[leader], true).await;
    world.replicas[leader].relay.set_cut(false);
    let (still, status) = world
        .leader(None, "the new leader still leads", |s| steady(s, 1, "a"))
        .await;
    assert_eq!(still, next, "{status:?}");
    writer.stop.store(true, Ordering::Relaxed);
    writer.task.await.unwrap();
    let outcomes = writer.log.lock().unwrap().clone();
    assert_eq!(acks_in(&writer.log, 2), 0, "no failover: no epoch-2 write");
    every_ack_on(&outcomes, &world.servers.address(a0)).await;
}

/// Waits (bounded) until `node`'s state in etcd says it is a backup: it has followed the new
/// primary, with its divergent writes (if any) exported to its quarantine file first.
async fn until_backup_in_etcd(etcd: &Etcd, node: NodeId) {
    let client = etcd_client::Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    let (key, client) = (
        &format!("standby/nodes/{}-{}", node.cluster, node.index),
        &client,
    );
    eventually(SETTLE, Duration::from_millis(50), || async move {
        let found = client.clone().get(key.as_str(), None).await.unwrap();
        let state: Option<NodeState> =
            (found.kvs().first()).map(|kv| serde_json::from_slice(kv.value()).unwrap());
        match &state {
            Some(s) if s.role == standby::protocol::Role::Backup => Ok(()),
            _ => Err(format!("{node} in etcd: {state:?}")),
        }
    })
    .await
}

/// Waits (bounded) until `replica`'s own status says it stands by (and, if `cut`, that it
/// cannot read etcd: it then answers with that error if it never read the state there).
async fn standing_by(replica: &Replica, cut: bool) {
    eventually(TAKEOVER, Duration::from_millis(100), || async move {
        let answer = query(&replica.status, Duration::from_secs(1)).await;
        let done = match &answer {
            Ok((_, status)) => {
                let plane = status.control_plane.as_ref().expect("a replica's status");
                !plane.leading && (!cut || plane.etcd_error.is_some())
            }
            Err(e) => cut && e.to_string().contains("cannot read etcd"),
        };
        match done {
            true => Ok(()),
            false => Err(format!("{}: {answer:?}", replica.name)),
        }
    })
    .await
}

/// A leader stopped with SIGTERM (a supervisor's stop, a rolling restart) stops acting and
/// gives its etcd lease back before it exits: its candidate key is gone at once, so the next
/// replica need not wait out the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_stopped_with_sigterm_gives_its_lease_back() {
    let mut world = World::start("ha-term").await;
    let (leader, _) = world
        .leader(None, "a first leader", |s| steady(s, 1, "a"))
        .await;
    world.replicas[leader].signal("TERM");
    let mut child = world.replicas[leader].child.take().expect("running");
    let exited = eventually(SETTLE, Duration::from_millis(10), || {
        let exited = child.try_wait().unwrap();
        async move { exited.ok_or_else(|| "the replica did not exit on SIGTERM".to_string()) }
    })
    .await;
    assert!(exited.success(), "{exited:?}");
    let mut etcd = etcd_client::Client::connect([world._etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    let options = etcd_client::GetOptions::new().with_prefix();
    let candidates = etcd.get("standby/leader", Some(options)).await.unwrap();
    let name = world.replicas[leader].name.as_bytes();
    let left: Vec<_> = (candidates.kvs().iter())
        .filter(|kv| kv.value() == name)
        .map(|kv| kv.key_str().unwrap_or("?").to_string())
        .collect();
    assert!(
        left.is_empty(),
        "the stopped leader's candidate keys: {left:?}"
    );
    world
        .leader(Some(leader), "a new leader", |s| steady(s, 1, "a"))
        .await;
}

/// Every acknowledged write in `outcomes` is on the server at `address`.
async fn every_ack_on(outcomes: &[Outcome], address: &str) {
    let mut server = connect(address, Some(WRITER)).await.unwrap();
    let mut acked = 0;
    for outcome in outcomes.iter().filter(|o| o.result.is_ok()) {
        let value: Option<String> = redis::cmd("GET")
            .arg(&outcome.key)
            .query_async(&mut server)
            .await
            .unwrap();
        assert_eq!(
            value.as_deref(),
            Some(outcome.value.as_str()),
            "{outcome:?}"
        );
        acked += 1;
    }
    assert!(acked > 0, "no write was acknowledged");
}

// ---------------------------------------------------------------------------------------------
// Bad etcd settings
// ---------------------------------------------------------------------------------------------

/// A replica whose etcd does not answer says so, keeps running, and leads once etcd is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_started_with_etcd_unreachable_says_so_and_keeps_trying() {
    let (dir, servers, _) = start_servers("ha-unreachable").await;
    // etcd's port is taken by the relay, cut: connections hang, as to a host that is down.
    let etcd_dir = dir.join("later");
    std::fs::create_dir_all(&etcd_dir).unwrap();
    let etcd = Etcd::start(&etcd_dir).await;
    let mut replica = Replica::start(&dir, &servers, &etcd, 0).await;
    replica.relay.set_cut(true);
    replica.kill();
    replica.spawn();
    let status = &replica.status;
    eventually(SETTLE, Duration::from_millis(100), || async move {
        let says = match query(status, Duration::from_secs(1)).await {
            Err(e) => e.to_string(),
            Ok((line, _)) => line,
        };
        match says.contains("cannot read etcd") {
            true => Ok(()),
            false => Err(format!("the replica says: {says}")),
        }
    })
    .await;
    let log = std::fs::read_to_string(&replica.log).unwrap();
    assert!(log.contains("etcd does not answer"), "{log}");
    // A TTL without an answer: the alarm command hears of it.
    until_alarm(&replica, "EtcdUnreachable").await;
    replica.relay.set_cut(false);
    until_leading(&replica, "the replica never led").await;
    until_alarm(&replica, "EtcdReachable").await;
    drop(replica);
    drop(etcd);
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With authentication on in etcd, a replica given a wrong password is refused at start with
/// `file:line: etcd.user: ...` and exit status 2; given the right one (from a file, or from
/// the environment), it leads, with a role that may touch only its own prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_etcd_credentials_are_refused_with_exit_status_2() {
    let (dir, servers, _) = start_servers("ha-auth").await;
    let etcd = Etcd::start(&dir).await;
    enable_auth(&etcd.endpoint, "standby-secret").await;
    let mut replica = Replica::start(&dir, &servers, &etcd, 0).await;
    replica.kill();
    let config = std::fs::read_to_string(&replica.config).unwrap().replace(
        "[etcd]\n",
        "[etcd]\nuser = \"standby\"\npassword_file = \"etcd.password\"\n",
    );
    std::fs::write(&replica.config, &config).unwrap();
    let line = config
        .lines()
        .position(|l| l.starts_with("user = "))
        .unwrap()
        + 1;

    std::fs::write(dir.join("etcd.password"), "wrong\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_standby"))
        .arg("controller")
        .arg("--config")
        .arg(&replica.config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let expected = format!(
        "{}:{line}: etcd.user: etcd refused the login",
        replica.config.display()
    );
    assert!(stderr.contains(&expected), "want {expected:?} in {stderr}");
    assert!(
        !stderr.contains("wrong"),
        "the password is never printed: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    std::fs::write(dir.join("etcd.password"), "standby-secret\n").unwrap();
    replica.spawn();
    until_leading(&replica, "the replica never led with the right password").await;
    drop(replica);
    drop(etcd);
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Turns etcd's authentication on: `root`, and `standby` with a role limited to `standby/`.
async fn enable_auth(endpoint: &str, password: &str) {
    use etcd_client::Permission;
    let mut etcd = etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap();
    let auth = &mut etcd;
    auth.user_add("root", "root-secret", None).await.unwrap();
    auth.role_add("root").await.unwrap();
    auth.user_grant_role("root", "root").await.unwrap();
    auth.role_add("standby").await.unwrap();
    let prefix = Permission::read_write("standby/").with_prefix();
    auth.role_grant_permission("standby", prefix).await.unwrap();
    auth.user_add("standby", password, None).await.unwrap();
    auth.user_grant_role("standby", "standby").await.unwrap();
    auth.auth_enable().await.unwrap();
    let _ = etcd.get("probe", None).await;
}

/// Issue 15, item 2, on the control plane: shard 1's backup lags (its replication cut) when
/// a/1 is killed, so the leader holds the promotion for an operator; the hold is durable in
/// etcd and survives the leader's death; `standby promote`, run against etcd with a
/// replica's config, releases it, and b/1 takes the user's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_promotion_survives_a_new_leader_and_is_released_through_etcd() {
    let mut world = World::start_with("ha-gate", "promotion_lag_entries = 5\n").await;
    let (leader, _) = (world.leader(None, "a first leader", |s| steady(s, 1, "a"))).await;
    let (a1, b1) = (NodeId::new(Cluster::A, 1), NodeId::new(Cluster::B, 1));
    let FollowingWriter {
        log,
        stop,
        task: writing,
        ..
    } = start_user_writing(1, world.centers()).await;
    acked(&log, 1, a1, 10).await;
    cut_replication(&world.servers.address(a1)).await;
    let cut = log.lock().unwrap().len();
    acked(&log, 1, a1, cut + 40).await;

    world.servers.kill(a1);
    let held = |s: &Status| (s.open_alarms.iter()).any(|a| a.kind == "promotion held");
    world.leader(None, "the promotion held", held).await;
    world.replicas[leader].kill();
    let (next, status) = world
        .leader(Some(leader), "a new leader, still held", held)
        .await;
    let shard = (status.shards.iter())
        .find(|s| s.shard == 1)
        .expect("shard 1");
    assert_eq!(
        (shard.primary.as_str(), shard.epoch),
        ("a/1", 1),
        "{status:?}"
    );

    let promote = standby_promote(&world.replicas[next].config);
    assert!(promote.status.success(), "{promote:?}");
    acked(&log, 2, b1, 1).await;
    world
        .leader(None, "shard 1 on b/1, the hold closed", |s| {
            let moved = (s.shards.iter()).any(|x| x.shard == 1 && x.primary == "b/1");
            moved && !held(s)
        })
        .await;
    stop.store(true, Ordering::Relaxed);
    writing.await.unwrap();
}
