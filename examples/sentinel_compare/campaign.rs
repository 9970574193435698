//! The campaign: the command line, the runs in interleaved order, one run's story, the
//! progress lines, and the check that no process is left behind.

use crate::measure::{analyze, log_lines, ms, RunRecord};
use crate::procs::{a, b, free_ports, leftovers, nodes, started_count, Servers};
use crate::redis_io::{self, Auth};
use crate::sentinel::{self, Sentinels};
use crate::standby_tool::{self, Standby};
use crate::writers::{Outcome, Write, Writer, Writers};
use clap::{Parser, ValueEnum};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// standby beside Redis Sentinel: the same servers, the same faults, the same writers.
#[derive(Parser, Debug)]
#[command(name = "sentinel_compare")]
struct Cli {
    /// Runs per (tool, setting) for each kill fault (kill, kill-one).
    #[arg(long, default_value_t = 20)]
    runs_kill: u32,
    /// Runs per (tool, setting) for the pause fault.
    #[arg(long, default_value_t = 6)]
    runs_pause: u32,
    /// Sentinel's down-after-milliseconds = standby's heartbeat_timeout_ms, one cell each.
    #[arg(long, value_delimiter = ',', default_value = "1000,300")]
    settings: Vec<u64>,
    /// The tools to run.
    #[arg(long, value_delimiter = ',', default_value = "standby,sentinel")]
    tools: Vec<Tool>,
    /// The faults to run.
    #[arg(long, value_delimiter = ',', default_value = "kill,pause")]
    faults: Vec<Fault>,
    /// The results file: one JSON line per run, appended.
    #[arg(long, default_value = "target/sentinel-compare.jsonl")]
    out: PathBuf,
    /// Only print the tables of this results file; run nothing.
    #[arg(long)]
    report: Option<PathBuf>,
    /// standby's heartbeat interval.
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
    /// standby's write lease.
    #[arg(long, default_value_t = 150)]
    lease_ms: u64,
    /// standby's client: how long a write keeps trying on newer routes or on a node catching
    /// up with its route (`ClientOptions::route_wait`; this default is the library's).
    #[arg(long, default_value_t = 2000)]
    client_route_wait_ms: u64,
    /// The real (non-simulation) `standby` binary.
    #[arg(long)]
    standby_bin: Option<PathBuf>,
    /// Keep every run's directory (failed runs' are always kept).
    #[arg(long)]
    keep: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Tool {
    Standby,
    Sentinel,
    /// Sentinel with `min-replicas-to-write 1` on every server: a master without a
    /// connected replica refuses writes.
    SentinelMinReplicas,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Fault {
    Kill,
    /// SIGKILL a/0 alone: its cluster stays available, so standby fails shard 0 over alone.
    KillOne,
    Pause,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Standby => "standby",
            Tool::Sentinel => "sentinel",
            Tool::SentinelMinReplicas => "sentinel-min-replicas",
        }
    }
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::KillOne => "kill-one",
            Fault::Pause => "pause",
        }
    }
}

/// The writers run at least this long before the fault.
const WARM_UP: Duration = Duration::from_secs(1);
/// The longest wait for the warm-up conditions.
const WARM_UP_CAP: Duration = Duration::from_secs(15);
/// Kill: the killed servers are restarted this long after the kill when the new primary
/// has accepted no write by then.
const RESTART_BY: Duration = Duration::from_secs(10);
/// Kill: the longest wait for the first write on the new primary once the killed servers
/// have rejoined (when it accepted none before).
const FIRST_WRITE_CAP: Duration = Duration::from_secs(30);
/// Kill: writing goes on this long after the first write on the new primary.
const AFTER_FIRST_WRITE: Duration = Duration::from_secs(2);
/// Kill: the longest wait, from the restart, for a/0 to become b/0's replica.
const REJOIN_CAP: Duration = Duration::from_secs(40);
/// Pause: how long the servers stay stopped.
const PAUSE: Duration = Duration::from_secs(5);
/// Pause: the longest wait, from t0, for a/0 to become b/0's replica.
const PAUSE_REJOIN_CAP: Duration = Duration::from_secs(40);
/// Pause: writing goes on this long after a/0 became b/0's replica.
const AFTER_REJOIN: Duration = Duration::from_secs(1);

