//! Swarm testing (`cargo sim swarm`): one seed derives every option of its run. The
//! generator is deterministic, varies every option, makes only valid scenarios whose TOML is
//! a scenario file, and a small swarm campaign runs clean.

use standby::controller::Mutation;
use standby::service::node::ReplicationMode;
use standby_sim::campaign::run_seed;
use standby_sim::check::CHECKERS;
use standby_sim::scenario::{Expect, Fault, FaultKind, Scenario};
use standby_sim::swarm::{
    self, failed, phase, run_swarm, swarm_replay_command, Phase, FAULT_KINDS, FAULT_START_MS,
    QUIET_MS, TRIGGERED_FAULT_MAX_MS, TRIGGER_GRACE_MS, TRIGGER_TRANSITIONS,
};
use std::collections::BTreeSet;
use std::path::Path;

fn kind_name(kind: &FaultKind) -> &'static str {
    match kind {
        FaultKind::Crash { .. } => "crash",
        FaultKind::Wipe { .. } => "wipe",
        FaultKind::Partition { .. } => "partition",
        FaultKind::LinkCut { .. } => "link-cut",
        FaultKind::PacketLoss { .. } => "packet-loss",
        FaultKind::Latency { .. } => "latency",
        FaultKind::ControllerCrash => "controller-crash",
        FaultKind::ReplicaCrash { .. } => "replica-crash",
        FaultKind::ReplicaPause { .. } => "replica-pause",
        FaultKind::EtcdPause => "etcd-pause",
        FaultKind::Approve => "approve",
    }
}

/// Whether the swarm drew `f` as the control plane's fault (see `swarm::generate`).
fn of_control_plane(f: &Fault) -> bool {
    match &f.kind {
        FaultKind::ReplicaCrash { .. } | FaultKind::ReplicaPause { .. } => true,
        FaultKind::EtcdPause => true,
        // A replica cut from etcd, or one replica cut from anything (the swarm's other
        // partitions name every replica, `controller`).
        FaultKind::Partition { from, to, .. } => {
            to.iter().any(|p| p == "etcd") || from.iter().any(|p| p.starts_with("controller/"))
        }
        _ => false,
    }
}

#[test]
fn the_same_seed_gives_the_same_scenario() {
    for seed in [1, 2, 42, 1000, u64::MAX] {
        assert_eq!(swarm::scenario(seed), swarm::scenario(seed), "seed {seed}");
        assert_eq!(swarm::generate(seed), swarm::generate(seed), "seed {seed}");
        assert_eq!(
            swarm::to_toml(&swarm::scenario(seed)),
            swarm::to_toml(&swarm::scenario(seed))
        );
    }
    assert_eq!(swarm::scenario(7).name, "swarm-7");
}

#[test]
fn different_seeds_give_different_scenarios() {
    let mut seen = BTreeSet::new();
    for seed in 1..=200 {
        let mut scenario = swarm::scenario(seed);
        scenario.name.clear(); // The name alone would make them differ.
        assert!(
            seen.insert(swarm::to_toml(&scenario)),
            "seed {seed} repeats an earlier seed's scenario"
        );
    }
}

