//! The controller core's cost as the system grows: one heartbeat round (tick, every heartbeat
//! out, every report back) at 10, 1,000 and 10,000 nodes per cluster, and the per-user config
//! rewrite of a failover and the whole re-route and publication (rewrite, publication frame,
//! config center, one push per user) at 1,000, 100,000 and 1,000,000 users. Run with
//! `cargo bench --bench controller`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use standby::config_center::ConfigCenter;
use standby::controller::{Action, Controller, Topology};
use standby::params::Params;
use standby::protocol::{NodeReport, Publish, Role};
use standby::time::Time;
use standby::types::{Cluster, Epoch, Lsn, NodeId, Shard, UserConfig, UserId};
use standby::wire::{decode, encode, Message};

use std::hint::black_box;

fn topology(nodes_per_cluster: u16, users: u32) -> Topology {
    let addresses = Cluster::BOTH
        .into_iter()
        .flat_map(|c| (0..nodes_per_cluster).map(move |i| NodeId::new(c, i)))
        .map(|node| (node, format!("{node}:7000")))
        .collect();
    let users = (0..users)
        .map(|u| (UserId(u), Shard((u % nodes_per_cluster as u32) as u16)))
        .collect();
    Topology {
        nodes_per_cluster,
        addresses,
        users,
    }
}

/// The report a healthy node in its steady role gives.
fn report(node: NodeId, round: u64) -> NodeReport {
    let role = match node.cluster {
        Cluster::A => Role::Primary,
        Cluster::B => Role::Backup,
    };
    NodeReport {
        round,
        epoch: Epoch(1),
        role,
        last_lsn: Lsn(100),
        epoch_start_lsn: Lsn(0),
        trimmed: Lsn(0),
        quarantines: Vec::new(),
    }
}

/// One round: tick, drain the heartbeats, answer every one of them.
fn round(controller: &mut Controller, now: Time) -> usize {
    controller.tick(now);
    let mut heartbeats = Vec::new();
    while let Some(action) = controller.poll_action() {
        if let Action::Heartbeat { node, heartbeat } = action {
            heartbeats.push((node, heartbeat.round));
        }
    }
    for &(node, round) in &heartbeats {
        controller.handle_report(now, node, report(node, round));
    }
    heartbeats.len()
}

fn heartbeat_round(c: &mut Criterion) {
    let mut group = c.benchmark_group("heartbeat_round");
    for nodes in [10u16, 1_000, 10_000] {
        let params = Params::default();
        let interval = params.heartbeat_interval();
        let mut controller = Controller::new(params, topology(nodes, 0), Time::ZERO);
        let mut now = Time::ZERO;
        // Settle into the steady state first (roles confirmed, leases flowing).
        for _ in 0..3 {
            round(&mut controller, now);
            now = now + interval;
        }
        group.throughput(Throughput::Elements(2 * nodes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
            b.iter(|| {
                now = now + interval;
                black_box(round(&mut controller, now))
            })
        });
    }
    group.finish();
}

fn rewrite_configs(c: &mut Criterion) {
    let mut group = c.benchmark_group("rewrite_configs");
    group.sample_size(10);
    for users in [1_000u32, 100_000, 1_000_000] {
        let controller = Controller::new(Params::default(), topology(64, users), Time::ZERO);
        group.throughput(Throughput::Elements(users as u64));
        group.bench_with_input(BenchmarkId::from_parameter(users), &users, |b, _| {
            b.iter(|| black_box(controller.rewrite_configs()))
        });
    }
    group.finish();
}

/// A whole failover publication as the CPU sees it, without the network: rewrite every
/// user's config, encode the publication frame, decode and store it at the config center,
/// and encode each user's push.
fn reroute_and_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("reroute_and_publish");
    group.sample_size(10);
    for users in [1_000u32, 100_000, 1_000_000] {
        let controller = Controller::new(Params::default(), topology(64, users), Time::ZERO);
        group.throughput(Throughput::Elements(users as u64));
        group.bench_with_input(BenchmarkId::from_parameter(users), &users, |b, _| {
            b.iter(|| {
                let configs = controller.rewrite_configs();
                let publish = Message::Publish(Publish {
                    epoch: Epoch(2),
                    configs,
                });
                let frame = encode(&publish).expect("a publication encodes");
                let Ok(Message::Publish(publish)) = decode(&frame[4..]) else {
                    panic!("the frame decodes to the publication");
                };
                let pushes: Vec<UserConfig> = publish.configs.clone();
                let mut center = ConfigCenter::new();
                center.publish(publish);
                let bytes: usize = (pushes.into_iter())
                    .map(|config| encode(&Message::Config(config)).expect("encodes").len())
                    .sum();
                black_box((frame.len(), bytes))
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    heartbeat_round,
    rewrite_configs,
    reroute_and_publish
);
criterion_main!(benches);