struct Ctx {
    bin: PathBuf,
    root: PathBuf,
    interval_ms: u64,
    lease_ms: u64,
    route_wait_ms: u64,
    keep: bool,
    campaign: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn fail(message: &str) -> ! {
    eprintln!("sentinel_compare: {message}");
    std::process::exit(2)
}

pub fn main() {
    let cli = Cli::parse();
    if let Some(file) = &cli.report {
        let records = crate::report::read(file).unwrap_or_else(|e| fail(&e));
        if records.is_empty() {
            fail(&format!("{}: no runs", file.display()));
        }
        print!("{}", crate::report::tables(&records));
        return;
    }
    let Some(bin) = cli.standby_bin.clone() else {
        fail("--standby-bin is required (scripts/sentinel-compare.sh passes it)")
    };
    if cli.tools.contains(&Tool::Standby) && !bin.is_file() {
        fail(&format!("--standby-bin {}: no such file", bin.display()));
    }
    if cli.settings.is_empty() || cli.settings.contains(&0) {
        fail("--settings: give positive milliseconds, e.g. 1000,300");
    }
    if cli.lease_ms <= cli.interval_ms {
        fail("--lease-ms must exceed --interval-ms (the controller refuses it otherwise)");
    }
    let campaign = unix_ms();
    let root = std::env::temp_dir().join(format!("sentinel-compare-{campaign}"));
    if let Err(e) = std::fs::create_dir_all(&root) {
        fail(&format!("{}: {e}", root.display()));
    }
    if let Some(parent) = cli.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(parent) {
            fail(&format!("{}: {e}", parent.display()));
        }
    }
    let ctx = Ctx {
        bin,
        root: root.clone(),
        interval_ms: cli.interval_ms,
        lease_ms: cli.lease_ms,
        route_wait_ms: cli.client_route_wait_ms,
        keep: cli.keep,
        campaign,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));
    let records = runtime.block_on(async {
        tokio::select! {
            records = campaign_runs(&cli, &ctx) => Some(records),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    // Every process of an unfinished run was killed when its guards dropped with the future.
    drop(runtime);
    let left = leftovers();
    let Some(records) = records else {
        eprintln!(
            "interrupted; results so far in {}, run directories under {}",
            cli.out.display(),
            root.display()
        );
        report_leftovers(&left);
        std::process::exit(130);
    };
    print!("{}", crate::report::tables(&records));
    println!(
        "\n{} runs, {} failed; {} processes started, results appended to {}",
        records.len(),
        records.iter().filter(|r| !r.ok).count(),
        started_count(),
        cli.out.display()
    );
    let kept: Vec<&str> = records
        .iter()
        .filter_map(|r| r.run_dir.as_deref())
        .collect();
    if kept.is_empty() {
        let _ = std::fs::remove_dir_all(&root);
    } else {
        println!("run directories kept: {}", kept.join(" "));
    }
    report_leftovers(&left);
    if !left.is_empty() {
        std::process::exit(1);
    }
}

fn report_leftovers(left: &[String]) {
    if left.is_empty() {
        println!("no process of this campaign is left running");
    } else {
        eprintln!("PROCESSES LEFT RUNNING:\n  {}", left.join("\n  "));
    }
}

async fn campaign_runs(cli: &Cli, ctx: &Ctx) -> Vec<RunRecord> {
    // Interleaved: run i of every (setting, tool) before run i+1 of any, so that a change in
    // the machine's load falls on every cell alike.
    let mut plan = Vec::new();
    for &fault in &cli.faults {
        let runs = match fault {
            Fault::Kill | Fault::KillOne => cli.runs_kill,
            Fault::Pause => cli.runs_pause,
        };
        for run in 1..=runs {
            for &setting in &cli.settings {
                for &tool in &cli.tools {
                    plan.push((fault, tool, setting, run));
                }
            }
        }
    }
    println!(
        "sentinel_compare: {} runs. Both tools: six redis-server {} on 127.0.0.1 (appendonly yes, \
         appendfsync always, save \"\", repl-diskless-sync-delay 0); faults on a/0 and a/1; \
         writers on shard 0, sequential, a write every 5 ms at most, replies waited for 500 ms. \
         standby: heartbeat_timeout_ms = setting, heartbeat_interval_ms {}, lease_duration_ms {}, \
         other parameters default, client route_wait {} ms. Sentinel: 3 sentinels, quorum 2, down-after-milliseconds = \
         setting, every other Sentinel setting default. Results: {}",
        plan.len(),
        redis_version(),
        ctx.interval_ms,
        ctx.lease_ms,
        ctx.route_wait_ms,
        cli.out.display()
    );
    let mut records = Vec::new();
    let total = plan.len();
    for (i, (fault, tool, setting, run)) in plan.into_iter().enumerate() {
        let record = run_once(ctx, tool, fault, setting, run).await;
        println!("[{}/{total}] {}", i + 1, progress(&record));
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cli.out)
            .and_then(|mut f| {
                let line = serde_json::to_string(&record).expect("a record serialises");
                writeln!(f, "{line}")
            });
        if let Err(e) = appended {
            eprintln!("cannot append to {}: {e}", cli.out.display());
        }
        records.push(record);
    }
    records
}

fn redis_version() -> String {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(str::to_string))
        })
        .unwrap_or_else(|| "?".into())
}

