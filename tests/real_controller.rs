// The real controller process's parts: its config file, its state file, and the whole process
// (controller, config center, status listener) on real tokio.
//
// Compiled only WITHOUT `--cfg madsim` (see tests/real_loopback.rs). Run it as:
//
//     RUSTFLAGS="" cargo test --release -p standby --target-dir target/real --test real_controller
#![cfg(not(madsim))]
//! Config errors name file, line and field; the state file is atomic and never goes back an
//! epoch; a controller whose nodes are all unreachable says so on its status listener.

use standby::controller::{Alarm, AlarmKind, Durable, Scope, ShardState};
use standby::real::config::Config;
use standby::real::run::Bound;
use standby::real::status::{query, Status};
use standby::real::store::{FileStore, StoreError};
use standby::service::controller::Store;
use standby::time::Time;
use standby::types::{Cluster, Epoch, Lsn, Shard, UserId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/// A valid config; the tests break one line of it at a time.
const BASE: &str = r#"[controller]
state_file = "state.json"
status_listen = "127.0.0.1:7300"

[params]
heartbeat_interval_ms = 100
lease_duration_ms = 300

[config_center]
listen = "127.0.0.1:7200"

[clusters]
a = ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]
b = ["127.0.0.1:7111", "127.0.0.1:7112", "127.0.0.1:7113"]

[redis]
agent_user = "agent"
agent_password = "pa"
writer_user = "writer"
writer_password = "pw"
quarantine_dir = "quarantine"

[users]
count = 5

[[users.assign]]
user = 4
shard = 2
"#;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(Path::new("controller.toml"), text).map_err(|e| e.to_string())
}

/// `BASE` with `from` replaced by `to` (which must occur), and the error it gives.
fn error_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} is not in the base config");
    let text = BASE.replacen(from, to, 1);
    parse(&text).expect_err("the broken config was accepted")
}

/// The 1-based line of `BASE` that starts with `start`.
fn line(start: &str) -> usize {
    1 + BASE
        .lines()
        .position(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starts with {start:?}"))
}

#[test]
fn the_base_config_and_the_example_are_valid() {
    let config = parse(BASE).expect("valid");
    let topology = &config.topology;
    assert_eq!(topology.nodes_per_cluster, 3);
    assert_eq!(topology.addresses.len(), 6);
    let users: Vec<(u32, u16)> = topology.users.iter().map(|(u, s)| (u.0, s.0)).collect();
    assert_eq!(users, [(0, 0), (1, 1), (2, 2), (3, 0), (4, 2)]);
    assert_eq!(config.params.heartbeat_timeout_ms, 300, "a default");

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/controller.toml");
    let config = Config::load(&example).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.topology.nodes_per_cluster, 3);
    assert_eq!(config.topology.users.len(), 6);
    assert_eq!(config.topology.users[&UserId(5)], Shard(0));
    assert_eq!(config.status_listen.to_string(), "127.0.0.1:7300");
    assert_eq!(config.redis.agent_user, "agent");
    assert!(
        config.redis.quarantine_dir.is_absolute(),
        "made absolute by load"
    );
}

/// `BASE` as a controller replica: no state file, an `[etcd]` table with `etcd` in it.
fn replica(etcd: &str) -> String {
    BASE.replacen("state_file = \"state.json\"\n", "", 1) + "\n[etcd]\n" + etcd
}

/// The error `text` gives, and the 1-based line of its first line starting with `start`.
fn replica_error(text: &str, start: &str) -> (String, usize) {
    let error = parse(text).expect_err("the broken config was accepted");
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with(start))
        .expect("the line");
    (error, line)
}

#[test]
fn the_replica_examples_are_valid_and_each_has_its_own_listeners() {
    let mut seen = std::collections::BTreeSet::new();
    for r in 0..3 {
        let file = format!("examples/controller-{r}.toml");
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join(&file);
        let config = Config::load(&example).unwrap_or_else(|e| panic!("{e}"));
        let etcd = config.etcd.as_ref().expect("an [etcd] table");
        assert_eq!(etcd.name, format!("controller-{r}"));
        assert_eq!((etcd.lease_ttl_s, etcd.user.as_deref()), (5, None));
        assert!(
            config.state_file.is_none(),
            "{file}: the state lives in etcd"
        );
        assert!(
            seen.insert(config.status_listen),
            "{file}: status_listen taken"
        );
        assert!(
            seen.insert(config.config_center_listen),
            "{file}: listen taken"
        );
    }
}

