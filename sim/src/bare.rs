//! The ceiling to compare the simulator with: a crash scenario over the same sans-IO core
//! (controller, nodes, config center), driven by a bare discrete-event loop. No madsim, no
//! tasks, no sockets, no encoding: a message is a value in a time-ordered queue, delivered
//! after a one-way latency drawn from the scenario's range. It carries what a crash scenario
//! exercises: heartbeats and reports, user writes, replication, publication and
//! acknowledgement, crashes and restarts. Nothing else: other faults, packet loss and clock
//! drift are refused, so its figures are never taken for the simulator's.
//!
//! The `simulator` bench runs it beside the madsim world on the same scenario: the gap
//! between the two is what madsim's tasks, simulated TCP and the wire encoding cost.

use crate::rng::SplitMix64;
use crate::scenario::{FaultKind, Scenario};
use crate::world::DRAIN;
use standby::config_center::ConfigCenter;
use standby::controller::{Action, Controller, Note, Topology};
use standby::node::{Node, NodeEvent};
use standby::params::cluster_available;
use standby::protocol::{
    Append, AppendReply, Heartbeat, NodeReport, Publish, PublishReply, Route, Write, WriteReply,
};
use standby::time::Time;
use standby::types::{Cluster, Epoch, NodeId, UserId, WriteId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What one bare run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BareOutcome {
    /// Promotions of the other cluster.
    pub failovers: u32,
    /// Per declared failure: from the primary's true failure to the declaration, in ms.
    pub detection_ms: Vec<u64>,
    /// Writes acknowledged to users.
    pub writes_ok: u64,
    /// Messages delivered.
    pub messages: u64,
}

enum Msg {
    Tick,
    Heartbeat(NodeId, Heartbeat, Time),
    Report(NodeId, NodeReport, Time),
    UserTimer(UserId),
    Write(UserId, NodeId, Write),
    WriteReply(UserId, WriteReply),
    ReplicateTimer(NodeId),
    Append(NodeId, Append),
    AppendReply(NodeId, AppendReply),
    AppendLost(NodeId),
    Publish(Publish),
    PublishReply(PublishReply),
    Push(UserId, Route),
    Ack(UserId, Epoch),
    Fault(usize, bool),
}

#[derive(Default)]
struct User {
    route: Option<Route>,
    seq: u64,
    in_flight: Option<Time>,
}

struct Bare<'a> {
    scenario: &'a Scenario,
    rng: SplitMix64,
    now: Time,
    queue: BTreeMap<(Time, u64), Msg>,
    sent: u64,
    controller: Controller,
    center: ConfigCenter,
    nodes: BTreeMap<NodeId, Node>,
    /// Primaries with an append in flight.
    shipping: BTreeSet<NodeId>,
    users: BTreeMap<UserId, User>,
    down: BTreeSet<NodeId>,
    /// When the primary cluster truly failed, while it is failed.
    failed_since: BTreeMap<Cluster, Time>,
    out: BareOutcome,
}

/// Runs a crash-only `scenario` under `seed` in the bare loop.
pub fn run(scenario: &Scenario, seed: u64) -> Result<BareOutcome, String> {
    if scenario.faults.iter().any(|f| f.after.is_some()) {
        return Err(
            "the bare loop starts faults at fixed times only, not after a transition".to_owned(),
        );
    }
    let unsupported = (scenario.faults.iter()).find(|f| !matches!(f.kind, FaultKind::Crash { .. }));
    if let Some(fault) = unsupported {
        return Err(format!(
            "the bare loop models crash faults only, not `{}`",
            fault.kind.describe()
        ));
    }
    if scenario.network.packet_loss_percent > 0.0 || scenario.topology.clock_drift_ppm > 0 {
        return Err("the bare loop models neither packet loss nor clock drift".to_owned());
    }
    let mut bare = Bare::new(scenario, seed);
    let end = Time::from_millis(scenario.duration_s * 1000) + DRAIN;
    while let Some(((at, _), msg)) = bare.queue.pop_first() {
        if at > end {
            break;
        }
        bare.now = at;
        bare.out.messages += 1;
        bare.deliver(msg);
    }
    Ok(bare.out)
}

