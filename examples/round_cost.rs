//! Runs `ROUNDS` steady heartbeat rounds of a controller with `NODES` nodes per cluster (the
//! same round as `benches/controller.rs`), for counting instructions per node per round under
//! callgrind, which is repeatable where times on a shared machine are not:
//!
//! ```sh
//! cargo build --release --example round_cost
//! for n in 10 1000 10000; do r=$((200000 / n)); for k in $r $((2 * r)); do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/round_cost $n $k 2>&1 | grep refs; done; done
//! ```
//!
//! (The difference between the two counts, over 2 x n x r, is the cost per node per round.)

use standby::controller::{Action, Controller, Topology};
use standby::params::Params;
use standby::protocol::{NodeReport, Role};
use standby::time::Time;
use standby::types::{Cluster, Epoch, Lsn, NodeId};

fn topology(nodes_per_cluster: u16) -> Topology {
    let addresses = Cluster::BOTH
        .into_iter()
        .flat_map(|c| (0..nodes_per_cluster).map(move |i| NodeId::new(c, i)))
        .map(|node| (node, format!("{node}:7000")))
        .collect();
    Topology {
        nodes_per_cluster,
        addresses,
        users: Default::default(),
    }
}

fn round(controller: &mut Controller, now: Time) {
    controller.tick(now);
    let mut heartbeats = Vec::new();
    while let Some(action) = controller.poll_action() {
        if let Action::Heartbeat { node, heartbeat } = action {
            heartbeats.push((node, heartbeat.round));
        }
    }
    for (node, round) in heartbeats {
        let role = match node.cluster {
            Cluster::A => Role::Primary,
            Cluster::B => Role::Backup,
        };
        let report = NodeReport {
            round,
            epoch: Epoch(1),
            role,
            last_lsn: Lsn(100),
            epoch_start_lsn: Lsn(0),
            trimmed: Lsn(0),
            quarantines: Vec::new(),
        };
        controller.handle_report(now, node, report);
    }
}

fn main() {
    let usage = "usage: round_cost NODES_PER_CLUSTER ROUNDS";
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let (Some(Ok(nodes)), Some(Ok(rounds))) = (args.next(), args.next()) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let params = Params::default();
    let interval = params.heartbeat_interval();
    let mut controller = Controller::new(params, topology(nodes as u16), Time::ZERO);
    let mut now = Time::ZERO;
    for _ in 0..rounds {
        round(&mut controller, now);
        now = now + interval;
    }
}