#[test]
fn a_bad_etcd_table_is_named_with_its_line() {
    let good = "name = \"controller-0\"\nendpoints = [\"127.0.0.1:2379\"]\n";
    let config = parse(&replica(good)).expect("valid");
    let etcd = config.etcd.expect("an [etcd] table");
    assert_eq!(
        (etcd.prefix.as_str(), etcd.lease_ttl_s),
        ("standby", 5),
        "defaults"
    );
    assert_eq!(etcd.call_timeout, Duration::from_secs(1), "a default");
    let cases = [
        (
            format!("{good}lease_ttl_s = 1\n"),
            "lease_ttl_s",
            "etcd.lease_ttl_s: 1: must be 2 to 60",
        ),
        (
            format!("{good}call_timeout_ms = 2000\n"),
            "call_timeout_ms",
            "etcd.call_timeout_ms: 2000: must be 1 to 1666",
        ),
        (
            "name = \"a/b\"\nendpoints = [\"127.0.0.1:2379\"]\n".into(),
            "name",
            "etcd.name: \"a/b\"",
        ),
        (
            "name = \"c\"\nendpoints = []\n".into(),
            "endpoints",
            "etcd.endpoints: no endpoint",
        ),
        (
            "name = \"c\"\nendpoints = [\"localhost\"]\n".into(),
            "endpoints",
            "etcd.endpoints[0]: \"localhost\": not host:port",
        ),
        (
            format!("{good}prefix = \"standby/\"\n"),
            "prefix",
            "etcd.prefix: \"standby/\"",
        ),
        (
            format!("{good}password_file = \"p\"\n"),
            "password_file",
            "etcd.password_file: needs etcd.user",
        ),
        (
            format!("{good}user = \"standby\"\n"),
            "user = \"standby\"",
            "etcd.user: give etcd.password_file, or set STANDBY_ETCD_PASSWORD",
        ),
        (
            format!("{good}password = \"x\"\n"),
            "password",
            "etcd.password: unknown field",
        ),
    ];
    for (etcd, start, reason) in cases {
        let (error, line) = replica_error(&replica(&etcd), start);
        let expected = format!("controller.toml:{line}: {reason}");
        assert!(
            error.starts_with(&expected),
            "want {expected:?}, got {error:?}"
        );
    }
    // A state file beside [etcd], or neither: the durable state has one home.
    let both = BASE.to_string() + "\n[etcd]\n" + good;
    let (error, line) = replica_error(&both, "state_file");
    let expected = format!("controller.toml:{line}: controller.state_file: not used with [etcd]");
    assert!(error.starts_with(&expected), "{error}");
    let neither = BASE.replacen("state_file = \"state.json\"\n", "", 1);
    let error = parse(&neither).expect_err("no state at all");
    assert!(
        error.contains("controller.state_file: missing: give a state file, or an [etcd] table"),
        "{error}"
    );
}

#[test]
fn an_unknown_field_is_named_with_its_line() {
    let error = error_with(
        "status_listen =",
        "status_listen = \"127.0.0.1:7300\"\nstatus_port = 7300\n#",
    );
    let at = format!(
        "controller.toml:{}: controller.status_port: unknown field",
        line("status_listen") + 1
    );
    assert!(error.starts_with(&at), "{error}");

    let error = error_with("[users]", "[user]");
    assert!(
        error.starts_with(&format!(
            "controller.toml:{}: user: unknown field",
            line("[users]")
        )),
        "{error}"
    );
}

#[test]
fn mismatched_cluster_sizes_are_refused() {
    let error = error_with(", \"127.0.0.1:7113\"]", "]");
    let expected = format!(
        "controller.toml:{}: clusters.b: 2 nodes, but clusters.a has 3 (node i of a pairs with node i of b)",
        line("b = ")
    );
    assert_eq!(error, expected);
}

#[test]
fn duplicate_and_malformed_addresses_are_refused() {
    let error = error_with("\"127.0.0.1:7112\"", "\"127.0.0.1:7102\"");
    let at = format!(
        "controller.toml:{}: clusters.b[1]: 127.0.0.1:7102 is node b/1, and already node a/1",
        line("b = ")
    );
    assert_eq!(error, at);

    let error = error_with("\"127.0.0.1:7101\"", "\"127.0.0.1\"");
    assert!(
        error.starts_with(&format!(
            "controller.toml:{}: clusters.a[0]: ",
            line("a = ")
        )),
        "{error}"
    );
}

