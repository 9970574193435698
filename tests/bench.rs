//! `cargo sim bench` and the bare event loop: the configurations it builds, its figures on a
//! few seeds, and the loop it compares the simulator with.

use standby::controller::Mutation;
use standby::service::loss::retransmission_delay;
use standby_sim::bench::{self, Kind};
use standby_sim::campaign::run_seed;
use standby_sim::scenario::Scenario;
use std::path::Path;
use std::time::Duration;

fn scenarios() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios"))
}

#[test]
fn the_grid_is_every_interval_and_loss_plus_the_quiet_runs() {
    let configs = bench::configs(scenarios()).expect("the shipped scenarios load");
    let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(configs.len(), 22, "{names:?}");
    assert!(names.contains(&"shard/loss=5%"), "{names:?}");
    assert!(names.contains(&"distance/one-way=100-140ms"), "{names:?}");
    assert!(
        names.contains(&"detection/interval=500ms/loss=5%"),
        "{names:?}"
    );
    assert!(names.contains(&"false-failovers/loss=1%"), "{names:?}");
    let detection = bench::config(scenarios(), "detection/interval=50ms/loss=1%").expect("known");
    let c = &detection.scenario.controller;
    assert_eq!(
        (
            c.heartbeat_interval_ms,
            c.heartbeat_timeout_ms,
            c.lease_duration_ms
        ),
        (50, 150, 150)
    );
    assert_eq!(detection.scenario.network.packet_loss_percent, 1.0);
    assert_eq!(detection.scenario.expect.detection_ms_max, None);
    assert_eq!(detection.scenario.expect.failovers, Some(1));
    let quiet = bench::config(scenarios(), "false-failovers/loss=5%").expect("known");
    assert_eq!(quiet.kind, Kind::FalseFailovers);
    assert_eq!(quiet.scenario.faults, vec![]);
    assert_eq!(quiet.scenario.network.latency_max_ms, bench::JITTER_MS[1]);
    let error = bench::config(scenarios(), "detection/nope").expect_err("unknown");
    assert!(
        error.contains("detection/interval=100ms/loss=0%"),
        "{error}"
    );
}

/// Issue 15, item 3: with every setting at its default, a primary 100-140 ms away one way
/// stays writable (with a fixed 300 ms lease, 4% of the writes were acknowledged).
#[test]
fn a_primary_an_ocean_away_stays_writable_with_the_defaults() {
    let far = bench::config(scenarios(), "distance-no-fault/one-way=100-140ms").expect("known");
    assert_eq!(far.scenario.controller, standby::params::Params::default());
    assert_eq!(far.scenario.network.latency_min_ms, 100);
    let result = bench::run_config(&far, &[1, 2], 1, &|_| {});
    assert_eq!(result.failures.len(), 0, "{:?}", result.failures);
    // The start-up's refusals (writes sent before the first lease reached the primary) aside.
    let acked = result.availability.steady_share();
    assert!(
        acked >= 0.99,
        "{acked} of the steady writes acknowledged: {result:?}"
    );
}

#[test]
fn a_detection_config_measures_every_seed() {
    let config = bench::config(scenarios(), "detection/interval=100ms/loss=1%").expect("known");
    let result = bench::run_config(&config, &[1, 2, 3], 1, &|_| {});
    assert_eq!(result.failures.len(), 0, "{:?}", result.failures);
    assert_eq!(
        (result.seeds, result.failovers, result.false_failovers),
        (3, 3, 0)
    );
    // Declared within a timeout plus an interval of the crash, on every seed.
    assert!(
        result.detection_ms.max > 0 && result.detection_max_ratio <= 1.0,
        "{result:?}"
    );
    assert!(result.rto_ms.p50 >= result.detection_ms.p50, "{result:?}");
    assert!(result.speed_per_job > 0.0 && result.seeds_per_s_per_job > 0.0);
    assert_eq!(
        bench::replay_command(&config.name, 3),
        "cargo sim replay --bench 'detection/interval=100ms/loss=1%' --seed 3"
    );
}

/// Loss is TCP's: a lost frame costs 200 ms, then 400 ms more, and so on; a loss-free link
/// costs nothing; and loss shows in the run (acknowledged writes wait behind it, so the
/// recovery point grows with it).
#[test]
fn packet_loss_costs_retransmission_timeouts() {
    let rto = Duration::from_millis(200);
    assert_eq!(retransmission_delay(rto, || false), Duration::ZERO);
    let mut losses = [true, true, false].into_iter();
    let delay = retransmission_delay(rto, || losses.next().unwrap_or(false));
    assert_eq!(delay, Duration::from_millis(600));
    assert_eq!(
        retransmission_delay(rto, || true),
        Duration::from_millis(200 * 63)
    );
    let clean = bench::config(scenarios(), "detection/interval=100ms/loss=0%").expect("known");
    let lossy = bench::config(scenarios(), "detection/interval=100ms/loss=5%").expect("known");
    let seeds: Vec<u64> = (1..=4).collect();
    let clean = bench::run_config(&clean, &seeds, 2, &|_| {});
    let lossy = bench::run_config(&lossy, &seeds, 2, &|_| {});
    assert!(lossy.rto_ms.max > clean.rto_ms.max, "{clean:?}\n{lossy:?}");
}

#[test]
fn the_bare_loop_fails_over_once_on_a_majority_crash() {
    let file = scenarios().join(bench::DETECTION_SCENARIO);
    let scenario = Scenario::load(&file).expect("loads");
    for seed in 1..=5 {
        let bare = standby_sim::bare::run(&scenario, seed).expect("a crash-only scenario");
        assert_eq!(bare.failovers, 1, "seed {seed}: {bare:?}");
        let detection = bare.detection_ms[0];
        assert!((200..=400).contains(&detection), "seed {seed}: {bare:?}");
        assert!(bare.writes_ok > 1_000, "seed {seed}: {bare:?}");
        // The madsim world on the same seed agrees on what happened (not on the exact
        // figures: its network and tasks draw differently).
        let world = run_seed(&scenario, seed, Mutation::None);
        assert_eq!(world.verdict.measures.failovers, bare.failovers);
    }
}

#[test]
fn the_bare_loop_refuses_what_it_does_not_model() {
    let file = scenarios().join("controller-isolated-from-primary.toml");
    let scenario = Scenario::load(&file).expect("loads");
    let error = standby_sim::bare::run(&scenario, 1).expect_err("a partition");
    assert!(error.contains("crash faults only"), "{error}");
}

/// The leader-loss configuration measures a takeover on every seed: the leader is killed,
/// another replica acts within the etcd lease TTL and an interval, and the failover it
/// inherited still happens once.
#[test]
fn a_leader_loss_config_measures_every_takeover() {
    let config = bench::config(scenarios(), "leader-loss/ttl=3s").expect("known");
    assert_eq!(config.kind, Kind::LeaderLoss);
    let result = bench::run_config(&config, &[1, 2, 3], 1, &|_| {});
    assert_eq!(result.failures.len(), 0, "{:?}", result.failures);
    assert_eq!((result.seeds, result.failovers), (3, 3));
    assert!(result.takeover_ms.max > 0, "{:?}", result.takeover_ms);
    assert!(
        result.takeover_max_ratio <= 1.0,
        "a takeover past TTL + interval: {:?}",
        result.takeover_ms
    );
}