impl<'a> Bare<'a> {
    fn new(scenario: &'a Scenario, seed: u64) -> Bare<'a> {
        let n = scenario.topology.nodes_per_cluster;
        let nodes: BTreeMap<NodeId, Node> = (Cluster::BOTH.into_iter())
            .flat_map(|c| (0..n).map(move |i| NodeId::new(c, i)))
            .map(|id| (id, Node::new(id)))
            .collect();
        let topology = Topology {
            nodes_per_cluster: n,
            addresses: nodes.keys().map(|&id| (id, id.to_string())).collect(),
            users: (0..scenario.topology.users)
                .map(|u| (UserId(u), scenario.topology.shard_of(u)))
                .collect(),
        };
        let users = topology
            .users
            .keys()
            .map(|&u| (u, User::default()))
            .collect();
        let mut bare = Bare {
            scenario,
            rng: SplitMix64(seed),
            now: Time::ZERO,
            queue: BTreeMap::new(),
            sent: 0,
            controller: Controller::new(scenario.controller.clone(), topology, Time::ZERO),
            center: ConfigCenter::new(),
            nodes,
            shipping: BTreeSet::new(),
            users,
            down: BTreeSet::new(),
            failed_since: BTreeMap::new(),
            out: BareOutcome::default(),
        };
        bare.schedule_faults();
        bare.at(Time::ZERO, Msg::Tick);
        let ids: Vec<NodeId> = bare.nodes.keys().copied().collect();
        for id in ids {
            bare.at(Time::ZERO, Msg::ReplicateTimer(id));
        }
        for u in 0..scenario.topology.users {
            let first = bare.write_period();
            bare.after(first, Msg::UserTimer(UserId(u)));
        }
        bare
    }

    fn schedule_faults(&mut self) {
        let end = self.scenario.duration_s * 1000;
        for (i, fault) in self.scenario.faults.iter().enumerate() {
            let start = match (fault.at_ms, fault.window_ms) {
                (Some(at), _) => at,
                (None, Some([lo, hi])) => self.rng.range(lo, hi),
                (None, None) => 0,
            };
            self.at(Time::from_millis(start), Msg::Fault(i, false));
            if let Some(heal) = fault.duration_ms.map(|d| start + d).filter(|&h| h < end) {
                self.at(Time::from_millis(heal), Msg::Fault(i, true));
            }
        }
    }

    fn at(&mut self, time: Time, msg: Msg) {
        self.sent += 1;
        self.queue.insert((time, self.sent), msg);
    }

    fn after(&mut self, delay: Duration, msg: Msg) {
        self.at(self.now + delay, msg);
    }

    /// Sends `msg` over the network: one one-way latency from the scenario's range.
    fn send(&mut self, msg: Msg) {
        let net = &self.scenario.network;
        let us = self
            .rng
            .range(net.latency_min_ms * 1000, net.latency_max_ms * 1000);
        self.after(Duration::from_micros(us), msg);
    }

    fn write_period(&mut self) -> Duration {
        let period = 1_000_000 / self.scenario.workload.writes_per_s.max(1) as u64;
        Duration::from_micros(self.rng.range(period / 2, period * 3 / 2))
    }

    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::Tick => {
                self.controller.tick(self.now);
                self.drain_controller();
                let next = self
                    .controller
                    .next_tick()
                    .max(self.now + Duration::from_micros(1));
                self.at(next, Msg::Tick);
            }
            Msg::Heartbeat(node, heartbeat, sent) => self.on_heartbeat(node, heartbeat, sent),
            Msg::Report(node, report, sent) => {
                // The service drops an answer that comes after the call's deadline.
                if self.now.saturating_since(sent) <= self.controller.params().heartbeat_timeout() {
                    self.controller.handle_report(self.now, node, report);
                    self.drain_controller();
                }
            }
            Msg::UserTimer(user) => self.on_user_timer(user),
            Msg::Write(user, node, write) => self.on_write(user, node, write),
            Msg::WriteReply(user, reply) => self.on_write_reply(user, reply),
            Msg::ReplicateTimer(node) => {
                self.replicate(node);
                let every = self.replication_timeout();
                self.after(every, Msg::ReplicateTimer(node));
            }
            Msg::Append(backup, append) => self.on_append(backup, append),
            Msg::AppendReply(primary, reply) => {
                self.shipping.remove(&primary);
                if !self.down.contains(&primary) {
                    let mut events = Vec::new();
                    let node = self.nodes.get_mut(&primary).expect("known node");
                    node.on_append_reply(&reply, &mut events);
                    self.replicate(primary);
                }
            }
            Msg::AppendLost(primary) => {
                self.shipping.remove(&primary);
            }
            Msg::Publish(publish) => self.on_publish(publish),
            Msg::PublishReply(reply) => {
                self.controller.handle_publish_reply(self.now, reply);
                self.drain_controller();
            }
            Msg::Push(user, route) => {
                let state = self.users.get_mut(&user).expect("known user");
                if state.route.as_ref().is_none_or(|r| r.epoch < route.epoch) {
                    let epoch = route.epoch;
                    state.route = Some(route);
                    self.send(Msg::Ack(user, epoch));
                }
            }
            Msg::Ack(user, epoch) => self.center.ack(user, epoch),
            Msg::Fault(i, heal) => self.on_fault(i, heal),
        }
    }

    fn drain_controller(&mut self) {
        while let Some(action) = self.controller.poll_action() {
            match action {
                Action::Heartbeat { node, heartbeat } => {
                    let sent = self.now;
                    self.send(Msg::Heartbeat(node, heartbeat, sent));
                }
                Action::Publish { epoch, configs } => {
                    self.send(Msg::Publish(Publish { epoch, configs }))
                }
                Action::Note(Note::FailoverStarted { cluster, .. }) => {
                    if let Some(&since) = self.failed_since.get(&cluster) {
                        let ms = self.now.saturating_since(since).as_millis() as u64;
                        self.out.detection_ms.push(ms);
                    }
                }
                Action::Note(Note::Promoted {
                    epoch,
                    resumed: false,
                    ..
                }) if epoch > Epoch(1) => self.out.failovers += 1,
                Action::Note(_) | Action::Alarm(_) | Action::Persist(_) => {}
            }
        }
    }

    fn on_heartbeat(&mut self, id: NodeId, heartbeat: Heartbeat, sent: Time) {
        if self.down.contains(&id) {
            return;
        }
        let mut events = Vec::new();
        let node = self.nodes.get_mut(&id).expect("known node");
        let report = node.on_heartbeat(&heartbeat, self.now, &mut events);
        self.send(Msg::Report(id, report, sent));
    }

    fn on_user_timer(&mut self, user: UserId) {
        let timeout = Duration::from_millis(self.scenario.workload.write_timeout_ms);
        let now = self.now;
        let keys = self.scenario.workload.keys_per_user.max(1) as u64;
        let state = self.users.get_mut(&user).expect("known user");
        let idle = state
            .in_flight
            .is_none_or(|t| now.saturating_since(t) >= timeout);
        if let (true, Some(route)) = (idle, state.route.clone()) {
            state.seq += 1;
            state.in_flight = Some(now);
            let seq = state.seq;
            let write = Write {
                id: WriteId { user, seq },
                epoch: route.epoch,
                key: format!("u{}k{}", user.0, seq % keys),
                value: seq,
            };
            self.send(Msg::Write(user, route.node, write));
        }
        let next = self.write_period();
        self.after(next, Msg::UserTimer(user));
    }

    fn on_write(&mut self, user: UserId, id: NodeId, write: Write) {
        if self.down.contains(&id) {
            return;
        }
        let mut events = Vec::new();
        let node = self.nodes.get_mut(&id).expect("known node");
        let reply = node.on_write(&write, self.now, &mut events);
        if events.iter().any(|e| matches!(e, NodeEvent::Accepted(_))) {
            self.replicate(id);
        }
        self.send(Msg::WriteReply(user, reply));
    }

    fn on_write_reply(&mut self, user: UserId, reply: WriteReply) {
        let state = self.users.get_mut(&user).expect("known user");
        state.in_flight = None;
        match reply {
            WriteReply::Ok { .. } => self.out.writes_ok += 1,
            WriteReply::Rejected {
                route: Some(route), ..
            } if state.route.as_ref().is_none_or(|r| r.epoch < route.epoch) => {
                state.route = Some(route)
            }
            WriteReply::Rejected { .. } => {}
        }
    }

    fn replication_timeout(&self) -> Duration {
        Duration::from_millis(self.scenario.replication.timeout_ms)
    }

    /// Ships the next batch to the backup peer, one append in flight per primary.
    fn replicate(&mut self, id: NodeId) {
        if self.down.contains(&id) || self.shipping.contains(&id) {
            return;
        }
        let node = &self.nodes[&id];
        if node.volatile.peer_lsn == Some(node.disk.last_lsn()) {
            return;
        }
        let Some(append) = node.next_append(self.scenario.replication.batch) else {
            return;
        };
        self.shipping.insert(id);
        self.send(Msg::Append(id.peer(), append));
    }

    fn on_append(&mut self, backup: NodeId, append: Append) {
        let primary = backup.peer();
        if self.down.contains(&backup) {
            // The call times out; the primary tries again after that.
            let timeout = self.replication_timeout();
            self.after(timeout, Msg::AppendLost(primary));
            return;
        }
        let mut events = Vec::new();
        let node = self.nodes.get_mut(&backup).expect("known node");
        let reply = node.on_append(&append, &mut events);
        self.send(Msg::AppendReply(primary, reply));
    }

    fn on_publish(&mut self, publish: Publish) {
        let configs = publish.configs.clone();
        let reply = self.center.publish(publish);
        if reply.stored {
            for config in configs.into_iter().filter(|c| c.epoch == reply.epoch) {
                let route = Route {
                    epoch: config.epoch,
                    node: config.node,
                    address: config.address,
                };
                self.send(Msg::Push(config.user, route));
            }
        }
        self.send(Msg::PublishReply(reply));
    }

    fn on_fault(&mut self, i: usize, heal: bool) {
        let FaultKind::Crash { nodes } = &self.scenario.faults[i].kind else {
            unreachable!("run() refuses every other kind");
        };
        for name in nodes {
            for id in self.expand(name) {
                if heal {
                    self.nodes.get_mut(&id).expect("known node").restart();
                    self.shipping.remove(&id);
                    self.down.remove(&id);
                } else {
                    self.down.insert(id);
                }
            }
        }
        let (total, threshold) = (
            self.scenario.topology.nodes_per_cluster as usize,
            self.controller.params().ratio_threshold,
        );
        for cluster in Cluster::BOTH {
            let up = total - self.down.iter().filter(|n| n.cluster == cluster).count();
            if cluster_available(up, total, threshold) {
                self.failed_since.remove(&cluster);
            } else {
                self.failed_since.entry(cluster).or_insert(self.now);
            }
        }
    }

    /// `a/0` is one node; `a` is a whole cluster.
    fn expand(&self, name: &str) -> Vec<NodeId> {
        self.nodes
            .keys()
            .copied()
            .filter(|id| id.to_string() == name || id.cluster.letter().to_string() == name)
            .collect()
    }
}
