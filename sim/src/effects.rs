//! The vacuity guard and coverage. A fault that changed nothing tests nothing: every run
//! records what each declared fault actually did (a crashed node stopped answering, a cut
//! blocked replication, a partition delayed a publication...), and a scenario can require
//! effects by name. Campaigns count how often each controller transition and each effect
//! happened, and list those never reached.

use crate::scenario::{FaultKind, Party, Scenario};
use crate::trace::Event;
use crate::world::RunOutput;
use standby::controller::{AlarmEvent, AlarmKind, Availability, Note, Resolution};
use standby::node::NodeEvent;
use standby::protocol::{RejectReason, Role};
use standby::time::Time;
use standby::types::{Cluster, NodeId, WriteId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Every effect a run can show, by name (the names `expect.effects` takes).
pub const EFFECTS: [&str; 14] = [
    "node-unanswering",
    "replication-blocked",
    "publication-during-cut",
    "writes-disrupted",
    "traffic-during-fault",
    "controller-restarted",
    "data-wiped",
    "fenced-write-rejected",
    "quarantined-writes",
    "resync-moved-data",
    "leader-changed",
    "etcd-alarm",
    "lag-alarm",
    "promotion-approved",
];

/// Every controller transition the coverage report counts.
pub const TRANSITIONS: [&str; 27] = [
    "node-declared-down",
    "node-declared-up",
    "cluster-declared-failed",
    "cluster-declared-available",
    "failover-started",
    "double-failure",
    "promoted-failover",
    "promoted-resume",
    "shard-failover-started",
    "shard-double-failure",
    "promoted-shard-failover",
    "promoted-shard-resume",
    "stop-point",
    "backup-rejoining",
    "publish-acked",
    "first-alarm-raised",
    "second-alarm-raised",
    "alarm-closed-loss-report",
    "alarm-closed-primary-resumed",
    "alarm-closed-resumed-with-loss",
    "alarm-closed-backup-recovered",
    "lag-alarm-raised",
    "alarm-closed-caught-up",
    "alarm-closed-new-epoch",
    "promotion-held",
    "alarm-closed-approved",
    "alarm-closed-primary-back",
];

/// What one run showed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    /// Per declared fault (in file order), the effects it had.
    pub per_fault: Vec<BTreeSet<&'static str>>,
    /// Every effect the run showed.
    pub run: BTreeSet<&'static str>,
    /// How often each transition happened.
    pub transitions: BTreeMap<&'static str, u64>,
}

/// The effects of `out`'s faults, and its transitions.
pub fn effects(scenario: &Scenario, out: &RunOutput) -> Effects {
    let view = View::new(scenario, out);
    let end = Time::from_millis(scenario.duration_s * 1000);
    let mut result = Effects::default();
    for (fault, slot) in scenario.faults.iter().zip(&out.schedule) {
        let Some((start, heal)) = *slot else {
            result.per_fault.push(BTreeSet::new()); // It never started.
            continue;
        };
        let window = (
            Time::from_millis(start),
            heal.map_or(end, Time::from_millis),
        );
        let found = view.fault_effects(&fault.kind, window);
        result.run.extend(found.iter().copied());
        result.per_fault.push(found);
    }
    result.run.extend(view.run_effects());
    result.transitions = transitions(&out.events, scenario.topology.nodes_per_cluster as usize);
    result
}

/// The trace, indexed for the questions effects ask.
struct View<'a> {
    scenario: &'a Scenario,
    events: &'a [(Time, Event)],
    /// Which node each write went to.
    target: BTreeMap<WriteId, NodeId>,
}