#[test]
fn every_option_varies_over_200_seeds() {
    let scenarios: Vec<Scenario> = (1..=200).map(swarm::scenario).collect();
    let distinct =
        |f: &dyn Fn(&Scenario) -> u64| -> BTreeSet<u64> { scenarios.iter().map(f).collect() };
    let all = |lo: u64, hi: u64| (lo..=hi).collect::<BTreeSet<u64>>();

    assert_eq!(
        distinct(&|s| s.topology.nodes_per_cluster as u64),
        all(1, 7)
    );
    assert!(distinct(&|s| s.topology.users as u64).len() >= 15);
    assert!(distinct(&|s| s.topology.users as u64).is_subset(&all(1, 20)));
    let interval = distinct(&|s| s.controller.heartbeat_interval_ms);
    assert!(interval.len() >= 50 && interval.is_subset(&all(50, 200)));
    assert!(distinct(&|s| s.controller.heartbeat_timeout_ms).len() >= 50);
    assert_eq!(distinct(&|s| s.controller.failure_rounds as u64), all(1, 2));
    assert_eq!(
        distinct(&|s| s.controller.recovery_rounds as u64),
        all(3, 8)
    );
    assert!(distinct(&|s| s.controller.lease_duration_ms).len() >= 50);
    assert!(distinct(&|s| s.controller.max_clock_drift_ppm as u64).len() >= 50);
    assert!(distinct(&|s| s.topology.clock_drift_ppm as u64).len() >= 50);
    assert_eq!(
        distinct(&|s| (s.replication.mode == ReplicationMode::Sync) as u64),
        all(0, 1),
        "both replication modes"
    );
    assert!(distinct(&|s| s.workload.writes_per_s as u64).len() >= 15);
    assert_eq!(distinct(&|s| s.network.latency_min_ms), all(1, 5));
    assert!(distinct(&|s| s.network.latency_max_ms).len() >= 30);
    assert!(distinct(&|s| (s.network.packet_loss_percent * 10.0) as u64).len() >= 30);
    fn others(s: &Scenario) -> impl Iterator<Item = &Fault> {
        (s.faults.iter()).filter(|f| !of_control_plane(f) && f.kind != FaultKind::Approve)
    }
    let fixed = |s: &Scenario| others(s).filter(|f| f.at_ms.is_some()).count() as u64;
    let triggered = |s: &Scenario| others(s).filter(|f| f.after.is_some()).count() as u64;
    assert_eq!(distinct(&fixed), all(1, 5));
    assert_eq!(distinct(&triggered), all(0, 2));
    let replicas = distinct(&|s| s.control_plane.replicas as u64);
    assert_eq!(
        replicas,
        [1, 3].into_iter().collect(),
        "one replica or three"
    );
    assert_eq!(distinct(&|s| s.control_plane.etcd_lease_ttl_s), all(3, 3));
    let plane_kinds: BTreeSet<&str> = (scenarios.iter().flat_map(|s| &s.faults))
        .filter(|f| of_control_plane(f))
        .map(|f| kind_name(&f.kind))
        .collect();
    assert_eq!(
        plane_kinds,
        ["replica-crash", "replica-pause", "partition", "etcd-pause"]
            .into_iter()
            .collect(),
        "every fault of the control plane"
    );
    let transitions: BTreeSet<&str> = (scenarios.iter().flat_map(|s| &s.faults))
        .filter_map(|f| f.after.as_ref().map(|t| t.transition.as_str()))
        .collect();
    let approvals = ["promotion-held"];
    assert_eq!(
        transitions,
        TRIGGER_TRANSITIONS.into_iter().chain(approvals).collect()
    );
    // The promotion gate: off in most seeds, and bounds over its whole range.
    let gates = distinct(&|s| s.controller.promotion_lag_entries);
    assert_eq!(gates, all(0, 10));
    let nths: BTreeSet<u64> = (scenarios.iter().flat_map(|s| &s.faults))
        .filter_map(|f| f.after.as_ref().map(|t| t.nth as u64))
        .collect();
    assert_eq!(nths, all(1, 2));
    assert!(distinct(&|s| s.duration_s).len() >= 20);

    let faults: Vec<&FaultKind> = scenarios
        .iter()
        .flat_map(|s| &s.faults)
        .map(|f| &f.kind)
        .collect();
    let kinds: BTreeSet<&str> = faults.iter().map(|k| kind_name(k)).collect();
    let control_plane = ["replica-crash", "replica-pause", "etcd-pause"];
    assert_eq!(
        kinds,
        (FAULT_KINDS.into_iter().chain(control_plane))
            .chain(["approve"])
            .collect(),
        "every fault kind, and no wipe"
    );
    let mut shapes = BTreeSet::new();
    for kind in &faults {
        match kind {
            FaultKind::Crash { nodes } if nodes.iter().any(|n| !n.contains('/')) => {
                shapes.insert("crash: a whole cluster");
            }
            FaultKind::Crash { .. } => {
                shapes.insert("crash: some nodes");
            }
            FaultKind::Partition {
                from, to, one_way, ..
            } => {
                shapes.insert(if *one_way {
                    "partition: one way"
                } else {
                    "partition: both ways"
                });
                for party in from.iter().chain(to) {
                    shapes.insert(match party.as_str() {
                        "controller" => "party: controller",
                        "config-center" => "party: config-center",
                        "users" => "party: users",
                        "a" | "b" => "party: a cluster",
                        _ => "party: a node",
                    });
                }
            }
            FaultKind::LinkCut { shards } if shards.is_empty() => {
                shapes.insert("link-cut: every shard");
            }
            FaultKind::LinkCut { .. } => {
                shapes.insert("link-cut: some shards");
            }
            _ => {}
        }
    }
    for shape in [
        "crash: a whole cluster",
        "crash: some nodes",
        "partition: one way",
        "partition: both ways",
        "party: controller",
        "party: config-center",
        "party: users",
        "party: a cluster",
        "party: a node",
        "link-cut: every shard",
        "link-cut: some shards",
    ] {
        assert!(shapes.contains(shape), "never drew {shape}");
    }
}

