//! `cargo sim`: the simulation campaign runner.

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use standby::controller::Mutation;
use standby::service::node::ReplicationMode;
use standby_sim::campaign::{
    hunt, never_reached, replay_command, run_seeds_with, scenario_files, seeds, summarise,
    ScenarioSummary, SeedRun, DEFAULT_SEEDS, MUTANTS,
};
use standby_sim::check::{check, CHECKERS};
use standby_sim::effects::{EFFECTS, STORIES, TRANSITIONS};
use standby_sim::scenario::Scenario;
use standby_sim::swarm::{self, swarm_replay_command, Phase, DEFAULT_SWARM_SEEDS};
use standby_sim::trace;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

/// Deterministic simulation of the standby controller: run scenarios over seeds, check every
/// invariant, replay a failing seed. With no command: every scenario in `scenarios/` over the
/// default seeds, with a summary table.
#[derive(Parser, Debug)]
#[command(name = "cargo sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Seeds run at once (default: one per core). Results do not depend on it.
    #[arg(long, global = true)]
    jobs: Option<usize>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario file, or every scenario in a directory, over seeds.
    Run {
        /// A scenario file or a directory of them.
        path: PathBuf,
        /// Seeds 1..=N.
        #[arg(long, default_value_t = DEFAULT_SEEDS)]
        seeds: u64,
        /// Run only this seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
        /// Run a deliberately broken controller (to see the checkers catch it); see
        /// `cargo sim mutants` for the list.
        #[arg(long, value_parser = parse_mutant, default_value = "none")]
        mutant: Mutation,
        /// Run every seed twice and fail on any difference between the two traces.
        #[arg(long)]
        check_determinism: bool,
    },
    /// Run every deliberately broken controller until the invariant it must break reports
    /// it; exit non-zero if any survives.
    Mutants {
        /// Seeds 1..=N per scenario, at most.
        #[arg(long, default_value_t = DEFAULT_SEEDS)]
        seeds: u64,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
        /// Treat this checker as removed (repeatable), to see which mutants then survive.
        #[arg(long, value_name = "INVARIANT")]
        without: Vec<String>,
        /// The scenarios to hunt in.
        #[arg(long, default_value = "scenarios")]
        scenarios: PathBuf,
    },
    /// Shrink a failing seed to a minimal scenario that still breaks the same invariant
    /// (fewest faults, nodes and users, shortest run), and write it as a regression scenario.
    Shrink {
        #[command(flatten)]
        run: OneRun,
        /// The invariant to keep broken (default: the run's first violation).
        #[arg(long)]
        invariant: Option<String>,
        /// Where to write the regression scenario.
        #[arg(long, default_value = "scenarios/regressions")]
        out: PathBuf,
    },
    /// Replay one seed of one scenario (a file, or a swarm seed): its timeline, verdict and
    /// trace hash.
    Replay {
        #[command(flatten)]
        run: OneRun,
        /// Show every message too: heartbeats, reports, writes, appends, acknowledgements.
        #[arg(long)]
        verbose: bool,
        /// Also draw the run as a self-contained HTML page (inline SVG) in this file.
        #[arg(long, value_name = "OUT.html")]
        timeline: Option<PathBuf>,
        /// Also write every event as one JSON object per line to this file.
        #[arg(long, value_name = "OUT.jsonl")]
        trace: Option<PathBuf>,
    },
    /// Benchmarks in simulated time: detection latency, RTO and RPO on primary-majority-crash
    /// over heartbeat intervals {50, 100, 500} ms x packet loss {0, 1, 5}%, and of one primary
    /// node's crash (its shard's failover) under that loss; the same over one-way latencies of
    /// 1-140 ms; false failovers (counted, not failed) on steady-state under that loss with
    /// 1-30 ms jitter; a leader's loss; and the simulator's speed. Exits non-zero if any seed
    /// breaks an invariant.
    Bench {
        /// Seeds 1..=N per configuration.
        #[arg(long, default_value_t = standby_sim::bench::DEFAULT_BENCH_SEEDS)]
        seeds: u64,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
        /// Run only the configurations whose name contains this (e.g. `false-failovers`,
        /// `interval=100ms`).
        #[arg(long)]
        only: Option<String>,
        /// Where primary-majority-crash.toml and steady-state.toml are.
        #[arg(long, default_value = "scenarios")]
        scenarios: PathBuf,
    },
    /// Swarm testing: seeds 1..=N, each generating every option of its run (topology,
    /// parameters, network, 1-5 faults that heal, then 20 s of quiet), with safety and
    /// liveness violations reported apart; exit non-zero on any.
    Swarm {
        /// Seeds 1..=N.
        #[arg(long, default_value_t = DEFAULT_SWARM_SEEDS)]
        seeds: u64,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
        /// Run a deliberately broken controller.
        #[arg(long, value_parser = parse_mutant, default_value = "none")]
        mutant: Mutation,
        /// Run every seed twice and fail on any difference between the two traces.
        #[arg(long)]
        check_determinism: bool,
    },
}

