//! The simulator's speed on `primary-majority-crash` (45 s plus 2 s of drain per seed), seeds
//! 1-100 in turn: one iteration is one seed through the madsim world (no checking), and,
//! beside it, the same scenario and seeds through the bare discrete-event loop over the same
//! sans-IO core (standby_sim::bare), the ceiling to compare with. Throughput is in simulated
//! seconds, so criterion's `elem/s` is simulated seconds per wall second (the speed-up over
//! real time); seeds per second is one over the time per iteration. The madsim world runs it
//! with one controller replica (as shipped) and with three. Run with
//! `cargo bench --bench simulator`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use standby::controller::Mutation;
use standby_sim::bench::DETECTION_SCENARIO;
use standby_sim::scenario::Scenario;
use standby_sim::world::DRAIN;
use std::hint::black_box;
use std::path::Path;

const SEEDS: u64 = 100;

fn simulator(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let scenario =
        Scenario::load(&dir.join(DETECTION_SCENARIO)).expect("the shipped scenario loads");
    let simulated = scenario.duration_s + DRAIN.as_secs();
    let mut group = c.benchmark_group("simulator");
    group
        .sample_size(20)
        .throughput(Throughput::Elements(simulated));
    let mut world = |name: &str, scenario: &Scenario| {
        let mut seed = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                seed = seed % SEEDS + 1;
                let run = standby_sim::world::run(scenario, seed, Mutation::None);
                black_box(run.events.len())
            })
        });
    };
    world("madsim/primary-majority-crash", &scenario);
    // The same with three controller replicas (two standing by, following etcd): the
    // control plane's cost, against the 0.8x target of issue 14.
    let mut three = scenario.clone();
    three.control_plane.replicas = 3;
    world("madsim/primary-majority-crash/replicas=3", &three);
    let mut seed = 0;
    group.bench_function("bare/primary-majority-crash", |b| {
        b.iter(|| {
            seed = seed % SEEDS + 1;
            black_box(standby_sim::bare::run(&scenario, seed).expect("a crash-only scenario"))
        })
    });
    group.finish();
}

criterion_group!(benches, simulator);
criterion_main!(benches);
