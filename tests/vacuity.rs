//! The vacuity guard: a declared fault that changed nothing fails the run, a required effect
//! that never showed fails it, and the effects and transitions a run shows are recorded.

use standby::controller::Mutation;
use standby_sim::campaign::run_seed;
use standby_sim::scenario::Scenario;
use std::path::Path;

const BASE: &str = r#"
duration_s = 25

[topology]
nodes_per_cluster = 3
users = 4
"#;

fn parse(extra: &str) -> Scenario {
    Scenario::parse(
        Path::new("scenarios/vacuity.toml"),
        &format!("{BASE}{extra}"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn vacuity(scenario: &Scenario) -> Vec<String> {
    let run = run_seed(scenario, 1, Mutation::None);
    (run.verdict.violations.iter())
        .filter(|v| v.invariant == "vacuity")
        .map(|v| v.message.clone())
        .collect()
}

#[test]
fn a_partition_that_cuts_nothing_in_use_is_vacuous() {
    // Users are cut from the config center while nothing is published: the cut has no effect.
    let scenario = parse(
        r#"
[[faults]]
kind = "partition"
from = ["users"]
to = ["config-center"]
at_ms = 5000
duration_ms = 5000
"#,
    );
    let found = vacuity(&scenario);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("fault #0"), "{}", found[0]);
}

#[test]
fn a_crash_that_the_system_notices_is_not_vacuous() {
    let scenario = parse(
        r#"
[[faults]]
kind = "crash"
nodes = ["a/0"]
at_ms = 5000
duration_ms = 5000
"#,
    );
    assert_eq!(vacuity(&scenario), Vec::<String>::new());
    let run = run_seed(&scenario, 1, Mutation::None);
    assert!(run.verdict.effects.run.contains("node-unanswering"));
    assert!(run
        .verdict
        .effects
        .transitions
        .get("node-declared-down")
        .is_some_and(|&n| n >= 1));
}

#[test]
fn a_required_effect_that_never_shows_fails_the_run() {
    let scenario = parse("\n[expect]\neffects = [\"fenced-write-rejected\"]\n");
    let found = vacuity(&scenario);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("fenced-write-rejected"));
}

#[test]
fn the_isolated_primary_shows_fenced_writes_rejected() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/controller-isolated-from-primary.toml");
    let scenario = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let run = run_seed(&scenario, 1, Mutation::None);
    for effect in [
        "fenced-write-rejected",
        "quarantined-writes",
        "resync-moved-data",
        "node-unanswering",
    ] {
        assert!(
            run.verdict.effects.run.contains(effect),
            "missing {effect}: {:?}",
            run.verdict.effects.run
        );
    }
}

#[test]
fn an_unknown_effect_name_is_refused() {
    let error = Scenario::parse(
        Path::new("scenarios/bad.toml"),
        &format!("{BASE}\n[expect]\neffects = [\"magic\"]\n"),
    )
    .expect_err("unknown effect");
    let message = error.to_string();
    assert!(
        message.contains("expect.effects") && message.contains("magic"),
        "{message}"
    );
}