#[test]
fn a_shard_or_user_that_does_not_exist_is_refused() {
    let error = error_with("shard = 2", "shard = 3");
    let expected = format!(
        "controller.toml:{}: users.assign[0].shard: shard 3 does not exist (shards are 0 to 2)",
        line("shard = ")
    );
    assert_eq!(error, expected);

    let error = error_with("user = 4", "user = 5");
    assert!(
        error.starts_with(&format!(
            "controller.toml:{}: users.assign[0].user: user 5 does not exist",
            line("user = ")
        )),
        "{error}"
    );

    let error = error_with("shard = 2", "shard = -1");
    assert!(
        error.starts_with(&format!(
            "controller.toml:{}: users.assign[0].shard: ",
            line("shard = ")
        )),
        "{error}"
    );
}

#[test]
fn bad_params_are_named_with_their_line() {
    let error = error_with("lease_duration_ms = 300", "lease_duration_ms = 100");
    let expected = format!(
        "controller.toml:{}: params.lease_duration_ms: lease_duration_ms (100) must exceed heartbeat_interval_ms (100), or leases lapse between renewals",
        line("lease_duration_ms")
    );
    assert_eq!(error, expected);

    let error = error_with(
        "heartbeat_interval_ms = 100",
        "heartbeat_interval_ms = \"fast\"",
    );
    let at = format!(
        "controller.toml:{}: params.heartbeat_interval_ms: invalid type",
        line("heartbeat_interval_ms")
    );
    assert!(error.starts_with(&at), "{error}");

    // A default that does not fit: the error is on the [params] line, and names the field.
    let error = error_with(
        "heartbeat_interval_ms = 100\nlease_duration_ms = 300",
        "heartbeat_interval_ms = 400",
    );
    let at = format!(
        "controller.toml:{}: params.lease_duration_ms: ",
        line("[params]")
    );
    assert!(error.starts_with(&at), "{error}");
}

#[test]
fn missing_fields_and_bad_syntax_are_named() {
    let error = error_with("status_listen = \"127.0.0.1:7300\"\n", "");
    let at = format!(
        "controller.toml:{}: controller.status_listen: missing field",
        line("[controller]")
    );
    assert!(error.starts_with(&at), "{error}");

    let error = error_with("count = 5", "count = 5 5");
    assert!(
        error.starts_with(&format!("controller.toml:{}: syntax: ", line("count = "))),
        "{error}"
    );

    let error = error_with("listen = \"127.0.0.1:7200\"", "listen = \"localhost\"");
    assert!(
        error.starts_with(&format!(
            "controller.toml:{}: config_center.listen: ",
            line("listen = ")
        )),
        "{error}"
    );
}

#[test]
fn each_redis_password_is_given_exactly_one_way() {
    let error = error_with(
        "agent_password = \"pa\"",
        "agent_password = \"pa\"\nagent_password_file = \"pa.txt\"",
    );
    let expected = format!(
        "controller.toml:{}: redis.agent_password: give exactly one of agent_password and agent_password_file",
        line("agent_password")
    );
    assert_eq!(error, expected);

    let error = error_with("writer_password = \"pw\"\n", "");
    assert!(
        error.starts_with(&format!(
            "controller.toml:{}: redis.writer: ",
            line("[redis]")
        )),
        "{error}"
    );
}