#[test]
fn every_option_stays_in_its_range() {
    for seed in 1..=500 {
        let s = swarm::scenario(seed);
        let c = &s.controller;
        let i = c.heartbeat_interval_ms;
        let context = format!("seed {seed}:\n{}", swarm::to_toml(&s));
        assert!((50..=200).contains(&i), "{context}");
        assert!(
            (2 * i..=4 * i).contains(&c.heartbeat_timeout_ms),
            "{context}"
        );
        assert!(
            2 * c.lease_duration_ms >= 3 * i && c.lease_duration_ms <= 4 * i,
            "{context}"
        );
        assert!(c.max_clock_drift_ppm <= 20_000, "{context}");
        assert!(
            s.topology.clock_drift_ppm <= c.max_clock_drift_ppm,
            "{context}"
        );
        assert!((2..=20).contains(&s.workload.writes_per_s), "{context}");
        let cap = swarm::latency_cap(c);
        assert!(s.network.latency_max_ms <= 60.min(cap), "{context}");
        assert!(
            (0.0..=5.0).contains(&s.network.packet_loss_percent),
            "{context}"
        );
        let lossy = swarm::lossy(c, s.topology.nodes_per_cluster);
        assert!(lossy || s.network.packet_loss_percent == 0.0, "{context}");
        let window = FAULT_START_MS..=FAULT_START_MS + 30_000;
        let mut last_heal = 0;
        let window_end = (s.faults.iter()).filter_map(|f| f.at_ms).max().unwrap_or(0);
        let plane: Vec<&Fault> = s.faults.iter().filter(|f| of_control_plane(f)).collect();
        assert!(plane.len() <= 1, "{context}");
        for f in &plane {
            assert_eq!(s.control_plane.replicas, 3, "{context}");
            let longest = match f.kind {
                FaultKind::ReplicaPause { .. } => 10_000,
                FaultKind::EtcdPause => 3_000,
                _ => 15_000,
            };
            let d = f.duration_ms.expect("every fault heals");
            assert!((100..=longest).contains(&d), "{context}");
            if let Some(trigger) = &f.after {
                assert_eq!(trigger.transition, "failover-started", "{context}");
                assert!(trigger.delay_ms <= 2 * c.lease_duration_ms, "{context}");
            }
            let crash = |f: &Fault| f.kind == FaultKind::ControllerCrash;
            assert!(!s.faults.iter().any(crash), "{context}");
            let latest_start = f.at_ms.or(f.after.as_ref().map(|t| t.before_ms));
            last_heal = last_heal.max(latest_start.expect("a start") + d);
        }
        let approve = |f: &&Fault| f.kind == FaultKind::Approve;
        let approvals: Vec<&Fault> = s.faults.iter().filter(approve).collect();
        assert!(approvals.len() <= 1, "{context}");
        assert!(c.promotion_lag_entries <= 10, "{context}");
        for f in &approvals {
            // The operator answers the first promotion-held alarm, with the gate on.
            assert!(c.promotion_lag_entries > 0, "{context}");
            assert_eq!(f.duration_ms, None, "an operator's command: {context}");
            let trigger = f.after.as_ref().expect("timed by the alarm");
            assert_eq!(trigger.transition, "promotion-held", "{context}");
            assert!(trigger.nth == 1 && trigger.delay_ms <= 3_000, "{context}");
            // What it sets off needs the quiet period too.
            last_heal = last_heal.max(trigger.before_ms);
        }
        let others = |f: &&Fault| !of_control_plane(f) && f.kind != FaultKind::Approve;
        for f in s.faults.iter().filter(others) {
            let d = f.duration_ms.expect("every fault heals");
            assert!(f.window_ms.is_none(), "{context}");
            let at = match (&f.after, f.at_ms) {
                (None, Some(at)) => {
                    assert!(window.contains(&at), "{context}");
                    assert!((100..=15_000).contains(&d), "{context}");
                    at
                }
                (Some(trigger), None) => {
                    // Its latest start: after every fixed start, within the grace.
                    assert!(trigger.before_ms > window_end, "{context}");
                    let latest = FAULT_START_MS + 30_000 + TRIGGER_GRACE_MS;
                    assert!(trigger.before_ms <= latest, "{context}");
                    assert!((1..=2).contains(&trigger.nth), "{context}");
                    assert_eq!(trigger.from_ms, FAULT_START_MS, "the calm start: {context}");
                    assert!(trigger.delay_ms <= 2 * c.lease_duration_ms, "{context}");
                    assert!((100..=TRIGGERED_FAULT_MAX_MS).contains(&d), "{context}");
                    trigger.before_ms
                }
                _ => panic!("a fault with a fixed start or a trigger, not both: {context}"),
            };
            last_heal = last_heal.max(at + d);
            match &f.kind {
                FaultKind::PacketLoss { percent } => {
                    assert!(lossy && *percent <= 5.0, "{context}")
                }
                FaultKind::Latency { max_ms, .. } => assert!(*max_ms <= 150.min(cap), "{context}"),
                FaultKind::Partition { from, to, .. } => {
                    assert!(!from.is_empty() && !to.is_empty(), "{context}");
                    for x in from {
                        for y in to {
                            let overlap = x == y
                                || y.starts_with(&format!("{x}/"))
                                || x.starts_with(&format!("{y}/"));
                            assert!(!overlap, "{x} is on both sides: {context}");
                        }
                    }
                }
                FaultKind::Wipe { .. } => panic!("a wipe: {context}"),
                _ => {}
            }
        }
        let controller_crashes: Vec<u64> = (s.faults.iter())
            .filter(|f| f.kind == FaultKind::ControllerCrash)
            .map(|f| f.duration_ms.expect("heals"))
            .collect();
        assert!(controller_crashes.len() <= 1, "{context}");
        assert!(controller_crashes.iter().all(|&d| d <= 5_000), "{context}");
        // The quiet period: everything has healed at least 20 s before the end.
        assert!(last_heal + QUIET_MS <= s.duration_s * 1000, "{context}");
        assert!(
            last_heal + QUIET_MS > (s.duration_s - 1) * 1000,
            "{context}"
        );
        let expect = Expect {
            users_converge_ms: s.expect.users_converge_ms,
            ..Expect::default()
        };
        assert_eq!(
            s.expect, expect,
            "only users_converge_ms differs: {context}"
        );
        let most = 5_000 + 15_000 + 2 * TRIGGERED_FAULT_MAX_MS;
        assert!(s.expect.users_converge_ms >= 5_000 && s.expect.users_converge_ms <= most);
        assert!(s.expect.converge);
        assert_eq!(s.regression, None);
    }
}

