//! Detection latency in simulated time: `primary-majority-crash` over heartbeat intervals
//! {50, 100, 500} ms x packet loss {0, 1, 5}% (timeout and lease three intervals each). One
//! iteration is one seed; its "time" is the simulated time from the primary's true failure to
//! the controller declaring it, so criterion's estimates are of detection latency itself, not
//! of how long the simulator took. Run with `cargo bench --bench detection`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use standby::controller::Mutation;
use standby_sim::bench::{detection_scenario, DETECTION_SCENARIO, INTERVALS_MS, LOSS_PERCENT};
use standby_sim::campaign::run_seed;
use standby_sim::scenario::Scenario;
use std::path::Path;
use std::time::Duration;

fn detection(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let base = Scenario::load(&dir.join(DETECTION_SCENARIO)).expect("the shipped scenario loads");
    let mut group = c.benchmark_group("detection");
    // Criterion budgets in the time iterations report: here simulated time.
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    for interval in INTERVALS_MS {
        for loss in LOSS_PERCENT {
            let scenario = detection_scenario(&base, interval, loss);
            let id = BenchmarkId::new(format!("interval={interval}ms"), format!("loss={loss}%"));
            let mut seed = 0;
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            seed += 1;
                            detected_after(&scenario, seed)
                        })
                        .sum()
                })
            });
        }
    }
    group.finish();
}

/// The seed's detection latency. A seed that breaks an invariant or detects nothing stops
/// the bench with the command that replays it.
fn detected_after(scenario: &Scenario, seed: u64) -> Duration {
    let run = run_seed(scenario, seed, Mutation::None);
    let replay = standby_sim::bench::replay_command(&scenario.name, seed);
    assert!(
        run.verdict.violations.is_empty(),
        "{:?}\nreplay: {replay}",
        run.verdict.violations
    );
    let first = run.verdict.measures.detection_ms.first();
    Duration::from_millis(*first.unwrap_or_else(|| panic!("no detection; replay: {replay}")))
}

criterion_group!(benches, detection);
criterion_main!(benches);
