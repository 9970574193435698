//! Determinism is checked, not assumed: `--check-determinism` runs each seed twice and compares
//! the traces; two runs of a seed agree, and a deliberately nondeterministic harness is caught
//! with the first differing event named.

use standby::controller::Mutation;
use standby_sim::campaign::run_seed_with;
use standby_sim::scenario::Scenario;
use standby_sim::world::make_this_thread_nondeterministic;
use std::path::Path;

fn scenario(name: &str) -> Scenario {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../scenarios/{name}.toml"));
    Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"))
}

fn determinism_violations(scenario: &Scenario, seed: u64) -> Vec<String> {
    let run = run_seed_with(scenario, seed, Mutation::None, true);
    (run.verdict.violations.iter())
        .filter(|v| v.invariant == "determinism")
        .map(|v| v.message.clone())
        .collect()
}

#[test]
fn two_runs_of_a_seed_agree() {
    for (name, seed) in [
        ("controller-crash-during-failover", 3),
        ("lossy-network", 5),
        ("clock-drift", 2),
    ] {
        let found = determinism_violations(&scenario(name), seed);
        assert!(found.is_empty(), "{name} seed {seed}: {found:?}");
    }
}

#[test]
fn a_nondeterministic_harness_is_caught() {
    make_this_thread_nondeterministic(true);
    let found = determinism_violations(&scenario("primary-majority-crash"), 1);
    make_this_thread_nondeterministic(false);
    assert_eq!(
        found.len(),
        1,
        "the nondeterministic harness went unnoticed"
    );
    assert!(found[0].contains("differ at event #"), "{}", found[0]);
}