/// One line per run with its key figures.
fn progress(r: &RunRecord) -> String {
    let head = format!("{} {} {} ms #{}", r.tool, r.fault, r.setting_ms, r.run);
    let secs = r.duration_ms as f64 / 1000.0;
    if !r.ok {
        return format!(
            "{head}: FAILED ({:.1} s): {} [kept {}]",
            secs,
            r.failure.as_deref().unwrap_or("?").replace('\n', " | "),
            r.run_dir.as_deref().unwrap_or("-")
        );
    }
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    format!(
        "{head}: b/0 named at {} ms, first write on b/0 {} ms, acked {}+{}, lost {}+{}, \
         quarantined {}+{}, two primaries {}, b/0 refused {} ms, a/0 replica at {} ms ({:.1} s)",
        opt(r.new_primary_named_ms),
        opt(r.first_new_primary_ms),
        r.acked.following,
        r.acked.old_address,
        r.lost.following,
        r.lost.old_address,
        r.quarantined.following,
        r.quarantined.old_address,
        r.two_primaries,
        opt(r.new_primary_refused_ms),
        opt(r.old_primary_replica_ms),
        secs
    )
}

/// What a run keeps for its record even when it fails half way.
#[derive(Default)]
struct Trace {
    log: Option<crate::writers::Log>,
    t0: Option<Instant>,
}