impl<'a> View<'a> {
    fn new(scenario: &'a Scenario, out: &'a RunOutput) -> View<'a> {
        let target = (out.events.iter())
            .filter_map(|(_, e)| match e {
                Event::Invoke { id, node, .. } => Some((*id, *node)),
                _ => None,
            })
            .collect();
        View {
            scenario,
            events: &out.events,
            target,
        }
    }

    fn during(&self, (start, end): (Time, Time)) -> impl Iterator<Item = &'a Event> {
        (self.events.iter())
            .filter(move |(t, _)| *t >= start && *t < end)
            .map(|(_, e)| e)
    }

    fn nodes(&self, names: &[String]) -> BTreeSet<NodeId> {
        let n = self.scenario.topology.nodes_per_cluster;
        let mut out = BTreeSet::new();
        for name in names {
            match Party::parse(name, self.scenario) {
                Ok(Party::Node(node)) => {
                    out.insert(node);
                }
                Ok(Party::Cluster(c)) => out.extend((0..n).map(|i| NodeId::new(c, i))),
                _ => {}
            }
        }
        out
    }

    /// The controller saw one of `nodes` stop answering, or a user's write to one of them
    /// went unanswered or was refused, or replication into one of them stalled.
    fn unanswering(&self, nodes: &BTreeSet<NodeId>, window: (Time, Time)) -> bool {
        // Detection lags the fault by up to a heartbeat timeout plus an interval.
        let params = &self.scenario.controller;
        let slack =
            Duration::from_millis(params.heartbeat_timeout_ms + params.heartbeat_interval_ms);
        let seen_down = self.during((window.0, window.1 + slack)).any(|e| {
            matches!(e, Event::Controller(Note::NodeDeclared { node, available: false }) if nodes.contains(node))
        });
        seen_down || self.writes_disrupted(nodes, window) || self.replication_blocked(nodes, window)
    }

    fn writes_disrupted(&self, nodes: &BTreeSet<NodeId>, window: (Time, Time)) -> bool {
        self.during(window).any(|e| match e {
            Event::Unknown { id } | Event::Fail { id, .. } => {
                self.target.get(id).is_some_and(|n| nodes.contains(n))
            }
            _ => false,
        })
    }

    /// Some shard of `nodes` accepted writes during the window that its peer did not apply
    /// during it.
    fn replication_blocked(&self, nodes: &BTreeSet<NodeId>, window: (Time, Time)) -> bool {
        let shards: BTreeSet<u16> = nodes.iter().map(|n| n.index).collect();
        let mut accepted: BTreeSet<NodeId> = BTreeSet::new();
        let mut applied: BTreeSet<NodeId> = BTreeSet::new();
        for e in self.during(window) {
            match e {
                Event::Node {
                    node,
                    event: NodeEvent::Accepted(_),
                } => accepted.insert(*node),
                Event::Node {
                    node,
                    event: NodeEvent::Applied { .. },
                } => applied.insert(*node),
                _ => false,
            };
        }
        (accepted.iter()).any(|n| shards.contains(&n.index) && !applied.contains(&n.peer()))
    }

    fn fault_effects(&self, kind: &FaultKind, window: (Time, Time)) -> BTreeSet<&'static str> {
        let mut found = BTreeSet::new();
        let mut add = |yes: bool, effect: &'static str| {
            if yes {
                found.insert(effect);
            }
        };
        match kind {
            FaultKind::Crash { nodes } => add(
                self.unanswering(&self.nodes(nodes), window),
                "node-unanswering",
            ),
            FaultKind::Wipe { nodes } => {
                let nodes = self.nodes(nodes);
                let had_data = (self.events.iter()).take_while(|(t, _)| *t < window.0).any(|(_, e)| {
                    matches!(e, Event::Node { node, event: NodeEvent::Accepted(_) | NodeEvent::Applied { .. } } if nodes.contains(node))
                });
                add(had_data, "data-wiped");
            }
            FaultKind::Partition { from, to, .. } => {
                self.partition_effects(from, to, window, &mut add)
            }
            FaultKind::LinkCut { shards } => {
                let n = self.scenario.topology.nodes_per_cluster;
                let shards: Vec<u16> = if shards.is_empty() {
                    (0..n).collect()
                } else {
                    shards.clone()
                };
                let nodes = shards
                    .iter()
                    .flat_map(|&s| Cluster::BOTH.map(|c| NodeId::new(c, s)))
                    .collect();
                add(
                    self.replication_blocked(&nodes, window),
                    "replication-blocked",
                );
                add(self.lag_alarmed(window), "lag-alarm");
            }
            FaultKind::PacketLoss { .. } | FaultKind::Latency { .. } => {
                let traffic = self
                    .during(window)
                    .any(|e| matches!(e, Event::Invoke { .. }));
                add(traffic, "traffic-during-fault");
            }
            FaultKind::ControllerCrash => {
                // A restarted controller republishes the configs of its epoch at once.
                let restarted = (self.events.iter()).any(|(t, e)| {
                    *t >= window.1
                        && *t <= window.1 + Duration::from_secs(1)
                        && matches!(e, Event::PublishSent { .. })
                });
                add(restarted, "controller-restarted");
                add(self.leader_changed(window), "leader-changed");
            }
            FaultKind::ReplicaCrash { .. } | FaultKind::ReplicaPause { .. } => {
                add(self.leader_changed(window), "leader-changed");
            }
            FaultKind::EtcdPause => {
                let traffic = self
                    .during(window)
                    .any(|e| matches!(e, Event::Invoke { .. }));
                add(traffic, "traffic-during-fault");
                add(self.leader_changed(window), "leader-changed");
                add(self.etcd_alarmed(window), "etcd-alarm");
            }
            FaultKind::Approve => {
                let approved = self.during(window).any(|e| {
                    matches!(
                        e,
                        Event::Alarm(AlarmEvent::Cleared {
                            resolution: Resolution::Approved,
                            ..
                        })
                    )
                });
                add(approved, "promotion-approved");
            }
        }
        found
    }

    /// Whether the controller raised a lag alarm during the fault.
    fn lag_alarmed(&self, window: (Time, Time)) -> bool {
        (self.during(window))
            .any(|e| matches!(e, Event::Alarm(AlarmEvent::Raised(a)) if a.kind == AlarmKind::Lag))
    }

    /// Whether a replica raised the etcd alarm during the fault.
    fn etcd_alarmed(&self, window: (Time, Time)) -> bool {
        (self.during(window)).any(|e| matches!(e, Event::EtcdUnreachable { .. }))
    }

    /// Whether a leader stopped leading during the fault, or a replica began to lead before
    /// the quiet after it (a replica takes over up to an etcd lease TTL after a leader dies).
    fn leader_changed(&self, window: (Time, Time)) -> bool {
        let ttl = Duration::from_secs(self.scenario.control_plane.etcd_lease_ttl_s);
        let lost = self
            .during(window)
            .any(|e| matches!(e, Event::LeadLost { .. }));
        let took_over = (self.events.iter()).any(|(t, e)| {
            *t > window.0 && *t <= window.1 + ttl && matches!(e, Event::Leading { .. })
        });
        lost || took_over
    }

    fn partition_effects(
        &self,
        from: &[String],
        to: &[String],
        window: (Time, Time),
        add: &mut impl FnMut(bool, &'static str),
    ) {
        let sides = [from, to];
        let has = |want: &str| sides.map(|side| side.iter().any(|p| p == want));
        let [center, users] = ["config-center", "users"].map(has);
        // `controller`, `controller/1`, `controller/leader`: replicas; so is `config-center`
        // (every replica serves one: the world cuts the replicas themselves).
        let replica = |p: &String| p.starts_with("controller") || p == "config-center";
        let controller = sides.map(|side| side.iter().any(replica));
        let users = [0, 1].map(|i| users[i] || sides[i].iter().any(|p| p.starts_with("user/")));
        // Every replica serves a config center.
        let center = [0, 1].map(|i| center[i] || controller[i]);
        let nodes = sides.map(|side| self.nodes(side));
        let across = |a: [bool; 2], b: [bool; 2]| (a[0] && b[1]) || (a[1] && b[0]);
        let has_nodes = [!nodes[0].is_empty(), !nodes[1].is_empty()];
        let all_nodes: BTreeSet<NodeId> = nodes[0].union(&nodes[1]).copied().collect();
        if across(controller, has_nodes) {
            let seen = self.during(window).any(|e| {
                matches!(e, Event::Controller(Note::NodeDeclared { node, available: false }) if all_nodes.contains(node))
            });
            add(seen, "node-unanswering");
        }
        if across(center, users) {
            let published = self
                .during(window)
                .any(|e| matches!(e, Event::PublishSent { .. } | Event::CenterPublished { .. }));
            add(published, "publication-during-cut");
        }
        if across(users, has_nodes) {
            add(
                self.writes_disrupted(&all_nodes, window),
                "writes-disrupted",
            );
        }
        if across(controller, has("etcd")) {
            add(self.leader_changed(window), "leader-changed");
            add(self.etcd_alarmed(window), "etcd-alarm");
        }
        let crosses_clusters = nodes[0].iter().any(|a| nodes[1].contains(&a.peer()));
        if crosses_clusters {
            add(
                self.replication_blocked(&all_nodes, window),
                "replication-blocked",
            );
            add(self.lag_alarmed(window), "lag-alarm");
        }
    }

    /// Effects of the run as a whole: a write refused by a node of a cluster being fenced
    /// (from the failover's start until that cluster resumes or rejoins), writes moved to
    /// quarantine, and data a rejoining node received (a node's first join in epoch 1, at
    /// bootstrap, is not a rejoin).
    fn run_effects(&self) -> BTreeSet<&'static str> {
        let mut found = BTreeSet::new();
        let mut fenced: Option<Cluster> = None;
        let mut joins: BTreeMap<NodeId, u32> = BTreeMap::new();
        let mut rejoined: BTreeSet<NodeId> = BTreeSet::new();
        for (_, e) in self.events {
            match e {
                Event::Controller(Note::FailoverStarted {
                    cluster,
                    shard: None,
                }) => fenced = Some(*cluster),
                Event::Controller(Note::Promoted {
                    cluster,
                    resumed: true,
                    ..
                }) if fenced == Some(*cluster) => fenced = None,
                Event::Controller(Note::BackupRejoining { cluster, .. })
                    if fenced == Some(*cluster) =>
                {
                    fenced = None
                }
                Event::Fail {
                    id,
                    reason: RejectReason::NoLease | RejectReason::StaleEpoch,
                } => {
                    let node = self.target.get(id);
                    if node.is_some_and(|n| Some(n.cluster) == fenced) {
                        found.insert("fenced-write-rejected");
                    }
                }
                Event::Node {
                    node,
                    event: NodeEvent::Quarantined(q),
                } => {
                    let count = joins.entry(*node).or_default();
                    *count += 1;
                    if *count > 1 || q.epoch.0 > 1 {
                        rejoined.insert(*node);
                    }
                    if q.count > 0 {
                        found.insert("quarantined-writes");
                    }
                }
                Event::Node {
                    node,
                    event: NodeEvent::Applied { .. },
                } if rejoined.contains(node) => {
                    found.insert("resync-moved-data");
                }
                _ => {}
            }
        }
        found
    }
}

