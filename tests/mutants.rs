//! The checkers are proven, not assumed: every deliberately broken controller or node is
//! caught by the invariant it must break, within a small seed budget (`STANDBY_MUTANT_SEEDS`,
//! default 4; `cargo sim mutants` runs the same hunt from the command line).

use standby_sim::campaign::{hunt, scenario_files, seeds, MUTANTS};
use standby_sim::check::CHECKERS;
use standby_sim::scenario::Scenario;
use std::path::{Path, PathBuf};

fn scenarios() -> Vec<(PathBuf, Scenario)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files = scenario_files(&dir).expect("scenarios directory");
    // Replay commands are given relative to the workspace root, where `cargo sim` runs.
    (files.iter())
        .map(|f| {
            let scenario = Scenario::load(f).unwrap_or_else(|e| panic!("{e}"));
            (
                Path::new("scenarios").join(f.file_name().expect("name")),
                scenario,
            )
        })
        .collect()
}

#[test]
fn every_mutant_is_caught_by_the_invariant_it_breaks() {
    let budget = std::env::var("STANDBY_MUTANT_SEEDS").map_or(4, |v| v.parse().expect("a number"));
    let scenarios = scenarios();
    let mut survivors = Vec::new();
    for spec in &MUTANTS {
        assert!(
            scenarios.iter().any(|(_, s)| s.name == spec.scenario),
            "{}: its scenario {} is missing",
            spec.mutation.name(),
            spec.scenario
        );
        // Only the mutant's own scenario: a catch elsewhere would be luck, not design.
        let own: Vec<_> = scenarios
            .iter()
            .filter(|(_, s)| s.name == spec.scenario)
            .cloned()
            .collect();
        let report = hunt(spec, &own, &seeds(budget, None), 2, &[]);
        if !report.caught {
            survivors.push(format!(
                "{} survived {} seeds of {} (must be caught by {})",
                report.mutant, report.runs, spec.scenario, report.invariant
            ));
        }
    }
    assert!(survivors.is_empty(), "{}", survivors.join("\n"));
}

#[test]
fn every_checker_has_a_mutant_to_catch() {
    let checkers = CHECKERS;
    for checker in checkers {
        assert!(
            MUTANTS.iter().any(|m| m.invariant == checker),
            "no mutant proves the {checker} checker"
        );
    }
    for spec in &MUTANTS {
        assert!(
            checkers.contains(&spec.invariant),
            "{}: unknown checker {}",
            spec.mutation.name(),
            spec.invariant
        );
    }
}