/// One seed of one scenario (a file, or a swarm seed), as `replay` and `shrink` take it.
#[derive(clap::Args, Debug)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["file", "swarm", "bench"])))]
struct OneRun {
    /// The scenario file (or --swarm, or --bench).
    file: Option<PathBuf>,
    /// A swarm seed (`cargo sim swarm`): the scenario is the one the seed generates.
    #[arg(long)]
    swarm: bool,
    /// A `cargo sim bench` configuration, by name (e.g. `detection/interval=100ms/loss=5%`),
    /// built from the scenarios in `scenarios/`.
    #[arg(long, value_name = "NAME")]
    bench: Option<String>,
    /// The seed.
    #[arg(long)]
    seed: u64,
    /// With a deliberately broken controller.
    #[arg(long, value_parser = parse_mutant, default_value = "none")]
    mutant: Mutation,
}

impl OneRun {
    /// The scenario this run names, the file name it goes by (a swarm or bench scenario is
    /// named after its seed or configuration), and the command that replays it.
    fn resolve(&self) -> Result<(Scenario, PathBuf, String), String> {
        let (seed, mutation) = (self.seed, self.mutant);
        if let Some(file) = &self.file {
            let scenario = Scenario::load(file).map_err(|e| e.to_string())?;
            return Ok((scenario, file.clone(), replay_command(file, seed, mutation)));
        }
        if let Some(name) = &self.bench {
            let config = standby_sim::bench::config(Path::new("scenarios"), name)?;
            let file = PathBuf::from(format!("bench-{}.toml", name.replace(['/', '%', '='], "-")));
            let mut replay = standby_sim::bench::replay_command(name, seed);
            if mutation != Mutation::None {
                replay += &format!(" --mutant {}", mutation.name());
            }
            return Ok((config.scenario, file, replay));
        }
        let file = PathBuf::from(format!("swarm-{seed}.toml"));
        Ok((
            swarm::scenario(seed),
            file,
            swarm_replay_command(seed, mutation),
        ))
    }
}