/// How often each controller transition happened in `events`, and the multi-failover stories
/// they tell (see [`STORIES`]).
fn transitions(events: &[(Time, Event)], nodes_per_cluster: usize) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    let mut stories = Stories {
        nodes_per_cluster,
        alarmed: BTreeMap::new(),
        rejoining: None,
        failed_over_from: BTreeSet::new(),
        primary: None,
    };
    for (_, event) in events {
        for key in stories.see(event) {
            *counts.entry(key).or_default() += 1;
        }
        if let Some(key) = transition(event) {
            *counts.entry(key).or_default() += 1;
        }
    }
    counts
}

/// The controller transition `event` records, by its coverage name, if it is one.
pub fn transition(event: &Event) -> Option<&'static str> {
    let key = match event {
        Event::Controller(note) => match note {
            Note::NodeDeclared {
                available: false, ..
            } => "node-declared-down",
            Note::NodeDeclared {
                available: true, ..
            } => "node-declared-up",
            Note::ClusterDeclared {
                availability: Availability::Failed,
                ..
            } => "cluster-declared-failed",
            Note::ClusterDeclared {
                availability: Availability::Available,
                ..
            } => "cluster-declared-available",
            Note::FailoverStarted { shard: None, .. } => "failover-started",
            Note::FailoverStarted { .. } => "shard-failover-started",
            Note::DoubleFailure { shard: None } => "double-failure",
            Note::DoubleFailure { .. } => "shard-double-failure",
            Note::Promoted {
                resumed: false,
                shard: Some(_),
                ..
            } => "promoted-shard-failover",
            Note::Promoted {
                resumed: true,
                shard: Some(_),
                ..
            } => "promoted-shard-resume",
            Note::Promoted { resumed: false, .. } => "promoted-failover",
            Note::Promoted {
                resumed: true,
                epoch,
                ..
            } if epoch.0 > 1 => "promoted-resume",
            Note::Promoted { .. } => return None, // The first epoch.
            Note::StopPoint { .. } => "stop-point",
            Note::BackupRejoining { .. } => "backup-rejoining",
            Note::PublishAcked { .. } => "publish-acked",
        },
        Event::Alarm(AlarmEvent::Raised(alarm)) => match alarm.kind {
            AlarmKind::PrimaryFailed => "first-alarm-raised",
            AlarmKind::BackupFailed => "second-alarm-raised",
            AlarmKind::Lag => "lag-alarm-raised",
            AlarmKind::PromotionHeld => "promotion-held",
        },
        Event::Alarm(AlarmEvent::Cleared { resolution, .. }) => match resolution {
            Resolution::LossReport(_) => "alarm-closed-loss-report",
            Resolution::Resumed(lost) if lost.is_empty() => "alarm-closed-primary-resumed",
            Resolution::Resumed(_) => "alarm-closed-resumed-with-loss",
            Resolution::BackupRecovered => "alarm-closed-backup-recovered",
            Resolution::CaughtUp => "alarm-closed-caught-up",
            Resolution::NewEpoch => "alarm-closed-new-epoch",
            Resolution::Approved => "alarm-closed-approved",
            Resolution::PrimaryBack => "alarm-closed-primary-back",
        },
        _ => return None,
    };
    Some(key)
}

