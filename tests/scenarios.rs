//! The seeded scenario tests: every scenario in `scenarios/` over the default seeds (16;
//! `STANDBY_SEEDS=n` for seeds 1..=n, `STANDBY_SEED=s` for one seed), every invariant checked.
//! A failure prints the scenario, the seed, the violated invariant with its evidence, and the
//! one command that replays it.

use standby::controller::Mutation;
use standby_sim::campaign::{run_scenario, run_seed, scenario_files, seeds, DEFAULT_SEEDS};
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
                "{name} seed {}: {}\n  replay: {}",
                f.seed, f.message, f.replay
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
    steady_state_never_fails_over => "steady-state",
    primary_minority_crash_fails_over_those_shards_alone => "primary-minority-crash",
    primary_majority_crash_fails_over_once => "primary-majority-crash",
    primary_half_crash_fails_over_at_the_claim_4_boundary => "primary-half-crash",
    primary_outage_and_failback_quarantines_and_resyncs => "primary-outage-and-failback",
    backup_down_then_primary_down_waits_for_the_backup => "backup-down-then-primary-down",
    both_down_primary_returns_first_resumes_without_loss => "both-down-primary-returns-first",
    controller_isolated_from_primary_keeps_a_single_writer => "controller-isolated-from-primary",
    replication_link_cut_then_primary_crash_accounts_for_loss => "replication-link-cut-then-primary-crash",
    sync_mode_primary_crash_loses_no_acknowledged_write => "sync-mode-primary-crash",
    lossy_network_has_no_false_failover => "lossy-network",
    flapping_primary_fails_over_at_most_once => "flapping-primary",
    clock_drift_within_the_bound_keeps_a_single_writer => "clock-drift",
    old_primary_returning_mid_failover_is_safe => "old-primary-returns-mid-failover",
    controller_crash_during_failover_fails_over_once => "controller-crash-during-failover",
    users_cut_from_config_center_learn_from_rejections => "users-cut-from-config-center",
    slow_network_primary_crash_alarm_is_a_lower_bound => "slow-network-primary-crash",
    controller_restarts_after_failover_from_durable_state => "controller-restarts-after-failover",
    sync_mode_link_cut_then_primary_crash_acknowledges_nothing_unreplicated => "sync-mode-link-cut-then-primary-crash",
    a_wiped_backup_node_is_resynced_from_scratch => "backup-node-wiped",
    old_primary_crashing_before_its_rejoin_keeps_its_stop_cap => "crash-before-rejoin-then-failback",
    failback_before_every_shard_rejoined_reports_the_rejoined_losses => "failback-before-every-shard-rejoined",
    failback_during_a_rejoin_loses_nothing_unaccounted => "failback-during-rejoin",
    a_restarted_controller_promotes_no_backup_on_grace => "controller-crash-mid-failover-then-backup-fails",
    a_restarted_controller_resumes_no_primary_on_grace => "controller-crash-before-first-alarm-in-double-failure",
    a_leader_killed_mid_failover_is_replaced_and_the_failover_finishes => "leader-killed-mid-failover",
    a_leader_paused_past_its_etcd_lease_acts_no_more => "leader-paused-past-etcd-lease-mid-failover",
    a_leader_cut_from_etcd_stops_and_a_replica_that_reaches_it_fails_over => "leader-cut-from-etcd-while-primary-fails",
    a_leader_cut_from_etcd_stops_at_its_deadline => "leader-cut-from-etcd-healthy-primary",
    a_3s_etcd_outage_leaves_the_healthy_primary_writable => "etcd-out-3s-healthy-primary",
    a_30s_etcd_outage_fails_nothing_over_and_recovers => "etcd-out-30s-healthy-primary",
    the_last_replica_standing_fails_over => "controller-replica-all-but-one-down-then-primary-fails",
    a_new_leader_after_a_stall_waits_out_its_predecessors_leases => "leader-stalls-while-primary-cut-off",
    an_old_leader_leading_again_restores_its_successors_state => "leader-paused-then-successor-killed",
    users_cut_from_the_leader_get_the_new_config_from_the_replicas_standing_by => "leader-cut-from-users-while-primary-fails",
    a_late_write_of_a_deposed_leader_never_replaces_its_successors_state => "leader-cut-from-etcd-its-late-write-lands-after-takeover",
    a_wan_pair_fails_over_and_back_with_the_defaults => "wan-pair-primary-crash-and-failback",
    leases_sized_to_a_long_round_trip_are_waited_out_in_full => "long-round-trip-leases-then-primary-cut-off",
    a_backup_behind_beyond_the_bound_raises_the_lag_alarm_until_it_catches_up => "backup-lags-beyond-the-bound",
    a_crashed_primary_node_fails_its_shard_over_alone => "primary-node-crash-shard-fails-over",
    a_shard_with_both_nodes_down_alarms_and_promotes_nothing => "primary-and-backup-node-down",
    a_shard_failed_over_alone_is_untouched_by_its_old_clusters_failover => "shard-fails-over-then-its-cluster-fails",
    a_cut_off_primary_node_is_fenced_by_its_lease_before_its_shard_moves => "primary-node-cut-off-with-long-leases",
    a_lagging_backup_is_promoted_only_once_the_operator_approves => "promotion-held-until-the-operator-approves",
    a_held_promotion_ends_when_the_old_primary_returns_with_nothing_lost => "promotion-held-until-the-old-primary-returns",
    a_lagging_cluster_is_promoted_only_once_the_operator_approves => "promotion-held-for-a-cluster-until-approved",
}

