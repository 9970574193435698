//! Campaigns: many seeds over many scenarios, summarised.

use crate::availability::Availability;
use crate::check::{check, Verdict, Violation};
use crate::effects::{EFFECTS, STORIES, TRANSITIONS};
use crate::scenario::{Scenario, ScenarioError};
use crate::trace::{self, Event};
use crate::world::run;
use serde::Serialize;
use standby::controller::Mutation;
use standby::time::Time;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Seeds run per scenario unless told otherwise.
pub const DEFAULT_SEEDS: u64 = 16;

/// One seed's result.
#[derive(Debug, Clone)]
pub struct SeedRun {
    /// The seed.
    pub seed: u64,
    /// The verdict.
    pub verdict: Verdict,
    /// The hash of the trace.
    pub trace_hash: u64,
}

/// Runs one seed of one scenario and checks it. A run that panics (a broken assertion, or a
/// world stuck past its time limit) is a failed seed like any other, with its replay command,
/// rather than the end of the campaign.
pub fn run_seed(scenario: &Scenario, seed: u64, mutation: Mutation) -> SeedRun {
    run_seed_with(scenario, seed, mutation, false)
}

/// Like [`run_seed`]; with `twice`, the seed runs a second time and any difference between
/// the two traces is a `determinism` violation naming the first differing event.
pub fn run_seed_with(scenario: &Scenario, seed: u64, mutation: Mutation, twice: bool) -> SeedRun {
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let first = run(scenario, seed, mutation);
        let second = twice.then(|| run(scenario, seed, mutation));
        (first, second)
    }));
    match attempt {
        Ok((out, second)) => {
            let mut verdict = check(scenario, &out);
            if let Some(second) = second {
                verdict
                    .violations
                    .extend(compare_runs(&out.events, &second.events));
            }
            SeedRun {
                seed,
                verdict,
                trace_hash: trace::hash(&out.events),
            }
        }
        Err(payload) => {
            let message = (payload.downcast_ref::<String>().cloned())
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_owned());
            let violation = Violation {
                invariant: "panic",
                message: format!("the run panicked: {message}"),
                at: None,
            };
            SeedRun {
                seed,
                verdict: Verdict {
                    violations: vec![violation],
                    ..Default::default()
                },
                trace_hash: 0,
            }
        }
    }
}

/// A `determinism` violation if two runs of one seed differ, naming the first difference.
pub fn compare_runs(first: &[(Time, Event)], second: &[(Time, Event)]) -> Option<Violation> {
    if trace::hash(first) == trace::hash(second) && first == second {
        return None;
    }
    let index = (first.iter().zip(second))
        .position(|(a, b)| a != b)
        .unwrap_or(first.len().min(second.len()));
    let show = |events: &[(Time, Event)]| match events.get(index) {
        Some((t, e)) => format!("{t} {}", trace::describe(e)),
        None => "the end of the trace".to_owned(),
    };
    Some(Violation {
        invariant: "determinism",
        message: format!(
            "two runs of the same seed differ at event #{index}: the first run has `{}`, the second `{}` ({} and {} events in all)",
            show(first),
            show(second),
            first.len(),
            second.len()
        ),
        at: first.get(index).or(second.get(index)).map(|(t, _)| *t),
    })
}

/// p50, p99 and max of a sample, in ms (zeros when empty).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Of `sample` (nearest-rank).
    pub fn of(mut sample: Vec<u64>) -> Percentiles {
        if sample.is_empty() {
            return Percentiles::default();
        }
        sample.sort_unstable();
        let rank =
            |p: f64| sample[((p * sample.len() as f64).ceil() as usize).clamp(1, sample.len()) - 1];
        Percentiles {
            p50: rank(0.50),
            p99: rank(0.99),
            max: *sample.last().expect("non-empty"),
        }
    }
}

/// A failed seed, with the command that replays it.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The first violated invariant.
    pub invariant: String,
    /// What happened.
    pub message: String,
    /// The one command that reproduces it.
    pub replay: String,
}