#[test]
fn a_missing_config_file_is_named() {
    let error = Config::load(Path::new("/nonexistent/controller.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("/nonexistent/controller.toml: cannot read"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// State file
// ---------------------------------------------------------------------------------------------

/// A fresh, empty directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "standby-real-controller-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

fn durable(epoch: u64) -> Durable {
    let alarm = Alarm {
        id: 3,
        kind: AlarmKind::PrimaryFailed,
        cluster: Cluster::A,
        shard: None,
        users: Vec::new(),
        raised_at: Time::from_millis(1234),
        epoch: Epoch(epoch),
        available_nodes: (1, 3),
        recovery_point: BTreeMap::new(),
        resumed_in: BTreeMap::new(),
        losses: BTreeMap::new(),
        lag: None,
    };
    let shard = |stop_point: Option<u64>, stop_cap: Option<u64>, rejoined| ShardState {
        epoch: Epoch(epoch),
        primary: Cluster::B,
        backup_joined: false,
        stop_point: stop_point.map(Lsn),
        stop_cap: stop_cap.map(Lsn),
        rejoined,
        failing_over: Some(Scope::Cluster),
    };
    Durable {
        epoch: Epoch(epoch),
        shards: [
            (Shard(0), shard(Some(17), None, false)),
            (Shard(1), shard(None, Some(9), false)),
            (Shard(2), shard(Some(4), None, true)),
        ]
        .into(),
        open_alarms: [(3, alarm)].into(),
        next_alarm_id: 4,
        lease_bound_ms: 500,
        incarnation: 7,
    }
}

#[test]
fn a_replica_standing_by_tells_a_double_failure_from_a_failover_by_the_durable_alarms() {
    // `durable(2)`: b primary, failing over, only the first alarm (on a) open.
    let mut state = durable(2);
    assert_eq!(Status::of_durable(&state).phase, "failover");
    let second = Alarm {
        id: 4,
        kind: AlarmKind::BackupFailed,
        cluster: Cluster::A,
        ..state.open_alarms[&3].clone()
    };
    state.open_alarms.insert(4, second);
    assert_eq!(Status::of_durable(&state).phase, "double failure");
    for shard in state.shards.values_mut() {
        shard.failing_over = None;
    }
    assert_eq!(Status::of_durable(&state).phase, "normal");
}

#[tokio::test]
async fn the_state_file_round_trips_and_is_replaced_atomically() {
    let dir = temp_dir("round-trip");
    let path = dir.join("state.json");
    let store = FileStore::open(&path).expect("no file is a first start");
    assert_eq!(store.load().await.expect("loads"), None);
    store.save(&durable(2)).await.expect("saved");
    store.save(&durable(3)).await.expect("saved");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["state.json", "state.json.lock"],
        "no temporary file left behind"
    );
    drop(store);
    let reopened = FileStore::open(&path).expect("a valid file");
    assert_eq!(reopened.load().await.expect("loads"), Some(durable(3)));
}

#[test]
fn a_corrupt_state_file_is_refused_not_replaced() {
    let dir = temp_dir("corrupt");
    let path = dir.join("state.json");
    for garbage in ["", "{\"epoch\": 3", "not json at all"] {
        std::fs::write(&path, garbage).unwrap();
        let error = FileStore::open(&path).expect_err("a corrupt file must be refused");
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            garbage,
            "left as it was"
        );
    }
    let error = FileStore::open(dir.join("no-such-dir/state.json")).expect_err("no directory");
    assert!(
        error.to_string().contains("no-such-dir/state.json"),
        "{error}"
    );
}

#[tokio::test]
async fn a_lower_epoch_is_never_saved() {
    let dir = temp_dir("lower-epoch");
    let path = dir.join("state.json");
    // What the state file holds, read past the store (which holds its lock).
    let on_disk = || -> Durable { serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap() };
    let first = FileStore::open(&path).unwrap();
    first.save(&durable(5)).await.expect("saved");
    drop(first);
    let store = FileStore::open(&path).unwrap();
    store
        .save(&durable(4))
        .await
        .expect("a lower epoch is kept out, not an error");
    assert_eq!(on_disk(), durable(5), "the disk copy is kept");
    store.save(&durable(6)).await.expect("saved");
    assert_eq!(on_disk(), durable(6));
    store
        .save(&durable(5))
        .await
        .expect("a lower epoch is kept out, not an error");
    assert_eq!(on_disk(), durable(6));
}

/// Two controllers on one state file would each raise epochs of their own: the second one
/// is refused while the first holds the file, and may start once it is gone.
#[tokio::test]
async fn a_second_controller_on_the_same_state_file_is_refused() {
    let dir = temp_dir("locked");
    let path = dir.join("state.json");
    let first = FileStore::open(&path).unwrap();
    first.save(&durable(2)).await.expect("saved");
    let error = FileStore::open(&path).expect_err("the lock is held");
    assert!(matches!(error, StoreError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("another controller"), "{error}");
    drop(first);
    let second = FileStore::open(&path).expect("the lock was released");
    assert_eq!(second.load().await.expect("loads"), Some(durable(2)));
}

// ---------------------------------------------------------------------------------------------
// The whole process
// ---------------------------------------------------------------------------------------------

/// The longest wait for the controller to declare both clusters failed (a few timeouts).
const SETTLE: Duration = Duration::from_secs(5);

/// `n` loopback addresses where nothing listens: bound once to get a free port, then let go.
fn dead_addresses(n: usize) -> Vec<String> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| format!("\"{}\"", l.local_addr().unwrap()))
        .collect()
}

