//! `cargo sim`: the simulation campaign runner.

use clap::{Parser, Subcommand};
use standby::controller::Mutation;
use standby_sim::campaign::{
    replay_command, run_scenario, scenario_files, seeds, ScenarioSummary, DEFAULT_SEEDS,
};
use standby_sim::check::check;
use standby_sim::scenario::Scenario;
use standby_sim::trace;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Deterministic simulation of the standby controller: run scenarios over seeds, check every
/// invariant, replay a failing seed. With no command: every scenario in `scenarios/` over the
/// default seeds, with a summary table.
#[derive(Parser, Debug)]
#[command(name = "cargo sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
        /// Run a deliberately broken controller (to see the checkers catch it).
        #[arg(long, value_enum, default_value = "none")]
        mutant: MutantArg,
    },
    /// Replay one seed of one scenario: its timeline, verdict and trace hash.
    Replay {
        /// The scenario file.
        file: PathBuf,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Replay with a deliberately broken controller.
        #[arg(long, value_enum, default_value = "none")]
        mutant: MutantArg,
        /// Show every write, append and acknowledgement too.
        #[arg(long)]
        verbose: bool,
    },
}

/// The deliberately broken controllers.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum MutantArg {
    /// The correct controller.
    None,
    /// Fencing switched off.
    NoFencing,
}

impl From<MutantArg> for Mutation {
    fn from(arg: MutantArg) -> Mutation {
        match arg {
            MutantArg::None => Mutation::None,
            MutantArg::NoFencing => Mutation::NoFencing,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => campaign(
            Path::new("scenarios"),
            &seeds(DEFAULT_SEEDS, None),
            false,
            Mutation::None,
        ),
        Some(Command::Run {
            path,
            seeds: n,
            seed,
            json,
            mutant,
        }) => campaign(&path, &seeds(n, seed), json, mutant.into()),
        Some(Command::Replay {
            file,
            seed,
            mutant,
            verbose,
        }) => replay(&file, seed, mutant.into(), verbose),
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

fn campaign(path: &Path, seeds: &[u64], json: bool, mutation: Mutation) -> Result<bool, String> {
    let files = scenario_files(path).map_err(|e| e.to_string())?;
    if files.is_empty() {
        return Err(format!("{}: no scenario files (*.toml)", path.display()));
    }
    let scenarios = files
        .iter()
        .map(|f| Scenario::load(f).map(|s| (f.clone(), s)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut summaries = Vec::new();
    for (file, scenario) in &scenarios {
        if !json {
            eprint!("{:<40} {} seeds ...", scenario.name, seeds.len());
        }
        let summary = run_scenario(file, scenario, seeds, mutation);
        if !json {
            eprintln!(" {}/{} passed", summary.passed, summary.seeds);
        }
        summaries.push(summary);
    }
    let violations: usize = summaries.iter().map(|s| s.failures.len()).sum();
    if json {
        let total: u64 = summaries.iter().map(|s| s.seeds).sum();
        let doc =
            serde_json::json!({"seeds": total, "violations": violations, "scenarios": summaries});
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
    } else {
        print_table(&summaries);
    }
    Ok(violations == 0)
}

fn print_table(summaries: &[ScenarioSummary]) {
    println!(
        "{:<40} {:>5} {:>6} {:>9} {:>5} {:>22} {:>8} {:>7}",
        "scenario",
        "seeds",
        "passed",
        "failovers",
        "false",
        "detection p50/p99/max",
        "RTO p99",
        "RPO max"
    );
    for s in summaries {
        let d = s.detection_ms;
        println!(
            "{:<40} {:>5} {:>6} {:>9} {:>5} {:>22} {:>8} {:>7}",
            s.name,
            s.seeds,
            s.passed,
            s.failovers,
            s.false_failovers,
            format!("{}/{}/{} ms", d.p50, d.p99, d.max),
            format!("{} ms", s.rto_ms.p99),
            s.rpo_writes_max
        );
    }
    for s in summaries {
        for f in &s.failures {
            println!(
                "\nFAILED {} seed {}: [{}] {}\n  replay: {}",
                s.name, f.seed, f.invariant, f.message, f.replay
            );
        }
    }
}

fn replay(file: &Path, seed: u64, mutation: Mutation, verbose: bool) -> Result<bool, String> {
    let scenario = Scenario::load(file).map_err(|e| e.to_string())?;
    let out = standby_sim::world::run(&scenario, seed, mutation);
    let verdict = check(&scenario, &out);
    let mut text = trace::timeline(&out.events, scenario.topology.users, verbose);
    for v in &verdict.violations {
        text += &format!("VIOLATION [{}] {}\n", v.invariant, v.message);
    }
    if verdict.violations.is_empty() {
        text += "verdict: all invariants hold\n";
    } else {
        text += &format!("replay: {}\n", replay_command(file, seed, mutation));
    }
    text += &format!("trace-hash: {:016x}\n", trace::hash(&out.events));
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(verdict.violations.is_empty())
}