/// One scenario's results over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioSummary {
    /// The scenario's name.
    pub name: String,
    /// Its file.
    pub file: String,
    /// Seeds run.
    pub seeds: u64,
    /// Seeds with no violation.
    pub passed: u64,
    /// Failovers over all seeds.
    pub failovers: u64,
    /// False failovers over all seeds.
    pub false_failovers: u64,
    /// Detection latency over all seeds.
    pub detection_ms: Percentiles,
    /// Recovery time over all seeds.
    pub rto_ms: Percentiles,
    /// The most acknowledged writes lost in one seed.
    pub rpo_writes_max: u64,
    /// The users' writes over all seeds, and the longest stretch one user had no
    /// acknowledged write in any seed.
    pub availability: Availability,
    /// The failed seeds.
    pub failures: Vec<Failure>,
    /// How many times each controller transition and each fault effect happened, over all
    /// seeds (see `standby_sim::effects`).
    pub coverage: BTreeMap<String, u64>,
}

/// The command that replays `seed` of the scenario in `file`, with `mutation`.
pub fn replay_command(file: &Path, seed: u64, mutation: Mutation) -> String {
    let mutant = match mutation {
        Mutation::None => String::new(),
        mutant => format!(" --mutant {}", mutant.name()),
    };
    format!("cargo sim replay {} --seed {seed}{mutant}", file.display())
}

/// Runs `seeds` of the scenario in `file`, one after the other.
pub fn run_scenario(
    file: &Path,
    scenario: &Scenario,
    seeds: &[u64],
    mutation: Mutation,
) -> ScenarioSummary {
    let runs = run_seeds(scenario, seeds, mutation, 1, &|_| {});
    summarise(file, scenario, &runs, mutation)
}

/// Runs `seeds` of `scenario` on `jobs` threads, each seed in a runtime of its own, and
/// returns the runs in seed order (so the output does not depend on the thread count).
/// `done` is called as each run finishes.
pub fn run_seeds(
    scenario: &Scenario,
    seeds: &[u64],
    mutation: Mutation,
    jobs: usize,
    done: &(dyn Fn(&SeedRun) + Sync),
) -> Vec<SeedRun> {
    run_seeds_with(scenario, seeds, mutation, jobs, false, done)
}

/// Like [`run_seeds`]; with `twice`, every seed runs twice and is checked for determinism.
pub fn run_seeds_with(
    scenario: &Scenario,
    seeds: &[u64],
    mutation: Mutation,
    jobs: usize,
    twice: bool,
    done: &(dyn Fn(&SeedRun) + Sync),
) -> Vec<SeedRun> {
    run_parallel(seeds, jobs, done, &|seed| {
        run_seed_with(scenario, seed, mutation, twice)
    })
}

/// Runs `run` for every seed on `jobs` threads and returns the results in seed order (so
/// the output does not depend on the thread count). `done` is called as each finishes.
pub fn run_parallel(
    seeds: &[u64],
    jobs: usize,
    done: &(dyn Fn(&SeedRun) + Sync),
    run: &(dyn Fn(u64) -> SeedRun + Sync),
) -> Vec<SeedRun> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<SeedRun>>> = Mutex::new(vec![None; seeds.len()]);
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, seeds.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(i) else { return };
                let result = run(seed);
                done(&result);
                results.lock().expect("results")[i] = Some(result);
            });
        }
    });
    let results = results.into_inner().expect("results");
    results
        .into_iter()
        .map(|r| r.expect("every seed ran"))
        .collect()
}

/// Summarises seed runs of one scenario.
pub fn summarise(
    file: &Path,
    scenario: &Scenario,
    runs: &[SeedRun],
    mutation: Mutation,
) -> ScenarioSummary {
    let measures = || runs.iter().map(|r| &r.verdict.measures);
    let failures = (runs.iter())
        .filter_map(|r| {
            let first = r.verdict.violations.first()?;
            let message = (r.verdict.violations.iter())
                .map(|v| format!("[{}] {}", v.invariant, v.message))
                .collect::<Vec<_>>()
                .join("; ");
            Some(Failure {
                seed: r.seed,
                invariant: first.invariant.to_owned(),
                message,
                replay: replay_command(file, r.seed, mutation),
            })
        })
        .collect::<Vec<_>>();
    ScenarioSummary {
        name: scenario.name.clone(),
        file: file.display().to_string(),
        seeds: runs.len() as u64,
        passed: (runs.len() - failures.len()) as u64,
        failovers: measures().map(|m| m.failovers as u64).sum(),
        false_failovers: measures().map(|m| m.false_failovers as u64).sum(),
        detection_ms: Percentiles::of(measures().flat_map(|m| m.detection_ms.clone()).collect()),
        rto_ms: Percentiles::of(measures().flat_map(|m| m.rto_ms.clone()).collect()),
        rpo_writes_max: measures().map(|m| m.lost_writes).max().unwrap_or(0),
        availability: (measures().map(|m| m.availability))
            .fold(Availability::default(), |a, b| a + b),
        failures,
        coverage: coverage(runs),
    }
}