fn parse_mutant(name: &str) -> Result<Mutation, String> {
    Mutation::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Mutation::ALL.iter().map(|m| m.name()).collect();
        format!(
            "unknown mutant `{name}`; the mutants are: none, {}",
            names.join(", ")
        )
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Log lines (off unless RUST_LOG asks) carry the simulated time and, through madsim's
    // node span, the node they come from. Without RUST_LOG no subscriber is installed at all:
    // entering and leaving madsim's node span on every task poll cost a tenth of the run.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            // madsim's spans name the node each line comes from; keep them whatever RUST_LOG says.
            .with_env_filter(
                tracing_subscriber::EnvFilter::from_default_env()
                    .add_directive("madsim=error".parse().expect("a valid directive")),
            )
            .with_timer(trace::SimTime)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = cli.jobs.unwrap_or(cores).max(1);
    let result = match cli.command {
        None => campaign(
            Path::new("scenarios"),
            &seeds(DEFAULT_SEEDS, None),
            false,
            Mutation::None,
            jobs,
            false,
        ),
        Some(Command::Run {
            path,
            seeds: n,
            seed,
            json,
            mutant,
            check_determinism,
        }) => campaign(
            &path,
            &seeds(n, seed),
            json,
            mutant,
            jobs,
            check_determinism,
        ),
        Some(Command::Mutants {
            seeds: n,
            json,
            without,
            scenarios,
        }) => mutants(&scenarios, &seeds(n, None), json, &without, jobs),
        Some(Command::Shrink {
            run,
            invariant,
            out,
        }) => shrink(&run, invariant.as_deref(), &out),
        Some(Command::Replay {
            run,
            verbose,
            trace,
            timeline,
        }) => replay(&run, verbose, trace.as_deref(), timeline.as_deref()),
        Some(Command::Bench {
            seeds: n,
            json,
            only,
            scenarios,
        }) => bench(&scenarios, &seeds(n, None), json, only.as_deref(), jobs),
        Some(Command::Swarm {
            seeds: n,
            json,
            mutant,
            check_determinism,
        }) => swarm(&seeds(n, None), json, mutant, jobs, check_determinism),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn campaign(
    path: &Path,
    seeds: &[u64],
    json: bool,
    mutation: Mutation,
    jobs: usize,
    twice: bool,
) -> Result<bool, String> {
    let files = scenario_files(path).map_err(|e| e.to_string())?;
    if files.is_empty() {
        return Err(format!("{}: no scenario files (*.toml)", path.display()));
    }
    let scenarios = files
        .iter()
        .map(|f| Scenario::load(f).map(|s| (f.clone(), s)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let total = (scenarios.len() * seeds.len()) as u64;
    let progress = progress_bar(total, json);
    let failures = AtomicU64::new(0);
    let mut summaries = Vec::new();
    for (file, scenario) in &scenarios {
        progress.set_message(scenario.name.clone());
        let done = |run: &SeedRun| {
            if !run.verdict.violations.is_empty() {
                let n = failures.fetch_add(1, Ordering::Relaxed) + 1;
                progress.set_prefix(format!("{n} failed"));
            }
            progress.inc(1);
        };
        let runs = run_seeds_with(scenario, seeds, mutation, jobs, twice, &done);
        summaries.push(summarise(file, scenario, &runs, mutation));
    }
    progress.finish_and_clear();
    let violations: usize = summaries.iter().map(|s| s.failures.len()).sum();
    if json {
        let total: u64 = summaries.iter().map(|s| s.seeds).sum();
        let never = never_reached(&summaries);
        let doc = serde_json::json!({"seeds": total, "violations": violations, "scenarios": summaries, "never_reached": never});
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
    } else {
        print_table(&summaries);
        print_coverage(&summaries);
    }
    Ok(violations == 0)
}

fn load_all(path: &Path) -> Result<Vec<(PathBuf, Scenario)>, String> {
    let files = scenario_files(path).map_err(|e| e.to_string())?;
    if files.is_empty() {
        return Err(format!("{}: no scenario files (*.toml)", path.display()));
    }
    (files.iter())
        .map(|f| Scenario::load(f).map(|s| (f.clone(), s)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

fn mutants(
    path: &Path,
    seeds: &[u64],
    json: bool,
    without: &[String],
    jobs: usize,
) -> Result<bool, String> {
    let scenarios = load_all(path)?;
    let progress = progress_bar(MUTANTS.len() as u64, json);
    let mut reports = Vec::new();
    for spec in &MUTANTS {
        progress.set_message(spec.mutation.name());
        reports.push(hunt(spec, &scenarios, seeds, jobs, without));
        let survivors = reports.iter().filter(|r| !r.caught).count();
        progress.set_prefix(format!("{survivors} survived"));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let survivors = reports.iter().filter(|r| !r.caught).count();
    if json {
        let doc = serde_json::json!({"mutants": reports, "survivors": survivors});
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
        return Ok(survivors == 0);
    }
    println!(
        "{:<20} {:<17} {:<7} {:<40} {:>5} {:>5}",
        "mutant", "must be caught by", "caught", "scenario", "seed", "runs"
    );
    for r in &reports {
        let caught = if r.caught { "yes" } else { "NO" };
        let scenario = r.scenario.as_deref().unwrap_or("-");
        let seed = r.seed.map_or("-".to_owned(), |s| s.to_string());
        println!(
            "{:<20} {:<17} {:<7} {:<40} {:>5} {:>5}",
            r.mutant, r.invariant, caught, scenario, seed, r.runs
        );
    }
    for r in reports.iter().filter(|r| r.caught) {
        let message = r.message.as_deref().unwrap_or_default();
        let message: String = message.chars().take(300).collect();
        let replay = r.replay.as_deref().unwrap_or_default();
        println!(
            "\n{} caught by {}: {message}\n  replay: {replay}\n  shrink: {}",
            r.mutant,
            r.invariant,
            shrink_command(replay, &r.invariant)
        );
    }
    println!(
        "\n{} of {} mutants caught",
        reports.len() - survivors,
        reports.len()
    );
    Ok(survivors == 0)
}

/// A progress bar on stderr when it is a terminal (indicatif hides it otherwise), never with
/// `--json`.
fn progress_bar(total: u64, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style =
        ProgressStyle::with_template("{bar:30} {pos}/{len} seeds, {prefix:.red} {msg} (ETA {eta})")
            .expect("valid template");
    bar.set_style(style);
    bar.set_prefix("0 failed");
    bar
}

/// The command that shrinks the failure `replay` reproduces (same flags, same seed).
fn shrink_command(replay: &str, invariant: &str) -> String {
    let shrink = replay.replacen("cargo sim replay", "cargo sim shrink", 1);
    format!("{shrink} --invariant {invariant}")
}

/// How often each controller transition and fault effect happened, and which never did.
fn print_coverage(summaries: &[ScenarioSummary]) {
    let mut total: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for summary in summaries {
        for (key, n) in &summary.coverage {
            *total.entry(key.clone()).or_default() += n;
        }
    }
    print!("{}", coverage_text(&total));
}

/// The coverage report: every transition and effect with its count, then those never seen.
fn coverage_text(total: &std::collections::BTreeMap<String, u64>) -> String {
    let count = |k: &str| total.get(k).copied().unwrap_or(0);
    let line = |keys: &[&str]| {
        (keys.iter())
            .map(|k| format!("{k} {}", count(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let never: Vec<&str> = (TRANSITIONS.iter().chain(&STORIES).chain(&EFFECTS))
        .copied()
        .filter(|k| count(k) == 0)
        .collect();
    let never = match never.is_empty() {
        true => "none".to_owned(),
        false => never.join(", "),
    };
    format!(
        "\ncoverage, over every seed:\n  transitions: {}\n  multi-failover stories: {}\n  effects (runs showing it): {}\n  never reached: {never}\n",
        line(&TRANSITIONS),
        line(&STORIES),
        line(&EFFECTS)
    )
}

fn print_table(summaries: &[ScenarioSummary]) {
    println!(
        "{:<40} {:>5} {:>6} {:>9} {:>5} {:>22} {:>8} {:>7} {:>7} {:>10}",
        "scenario",
        "seeds",
        "passed",
        "failovers",
        "false",
        "detection p50/p99/max",
        "RTO p99",
        "RPO max",
        "acked",
        "no-ack max"
    );
    for s in summaries {
        let (d, a) = (s.detection_ms, s.availability);
        println!(
            "{:<40} {:>5} {:>6} {:>9} {:>5} {:>22} {:>8} {:>7} {:>7} {:>10}",
            s.name,
            s.seeds,
            s.passed,
            s.failovers,
            s.false_failovers,
            format!("{}/{}/{} ms", d.p50, d.p99, d.max),
            format!("{} ms", s.rto_ms.p99),
            s.rpo_writes_max,
            format!("{:.1}%", 100.0 * a.acknowledged_share()),
            format!("{} ms", a.longest_unacknowledged_ms)
        );
    }
    for s in summaries {
        for f in &s.failures {
            println!(
                // The message names every broken invariant, each in brackets.
                "\nFAILED {} seed {}: {}\n  replay: {}\n  shrink: {}",
                s.name,
                f.seed,
                f.message,
                f.replay,
                shrink_command(&f.replay, &f.invariant)
            );
        }
    }
}

/// Replays `seed` of the scenario in `file`, or of swarm seed `seed` when `file` is `None`.
fn replay(
    one: &OneRun,
    verbose: bool,
    trace_file: Option<&Path>,
    timeline_file: Option<&Path>,
) -> Result<bool, String> {
    let (seed, mutation) = (one.seed, one.mutant);
    let (scenario, _, replay_line) = one.resolve()?;
    let out = standby_sim::world::run_with(&scenario, seed, mutation, verbose);
    if let Some(path) = trace_file {
        std::fs::write(path, trace::to_jsonl(&out.events))
            .map_err(|e| format!("{}: cannot write the trace: {e}", path.display()))?;
    }
    let mut verdict = check(&scenario, &out);
    // Swarm faults are drawn at random and often harmless; the swarm does not judge them
    // vacuous, and neither does its replay.
    let swarm_run = one.swarm;
    let vacuous_faults = (verdict.violations.iter())
        .filter(|v| v.invariant == "vacuity")
        .count();
    if swarm_run {
        verdict.violations.retain(|v| v.invariant != "vacuity");
    }
    if let Some(path) = timeline_file {
        let hash = trace::hash(&out.events);
        let page = standby_sim::html::render(&scenario, seed, &out.events, &verdict, hash);
        std::fs::write(path, page)
            .map_err(|e| format!("{}: cannot write the timeline: {e}", path.display()))?;
    }
    let mut text = trace::timeline(&out.events, scenario.topology.users, verbose);
    let a = verdict.measures.availability;
    text += &format!(
        "writes: {} sent, {} acknowledged ({:.1}%), {} refused, {} unanswered; after each \
         user's first acknowledgement, {} of {} ({:.1}%); the longest any user went without an \
         acknowledged write: {} ms\n",
        a.attempted,
        a.acknowledged,
        100.0 * a.acknowledged_share(),
        a.refused,
        a.unanswered,
        a.steady_acknowledged,
        a.steady_attempted,
        100.0 * a.steady_share(),
        a.longest_unacknowledged_ms
    );
    text += "checkers:\n";
    for checker in CHECKERS {
        let broken = verdict
            .violations
            .iter()
            .filter(|v| v.invariant == checker)
            .count();
        let sync = scenario.replication.mode == ReplicationMode::Sync;
        let applies = match checker {
            "durability" => sync,
            "accounted-loss" => !sync,
            _ => true,
        };
        let status = match (broken, applies) {
            (0, false) => "not applicable in this replication mode".to_owned(),
            (0, true) => "ok".to_owned(),
            (n, _) => format!("VIOLATED ({n})"),
        };
        text += &format!("{:>12}{checker:<17} {status}\n", "");
    }
    let vacuous = if swarm_run { 0 } else { vacuous_faults };
    let effects: Vec<&str> = verdict.effects.run.iter().copied().collect();
    text += &match vacuous {
        0 => format!(
            "{:>12}{:<17} ok: every fault had an effect ({})\n",
            "",
            "vacuity",
            effects.join(", ")
        ),
        n => format!("{:>12}{:<17} VIOLATED ({n})\n", "", "vacuity"),
    };
    for v in &verdict.violations {
        text += &format!("VIOLATION [{}] {}\n", v.invariant, v.message);
    }
    if verdict.violations.is_empty() {
        text += "verdict: all invariants hold\n";
    } else {
        text += &format!("replay: {replay_line}\n");
    }
    text += &format!("trace-hash: {:016x}\n", trace::hash(&out.events));
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(verdict.violations.is_empty())
}

/// Seeds between two progress lines of a swarm whose progress bar is hidden.
const SWARM_LOG_EVERY: u64 = 1000;

/// Runs swarm seeds `seeds` (each its own generated scenario), and prints a summary with
/// safety and liveness failures apart, and for each failing seed its generated scenario and
/// replay command.
fn swarm(
    seeds: &[u64],
    json: bool,
    mutation: Mutation,
    jobs: usize,
    twice: bool,
) -> Result<bool, String> {
    let started = std::time::Instant::now();
    let progress = progress_bar(seeds.len() as u64, json);
    progress.set_message("swarm");
    // A long swarm (the release check runs for an hour) without a terminal, or with `--json`,
    // still says how far it is and names each failure as it happens, on stderr: a run cut
    // short keeps what it found.
    let log = progress.is_hidden();
    let (failures, finished) = (AtomicU64::new(0), AtomicU64::new(0));
    let done = |run: &SeedRun| {
        let failed = swarm::failed(run);
        let n = failures.fetch_add(u64::from(failed), Ordering::Relaxed) + u64::from(failed);
        if failed {
            progress.set_prefix(format!("{n} failed"));
            if log {
                let replay = swarm_replay_command(run.seed, mutation);
                eprintln!("swarm: seed {} FAILED; replay: {replay}", run.seed);
            }
        }
        progress.inc(1);
        let count = finished.fetch_add(1, Ordering::Relaxed) + 1;
        if log && (count % SWARM_LOG_EVERY == 0 || count == seeds.len() as u64) {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "swarm: {count}/{} seeds, {n} failed, {secs:.0} s",
                seeds.len()
            );
        }
    };
    let runs = swarm::run_swarm(seeds, mutation, jobs, twice, &done);
    progress.finish_and_clear();
    let summary = swarm::summarise(&runs, mutation);
    let clean = summary.failures.is_empty();
    if json {
        println!("{}", serde_json::to_string_pretty(&summary).expect("json"));
        return Ok(clean);
    }
    let mut text = String::new();
    let mut shown = None;
    for f in &summary.failures {
        let phase = match f.phase {
            Phase::Safety => "SAFETY",
            Phase::Liveness => "LIVENESS",
        };
        text += &format!("\nFAILED swarm seed {} ({phase}): {}\n", f.seed, f.message);
        // A seed failing in both phases shows its scenario once.
        if shown != Some(f.seed) {
            shown = Some(f.seed);
            text += &format!("  scenario:\n{}", indent(&f.scenario_toml, "    "));
        }
        text += &format!("  replay: {}\n", f.replay);
        text += &format!("  shrink: {}\n", shrink_command(&f.replay, &f.invariant));
    }
    text += &coverage_text(&standby_sim::campaign::coverage(&runs));
    let failed_seeds = runs.iter().filter(|r| swarm::failed(r)).count();
    text += &format!(
        "\nswarm: {} seeds, {} passed, {} safety failures, {} liveness failures, {:.1} s\n",
        summary.seeds,
        summary.seeds - failed_seeds as u64,
        summary.safety_failures,
        summary.liveness_failures,
        started.elapsed().as_secs_f64()
    );
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(clean)
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

/// Shrinks the failure at `seed` of the scenario in `file` (with `mutation`) to a minimal
/// scenario that still breaks `invariant` (default: the first one broken), and writes it under
/// `out`.
fn shrink(one: &OneRun, invariant: Option<&str>, out: &Path) -> Result<bool, String> {
    use standby_sim::shrink::{regression_file, shrink, Size};
    let (seed, mutation) = (one.seed, one.mutant);
    let (original, file, _) = one.resolve()?;
    let file = file.as_path();
    let swarm_file = PathBuf::from(format!("swarm-{seed}.toml"));
    let with = match mutation {
        Mutation::None => String::new(),
        m => format!(" with mutant {}", m.name()),
    };
    let run = standby_sim::campaign::run_seed(&original, seed, mutation);
    let mut broken: Vec<&str> = Vec::new();
    // The swarm does not judge its random faults vacuous; neither does its shrinking.
    let judged =
        (run.verdict.violations.iter()).filter(|v| v.invariant != "vacuity" || file != swarm_file);
    for v in judged {
        if !broken.contains(&v.invariant) {
            broken.push(v.invariant);
        }
    }
    let Some(&first) = broken.first() else {
        return Err(format!(
            "{} seed {seed}{with} breaks no invariant: nothing to shrink",
            file.display()
        ));
    };
    let invariant = invariant.unwrap_or(first);
    if !broken.contains(&invariant) {
        return Err(format!(
            "{} seed {seed}{with} does not break {invariant} (it breaks {})",
            file.display(),
            broken.join(", ")
        ));
    }
    println!(
        "shrinking {} seed {seed}{with}, which breaks {invariant}",
        file.display()
    );
    let started = std::time::Instant::now();
    let shrunk = shrink(&original, seed, mutation, invariant);
    if !shrunk.reproduced {
        return Err(format!(
            "{} seed {seed}{with} did not break {invariant} again",
            file.display()
        ));
    }
    for step in &shrunk.steps {
        println!("  {step}");
    }
    let (path, text) = regression_file(file, &original, &shrunk, seed, mutation, invariant, out);
    Scenario::parse(&path, &text).map_err(|e| format!("the shrunk scenario does not load: {e}"))?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("before: {}", Size::of(&original));
    println!(
        "after:  {} ({} runs, {:.1} s)",
        Size::of(&shrunk.scenario),
        shrunk.runs,
        started.elapsed().as_secs_f64()
    );
    println!("wrote {}", path.display());
    println!("replay: {}", replay_command(&path, seed, mutation));
    Ok(true)
}

/// `cargo sim bench`: every configuration (or those matching `only`) over `seeds`.
fn bench(
    dir: &Path,
    seeds: &[u64],
    json: bool,
    only: Option<&str>,
    jobs: usize,
) -> Result<bool, String> {
    use standby_sim::bench::{configs, run_config};
    let configs: Vec<_> = (configs(dir)?.into_iter())
        .filter(|c| only.is_none_or(|o| c.name.contains(o)))
        .collect();
    if configs.is_empty() {
        return Err(format!(
            "no bench configuration matches `{}`",
            only.unwrap_or("")
        ));
    }
    let progress = progress_bar((configs.len() * seeds.len()) as u64, json);
    let failed = AtomicU64::new(0);
    let mut results = Vec::new();
    for config in &configs {
        progress.set_message(config.name.clone());
        let done = |run: &SeedRun| {
            if !run.verdict.violations.is_empty() {
                let n = failed.fetch_add(1, Ordering::Relaxed) + 1;
                progress.set_prefix(format!("{n} failed"));
            }
            progress.inc(1);
        };
        results.push(run_config(config, seeds, jobs, &done));
    }
    progress.finish_and_clear();
    let failures: usize = results.iter().map(|r| r.failures.len()).sum();
    if json {
        let doc =
            serde_json::json!({"jobs": jobs, "configurations": results, "violations": failures});
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
    } else {
        print_bench(&results);
    }
    Ok(failures == 0)
}

fn print_bench(results: &[standby_sim::bench::BenchResult]) {
    use standby_sim::bench::Kind;
    let ms = |p: standby_sim::campaign::Percentiles| format!("{}/{}/{}", p.p50, p.p99, p.max);
    println!(
        "{:<34} {:>5} {:>5} {:>5} {:>15} {:>10} {:>12} {:>11} {:>11} {:>7} {:>8} {:>9}",
        "configuration",
        "seeds",
        "fail-",
        "false",
        "detect|takeover",
        "p99 / max",
        "RTO ms",
        "RPO writes",
        "RPO span",
        "acked",
        "speed",
        "seeds/s"
    );
    println!(
        "{:<34} {:>5} {:>5} {:>5} {:>15} {:>10} {:>12} {:>11} {:>11} {:>7} {:>8} {:>9}",
        "",
        "",
        "overs",
        "",
        "p50/p99/max",
        "of t+i|ttl+i",
        "p50/p99",
        "p50/p99/max",
        "max ms",
        "",
        "per job",
        "per job"
    );
    for r in results {
        // The latency column: detection, or the takeover of a leader loss.
        let columns = |latency, p99: f64, max: f64| {
            (
                ms(latency),
                format!("{p99:.2}/{max:.2}"),
                format!("{}/{}", r.rto_ms.p50, r.rto_ms.p99),
                ms(r.rpo_writes),
                r.rpo_span_ms.max.to_string(),
            )
        };
        let (detection, ratio, rto, rpo, span) = match r.kind {
            Kind::Detection => {
                columns(r.detection_ms, r.detection_p99_ratio, r.detection_max_ratio)
            }
            Kind::FalseFailovers => Default::default(),
            Kind::LeaderLoss => columns(r.takeover_ms, r.takeover_p99_ratio, r.takeover_max_ratio),
        };
        println!(
            "{:<34} {:>5} {:>5} {:>5} {:>15} {:>10} {:>12} {:>11} {:>11} {:>7} {:>7.0}x {:>9.1}",
            r.name,
            r.seeds,
            r.failovers,
            r.false_failovers,
            detection,
            ratio,
            rto,
            rpo,
            span,
            format!("{:.1}%", 100.0 * r.availability.acknowledged_share()),
            r.speed_per_job,
            r.seeds_per_s_per_job
        );
    }
    for r in results {
        for f in &r.failures {
            println!(
                "\nFAILED {} seed {}: {}\n  replay: {}",
                r.name, f.seed, f.message, f.replay
            );
        }
    }
}