fn process_config(dir: &Path) -> String {
    let (a, b) = (dead_addresses(3).join(", "), dead_addresses(3).join(", "));
    let alarms = dir.join("alarms.jsonl");
    format!(
        r#"[controller]
state_file = "{state}"
status_listen = "127.0.0.1:0"
alarm_command = ["sh", "-c", "cat >> {alarms}"]

[params]
heartbeat_interval_ms = 50
heartbeat_timeout_ms = 150
lease_duration_ms = 150

[config_center]
listen = "127.0.0.1:0"

[clusters]
a = [{a}]
b = [{b}]

[redis]
agent_user = "agent"
agent_password = "pa"
writer_user = "writer"
writer_password = "pw"
quarantine_dir = "quarantine"

[users]
count = 4
"#,
        state = dir.join("state.json").display(),
        alarms = alarms.display(),
    )
}

/// A controller process started in this test's runtime; stops when the sender is dropped.
async fn start(config: &Config) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let bound = Bound::bind(config.clone()).await.expect("bound");
    let address = bound.status_address().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        bound
            .run(async {
                let _ = stopped.await;
            })
            .await
            .expect("a clean stop");
    });
    (address, stop, task)
}

/// Polls the status until `done` holds, for at most `SETTLE`.
async fn status_until(address: &str, done: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + SETTLE;
    loop {
        let answer = query(address, Duration::from_secs(1)).await;
        if let Ok((_, status)) = &answer {
            if done(status) {
                return status.clone();
            }
        }
        assert!(Instant::now() < deadline, "last status: {answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn summary(status: &Status) -> Vec<String> {
    let clusters = status.clusters.iter().map(|c| {
        format!(
            "{} {} {}/{} {}",
            c.cluster, c.availability, c.answering, c.total, c.role
        )
    });
    let alarms = status
        .open_alarms
        .iter()
        .map(|a| format!("#{} {} on {}", a.id, a.kind, a.cluster));
    clusters.chain(alarms).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_with_no_node_answering_reports_a_double_failure() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = temp_dir("process");
    let file = dir.join("controller.toml");
    std::fs::write(&file, process_config(&dir)).unwrap();
    let config = Config::load(&file).expect("a valid config");

    // Nothing answers: a fails, then b is checked and found failed too.
    let (address, stop, task) = start(&config).await;
    let status = status_until(&address, |s| {
        s.phase == "double failure" && s.open_alarms.len() == 2
    })
    .await;
    assert_eq!((status.epoch, status.primary.as_str()), (1, "a"));
    assert_eq!(
        summary(&status),
        [
            "a failed 0/3 primary",
            "b failed 0/3 backup",
            "#1 primary failed on a",
            "#2 backup failed on b"
        ]
    );
    assert!(status
        .open_alarms
        .iter()
        .all(|a| a.raised_unix_ms.is_some()));

    // The binary's `status` says the same, as text and as JSON.
    let text = run_binary(&["status", "--controller", &address]);
    for expected in [
        "epoch 1, primary a, phase: double failure",
        "a: failed (0/3 answering), primary",
        "b: failed (0/3 answering), backup",
        "#1 primary failed on a, raised ",
        "#2 backup failed on b",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    let json: Status =
        serde_json::from_str(&run_binary(&["status", "--controller", &address, "--json"]))
            .expect("JSON");
    assert_eq!(json.epoch, 1);

    // The alarm command got each alarm as one JSON object.
    let alarms = wait_for_lines(&dir.join("alarms.jsonl"), 2).await;
    for (line, kind) in alarms.iter().zip(["PrimaryFailed", "BackupFailed"]) {
        let event: serde_json::Value =
            serde_json::from_str(line).expect("one JSON object per line");
        assert_eq!(event["Raised"]["kind"], kind, "{line}");
    }

    // A restart resumes from the state file: same epoch, same open alarms.
    drop(stop);
    task.await.expect("stopped cleanly");
    let saved = FileStore::open(config.state_file.as_ref().expect("a state file"))
        .expect("valid")
        .loaded()
        .cloned()
        .expect("saved");
    assert_eq!((saved.epoch, saved.open_alarms.len()), (Epoch(1), 2));
    let (address, stop, task) = start(&config).await;
    let status = status_until(&address, |s| s.phase == "double failure").await;
    assert_eq!(status.epoch, 1);
    assert_eq!(status.open_alarms.len(), 2);
    assert!(
        status
            .open_alarms
            .iter()
            .all(|a| a.raised_unix_ms.is_none()),
        "raised by the earlier process"
    );
    drop(stop);
    task.await.expect("stopped cleanly");
}

#[test]
fn the_binary_refuses_a_bad_config_with_exit_status_2() {
    let dir = temp_dir("bad-config");
    let file = dir.join("controller.toml");
    std::fs::write(&file, BASE.replacen("count = 5", "count = -5", 1)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["controller", "--config"])
        .arg(&file)
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let at = format!("{}:{}: users.count: ", file.display(), line("count = "));
    assert!(stderr.contains(&at), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["controller", "--confg", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "a bad flag");
}

/// Runs the standby binary (off the runtime's worker threads) and returns its stdout.
fn run_binary(args: &[&str]) -> String {
    let output = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_standby"))
            .args(args)
            .output()
            .expect("the binary runs")
    });
    assert!(
        output.status.success(),
        "standby {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// The file's lines, once it has at least `n`.
async fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "{}: {lines:?}", path.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_status_text_shows_the_first_alarms_recovery_point_per_shard() {
    use standby::real::status::ShardRecovery;
    let line = |backup_applied, primary_reported, surely_unapplied| {
        ShardRecovery {
            shard: 0,
            backup_applied,
            primary_reported,
            surely_unapplied,
        }
        .to_string()
    };
    assert_eq!(
        line(Some(1), Some(3), Some(2)),
        "shard 0: backup had lsn 1, primary last reported lsn 3: at least 2 write(s) missing \
         from the backup"
    );
    assert_eq!(
        line(Some(3), Some(3), Some(0)),
        "shard 0: backup had lsn 3, primary last reported lsn 3: no write known to be missing \
         from the backup"
    );
    assert_eq!(
        line(None, Some(3), None),
        "shard 0: backup had unknown, primary last reported lsn 3: how many writes the backup \
         misses is unknown"
    );
}

/// The route `user` is pushed first by the config center at `center`.
async fn first_route(center: &str, user: u32) -> standby::types::UserConfig {
    use standby::protocol::Subscribe;
    use standby::wire::{read_frame, write_frame, Message};
    let read = async {
        let mut stream = tokio::net::TcpStream::connect(center).await.unwrap();
        let subscribe = Message::Subscribe(Subscribe { user: UserId(user) });
        write_frame(&mut stream, &subscribe).await.unwrap();
        match read_frame(&mut stream).await.unwrap() {
            Message::Config(config) => config,
            other => panic!("user {user}: {other:?}"),
        }
    };
    tokio::time::timeout(SETTLE, read)
        .await
        .expect("a route in time")
}

/// Only the controller in the process may change a route. Anyone who can reach the config
/// center's port can send it a `Publish`; one of a higher epoch, rerouting every user to an
/// address of the sender's choosing, is refused, and every user keeps its route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_publication_is_refused_and_no_route_changes() {
    use standby::protocol::Publish;
    use standby::types::{NodeId, UserConfig};
    use standby::wire::{read_frame, write_frame, Message};
    let dir = temp_dir("rogue");
    let file = dir.join("controller.toml");
    std::fs::write(&file, process_config(&dir)).unwrap();
    let config = Config::load(&file).expect("a valid config");
    let bound = Bound::bind(config).await.expect("bound");
    let center = bound.config_center_address().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async {
        let _ = stopped.await;
    }));
    let mut before = Vec::new();
    for user in 0..4 {
        before.push(first_route(&center, user).await);
    }
    assert!(before.iter().all(|c| c.epoch == Epoch(1)), "{before:?}");

    let rogue = Publish {
        epoch: Epoch(99),
        configs: (0..4)
            .map(|user| UserConfig {
                user: UserId(user),
                epoch: Epoch(99),
                node: NodeId::new(Cluster::A, 0),
                address: "203.0.113.66:6379".into(),
            })
            .collect(),
    };
    let mut stream = tokio::net::TcpStream::connect(&center).await.unwrap();
    write_frame(&mut stream, &Message::Publish(rogue))
        .await
        .unwrap();
    match read_frame(&mut stream).await.unwrap() {
        Message::PublishReply(reply) => {
            assert!(!reply.stored, "{reply:?}");
            assert_eq!(reply.epoch, Epoch(1), "the center's own epoch");
        }
        other => panic!("{other:?}"),
    }
    for (user, was) in (0..4).zip(&before) {
        assert_eq!(
            &first_route(&center, user).await,
            was,
            "user {user}'s route"
        );
    }
    drop(stop);
    task.await.unwrap().expect("a clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}
