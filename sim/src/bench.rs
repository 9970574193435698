//! Benchmarks in simulated time (`cargo sim bench`, and the criterion benches): detection
//! latency, RTO and RPO on `primary-majority-crash` over a grid of heartbeat intervals and
//! packet loss; the same over a grid of one-way latencies with the default settings, and
//! `steady-state` at the farthest of them; false failovers on `steady-state` under packet
//! loss with jitter; one primary node's crash (its shard's failover) under that loss; the takeover
//! after the leading controller replica is killed; and the simulator's own speed. Every configuration is a shipped scenario with a few settings
//! changed, named so that `cargo sim replay --bench NAME --seed S` rebuilds it exactly.

use crate::availability::Availability;
use crate::campaign::{run_seeds, Failure, Percentiles, SeedRun};
use crate::scenario::Scenario;
use crate::world::DRAIN;
use serde::Serialize;
use standby::controller::Mutation;
use std::path::Path;
use std::time::Instant;

/// Seeds per configuration unless told otherwise.
pub const DEFAULT_BENCH_SEEDS: u64 = 1000;
/// Heartbeat intervals of the detection grid, in ms. The timeout and the lease are three
/// intervals each, as in the default settings (100 / 300 / 300).
pub const INTERVALS_MS: [u64; 3] = [50, 100, 500];
/// Packet loss of both grids, in percent.
pub const LOSS_PERCENT: [f64; 3] = [0.0, 1.0, 5.0];
/// One-way latency of the false-failover runs, in ms: the spread is the jitter.
pub const JITTER_MS: [u64; 2] = [1, 30];
/// One-way latency ranges of the distance grid, in ms: a rack, a region, a continent, an
/// ocean (round trips up to 280 ms against the default 300 ms timeout).
pub const ONE_WAY_MS: [(u64, u64); 5] = [(1, 5), (20, 40), (50, 70), (80, 100), (100, 140)];
/// The scenario the detection grid is built on.
pub const DETECTION_SCENARIO: &str = "primary-majority-crash.toml";
/// The scenario the shard-failover rows are built on: one primary node of five crashes.
pub const SHARD_SCENARIO: &str = "primary-node-crash-shard-fails-over.toml";
/// The scenario the false-failover runs are built on.
pub const QUIET_SCENARIO: &str = "steady-state.toml";
/// The scenario the leader-loss runs are built on: three replicas, the leader killed as it
/// starts a failover (which its successor must finish, once).
pub const LEADER_LOSS_SCENARIO: &str = "leader-killed-mid-failover.toml";

/// What a configuration measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A true failure: detection, RTO, RPO.
    Detection,
    /// No failure at all: any failover is a false one.
    FalseFailovers,
    /// The leading controller replica killed: the takeover by another.
    LeaderLoss,
}

/// One benchmark configuration.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// `detection/interval=100ms/loss=1%` or `false-failovers/loss=5%`.
    pub name: String,
    /// What it measures.
    pub kind: Kind,
    /// The scenario it runs.
    pub scenario: Scenario,
}

impl BenchConfig {
    /// A configuration named after its scenario.
    fn new(kind: Kind, scenario: Scenario) -> BenchConfig {
        BenchConfig {
            name: scenario.name.clone(),
            kind,
            scenario,
        }
    }
}

/// `base` with heartbeats every `interval_ms` (timeout and lease three intervals) and
/// `loss` percent of packets lost. The base's detection and RTO bounds are for its own
/// settings, so they are dropped; every other expectation stands.
pub fn detection_scenario(base: &Scenario, interval_ms: u64, loss: f64) -> Scenario {
    let mut s = base.clone();
    s.name = format!("detection/interval={interval_ms}ms/loss={loss}%");
    s.controller.heartbeat_interval_ms = interval_ms;
    s.controller.heartbeat_timeout_ms = 3 * interval_ms;
    s.controller.lease_duration_ms = 3 * interval_ms;
    s.network.packet_loss_percent = loss;
    s.expect.detection_ms_max = None;
    s.expect.rto_ms_max = None;
    s
}

/// `base` (a run with no fault) under `loss` percent packet loss and [`JITTER_MS`] latency,
/// default controller settings. A false failover here is what the configuration counts (its
/// table column), not a failed run: every other invariant stands.
pub fn quiet_scenario(base: &Scenario, loss: f64) -> Scenario {
    let mut s = base.clone();
    s.name = format!("false-failovers/loss={loss}%");
    s.expect.failovers = None;
    s.expect.false_failovers_max = Some(u32::MAX);
    s.network.packet_loss_percent = loss;
    s.network.latency_min_ms = JITTER_MS[0];
    s.network.latency_max_ms = JITTER_MS[1];
    s
}