/// The single-writer checker can fail: with fencing switched off (no lease waits, no fence
/// commands), the controller cut off from a healthy primary promotes the backup while users
/// still write to the old primary, and the checker must see two writers.
#[test]
fn without_fencing_the_isolated_primary_splits_the_brain() {
    let (runs, failures) = run("controller-isolated-from-primary", Mutation::NoFencing);
    assert!(runs > 0);
    let caught = failures
        .iter()
        .filter(|f| f.contains("[single-writer]"))
        .count();
    assert!(
        caught > 0,
        "fencing off, yet no seed of {runs} violated single-writer; failures: {failures:?}"
    );
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

/// The same seed gives the same trace, byte for byte (compared through its hash), for a sample
/// of scenarios and seeds.
#[test]
fn the_same_seed_replays_the_same_trace() {
    for name in [
        "primary-majority-crash",
        "lossy-network",
        "controller-crash-during-failover",
    ] {
        let file = scenarios_dir().join(format!("{name}.toml"));
        let scenario = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        for seed in [1, 7] {
            let first = run_seed(&scenario, seed, Mutation::None);
            let second = run_seed(&scenario, seed, Mutation::None);
            assert_eq!(
                first.trace_hash, second.trace_hash,
                "{name} seed {seed}: two runs differ; replay: cargo sim replay scenarios/{name}.toml --seed {seed}"
            );
        }
        let other = run_seed(&scenario, 2, Mutation::None);
        let first = run_seed(&scenario, 1, Mutation::None);
        assert_ne!(
            first.trace_hash, other.trace_hash,
            "{name}: seeds 1 and 2 gave the same trace"
        );
    }
}

#[test]
fn a_failover_shows_in_the_users_availability_and_ends_their_wait_before_the_nodes_return() {
    let file = scenarios_dir().join("primary-majority-crash.toml");
    let scenario = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let measures = run_seed(&scenario, 1, Mutation::None).verdict.measures;
    let a = measures.availability;
    // 10 users at 10 writes/s for 45 s.
    assert!((3_500..5_000).contains(&a.attempted), "{a:?}");
    assert_eq!(a.attempted, a.acknowledged + a.refused + a.unanswered);
    assert!(
        a.refused > 0 && a.unanswered > 0,
        "the crash and the fence show: {a:?}"
    );
    assert!((0.9..1.0).contains(&a.acknowledged_share()), "{a:?}");
    // The users of the crashed shards wait at least until the failure is declared, and far
    // less than the 10 s the nodes stay down: the failover, not the nodes' return, ends it.
    let detection = measures.detection_ms[0];
    assert!(
        a.longest_unacknowledged_ms >= detection,
        "{a:?}, detection {detection} ms"
    );
    assert!(a.longest_unacknowledged_ms < 5_000, "{a:?}");
}
