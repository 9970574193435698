//! The seeded scenario tests: every scenario in `scenarios/` over the default seeds (16;
//! `STANDBY_SEEDS=n` for seeds 1..=n, `STANDBY_SEED=s` for one seed), every invariant checked.
//! A failure prints the scenario, the seed, the violated invariant with its evidence, and the
//! one command that replays it.

use standby::controller::Mutation;
use standby_sim::campaign::{run_scenario, scenario_files, seeds, DEFAULT_SEEDS};
use standby_sim::scenario::Scenario;
use std::path::{Path, PathBuf};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn test_seeds() -> Vec<u64> {
    let var = |name: &str| {
        std::env::var(name).ok().map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
    };
    seeds(
        var("STANDBY_SEEDS").unwrap_or(DEFAULT_SEEDS),
        var("STANDBY_SEED"),
    )
}

/// Runs `name` over the test seeds with `mutation`; returns the failures, each with its
/// replay command.
fn run(name: &str, mutation: Mutation) -> (u64, Vec<String>) {
    let file = scenarios_dir().join(format!("{name}.toml"));
    let scenario = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    // Replay commands are given relative to the workspace root, where `cargo sim` runs.
    let shown = Path::new("scenarios").join(format!("{name}.toml"));
    let summary = run_scenario(&shown, &scenario, &test_seeds(), mutation);
    let failures = (summary.failures.iter())
        .map(|f| {
            format!(
                "{name} seed {}: [{}] {}\n  replay: {}",
                f.seed, f.invariant, f.message, f.replay
            )
        })
        .collect();
    (summary.seeds, failures)
}

fn assert_holds(name: &str) {
    let (runs, failures) = run(name, Mutation::None);
    assert!(runs > 0, "{name}: no seed ran");
    assert!(
        failures.is_empty(),
        "{} of {runs} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

macro_rules! scenario_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                assert_holds($name);
            }
        )*

        const TESTED: &[&str] = &[$($name),*];
    };
}

scenario_tests! {
    primary_majority_crash_fails_over_once => "primary-majority-crash",
}

#[test]
fn every_scenario_file_has_a_test() {
    let files = scenario_files(&scenarios_dir()).expect("scenarios directory");
    let names: Vec<String> = (files.iter())
        .map(|f| f.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    let untested: Vec<&String> = names
        .iter()
        .filter(|n| !TESTED.contains(&n.as_str()))
        .collect();
    assert!(
        untested.is_empty(),
        "scenarios without a test in tests/scenarios.rs: {untested:?}"
    );
}