/// `base` (one primary node's crash) under `loss` percent packet loss, default controller
/// settings. What it measures is how long the failover takes, so its bounds on that (the
/// 1 s liveness bound at no loss included) are dropped; every other expectation stands.
pub fn shard_scenario(base: &Scenario, loss: f64) -> Scenario {
    let mut s = base.clone();
    s.name = format!("shard/loss={loss}%");
    s.network.packet_loss_percent = loss;
    s.expect.detection_ms_max = None;
    s.expect.rto_ms_max = None;
    s.expect.failover_within_ms = crate::scenario::Expect::default().failover_within_ms;
    s
}

/// `base` with every message taking `one_way` ms, every controller setting at its default
/// (what issue 15 asks to work at a distance); `name` says which grid it belongs to. The
/// base's detection and RTO bounds are for short round trips, so they are dropped.
pub fn distance_scenario(base: &Scenario, name: &str, (min, max): (u64, u64)) -> Scenario {
    let mut s = base.clone();
    s.name = format!("{name}/one-way={min}-{max}ms");
    s.network.latency_min_ms = min;
    s.network.latency_max_ms = max;
    s.expect.detection_ms_max = None;
    s.expect.rto_ms_max = None;
    s
}

/// Every configuration, built from the scenarios in `dir`.
pub fn configs(dir: &Path) -> Result<Vec<BenchConfig>, String> {
    let load = |file: &str| Scenario::load(&dir.join(file)).map_err(|e| e.to_string());
    let (crash, quiet) = (load(DETECTION_SCENARIO)?, load(QUIET_SCENARIO)?);
    let shard = load(SHARD_SCENARIO)?;
    let mut leader_loss = load(LEADER_LOSS_SCENARIO)?;
    let mut configs = Vec::new();
    for interval in INTERVALS_MS {
        for loss in LOSS_PERCENT {
            let scenario = detection_scenario(&crash, interval, loss);
            configs.push(BenchConfig::new(Kind::Detection, scenario));
        }
    }
    for loss in LOSS_PERCENT {
        let scenario = shard_scenario(&shard, loss);
        configs.push(BenchConfig::new(Kind::Detection, scenario));
    }
    for one_way in ONE_WAY_MS {
        let scenario = distance_scenario(&crash, "distance", one_way);
        configs.push(BenchConfig::new(Kind::Detection, scenario));
    }
    let far = distance_scenario(
        &quiet,
        "distance-no-fault",
        ONE_WAY_MS[ONE_WAY_MS.len() - 1],
    );
    configs.push(BenchConfig::new(Kind::FalseFailovers, far));
    for loss in LOSS_PERCENT {
        let scenario = quiet_scenario(&quiet, loss);
        configs.push(BenchConfig::new(Kind::FalseFailovers, scenario));
    }
    leader_loss.name = format!(
        "leader-loss/ttl={}s",
        leader_loss.control_plane.etcd_lease_ttl_s
    );
    configs.push(BenchConfig::new(Kind::LeaderLoss, leader_loss));
    Ok(configs)
}

/// The configuration called `name`, or an error listing them all.
pub fn config(dir: &Path, name: &str) -> Result<BenchConfig, String> {
    let all = configs(dir)?;
    let names: Vec<String> = all.iter().map(|c| c.name.clone()).collect();
    (all.into_iter().find(|c| c.name == name)).ok_or_else(|| {
        format!(
            "no bench configuration `{name}`; they are: {}",
            names.join(", ")
        )
    })
}

/// The command that replays one seed of a configuration.
pub fn replay_command(name: &str, seed: u64) -> String {
    format!("cargo sim replay --bench '{name}' --seed {seed}")
}

