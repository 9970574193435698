//! Scenario files: every shipped one loads, and malformed ones are refused with a message that
//! names the file, the line and the field, never a panic.

use standby_sim::campaign::scenario_files;
use standby_sim::scenario::Scenario;
use std::path::Path;

const GOOD: &str = r#"
duration_s = 30

[topology]
nodes_per_cluster = 5
users = 10

[[faults]]
kind = "crash"
nodes = ["a/0", "a/1", "a/2"]
at_ms = 10000
duration_ms = 5000
"#;

/// Parses `text` as `bad.toml` and returns the error's message.
fn refused(text: &str) -> String {
    match Scenario::parse(Path::new("scenarios/bad.toml"), text) {
        Ok(scenario) => panic!("accepted a malformed scenario: {scenario:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_names(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "message {message:?} does not name {part:?}"
        );
    }
}

#[test]
fn the_reference_scenario_is_accepted() {
    let scenario = Scenario::parse(Path::new("scenarios/good.toml"), GOOD).expect("valid");
    assert_eq!(scenario.name, "good");
    assert_eq!(scenario.faults.len(), 1);
}

#[test]
fn every_shipped_scenario_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files = scenario_files(&dir).expect("scenarios directory");
    assert!(files.len() >= 16, "only {} scenarios", files.len());
    for file in files {
        Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn an_unknown_top_level_field_is_refused_with_file_line_and_field() {
    let message = refused(&format!("colour = \"blue\"\n{GOOD}"));
    assert_names(&message, &["scenarios/bad.toml:1:", "colour"]);
}

#[test]
fn a_misspelt_controller_parameter_is_refused() {
    let text = GOOD.replace(
        "[topology]",
        "[controller]\nheartbeat_intreval_ms = 100\n\n[topology]",
    );
    let message = refused(&text);
    assert_names(
        &message,
        &["scenarios/bad.toml:5:", "heartbeat_intreval_ms"],
    );
}

#[test]
fn an_unknown_fault_field_is_refused() {
    let message = refused(&GOOD.replace("at_ms = 10000", "at_ms = 10000\nseverity = 3"));
    assert_names(&message, &["bad.toml", "severity"]);
}

#[test]
fn a_wrong_type_is_refused_naming_the_field() {
    let message = refused(&GOOD.replace("duration_s = 30", "duration_s = \"thirty\""));
    assert_names(&message, &["scenarios/bad.toml:2:", "duration_s", "string"]);
}

#[test]
fn a_negative_duration_is_refused() {
    let message = refused(&GOOD.replace("duration_s = 30", "duration_s = -30"));
    assert_names(&message, &["scenarios/bad.toml:2:", "duration_s"]);
    let message = refused(&GOOD.replace("duration_ms = 5000", "duration_ms = -5000"));
    assert_names(&message, &["bad.toml:12:", "duration_ms"]);
}

#[test]
fn a_zero_duration_is_refused() {
    let message = refused(&GOOD.replace("duration_s = 30", "duration_s = 0"));
    assert_names(&message, &["bad.toml", "duration_s"]);
}

#[test]
fn a_threshold_outside_zero_one_is_refused() {
    for threshold in ["0.0", "1.0", "1.5", "-0.5", "nan"] {
        let text = GOOD.replace(
            "[topology]",
            &format!("[controller]\nratio_threshold = {threshold}\n\n[topology]"),
        );
        let message = refused(&text);
        assert_names(&message, &["bad.toml", "controller.ratio_threshold"]);
    }
}

#[test]
fn an_unknown_fault_kind_is_refused() {
    let message = refused(&GOOD.replace("kind = \"crash\"", "kind = \"meteor\""));
    assert_names(&message, &["bad.toml", "meteor"]);
}

#[test]
fn an_unknown_node_is_refused() {
    let message = refused(&GOOD.replace("\"a/2\"", "\"c/2\""));
    assert_names(&message, &["bad.toml", "faults[0]", "c/2"]);
    let message = refused(&GOOD.replace("\"a/2\"", "\"a/9\""));
    assert_names(&message, &["bad.toml", "faults[0]", "a/9"]);
}

#[test]
fn a_fault_after_the_end_is_refused() {
    let message = refused(&GOOD.replace("at_ms = 10000", "at_ms = 40000"));
    assert_names(&message, &["bad.toml", "faults[0].at_ms"]);
}

#[test]
fn a_cluster_of_65_nodes_is_refused() {
    let message = refused(&GOOD.replace("nodes_per_cluster = 5", "nodes_per_cluster = 65"));
    assert_names(&message, &["bad.toml", "topology.nodes_per_cluster"]);
}

#[test]
fn clock_drift_beyond_the_controllers_bound_is_refused() {
    let message = refused(&GOOD.replace("users = 10", "users = 10\nclock_drift_ppm = 50000"));
    assert_names(&message, &["bad.toml", "topology.clock_drift_ppm"]);
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let e = Scenario::load(Path::new("scenarios/does-not-exist.toml")).expect_err("missing");
    assert_names(&e.to_string(), &["scenarios/does-not-exist.toml"]);
}

#[test]
fn a_crash_of_something_that_is_not_a_node_is_refused() {
    let message = refused(&GOOD.replace(
        "nodes = [\"a/0\", \"a/1\", \"a/2\"]",
        "nodes = [\"controller\"]",
    ));
    assert_names(&message, &["bad.toml", "faults[0].nodes", "controller"]);
}

#[test]
fn an_unknown_partition_party_is_refused_naming_its_side() {
    let text = GOOD.replace(
        "kind = \"crash\"\nnodes = [\"a/0\", \"a/1\", \"a/2\"]",
        "kind = \"partition\"\nfrom = [\"a\"]\nto = [\"moon\"]",
    );
    let message = refused(&text);
    assert_names(&message, &["bad.toml", "faults[0].to", "moon"]);
}

#[test]
fn a_held_partition_that_is_not_between_replicas_and_etcd_is_refused() {
    let held = |from: &str, to: &str| {
        GOOD.replace(
            "kind = \"crash\"\nnodes = [\"a/0\", \"a/1\", \"a/2\"]",
            &format!("kind = \"partition\"\nfrom = {from}\nto = {to}\nheld = true"),
        )
    };
    for (from, to) in [
        (r#"["a"]"#, r#"["b"]"#),
        (r#"["controller/leader"]"#, r#"["etcd", "a"]"#),
        (r#"["users"]"#, r#"["etcd"]"#),
    ] {
        let message = refused(&held(from, to));
        assert_names(&message, &["bad.toml", "faults[0].held", "only `etcd`"]);
    }
    for (from, to) in [
        (r#"["controller/leader"]"#, r#"["etcd"]"#),
        (r#"["etcd"]"#, r#"["controller"]"#),
    ] {
        let text = held(from, to);
        let parsed = Scenario::parse(Path::new("scenarios/good.toml"), &text);
        assert!(parsed.is_ok(), "{from} <-> {to} refused: {parsed:?}");
    }
}

/// `GOOD`'s fault started by a controller transition instead of at a fixed time.
fn with_trigger(trigger: &str) -> String {
    GOOD.replace("at_ms = 10000", &format!("after = {{ {trigger} }}"))
}

#[test]
fn a_fault_timed_by_a_transition_is_accepted() {
    let text = with_trigger(r#"transition = "backup-rejoining", delay_ms = 20, before_ms = 25000"#);
    let scenario = Scenario::parse(Path::new("scenarios/good.toml"), &text).expect("valid");
    let trigger = scenario.faults[0].after.clone().expect("a trigger");
    assert_eq!(
        (trigger.transition.as_str(), trigger.nth, trigger.delay_ms),
        ("backup-rejoining", 1, 20)
    );
}

#[test]
fn a_fault_timed_by_an_unknown_transition_is_refused() {
    let message = refused(&with_trigger(r#"transition = "rejoin", before_ms = 25000"#));
    assert_names(
        &message,
        &[
            "scenarios/bad.toml",
            "faults[0].after.transition",
            "unknown transition `rejoin`",
            "backup-rejoining",
        ],
    );
}

#[test]
fn a_trigger_without_a_latest_start_or_past_the_end_is_refused() {
    let missing = refused(&with_trigger(r#"transition = "stop-point""#));
    assert_names(&missing, &["scenarios/bad.toml", "before_ms"]);
    let late = refused(&with_trigger(
        r#"transition = "stop-point", before_ms = 31000"#,
    ));
    assert_names(&late, &["faults[0].after.before_ms", "after the run's end"]);
    let zeroth = refused(&with_trigger(
        r#"transition = "stop-point", nth = 0, before_ms = 20000"#,
    ));
    assert_names(&zeroth, &["faults[0].after.nth", "counts from 1"]);
}

#[test]
fn a_fault_with_a_fixed_start_and_a_trigger_is_refused() {
    let text = GOOD.replace(
        "at_ms = 10000",
        "at_ms = 10000\nafter = { transition = \"stop-point\", before_ms = 20000 }",
    );
    let message = refused(&text);
    assert_names(
        &message,
        &[
            "scenarios/bad.toml",
            "faults[0]",
            "exactly one of at_ms, window_ms and after",
        ],
    );
}

#[test]
fn an_operators_command_that_heals_is_refused_naming_the_field() {
    let approve = "[[faults]]\nkind = \"approve\"\nat_ms = 20000\nduration_ms = 5000\n";
    let message = refused(&format!("{GOOD}\n{approve}"));
    assert_names(
        &message,
        &["scenarios/bad.toml", "duration_ms", "does not heal"],
    );
}