/// The multi-failover stories the coverage report counts: a failover that starts before the
/// previous one has settled, the interleavings in which acknowledged writes were once lost
/// silently (issue 13).
pub const STORIES: [&str; 4] = [
    "failover-while-loss-report-waits",
    "failover-while-rejoin-unconfirmed",
    "failback",
    "fault-on-transition",
];

/// What the stories need to remember of the run so far.
struct Stories {
    /// Nodes in each cluster.
    nodes_per_cluster: usize,
    /// Clusters with a first alarm open (the id of each).
    alarmed: BTreeMap<u64, Cluster>,
    /// Clusters let rejoin, and whether each of their nodes has since joined.
    rejoining: Option<(Cluster, BTreeSet<NodeId>)>,
    /// Clusters that were failed over from.
    failed_over_from: BTreeSet<Cluster>,
    /// The current primary cluster.
    primary: Option<Cluster>,
}

impl Stories {
    /// The stories `event` completes.
    fn see(&mut self, event: &Event) -> Vec<&'static str> {
        let mut found = Vec::new();
        match event {
            Event::Alarm(AlarmEvent::Raised(a)) if a.kind == AlarmKind::PrimaryFailed => {
                self.alarmed.insert(a.id, a.cluster);
            }
            Event::Alarm(AlarmEvent::Cleared { id, .. }) => {
                self.alarmed.remove(id);
            }
            Event::Controller(Note::BackupRejoining { cluster, .. }) => {
                self.rejoining = Some((*cluster, BTreeSet::new()));
            }
            Event::Node {
                node,
                event:
                    NodeEvent::Role {
                        role: Role::Backup, ..
                    },
            } => {
                if let Some((cluster, joined)) = &mut self.rejoining {
                    if node.cluster == *cluster {
                        joined.insert(*node);
                    }
                }
            }
            Event::Controller(Note::FailoverStarted {
                cluster,
                shard: None,
            }) => {
                let backup = cluster.other();
                if self.alarmed.values().any(|&c| c == backup) {
                    found.push("failover-while-loss-report-waits");
                }
                if let Some((rejoiner, joined)) = &self.rejoining {
                    let nodes = self.nodes_per_cluster;
                    if *rejoiner == backup && joined.len() < nodes {
                        found.push("failover-while-rejoin-unconfirmed");
                    }
                }
                self.failed_over_from.insert(*cluster);
            }
            Event::Controller(Note::Promoted {
                cluster,
                shard: None,
                ..
            }) => {
                let failback = self.primary.is_some_and(|p| p != *cluster)
                    && self.failed_over_from.contains(cluster);
                if failback {
                    found.push("failback");
                }
                if self.primary != Some(*cluster) {
                    self.rejoining = None;
                }
                self.primary = Some(*cluster);
            }
            Event::Fault {
                healed: false,
                after: Some(_),
                ..
            } => found.push("fault-on-transition"),
            _ => {}
        }
        found
    }
}