/// One configuration's figures over its seeds.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// The configuration.
    pub name: String,
    /// What it measures.
    pub kind: Kind,
    /// Seeds run.
    pub seeds: u64,
    /// Heartbeat interval, ms.
    pub heartbeat_interval_ms: u64,
    /// Heartbeat timeout, ms.
    pub heartbeat_timeout_ms: u64,
    /// Packet loss, percent.
    pub packet_loss_percent: f64,
    /// One-way latency range, ms.
    pub latency_ms: [u64; 2],
    /// Failovers over all seeds.
    pub failovers: u64,
    /// Failovers with no true failure behind them.
    pub false_failovers: u64,
    /// Seeds with at least one false failover, per seed run.
    pub false_failover_rate: f64,
    /// From the true failure to its declaration, ms.
    pub detection_ms: Percentiles,
    /// Detection p99 over `heartbeat_timeout + heartbeat_interval`.
    pub detection_p99_ratio: f64,
    /// Detection max over `heartbeat_timeout + heartbeat_interval`.
    pub detection_max_ratio: f64,
    /// From the true failure to the last user's acknowledgement of the new config, ms.
    pub rto_ms: Percentiles,
    /// From a leading replica's loss to another replica's first action, ms.
    pub takeover_ms: Percentiles,
    /// Takeover p99 over `etcd_lease_ttl + heartbeat_interval` (the target: at most 1).
    pub takeover_p99_ratio: f64,
    /// Takeover max over the same.
    pub takeover_max_ratio: f64,
    /// Acknowledged writes lost per seed (async replication).
    pub rpo_writes: Percentiles,
    /// The span of the lost writes' acknowledgements per seed, ms.
    pub rpo_span_ms: Percentiles,
    /// The users' writes over all seeds, and the longest stretch one user had no
    /// acknowledged write in any seed.
    pub availability: Availability,
    /// Wall-clock seconds for all seeds.
    pub wall_s: f64,
    /// Seeds run at once.
    pub jobs: usize,
    /// Simulated seconds per wall-clock second, per job.
    pub speed_per_job: f64,
    /// Seeds per wall-clock second, per job.
    pub seeds_per_s_per_job: f64,
    /// Seeds with a violation, each with its replay command.
    pub failures: Vec<Failure>,
}

/// Runs `config` over `seeds` on `jobs` threads.
pub fn run_config(
    config: &BenchConfig,
    seeds: &[u64],
    jobs: usize,
    done: &(dyn Fn(&SeedRun) + Sync),
) -> BenchResult {
    let started = Instant::now();
    let runs = run_seeds(&config.scenario, seeds, Mutation::None, jobs, done);
    let wall_s = started.elapsed().as_secs_f64();
    summarise(config, &runs, wall_s, jobs)
}

fn summarise(config: &BenchConfig, runs: &[SeedRun], wall_s: f64, jobs: usize) -> BenchResult {
    let s = &config.scenario;
    let p = &s.controller;
    let measures = || runs.iter().map(|r| &r.verdict.measures);
    let detection = Percentiles::of(measures().flat_map(|m| m.detection_ms.clone()).collect());
    let bound = (p.heartbeat_timeout_ms + p.heartbeat_interval_ms) as f64;
    let takeover = Percentiles::of(measures().flat_map(|m| m.takeover_ms.clone()).collect());
    let takeover_bound = (s.control_plane.etcd_lease_ttl_s * 1000 + p.heartbeat_interval_ms) as f64;
    let simulated = (s.duration_s as f64 + DRAIN.as_secs_f64()) * runs.len() as f64;
    let per_job = wall_s * jobs as f64;
    BenchResult {
        name: config.name.clone(),
        kind: config.kind,
        seeds: runs.len() as u64,
        heartbeat_interval_ms: p.heartbeat_interval_ms,
        heartbeat_timeout_ms: p.heartbeat_timeout_ms,
        packet_loss_percent: s.network.packet_loss_percent,
        latency_ms: [s.network.latency_min_ms, s.network.latency_max_ms],
        failovers: measures().map(|m| m.failovers as u64).sum(),
        false_failovers: measures().map(|m| m.false_failovers as u64).sum(),
        false_failover_rate: measures().filter(|m| m.false_failovers > 0).count() as f64
            / runs.len().max(1) as f64,
        detection_ms: detection,
        detection_p99_ratio: detection.p99 as f64 / bound,
        detection_max_ratio: detection.max as f64 / bound,
        rto_ms: Percentiles::of(measures().flat_map(|m| m.rto_ms.clone()).collect()),
        takeover_ms: takeover,
        takeover_p99_ratio: takeover.p99 as f64 / takeover_bound,
        takeover_max_ratio: takeover.max as f64 / takeover_bound,
        rpo_writes: Percentiles::of(measures().map(|m| m.lost_writes).collect()),
        rpo_span_ms: Percentiles::of(measures().map(|m| m.lost_span_ms).collect()),
        availability: (measures().map(|m| m.availability))
            .fold(Availability::default(), |a, b| a + b),
        wall_s,
        jobs,
        speed_per_job: simulated / per_job,
        seeds_per_s_per_job: runs.len() as f64 / per_job,
        failures: failures(&config.name, runs),
    }
}

fn failures(name: &str, runs: &[SeedRun]) -> Vec<Failure> {
    (runs.iter())
        .filter_map(|r| {
            let first = r.verdict.violations.first()?;
            Some(Failure {
                seed: r.seed,
                invariant: first.invariant.to_owned(),
                message: first.message.clone(),
                replay: replay_command(name, r.seed),
            })
        })
        .collect()
}
