//! The regression scenarios in `scenarios/regressions/`: failures shrunk to a minimal case by
//! `cargo sim shrink`. Each must load; with the correct controller it must break nothing at
//! its recorded seed and at seeds 1-4; and when it came from a mutant, that mutant must still
//! break the recorded invariant at the recorded seed. Also: shrinking a mutant's failure in
//! process gives a small scenario that still breaks the same invariant.

use standby::controller::Mutation;
use standby_sim::campaign::{replay_command, run_seed, run_seeds};
use standby_sim::check::CHECKERS;
use standby_sim::scenario::{Fault, FaultKind, Scenario};
use standby_sim::shrink::{round_trip, shrink_within, to_file_text, CORRECT_SEEDS};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.toml` in `scenarios/regressions/`, sorted.
fn regression_files() -> Vec<PathBuf> {
    let dir = root().join("scenarios/regressions");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_regression_passes_with_the_correct_controller_and_fails_with_its_mutant() {
    let files = regression_files();
    assert!(
        !files.is_empty(),
        "scenarios/regressions/ holds no scenario: this test would prove nothing"
    );
    let mut problems = Vec::new();
    for file in &files {
        let scenario = Scenario::load(file).unwrap_or_else(|e| panic!("{e}"));
        let name = scenario.name.clone();
        // Replay commands are given relative to the workspace root, where `cargo sim` runs.
        let shown = Path::new("scenarios/regressions").join(file.file_name().expect("name"));
        let stem = file.file_stem().expect("stem").to_string_lossy();
        if name != stem {
            problems.push(format!(
                "{}: its name is {name}, not {stem}",
                shown.display()
            ));
        }
        let Some(regression) = scenario.regression.clone() else {
            problems.push(format!("{}: no [regression] table", shown.display()));
            continue;
        };
        let known =
            CHECKERS.contains(&regression.invariant.as_str()) || regression.invariant == "panic";
        if !known {
            problems.push(format!(
                "{name}: unknown invariant {}",
                regression.invariant
            ));
        }
        let mut seeds = vec![regression.seed];
        seeds.extend(CORRECT_SEEDS.iter().filter(|&&s| s != regression.seed));
        for run in run_seeds(&scenario, &seeds, Mutation::None, 2, &|_| {}) {
            for v in &run.verdict.violations {
                problems.push(format!(
                    "{name} seed {} (correct controller): [{}] {}\n  replay: {}",
                    run.seed,
                    v.invariant,
                    v.message,
                    replay_command(&shown, run.seed, Mutation::None)
                ));
            }
        }
        let Some(mutant) = &regression.mutant else {
            continue;
        };
        let Some(mutation) = Mutation::from_name(mutant) else {
            problems.push(format!("{name}: unknown mutant {mutant}"));
            continue;
        };
        let seed = regression.mutant_seed.unwrap_or(regression.seed);
        let run = run_seed(&scenario, seed, mutation);
        let broken: Vec<&str> = run.verdict.violations.iter().map(|v| v.invariant).collect();
        if !broken.contains(&regression.invariant.as_str()) {
            problems.push(format!(
                "{name} seed {seed} with mutant {mutant} no longer breaks {} (it breaks: {broken:?})\n  replay: {}",
                regression.invariant,
                replay_command(&shown, seed, mutation)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} regression scenarios failed:\n{}",
        problems.len(),
        files.len(),
        problems.join("\n")
    );
}

/// A mutant's failure padded with three faults that have nothing to do with it shrinks back
/// to at most three faults (here: to the one crash that matters), still breaking the same
/// invariant at the same seed, while the correct controller passes the shrunk scenario.
#[test]
fn shrinking_a_mutant_failure_keeps_its_invariant_with_at_most_three_faults() {
    let file = root().join("scenarios/primary-majority-crash.toml");
    let mut scenario = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    // Small to start with, so that the test stays fast.
    scenario.duration_s = 32;
    scenario.topology.nodes_per_cluster = 3;
    scenario.topology.users = 2;
    scenario.faults[0].kind = FaultKind::Crash {
        nodes: vec!["a/0".into(), "a/1".into()],
    };
    // At a fixed time, so that the story does not hang on how the seed draws it.
    (scenario.faults[0].at_ms, scenario.faults[0].window_ms) = (Some(10_000), None);
    let at = |at_ms, duration_ms, kind| Fault {
        kind,
        at_ms: Some(at_ms),
        window_ms: None,
        after: None,
        duration_ms: Some(duration_ms),
    };
    scenario.faults.extend([
        at(
            2_000,
            1_000,
            FaultKind::Latency {
                min_ms: 5,
                max_ms: 10,
            },
        ),
        at(3_000, 1_000, FaultKind::PacketLoss { percent: 1.0 }),
        at(4_000, 500, FaultKind::LinkCut { shards: vec![0] }),
    ]);
    let (seed, mutation, invariant) = (1, Mutation::NoResync, "convergence");
    let before = run_seed(&scenario, seed, mutation);
    assert!(
        before
            .verdict
            .violations
            .iter()
            .any(|v| v.invariant == invariant),
        "the padded scenario must fail first: {:?}",
        before.verdict.violations
    );

    let shrunk = shrink_within(&scenario, seed, mutation, invariant, 40);
    assert!(shrunk.reproduced);
    assert!(shrunk.runs <= 40, "{} runs", shrunk.runs);
    let small = &shrunk.scenario;
    assert!(
        small.faults.len() <= 3,
        "{} faults left; steps: {:?}",
        small.faults.len(),
        shrunk.steps
    );
    assert!(small.faults.len() < scenario.faults.len());
    let after = run_seed(small, seed, mutation);
    assert!(
        after
            .verdict
            .violations
            .iter()
            .any(|v| v.invariant == invariant),
        "the shrunk scenario no longer breaks {invariant}: {:?}",
        after.verdict.violations
    );
    let correct = run_seed(small, seed, Mutation::None);
    assert!(
        correct.verdict.violations.is_empty(),
        "the correct controller fails the shrunk scenario: {:?}",
        correct.verdict.violations
    );
    // Written out with its story, it loads as the same scenario.
    let text = to_file_text(small, "shrunk in a test");
    assert!(text.starts_with("# shrunk in a test\n"));
    let back = Scenario::parse(Path::new("shrunk.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&back, small);
    assert_eq!(round_trip(small).as_ref(), Ok(small));
}