async fn run_once(ctx: &Ctx, tool: Tool, fault: Fault, setting: u64, run: u32) -> RunRecord {
    let started = Instant::now();
    let dir = ctx.root.join(format!(
        "{}-{}-{setting}-{run:02}",
        tool.name(),
        fault.name()
    ));
    let mut record = RunRecord {
        campaign: ctx.campaign,
        tool: tool.name().into(),
        fault: fault.name().into(),
        setting_ms: setting,
        interval_ms: ctx.interval_ms,
        lease_ms: ctx.lease_ms,
        client_route_wait_ms: ctx.route_wait_ms,
        run,
        started_unix_ms: unix_ms(),
        ok: true,
        ..RunRecord::default()
    };
    let mut trace = Trace::default();
    let result = match std::fs::create_dir_all(&dir) {
        Ok(()) => story(ctx, tool, fault, setting, &dir, &mut record, &mut trace).await,
        Err(e) => Err(format!("{}: {e}", dir.display())),
    };
    if let Err(why) = result {
        record.ok = false;
        record.failure = Some(why);
    }
    if let Some(t0) = record.t0_unix_ms {
        record.steps_ms = read_steps(tool, &dir, t0);
    }
    // A standby run that lost or double-accepted writes is kept too: its controller log is
    // the evidence.
    let suspicious = record.tool == "standby"
        && (record.two_primaries > 0 || record.lost.following + record.lost.old_address > 0);
    if !record.ok || ctx.keep || suspicious {
        if let (Some(log), Some(t0)) = (&trace.log, trace.t0) {
            let log = log.lock().expect("write log").clone();
            let _ = std::fs::write(dir.join("writes.jsonl"), log_lines(&log, t0));
        }
        record.run_dir = Some(dir.display().to_string());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    record.duration_ms = started.elapsed().as_millis() as u64;
    record
}

/// The tool's own steps from its logs in the run directory.
fn read_steps(tool: Tool, dir: &Path, t0_unix_ms: u64) -> BTreeMap<String, f64> {
    let read = |file: PathBuf| std::fs::read_to_string(file).unwrap_or_default();
    match tool {
        Tool::Standby => crate::milestones::standby(&read(dir.join("controller.log")), t0_unix_ms),
        Tool::Sentinel | Tool::SentinelMinReplicas => {
            let logs: Vec<String> = (0..3)
                .map(|k| read(dir.join(format!("sentinel-{k}/sentinel.log"))))
                .collect();
            crate::milestones::sentinel(logs.iter().map(String::as_str), t0_unix_ms)
        }
    }
}

/// The tool of a run, running.
enum Harness {
    Standby(Box<Standby>),
    Sentinel(Sentinels),
}

impl Harness {
    /// The login for reading keys and replication state.
    fn read_auth(&self) -> Auth {
        match self {
            Harness::Standby(_) => standby_tool::reader(),
            Harness::Sentinel(_) => None,
        }
    }

    /// The login for INFO (standby: the agent; the reader may not run it).
    fn admin_auth(&self) -> Auth {
        match self {
            Harness::Standby(_) => standby_tool::agent(),
            Harness::Sentinel(_) => None,
        }
    }

    fn exited(&mut self) -> Option<String> {
        match self {
            Harness::Standby(s) => s.exited().map(|why| {
                format!(
                    "{why}; controller log: {}:\n{}",
                    s.log_file.display(),
                    standby_tool::tail(&s.log_file, 10)
                )
            }),
            Harness::Sentinel(s) => s.exited(),
        }
    }

    async fn rejoined(&self, servers: &Servers) -> bool {
        match self {
            Harness::Standby(s) => s.old_primary_rejoined(servers).await,
            Harness::Sentinel(_) => sentinel::old_primary_rejoined(servers, &None).await,
        }
    }
}

/// Checks that nothing we started died by itself.
fn alive(servers: &mut Servers, harness: &mut Harness) -> Result<(), String> {
    servers.check_running()?;
    match harness.exited() {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// Waits until every server answers.
async fn wait_up(servers: &Servers, auth: &Auth) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in nodes() {
        while !redis_io::answers(&servers.address(node), auth).await {
            if Instant::now() > deadline {
                return Err(format!("{node} did not come up"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Sleeps until `until` while checking every 20 ms that nothing died.
async fn sleep_checking(
    until: Instant,
    servers: &mut Servers,
    harness: &mut Harness,
) -> Result<(), String> {
    loop {
        alive(servers, harness)?;
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        tokio::time::sleep((until - now).min(Duration::from_millis(20))).await;
    }
}

/// Waits until the following writer has an ack on b/0 (its reply time) or `until` passes
/// (`None`), checking every 5 ms that nothing died.
async fn wait_first_ack_on_b0(
    writers: &Writers,
    until: Instant,
    servers: &mut Servers,
    harness: &mut Harness,
) -> Result<Option<Instant>, String> {
    loop {
        alive(servers, harness)?;
        if let Some(first) = first_ack_on_b0(&writers.snapshot()) {
            return Ok(Some(first));
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until a/0 is b/0's replica (standby: and its backup), checking every 20 ms that
/// nothing died: when it was first seen so, or `Err(None)` once `until` passed (`Err(Some)`
/// when something died).
async fn wait_rejoined(
    until: Instant,
    servers: &mut Servers,
    harness: &mut Harness,
) -> Result<Instant, Option<String>> {
    loop {
        alive(servers, harness).map_err(Some)?;
        if harness.rejoined(servers).await {
            return Ok(Instant::now());
        }
        if Instant::now() > until {
            return Err(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The reply time of the following writer's first ack on b/0 in `log`.
fn first_ack_on_b0(log: &[Write]) -> Option<Instant> {
    log.iter()
        .filter(|w| w.writer == Writer::Following)
        .filter(|w| w.target == Some(b(0)) && w.outcome == Outcome::Ack)
        .map(|w| w.reply)
        .min()
}

/// One run: setup, warm-up, fault, recovery, check.
async fn story(
    ctx: &Ctx,
    tool: Tool,
    fault: Fault,
    setting: u64,
    dir: &Path,
    record: &mut RunRecord,
    trace: &mut Trace,
) -> Result<(), String> {
    // Every port of the run at once, so that none is handed out twice.
    let mut free = free_ports(9)?;
    let ports: BTreeMap<_, _> = nodes().into_iter().zip(free.drain(..6)).collect();
    let mut writers = Writers::new();
    trace.log = Some(writers.log.clone());
    let named: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (mut servers, mut harness) = match tool {
        Tool::Standby => {
            let params = standby_tool::Params {
                heartbeat_timeout_ms: setting,
                heartbeat_interval_ms: ctx.interval_ms,
                lease_duration_ms: ctx.lease_ms,
            };
            let extra = [free[0], free[1]];
            let (mut servers, config) = Standby::prepare(&ctx.bin, dir, ports, extra, params)?;
            for node in nodes() {
                servers.start(node)?;
            }
            wait_up(&servers, &standby_tool::reader()).await?;
            let standby = Standby::start(&ctx.bin, dir, config).await?;
            let route_wait = Duration::from_millis(ctx.route_wait_ms);
            let client = standby.client(route_wait).await?;
            standby_tool::watch_route(&client, named.clone());
            writers.spawn(Writer::Following, standby_tool::Following { client });
            let old = standby_tool::OldAddress {
                address: servers.address(a(0)),
                con: None,
            };
            writers.spawn(Writer::OldAddress, old);
            (servers, Harness::Standby(Box::new(standby)))
        }
        Tool::Sentinel | Tool::SentinelMinReplicas => {
            let lines = {
                let ports = ports.clone();
                let min_replicas = tool == Tool::SentinelMinReplicas;
                move |node| sentinel::server_lines(&ports, node, min_replicas)
            };
            let mut servers = Servers::new(dir, ports, lines)?;
            for node in nodes() {
                servers.start(node)?;
            }
            wait_up(&servers, &None).await?;
            let mut sentinels = Sentinels::start(dir, &servers.ports, &free, setting)?;
            sentinels.wait_ready(&servers).await?;
            let named = sentinel::Named {
                address: servers.address(b(0)),
                at: named.clone(),
            };
            let following = sentinel::Following::new(sentinels.addresses.clone(), &servers, named);
            writers.spawn(Writer::Following, following);
            let old = sentinel::OldAddress {
                address: servers.address(a(0)),
                con: None,
            };
            writers.spawn(Writer::OldAddress, old);
            (servers, Harness::Sentinel(sentinels))
        }
    };
    let read_auth = harness.read_auth();

    // Warm-up: both writers acked on a/0, b/0 has the following writer's latest ack.
    let begun = Instant::now();
    loop {
        alive(&mut servers, &mut harness)?;
        let log = writers.snapshot();
        let acks = |writer| {
            log.iter()
                .filter(|w| w.writer == writer && w.target == Some(a(0)))
                .filter(|w| w.outcome == Outcome::Ack)
                .count()
        };
        if begun.elapsed() >= WARM_UP
            && acks(Writer::Following) >= 20
            && acks(Writer::OldAddress) >= 20
        {
            let latest = log
                .iter()
                .rev()
                .find(|w| w.writer == Writer::Following && w.outcome == Outcome::Ack)
                .map(|w| (w.key.clone(), w.value.clone()));
            if let Some((key, value)) = latest {
                let on_b0 = redis_io::read_all(&servers.address(b(0)), &read_auth, &[key]).await?;
                if on_b0.first().cloned().flatten().as_deref() == Some(value.as_str()) {
                    break;
                }
            }
        }
        if begun.elapsed() > WARM_UP_CAP {
            let summary: BTreeMap<String, usize> = log.iter().fold(BTreeMap::new(), |mut m, w| {
                let key = format!("{:?} {} {}", w.writer, w.outcome.kind(), w.outcome.detail());
                *m.entry(key).or_default() += 1;
                m
            });
            return Err(format!(
                "warm-up: not both writers acked 20 writes on a/0 with b/0 replicating within \
                 {WARM_UP_CAP:?}: {summary:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The fault.
    let targets = match fault {
        Fault::KillOne => vec![a(0)],
        Fault::Kill | Fault::Pause => vec![a(0), a(1)],
    };
    let t0 = Instant::now();
    record.t0_unix_ms = Some(unix_ms());
    trace.t0 = Some(t0);
    match fault {
        Fault::Kill | Fault::KillOne => servers.signal(&targets, "KILL")?,
        Fault::Pause => servers.signal(&targets, "STOP")?,
    }

    match fault {
        Fault::Kill | Fault::KillOne => {
            // The killed servers come back 2 s after the new primary's first write, or
            // RESTART_BY after the kill if it has accepted none by then (a master that needs
            // a replica to write waits for the old one to return).
            let first =
                wait_first_ack_on_b0(&writers, t0 + RESTART_BY, &mut servers, &mut harness).await?;
            let restart_at = first.map_or(Instant::now(), |f| f + AFTER_FIRST_WRITE);
            sleep_checking(restart_at, &mut servers, &mut harness).await?;
            let restarted = Instant::now();
            for &node in &targets {
                servers.start(node)?;
            }
            record.restarted_or_resumed_ms = Some(ms(t0, restarted));
            let rejoined = wait_rejoined(restarted + REJOIN_CAP, &mut servers, &mut harness)
                .await
                .map_err(|died| {
                    died.unwrap_or_else(|| {
                        format!("a/0 was not b/0's replica within {REJOIN_CAP:?} of its restart")
                    })
                })?;
            record.old_primary_replica_ms = Some(ms(t0, rejoined));
            if first.is_none() {
                record.notes.push(format!(
                    "b/0 accepted no write within {RESTART_BY:?} of the kill: a/0 and a/1 \
                     restarted then"
                ));
                let cap = Instant::now() + FIRST_WRITE_CAP;
                let first = wait_first_ack_on_b0(&writers, cap, &mut servers, &mut harness).await?;
                let Some(first) = first else {
                    return Err(format!(
                        "no write of the following writer accepted by b/0 within \
                         {FIRST_WRITE_CAP:?} of a/0's rejoin"
                    ));
                };
                sleep_checking(first + AFTER_FIRST_WRITE, &mut servers, &mut harness).await?;
            }
        }
        Fault::Pause => {
            sleep_checking(t0 + PAUSE, &mut servers, &mut harness).await?;
            servers.signal(&targets, "CONT")?;
            record.restarted_or_resumed_ms = Some(ms(t0, Instant::now()));
            let rejoined = wait_rejoined(t0 + PAUSE_REJOIN_CAP, &mut servers, &mut harness)
                .await
                .map_err(|died| {
                    died.unwrap_or_else(|| {
                        format!(
                            "a/0 was not b/0's replica within {PAUSE_REJOIN_CAP:?} of the pause"
                        )
                    })
                })?;
            record.old_primary_replica_ms = Some(ms(t0, rejoined));
            sleep_checking(Instant::now() + AFTER_REJOIN, &mut servers, &mut harness).await?;
        }
    }
    let log = writers.stop().await?;
    if first_ack_on_b0(&log).is_none() {
        return Err("no write of the following writer was accepted by b/0".into());
    }

    // The check: every acked write looked up on b/0 (and in standby's quarantine).
    let b0 = servers.address(b(0));
    let info = redis_io::info_replication(&b0, &harness.admin_auth()).await?;
    let role = info
        .iter()
        .find(|(k, _)| k == "role")
        .map(|(_, v)| v.as_str());
    if role != Some("master") {
        record.notes.push(format!("b/0 is {role:?} at the end"));
    }
    if let Harness::Standby(s) = &harness {
        match s.status().await {
            Ok(st) if st.epoch >= 2 && st.primary == "b" && st.phase == "normal" => {
                if st.epoch != 2 {
                    record.notes.push(format!("epoch {} at the end", st.epoch));
                }
            }
            other => record
                .notes
                .push(format!("controller at the end: {other:?}")),
        }
    }
    let acked: Vec<&Write> = log.iter().filter(|w| w.outcome == Outcome::Ack).collect();
    let keys: Vec<String> = acked.iter().map(|w| w.key.clone()).collect();
    let values = redis_io::read_all(&b0, &read_auth, &keys).await?;
    let on_b0: BTreeMap<String, Option<String>> = keys.into_iter().zip(values).collect();
    let quarantine = match &harness {
        Harness::Standby(s) => Some(s.quarantined()?),
        Harness::Sentinel(_) => None,
    };
    analyze(record, &log, t0, &on_b0, quarantine.as_ref());
    record.new_primary_named_ms = named.lock().expect("named").map(|t| ms(t0, t));
    if let Harness::Standby(s) = &harness {
        if record.two_primaries > 0 || record.lost.following + record.lost.old_address > 0 {
            record.notes.push(format!(
                "standby lost or double-accepted writes: see {} and writes.jsonl",
                s.log_file.display()
            ));
        }
    }
    Ok(())
}