#[test]
fn every_generated_scenario_for_seeds_1_to_500_validates() {
    for seed in 1..=500 {
        let generated = swarm::generate(seed);
        let text = toml::to_string(&generated).expect("serializes");
        let file = format!("swarm-{seed}.toml");
        if let Err(e) = Scenario::parse(Path::new(&file), &text) {
            panic!("seed {seed}: {e}\n{text}");
        }
        generated
            .controller
            .validate()
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn the_toml_round_trip_gives_the_same_scenario() {
    for seed in 1..=200 {
        let generated = swarm::generate(seed);
        let text = toml::to_string(&generated).expect("serializes");
        // Parsed under another file name: the name comes from the TOML, not the file.
        let parsed = Scenario::parse(Path::new("elsewhere.toml"), &text)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
        assert_eq!(parsed, generated, "seed {seed}:\n{text}");
        assert_eq!(swarm::scenario(seed), generated, "seed {seed}");
        assert_eq!(swarm::to_toml(&parsed), text, "seed {seed}");
    }
}

#[test]
fn the_printed_toml_reproduces_the_run() {
    let seed = 3;
    let text = swarm::to_toml(&swarm::scenario(seed));
    let from_file = Scenario::parse(Path::new("saved.toml"), &text).expect("valid");
    let a = run_seed(&swarm::scenario(seed), seed, Mutation::None);
    let b = run_seed(&from_file, seed, Mutation::None);
    assert_ne!(a.trace_hash, 0);
    assert_eq!(a.trace_hash, b.trace_hash);
}

#[test]
fn violations_are_split_into_safety_and_liveness() {
    for invariant in [
        "single-writer",
        "epochs-monotonic",
        "durability",
        "accounted-loss",
        "panic",
    ] {
        assert_eq!(phase(invariant), Some(Phase::Safety), "{invariant}");
    }
    for invariant in ["convergence", "users-converge", "liveness", "expectation"] {
        assert_eq!(phase(invariant), Some(Phase::Liveness), "{invariant}");
    }
    assert_eq!(phase("vacuity"), None);
    for checker in CHECKERS {
        if checker != "vacuity" {
            assert!(phase(checker).is_some(), "{checker} must count");
        }
    }
}

#[test]
fn the_replay_command_names_the_swarm_seed() {
    assert_eq!(
        swarm_replay_command(17, Mutation::None),
        "cargo sim replay --swarm --seed 17"
    );
    assert_eq!(
        swarm_replay_command(17, Mutation::NoFencing),
        "cargo sim replay --swarm --seed 17 --mutant no-fencing"
    );
}

#[test]
fn a_small_swarm_campaign_runs_clean() {
    let seeds: Vec<u64> = (1..=24).collect();
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runs = run_swarm(&seeds, Mutation::None, jobs, false, &|_| {});
    assert_eq!(runs.iter().map(|r| r.seed).collect::<Vec<_>>(), seeds);
    let summary = swarm::summarise(&runs, Mutation::None);
    let report: Vec<String> = (summary.failures.iter())
        .map(|f| {
            format!(
                "swarm seed {} ({:?}): {}\n  replay: {}\n{}",
                f.seed, f.phase, f.message, f.replay, f.scenario_toml
            )
        })
        .collect();
    assert!(
        runs.iter().all(|r| !failed(r)) && summary.failures.is_empty(),
        "{} safety and {} liveness failures:\n{}",
        summary.safety_failures,
        summary.liveness_failures,
        report.join("\n")
    );
}

#[test]
fn a_swarm_catches_mutants_in_the_right_phase() {
    let seeds: Vec<u64> = (1..=24).collect();
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let caught = |mutation: Mutation, wanted: Phase| {
        let runs = run_swarm(&seeds, mutation, jobs, false, &|_| {});
        let summary = swarm::summarise(&runs, mutation);
        let failure = (summary.failures.iter())
            .find(|f| f.phase == wanted)
            .unwrap_or_else(|| panic!("{} survived 24 swarm seeds", mutation.name()));
        assert!(failure
            .replay
            .ends_with(&format!("--mutant {}", mutation.name())));
        failure.invariant.clone()
    };
    // Forgetting the durable epoch on restart reuses epochs: a safety failure, seen as epochs
    // going back or as two writers in one epoch, whichever a seed shows first.
    let invariant = caught(Mutation::ForgetEpoch, Phase::Safety);
    assert!(
        ["epochs-monotonic", "single-writer"].contains(&invariant.as_str()),
        "{invariant}"
    );
    // Publishing in the old epoch leaves users and nodes behind: a liveness failure.
    let invariant = caught(Mutation::NoEpochBump, Phase::Liveness);
    assert_eq!(phase(&invariant), Some(Phase::Liveness));
}