/// How often each transition and effect happened over `runs`.
pub fn coverage(runs: &[SeedRun]) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for run in runs {
        let effects = &run.verdict.effects;
        for (&key, &n) in &effects.transitions {
            *counts.entry(key.to_owned()).or_default() += n;
        }
        for &effect in &effects.run {
            *counts.entry(effect.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// The transitions and effects that never happened in `summaries`.
pub fn never_reached(summaries: &[ScenarioSummary]) -> Vec<&'static str> {
    let reached = |key: &str| {
        summaries
            .iter()
            .any(|s| s.coverage.get(key).is_some_and(|&n| n > 0))
    };
    (TRANSITIONS.iter().chain(&STORIES).chain(&EFFECTS))
        .copied()
        .filter(|key| !reached(key))
        .collect()
}

/// Every `.toml` scenario under `path` (or `path` itself), sorted by name.
pub fn scenario_files(path: &Path) -> Result<Vec<PathBuf>, ScenarioError> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path).map_err(|source| ScenarioError::Read {
        file: path.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The seeds to run: one seed, or 1..=n.
pub fn seeds(count: u64, single: Option<u64>) -> Vec<u64> {
    match single {
        Some(seed) => vec![seed],
        None => (1..=count).collect(),
    }
}

/// A deliberately broken controller or node, the invariant that must catch it, and the
/// scenario written to expose it (tried first; the others follow).
#[derive(Debug, Clone, Copy)]
pub struct MutantSpec {
    /// The bug.
    pub mutation: Mutation,
    /// The invariant (or `expectation`) that must report it.
    pub invariant: &'static str,
    /// The scenario that exposes it.
    pub scenario: &'static str,
}

/// Every mutant with the checker that must catch it. Together they name every checker, so
/// that removing any one of them lets some mutant survive.
pub const MUTANTS: [MutantSpec; 31] = [
    spec(
        Mutation::NoFencing,
        "single-writer",
        "controller-isolated-from-primary",
    ),
    spec(
        Mutation::SkipLeaseWait,
        "single-writer",
        "controller-isolated-from-primary",
    ),
    spec(Mutation::RatioInclusive, "liveness", "primary-half-crash"),
    spec(
        Mutation::NoBackupCheck,
        "liveness",
        "backup-down-then-primary-down",
    ),
    spec(
        Mutation::KeepReplicating,
        "accounted-loss",
        "slow-network-primary-crash",
    ),
    spec(
        Mutation::DropSuffix,
        "accounted-loss",
        "replication-link-cut-then-primary-crash",
    ),
    spec(
        Mutation::MergeSuffix,
        "convergence",
        "replication-link-cut-then-primary-crash",
    ),
    spec(
        Mutation::NoEpochBump,
        "convergence",
        "primary-majority-crash",
    ),
    spec(
        Mutation::NoDebounce,
        "expectation",
        "slow-network-primary-crash",
    ),
    spec(Mutation::NoResync, "convergence", "primary-majority-crash"),
    spec(
        Mutation::NoSecondAlarm,
        "liveness",
        "backup-down-then-primary-down",
    ),
    spec(
        Mutation::ForgetEpoch,
        "epochs-monotonic",
        "controller-restarts-after-failover",
    ),
    spec(
        Mutation::EarlySyncAck,
        "durability",
        "sync-mode-link-cut-then-primary-crash",
    ),
    spec(
        Mutation::NoRejectionRoute,
        "users-converge",
        "users-cut-from-config-center",
    ),
    spec(
        Mutation::ClusterWideRejoin,
        "accounted-loss",
        "crash-before-rejoin-then-failback",
    ),
    spec(
        Mutation::ResumeForgetsRejoins,
        "accounted-loss",
        "failback-before-every-shard-rejoined",
    ),
    spec(
        Mutation::PromoteOnGrace,
        "liveness",
        "controller-crash-mid-failover-then-backup-fails",
    ),
    spec(
        Mutation::RestartTrustsPrimary,
        "liveness",
        "controller-crash-before-first-alarm-in-double-failure",
    ),
    spec(
        Mutation::DeposedKeepsActing,
        "single-leader",
        "leader-cut-from-etcd-healthy-primary",
    ),
    spec(
        Mutation::TakeoverSkipsLeaseWait,
        "single-writer",
        "leader-stalls-while-primary-cut-off",
    ),
    spec(
        Mutation::ActsBeforeRestore,
        "epochs-monotonic",
        "leader-paused-then-successor-killed",
    ),
    spec(
        Mutation::PublishSkipsEtcd,
        "expectation",
        "leader-cut-from-users-while-primary-fails",
    ),
    spec(
        Mutation::NoEtcdAlarm,
        "expectation",
        "etcd-out-30s-healthy-primary",
    ),
    spec(
        Mutation::PersistsUnguarded,
        "epochs-monotonic",
        "leader-cut-from-etcd-its-late-write-lands-after-takeover",
    ),
    spec(
        Mutation::ShortLeaseWait,
        "accounted-loss",
        "long-round-trip-leases-then-primary-cut-off",
    ),
    spec(
        Mutation::NoLagAlarm,
        "expectation",
        "backup-lags-beyond-the-bound",
    ),
    spec(
        Mutation::ShardNoFencing,
        "single-writer",
        "primary-node-cut-off-with-long-leases",
    ),
    spec(
        Mutation::ShardConfigUnchanged,
        "users-converge",
        "primary-node-crash-shard-fails-over",
    ),
    spec(
        Mutation::TrimPastBackup,
        "accounted-loss",
        "replication-link-cut-then-primary-crash",
    ),
    spec(
        Mutation::IgnoresPromotionGate,
        "expectation",
        "promotion-held-until-the-operator-approves",
    ),
    spec(
        Mutation::IgnoresApproval,
        "liveness",
        "promotion-held-until-the-operator-approves",
    ),
];

const fn spec(mutation: Mutation, invariant: &'static str, scenario: &'static str) -> MutantSpec {
    MutantSpec {
        mutation,
        invariant,
        scenario,
    }
}

/// Whether and where a mutant was caught.
#[derive(Debug, Clone, Serialize)]
pub struct MutantReport {
    /// The mutant's name.
    pub mutant: String,
    /// The invariant that must catch it.
    pub invariant: String,
    /// Whether that invariant caught it.
    pub caught: bool,
    /// The scenario that caught it.
    pub scenario: Option<String>,
    /// The first seed that caught it there.
    pub seed: Option<u64>,
    /// The violation.
    pub message: Option<String>,
    /// The command that replays the catch.
    pub replay: Option<String>,
    /// Seeds run before the catch (or in all, when it survived).
    pub runs: u64,
}

/// Runs `spec`'s mutant over `scenarios` (its own scenario first) and `seeds` until the
/// invariant it must break reports it. Checkers named in `without` are treated as removed.
pub fn hunt(
    spec: &MutantSpec,
    scenarios: &[(PathBuf, Scenario)],
    seeds: &[u64],
    jobs: usize,
    without: &[String],
) -> MutantReport {
    let mut report = MutantReport {
        mutant: spec.mutation.name().to_owned(),
        invariant: spec.invariant.to_owned(),
        caught: false,
        scenario: None,
        seed: None,
        message: None,
        replay: None,
        runs: 0,
    };
    let own = scenarios.iter().filter(|(_, s)| s.name == spec.scenario);
    let others = scenarios.iter().filter(|(_, s)| s.name != spec.scenario);
    if without.iter().any(|w| w == spec.invariant) {
        return report; // Its checker is removed: nothing can catch it.
    }
    for (file, scenario) in own.chain(others) {
        // Seeds in batches of `jobs`, so that a catch at the first seeds costs little.
        for batch in seeds.chunks(jobs.max(1)) {
            let runs = run_seeds(scenario, batch, spec.mutation, jobs, &|_| {});
            report.runs += runs.len() as u64;
            let catch = runs.iter().find_map(|run| {
                let v = run
                    .verdict
                    .violations
                    .iter()
                    .find(|v| v.invariant == spec.invariant)?;
                Some((run.seed, v.message.clone()))
            });
            if let Some((seed, message)) = catch {
                report.caught = true;
                report.scenario = Some(scenario.name.clone());
                report.seed = Some(seed);
                report.message = Some(message);
                report.replay = Some(replay_command(file, seed, spec.mutation));
                return report;
            }
        }
    }
    report
}
