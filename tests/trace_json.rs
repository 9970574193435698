//! The JSON-lines trace (`cargo sim replay ... --trace out.jsonl`) round-trips through its
//! serde types: every event of a run with faults, alarms, a failover and quarantines reads
//! back equal, and malformed lines are errors, not panics.

use standby::controller::Mutation;
use standby_sim::scenario::Scenario;
use standby_sim::trace::{self, Event};
use standby_sim::world::{run, run_with};
use std::path::Path;

fn scenario(name: &str) -> Scenario {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../scenarios/{name}.toml"));
    Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_failover_trace_round_trips_through_json_lines() {
    // With messages, as `replay --verbose` records them, so every variant is covered.
    let scenario = scenario("replication-link-cut-then-primary-crash");
    let out = run_with(&scenario, 3, Mutation::None, true);
    let text = trace::to_jsonl(&out.events);
    assert_eq!(text.lines().count(), out.events.len());
    let back = trace::from_jsonl(&text).expect("the trace reads back");
    assert_eq!(back, out.events);
    assert_eq!(trace::hash(&back), trace::hash(&out.events));
    // The run is a real failover story: the round trip covered every kind of event that
    // matters to a reader.
    let has = |f: fn(&Event) -> bool| back.iter().any(|(_, e)| f(e));
    assert!(has(|e| matches!(e, Event::Fault { .. })));
    assert!(has(|e| matches!(e, Event::Alarm(_))));
    assert!(has(|e| matches!(e, Event::Controller(_))));
    assert!(has(|e| matches!(e, Event::Ok { .. })));
    assert!(has(|e| matches!(e, Event::Node { .. })));
    assert!(has(|e| matches!(e, Event::Heartbeat { .. })));
    assert!(has(|e| matches!(e, Event::Report { .. })));
}

#[test]
fn each_line_is_one_json_object_with_time_and_event() {
    let out = run(&scenario("steady-state"), 1, Mutation::None);
    let text = trace::to_jsonl(&out.events[..50.min(out.events.len())]);
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
        assert!(value["time"].is_u64(), "{line}");
        assert!(
            value["event"].is_object() || value["event"].is_string(),
            "{line}"
        );
    }
}

#[test]
fn malformed_lines_are_errors() {
    for bad in [
        "{",
        "{\"time\": -1, \"event\": {}}",
        "{\"time\": 5, \"event\": {\"Meteor\": {}}}",
        "[]",
    ] {
        assert!(trace::from_jsonl(bad).is_err(), "accepted {bad:?}");
    }
}
