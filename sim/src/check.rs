//! The invariant checkers and the per-run measures. They read only what the world did (the
//! trace and the final disks), never the controller's own opinion of itself.

use crate::availability::{availability, Availability};
use crate::effects::{effects, Effects};
use crate::scenario::Scenario;
use crate::trace::Event;
use crate::world::RunOutput;
use serde::Serialize;
use standby::controller::{AlarmEvent, AlarmKind, Note, Resolution};
use standby::node::NodeEvent;
use standby::params::cluster_available;
use standby::protocol::{QuarantineSummary, Role};
use standby::service::node::ReplicationMode;
use standby::time::Time;
use standby::types::{Cluster, Epoch, Lsn, NodeId, Shard, UserId, WriteId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A broken invariant or expectation, with the evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    /// Which invariant (`single-writer`, `single-leader`, `epochs-monotonic`, `durability`, `accounted-loss`,
    /// `convergence`, `users-converge`, `liveness`, `expectation`).
    pub invariant: &'static str,
    /// What happened, with the events that prove it.
    pub message: String,
    /// When it happened (simulated time), when one instant tells it.
    pub at: Option<Time>,
}

/// Every checker, by the name its violations carry.
pub const CHECKERS: [&str; 9] = [
    "single-writer",
    "single-leader",
    "epochs-monotonic",
    "durability",
    "accounted-loss",
    "convergence",
    "users-converge",
    "liveness",
    "expectation",
];

/// What one run measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Measures {
    /// Failovers (promotions of the other cluster).
    pub failovers: u32,
    /// Failovers declared while the primary was truly available.
    pub false_failovers: u32,
    /// Per declared failure: from the true failure to the declaration, in ms.
    pub detection_ms: Vec<u64>,
    /// Per failover: from the true failure to the last user's ack of the new epoch, in ms.
    pub rto_ms: Vec<u64>,
    /// Per loss of the leading replica (killed, deposed, expired): from then to the first
    /// action (a heartbeat, as a rule) of another replica, in ms.
    pub takeover_ms: Vec<u64>,
    /// Acknowledged writes missing from the final primary.
    pub lost_writes: u64,
    /// The span of their acknowledgement times, in ms.
    pub lost_span_ms: u64,
    /// Writes moved to quarantine over the run.
    pub quarantined: u64,
    /// Whether a second alarm was raised.
    pub second_alarm: bool,
    /// Whether the double-failure state was entered.
    pub double_failure: bool,
    /// Whether a replica raised the alarm that it cannot reach etcd.
    pub etcd_alarm: bool,
    /// Whether a lag alarm was raised.
    pub lag_alarm: bool,
    /// Whether a promotion was held back for an operator (`promotion_lag_entries`).
    pub promotion_held: bool,
    /// What became of the users' writes.
    pub availability: Availability,
}

/// The verdict on one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Verdict {
    /// Everything broken.
    pub violations: Vec<Violation>,
    /// What was measured.
    pub measures: Measures,
    /// What the faults did, and the controller transitions seen (for coverage).
    #[serde(skip)]
    pub effects: Effects,
}

struct Checker<'a> {
    scenario: &'a Scenario,
    out: &'a RunOutput,
    violations: Vec<Violation>,
}

/// Checks every invariant and expectation of `scenario` on `out`.
pub fn check(scenario: &Scenario, out: &RunOutput) -> Verdict {
    let mut checker = Checker {
        scenario,
        out,
        violations: Vec::new(),
    };
    checker.single_writer();
    checker.single_leader();
    checker.epochs_monotonic();
    // Every entry each node held through the run, computed once for both checks that use it.
    let held = checker.held();
    let (lost_writes, lost_span_ms) = checker.lost_writes(&held);
    checker.convergence(&held);
    checker.users_converge();
    checker.liveness();
    let mut measures = checker.measures();
    measures.lost_writes = lost_writes;
    measures.lost_span_ms = lost_span_ms;
    checker.expectations(&measures);
    let effects = effects(scenario, out);
    checker.vacuity(&effects);
    Verdict {
        violations: checker.violations,
        measures,
        effects,
    }
}

fn ms(t: Time) -> u64 {
    t.as_millis()
}

impl Checker<'_> {
    fn fail(&mut self, invariant: &'static str, message: String) {
        self.fail_at(invariant, None, message);
    }

    fn fail_at(&mut self, invariant: &'static str, at: Option<Time>, message: String) {
        self.violations.push(Violation {
            invariant,
            message,
            at,
        });
    }

    fn events(&self) -> impl Iterator<Item = (Time, &Event)> {
        self.out.events.iter().map(|(t, e)| (*t, e))
    }

    /// Every entry each node holds at the end, by position and write: what it discarded
    /// from its log (as the trace recorded it, taking a node that installed its primary's
    /// data to hold what that primary had discarded) and then its log.
    fn held(&self) -> BTreeMap<NodeId, Vec<(Lsn, WriteId)>> {
        let mut held: BTreeMap<NodeId, Vec<(Lsn, WriteId)>> = BTreeMap::new();
        for (_, event) in self.events() {
            match event {
                Event::Node {
                    node,
                    event: NodeEvent::Trimmed { ids, .. },
                } => held.entry(*node).or_default().extend(ids),
                Event::Node {
                    node,
                    event: NodeEvent::Installed { base },
                } => {
                    let primary = node.shard().node(node.cluster.other());
                    let from = held.get(&primary).cloned().unwrap_or_default();
                    let kept = from.into_iter().filter(|(lsn, _)| lsn <= base).collect();
                    held.insert(*node, kept);
                }
                Event::Wiped { node } => {
                    held.remove(node);
                }
                _ => {}
            }
        }
        for (node, disk) in &self.out.disks {
            let log = disk.log.iter().map(|e| (e.lsn, e.id));
            held.entry(*node).or_default().extend(log);
        }
        held
    }

    /// Per shard, accepted writes carry non-decreasing epochs in time, and each epoch belongs
    /// to one cluster.
    fn single_writer(&mut self) {
        let mut last: BTreeMap<Shard, (Time, NodeId, Epoch, WriteId)> = BTreeMap::new();
        let mut owner: BTreeMap<Epoch, (Cluster, Time, NodeId)> = BTreeMap::new();
        let mut found = Vec::new();
        for (t, event) in self.events() {
            let Event::Node {
                node,
                event: NodeEvent::Accepted(entry),
            } = event
            else {
                continue;
            };
            let shard = node.shard();
            if let Some(&(t0, n0, e0, w0)) = last.get(&shard) {
                if entry.epoch < e0 {
                    found.push((t, format!(
                        "{shard}: {n0} accepted {w0} at epoch {e0} at {t0}, then {node} accepted {} at older epoch {} at {t}",
                        entry.id, entry.epoch
                    )));
                }
            }
            last.insert(shard, (t, *node, entry.epoch, entry.id));
            match owner.get(&entry.epoch) {
                Some(&(c, t0, n0)) if c != node.cluster => found.push((t, format!(
                    "epoch {} accepted writes in both clusters: {n0} at {t0} and {node} ({}) at {t}",
                    entry.epoch, entry.id
                ))),
                Some(_) => {}
                None => {
                    owner.insert(entry.epoch, (node.cluster, t, *node));
                }
            }
        }
        for (t, message) in found.into_iter().take(3) {
            self.fail_at("single-writer", Some(t), message);
        }
    }

    /// The epochs that became durable: some shard's in a state made durable (two promotions
    /// decided at once may be saved in one write). A leader that loses etcd while saving a
    /// promotion has noted an epoch that never began: its successor restores the one before.
    fn durable_epochs(&self) -> BTreeSet<Epoch> {
        (self.events())
            .flat_map(|(_, e)| match e {
                Event::EpochPersisted { epoch, shards } => {
                    let epochs = shards.values().map(|(_, e)| *e);
                    Some(epochs.chain([*epoch]))
                }
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// At most one controller replica acts at any instant: the terms that actions (heartbeats,
    /// publications, alarms) are sent in only rise. An action in a term older than one already
    /// seen is a deposed leader acting after its successor began.
    fn single_leader(&mut self) {
        let mut newest: Option<(Time, u16, u64)> = None;
        let mut found = Vec::new();
        for (t, event) in self.events() {
            let &Event::Acting { replica, term } = event else {
                continue;
            };
            match newest {
                Some((t0, r0, term0)) if term < term0 => found.push((t, format!(
                    "controller/{replica} acted in term {term} at {t}, after controller/{r0} had acted in term {term0} at {t0}"
                ))),
                _ => newest = Some((t, replica, term)),
            }
        }
        for (t, message) in found.into_iter().take(3) {
            self.fail_at("single-leader", Some(t), message);
        }
    }

    /// Epochs never go backwards at any node (between wipes), user, replica's config center
    /// (across its crashes too: it refills from etcd, whose epoch never falls) or the
    /// controller's durable state.
    fn epochs_monotonic(&mut self) {
        let mut nodes: BTreeMap<NodeId, Epoch> = BTreeMap::new();
        let mut users: BTreeMap<UserId, Epoch> = BTreeMap::new();
        let mut centers: BTreeMap<u16, Epoch> = BTreeMap::new();
        let mut controller = Epoch(0);
        let mut found = Vec::new();
        for (t, event) in self.events() {
            match event {
                Event::Wiped { node } => {
                    nodes.remove(node);
                }
                Event::Node {
                    node,
                    event: NodeEvent::Role { epoch, .. },
                } => {
                    let seen = nodes.entry(*node).or_default();
                    if epoch < seen {
                        found.push(format!(
                            "{node} went from epoch {seen} back to {epoch} at {t}"
                        ));
                    }
                    *seen = (*seen).max(*epoch);
                }
                Event::UserConfig { user, epoch, .. } => {
                    let seen = users.entry(*user).or_default();
                    if epoch <= seen {
                        found.push(format!("{user} applied epoch {epoch} after {seen} at {t}"));
                    }
                    *seen = (*seen).max(*epoch);
                }
                Event::EpochPersisted { epoch, .. } => {
                    if *epoch < controller {
                        found.push(format!(
                            "the controller persisted epoch {epoch} after {controller} at {t}"
                        ));
                    }
                    controller = controller.max(*epoch);
                }
                Event::CenterPublished {
                    replica,
                    epoch,
                    stored: true,
                } => {
                    let center = centers.entry(*replica).or_default();
                    if epoch < center {
                        found.push(format!(
                            "config center of controller/{replica} stored epoch {epoch} after {center} at {t}"
                        ));
                    }
                    *center = (*center).max(*epoch);
                }
                _ => {}
            }
        }
        for message in found.into_iter().take(3) {
            self.fail("epochs-monotonic", message);
        }
    }

    /// Durability (sync) and accounted loss (async): every acknowledged write is in the final
    /// data of its shard's primary, or, in async mode only, in the old primary's quarantine,
    /// in a loss report, and acknowledged before the end of the window its alarm named.
    fn lost_writes(&mut self, held: &BTreeMap<NodeId, Vec<(Lsn, WriteId)>>) -> (u64, u64) {
        let Some(durable) = &self.out.durable else {
            return (0, 0);
        };
        let primary = |shard: Shard| shard.node(durable.primary_of(shard).unwrap_or(Cluster::A));
        let in_log =
            |node: NodeId| -> BTreeSet<WriteId> { held[&node].iter().map(|&(_, id)| id).collect() };
        let in_quarantine = |shard: Shard| -> BTreeSet<WriteId> {
            Cluster::BOTH
                .iter()
                .flat_map(|&c| {
                    self.out.disks[&shard.node(c)]
                        .quarantine
                        .iter()
                        .map(|e| e.id)
                })
                .collect()
        };
        let wiped: BTreeSet<NodeId> = (self.events())
            .filter_map(|(_, e)| match e {
                Event::Wiped { node } => Some(*node),
                _ => None,
            })
            .collect();
        let mut logs: BTreeMap<Shard, BTreeSet<WriteId>> = BTreeMap::new();
        let mut quarantines: BTreeMap<Shard, BTreeSet<WriteId>> = BTreeMap::new();
        let accepted: BTreeMap<WriteId, Time> = (self.events())
            .filter_map(|(t, e)| match e {
                Event::Node {
                    event: NodeEvent::Accepted(entry),
                    ..
                } => Some((entry.id, t)),
                _ => None,
            })
            .collect();
        let mut lost: Vec<(Time, WriteId, NodeId, Lsn)> = Vec::new();
        for (_, event) in self.events() {
            let Event::Ok { id, node, lsn, .. } = event else {
                continue;
            };
            let t = accepted.get(id).copied().unwrap_or_default();
            let shard = node.shard();
            if wiped.contains(&primary(shard)) {
                continue; // A wiped primary's data is gone by the fault's own definition.
            }
            let log = logs.entry(shard).or_insert_with(|| in_log(primary(shard)));
            if !log.contains(id) {
                lost.push((t, *id, *node, *lsn));
            }
        }
        let mode = self.scenario.replication.mode;
        let mut found = Vec::new();
        for &(t, id, node, lsn) in &lost {
            let shard = node.shard();
            let quarantined = (quarantines.entry(shard))
                .or_insert_with(|| in_quarantine(shard))
                .contains(&id);
            if mode == ReplicationMode::Sync {
                found.push(("durability", format!(
                    "sync mode: {id} accepted by {node} at {lsn} at {t} and acknowledged is not in the final primary {}",
                    primary(shard)
                )));
            } else if !quarantined && !self.alarm_open_for(node) {
                found.push(("accounted-loss", format!(
                    "{id} accepted by {node} at {lsn} at {t} and acknowledged is in neither the final primary {} nor any quarantine, and no alarm is open",
                    primary(shard)
                )));
            } else if quarantined {
                if let Some(problem) = self.loss_reported(node, lsn, t) {
                    found.push(("accounted-loss", format!("{id} at {t}: {problem}")));
                }
            }
        }
        for (invariant, message) in found.into_iter().take(3) {
            self.fail(invariant, message);
        }
        self.first_alarm_not_above_loss();
        let span = match (lost.first(), lost.last()) {
            (Some(first), Some(last)) => last.0.saturating_since(first.0).as_millis() as u64,
            _ => 0,
        };
        (lost.len() as u64, span)
    }

    /// Whether a first alarm about `node` (its cluster's, or its own) is still open.
    fn alarm_open_for(&self, node: NodeId) -> bool {
        (self.out.durable.iter())
            .flat_map(|d| d.open_alarms.values())
            .any(|a| {
                a.kind == AlarmKind::PrimaryFailed
                    && a.cluster == node.cluster
                    && a.recovery_point.contains_key(&node.shard())
            })
    }

    /// A quarantined lost write must be in the LSN range its shard has in a loss report (or a
    /// resumed alarm's list of losses) closing a first alarm of its node's cluster, and have
    /// been acknowledged before the end of the window its first alarm named.
    fn loss_reported(&self, node: NodeId, lsn: Lsn, acked_at: Time) -> Option<String> {
        let shard = node.shard();
        let mut windows = Vec::new();
        let mut alarms_of_cluster = BTreeSet::new();
        let mut reported = false;
        for (_, event) in self.events() {
            match event {
                Event::Alarm(AlarmEvent::Raised(alarm)) if alarm.cluster == node.cluster => {
                    alarms_of_cluster.insert(alarm.id);
                    if let Some(point) = alarm.recovery_point.get(&shard) {
                        windows.push(point.window_end);
                    }
                }
                Event::Alarm(AlarmEvent::Cleared { id, resolution, .. })
                    if alarms_of_cluster.contains(id) =>
                {
                    let covered = losses_of(resolution)
                        .and_then(|report| report.get(&shard))
                        .and_then(|q| q.lsns)
                        .is_some_and(|(a, b)| a <= lsn && lsn <= b);
                    reported |= covered;
                }
                _ => {}
            }
        }
        if !reported && !self.alarm_open_for(node) {
            return Some(format!("quarantined at {node} {lsn} but in no loss report"));
        }
        match windows.iter().max() {
            Some(&end) if acked_at > end => Some(format!(
                "accepted at {acked_at}, after the end of the alarm's window {end}"
            )),
            None => Some("lost, but no first alarm named its shard".to_owned()),
            _ => None,
        }
    }

    /// The first alarm's count of surely unapplied writes is never above the true loss: the
    /// loss report's, or, for an alarm closed because its cluster was made primary again, the
    /// losses of the shards that had rejoined in between (the others lost nothing).
    fn first_alarm_not_above_loss(&mut self) {
        let mut raised: BTreeMap<u64, BTreeMap<Shard, u64>> = BTreeMap::new();
        let mut found = Vec::new();
        for (_, event) in self.events() {
            match event {
                Event::Alarm(AlarmEvent::Raised(alarm))
                    if alarm.kind == AlarmKind::PrimaryFailed =>
                {
                    let counts = (alarm.recovery_point.iter())
                        .filter_map(|(s, p)| p.surely_unapplied.map(|n| (*s, n)))
                        .collect();
                    raised.insert(alarm.id, counts);
                }
                Event::Alarm(AlarmEvent::Cleared { id, resolution, .. }) => {
                    let resumed = matches!(resolution, Resolution::Resumed(_));
                    let Some(report) = losses_of(resolution) else {
                        continue;
                    };
                    for (shard, claimed) in raised.remove(id).unwrap_or_default() {
                        let actual = match (report.get(&shard), resumed) {
                            (Some(q), _) => q.count,
                            (None, true) => continue,
                            (None, false) => 0,
                        };
                        if claimed > actual {
                            found.push(format!(
                                "alarm {id} said {claimed} writes of {shard} were surely unapplied; its loss report found {actual}"
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        for message in found.into_iter().take(3) {
            self.fail("accounted-loss", message);
        }
    }

    /// When every fault has healed and the quiet period passed: identical data per shard,
    /// replication primary -> backup, both clusters healthy, no alarm open.
    fn convergence(&mut self, held: &BTreeMap<NodeId, Vec<(Lsn, WriteId)>>) {
        let expect = &self.scenario.expect;
        // A fault that never started (its transition did not come in time) needs no heal.
        let started = || self.out.schedule.iter().zip(&self.scenario.faults);
        let started = || started().filter_map(|(slot, f)| slot.map(|slot| (slot, f)));
        let last_heal = (started().map(|((s, h), _)| h.unwrap_or(s)))
            .max()
            .unwrap_or(0);
        let healed = started().all(|((_, h), f)| {
            h.is_some() || matches!(f.kind, crate::scenario::FaultKind::Wipe { .. })
        });
        if !expect.converge
            || !healed
            || last_heal + expect.quiet_ms > self.scenario.duration_s * 1000
        {
            return;
        }
        let Some(durable) = self.out.durable.clone() else {
            return self.fail(
                "convergence",
                "the controller never persisted a state".into(),
            );
        };
        let mut found = Vec::new();
        for (&shard, state) in &durable.shards {
            let (i, epoch) = (shard.0, state.epoch);
            let (p, b) = (shard.node(state.primary), shard.node(state.primary.other()));
            let (pd, bd) = (&self.out.disks[&p], &self.out.disks[&b]);
            if pd.role != Role::Primary || pd.epoch != epoch {
                found.push(format!(
                    "{p} is {:?} at {}, not primary at {epoch}",
                    pd.role, pd.epoch
                ));
            }
            if bd.role != Role::Backup || bd.epoch != epoch {
                found.push(format!(
                    "{b} is {:?} at {}, not backup at {epoch}",
                    bd.role, bd.epoch
                ));
            }
            if held[&p] != held[&b] {
                found.push(format!(
                    "shard {i}: {p} holds {} entries, {b} holds {}, and they differ",
                    held[&p].len(),
                    held[&b].len()
                ));
            }
        }
        for alarm in durable.open_alarms.values() {
            found.push(format!(
                "alarm {} ({:?} of cluster {}) is still open",
                alarm.id, alarm.kind, alarm.cluster
            ));
        }
        found.extend(self.etcd_alarms_open());
        for message in found.into_iter().take(4) {
            self.fail("convergence", message);
        }
    }

    /// Each replica whose etcd alarm is still raised at the end (etcd is back by then).
    fn etcd_alarms_open(&self) -> Vec<String> {
        let mut open: BTreeMap<u16, Time> = BTreeMap::new();
        for (t, event) in self.events() {
            match event {
                Event::EtcdUnreachable { replica, .. } => open.insert(*replica, t),
                Event::EtcdReachable { replica } => open.remove(replica),
                _ => None,
            };
        }
        (open.into_iter())
            .map(|(r, t)| format!("controller/{r} still says etcd is unreachable (since {t})"))
            .collect()
    }

    /// After a publication, every user applies its shard's newest epoch within the bound,
    /// and writes with no older epoch after that. A user whose shard did not move keeps the
    /// epoch it has.
    fn users_converge(&mut self) {
        let bound = Duration::from_millis(self.scenario.expect.users_converge_ms);
        let end = Time::from_millis(self.scenario.duration_s * 1000);
        let Some(targets) = self.user_targets() else {
            return;
        };
        let mut applied: BTreeMap<UserId, Time> = BTreeMap::new();
        let mut pushed: BTreeSet<UserId> = BTreeSet::new();
        let mut stale = None;
        for (t, event) in self.events() {
            match event {
                Event::UserConfig { user, epoch: e, .. }
                    if targets.get(user).is_some_and(|(epoch, _)| e >= epoch) =>
                {
                    applied.entry(*user).or_insert(t);
                }
                // A user acknowledges every config the center pushes it, new to it or not.
                Event::CenterAck { user, epoch: e, .. }
                    if targets.get(user).is_some_and(|(epoch, _)| e >= epoch) =>
                {
                    pushed.insert(*user);
                }
                Event::Invoke { id, node, epoch: e } if stale.is_none() => {
                    let Some(&(epoch, published_at)) = targets.get(&id.user) else {
                        continue;
                    };
                    if *e < epoch && t > published_at + bound {
                        stale = Some(format!("{} wrote {id} to {node} with old epoch {e} at {t}, after {epoch} was published at {published_at}", id.user));
                    }
                }
                _ => {}
            }
        }
        for (user, &(epoch, published_at)) in &targets {
            let deadline = published_at + bound;
            if deadline > end {
                continue;
            }
            if !pushed.contains(user) {
                // Claim 3: the config center carries every user's new config, whatever a
                // refused write may have taught the user meanwhile.
                self.fail(
                    "users-converge",
                    format!("the config center never pushed {epoch} to {user} (published at {published_at})"),
                );
            }
            match applied.get(user) {
                Some(&t) if t <= deadline => {}
                Some(&t) => self.fail(
                    "users-converge",
                    format!("{user} applied {epoch} at {t}, later than {deadline}"),
                ),
                None => self.fail(
                    "users-converge",
                    format!("{user} never applied {epoch} (published at {published_at})"),
                ),
            }
        }
        if let Some(message) = stale {
            self.fail("users-converge", message);
        }
    }

    /// Per user: the epoch its shard was last made durable in, and when that promotion was
    /// noted (its publication follows at once). `None` before the first durable epoch.
    fn user_targets(&self) -> Option<BTreeMap<UserId, (Epoch, Time)>> {
        let durable = self.durable_epochs();
        let mut noted: BTreeMap<Epoch, Time> = BTreeMap::new();
        let mut last = None;
        for (t, event) in self.events() {
            match event {
                Event::Controller(Note::Promoted { epoch, .. }) if durable.contains(epoch) => {
                    noted.insert(*epoch, t);
                }
                Event::EpochPersisted { shards, .. } => last = Some(shards),
                _ => {}
            }
        }
        let shards = last?;
        let topology = &self.scenario.topology;
        let targets = (0..topology.users).filter_map(|u| {
            let (_, epoch) = *shards.get(&topology.shard_of(u))?;
            Some((UserId(u), (epoch, *noted.get(&epoch)?)))
        });
        Some(targets.collect())
    }

    /// Truth intervals during which a cluster was failed (ratio at or below the threshold).
    fn truth_failed(&self) -> BTreeMap<Cluster, Vec<(Time, Option<Time>)>> {
        let threshold = self.scenario.controller.ratio_threshold;
        let mut out: BTreeMap<Cluster, Vec<(Time, Option<Time>)>> = BTreeMap::new();
        for (t, event) in self.events() {
            let Event::Truth {
                cluster,
                available,
                total,
                ..
            } = event
            else {
                continue;
            };
            let failed = !cluster_available(*available, *total, threshold);
            interval(out.entry(*cluster).or_default(), t, failed);
        }
        out
    }

    /// Truth intervals during which a node was down or cut off from the controller.
    fn truth_nodes_down(&self) -> BTreeMap<NodeId, Vec<(Time, Option<Time>)>> {
        let mut out: BTreeMap<NodeId, Vec<(Time, Option<Time>)>> = BTreeMap::new();
        for (t, event) in self.events() {
            let Event::Truth {
                cluster,
                total,
                down,
                ..
            } = event
            else {
                continue;
            };
            for i in 0..*total as u16 {
                let node = NodeId::new(*cluster, i);
                interval(out.entry(node).or_default(), t, down.contains(&i));
            }
        }
        out
    }

    /// The longest a failure can go unnoticed: a heartbeat sent just after it is unanswered
    /// for a timeout, seen at the next evaluation, then debounced.
    fn detection_window(&self) -> Duration {
        let p = &self.scenario.controller;
        let rounds = p.failure_rounds as u64 + 1;
        Duration::from_millis(p.heartbeat_timeout_ms + rounds * p.heartbeat_interval_ms)
    }

    fn failed_at(intervals: &[(Time, Option<Time>)], t: Time) -> Option<Time> {
        intervals
            .iter()
            .find(|(s, e)| *s <= t && e.is_none_or(|e| t < e))
            .map(|(s, _)| *s)
    }

    /// A primary failure with an available backup ends in a failover within the bound; with
    /// the backup failed too, the second alarm is raised and nothing is promoted. Per shard: a
    /// cluster's failure owes a failover of every shard whose primary it held; with shard
    /// failover on, a primary node's failure owes one of its shard while its backup node (and
    /// that node's cluster) stays available, and the second alarm naming the shard while its
    /// backup node is down too.
    fn liveness(&mut self) {
        let truth = self.truth_failed();
        let nodes = self.truth_nodes_down();
        let none = Vec::new();
        let failed = |c: Cluster| truth.get(&c).unwrap_or(&none);
        let node_down = |n: NodeId| nodes.get(&n).unwrap_or(&none);
        let mut history = History::default();
        let mut found = Vec::new();
        for (t, event) in self.events() {
            match event {
                Event::EpochPersisted { shards, .. } => history.primaries.push((t, shards)),
                Event::Controller(Note::Promoted {
                    cluster,
                    epoch,
                    shard,
                    ..
                }) => {
                    // A primary that failed less than a detection window ago may still look
                    // available: no controller can know sooner.
                    let intervals = match shard {
                        None => failed(*cluster),
                        Some(s) => node_down(s.node(*cluster)),
                    };
                    let known_down = Self::failed_at(intervals, t)
                        .is_some_and(|since| t.saturating_since(since) >= self.detection_window());
                    if *epoch > Epoch(1) && known_down {
                        let what =
                            shard.map_or(cluster.to_string(), |s| s.node(*cluster).to_string());
                        found.push(format!(
                            "{what} was promoted at {t} in {epoch} while it was down"
                        ));
                    }
                    history.promotions.push((t, *cluster, *shard));
                }
                Event::Alarm(AlarmEvent::Raised(a)) if a.kind == AlarmKind::BackupFailed => {
                    history.second_alarms.push((t, a.cluster, a.shard))
                }
                Event::Alarm(AlarmEvent::Raised(a)) if a.kind == AlarmKind::PromotionHeld => {
                    let shards = a.recovery_point.keys().copied().collect();
                    history.holds.push((t, a.id, a.cluster, shards))
                }
                Event::Operator { approved, .. } => history.approvals.push((t, approved)),
                Event::Alarm(AlarmEvent::Cleared { id, .. }) => {
                    history.cleared.insert(*id, t);
                }
                _ => {}
            }
        }
        found.extend(self.cluster_liveness(&history, &failed, &node_down));
        if self.scenario.controller.shard_failover {
            found.extend(self.node_liveness(&history, &failed, &nodes));
        }
        for message in found.into_iter().take(3) {
            self.fail("liveness", message);
        }
    }

    /// How long before a failure a backup's own failure still delays its promotion: it must
    /// answer again for `recovery_rounds` evaluations after a timeout.
    fn recovery_window(&self) -> Duration {
        let p = &self.scenario.controller;
        let rounds = p.recovery_rounds as u64 + 1;
        Duration::from_millis(p.heartbeat_timeout_ms + rounds * p.heartbeat_interval_ms)
    }

    /// The cluster half of [`Checker::liveness`].
    fn cluster_liveness<'h>(
        &self,
        history: &History<'h>,
        failed: &dyn Fn(Cluster) -> &'h Vec<(Time, Option<Time>)>,
        node_down: &dyn Fn(NodeId) -> &'h Vec<(Time, Option<Time>)>,
    ) -> Vec<String> {
        let n = self.scenario.topology.nodes_per_cluster;
        let mut found = Vec::new();
        for cluster in Cluster::BOTH {
            for &(start, stop) in failed(cluster) {
                let Some((deadline, since)) = self.owed(start, stop) else {
                    continue;
                };
                let shards: Vec<Shard> = (0..n)
                    .map(Shard)
                    .filter(|&s| history.primary_at(s, start) == Some(cluster))
                    .collect();
                if shards.is_empty() {
                    continue;
                }
                let other = cluster.other();
                // The backup must stay available for the whole bound to owe a failover; if
                // it fails meanwhile, the double-failure rules apply instead.
                let backup_down_meanwhile = overlaps(failed(other), start, deadline);
                if !backup_down_meanwhile {
                    // A shard whose backup node was down meanwhile may be in a double failure
                    // of its own, which the node rules judge.
                    let owed = shards
                        .iter()
                        .filter(|s| !overlaps(node_down(s.node(other)), since, deadline));
                    for &shard in owed {
                        let held =
                            self.held_back(history, (cluster, shard), (start, stop), deadline);
                        if !history.promoted(shard, other, start, deadline) && !held {
                            found.push(format!("primary {cluster} failed at {start} with {other} available, and {other} was not promoted by {deadline} ({shard})"));
                            break;
                        }
                    }
                } else if Self::failed_at(failed(other), start).is_some()
                    && !(history.second_alarms.iter())
                        .any(|&(t, c, s)| c == other && s.is_none() && t <= deadline)
                    // A backup promoted within the bound owed no alarm: it came back soon
                    // enough, or it was promoted just before it failed too, its promotion made
                    // durable after the failure's start (swarm seed 35734: then it is the new
                    // primary, and the second alarm names the old one). Nor did one whose
                    // promotion was held for an operator: it was back by then (swarm seed
                    // 16251 of the gate's release check: a's nodes returned 28 ms after b
                    // failed, and a, lagging, was held instead of promoted).
                    && !shards.iter().any(|&s| {
                        history.promoted(s, other, start, deadline)
                            || self.held_back(history, (cluster, s), (start, stop), deadline)
                    })
                {
                    found.push(format!("primary {cluster} failed at {start} with {other} down too, and no second alarm for {other} was raised by {deadline}"));
                }
            }
        }
        found
    }

    /// Whether a failure from `start` to `stop` (`None`: to the end) owes a failover: it
    /// lasted `failover_within_ms` within the run. If so, the deadline, and how far back a
    /// backup's own failure still counts against it (the recovery window).
    fn owed(&self, start: Time, stop: Option<Time>) -> Option<(Time, Time)> {
        let bound = Duration::from_millis(self.scenario.expect.failover_within_ms);
        let end = Time::from_millis(self.scenario.duration_s * 1000);
        let lasting = stop.unwrap_or(end).saturating_since(start) >= bound;
        if !lasting || start + bound > end {
            return None;
        }
        let window = self.recovery_window().as_micros() as u64;
        Some((start + bound, Time(start.0.saturating_sub(window))))
    }

    /// Whether `shard`'s promotion out of `cluster`, owed by `deadline` for a failure from
    /// `start` to `stop`, was rightly held back for an operator: a promotion-held alarm
    /// about it was raised by the deadline and still open at the start (raised for an
    /// earlier failure of the same primary, which the controller never saw end: swarm seed
    /// 57740, its cluster back for 148 ms), and the shard was made primary somewhere (the
    /// backup, or the old primary back) within `failover_within_ms` of its release, the
    /// operator's approval or the old primary's return, whichever came first. Nothing is owed
    /// while neither has come, nor when the run ends before the bound.
    fn held_back(
        &self,
        history: &History,
        (cluster, shard): (Cluster, Shard),
        (start, stop): (Time, Option<Time>),
        deadline: Time,
    ) -> bool {
        let open_at_start = |id: &u64| history.cleared.get(id).is_none_or(|&c| c >= start);
        let hold = (history.holds.iter()).find(|(t, id, c, shards)| {
            *t <= deadline && open_at_start(id) && *c == cluster && shards.contains(&shard)
        });
        let Some(&(held_at, id, _, _)) = hold else {
            return false;
        };
        let approved = (history.approvals.iter())
            .find(|(t, ids)| *t >= held_at && ids.contains(&id))
            .map(|(t, _)| *t);
        let release = match (approved, stop) {
            (Some(a), Some(s)) => a.min(s),
            (a, s) => match a.or(s) {
                Some(release) => release,
                None => return true,
            },
        };
        let bound = Duration::from_millis(self.scenario.expect.failover_within_ms);
        let end = Time::from_millis(self.scenario.duration_s * 1000);
        let served = |c: Cluster| history.promoted(shard, c, held_at, release + bound);
        release + bound > end || served(cluster) || served(cluster.other())
    }

    /// The node half of [`Checker::liveness`] (shard failover on).
    fn node_liveness<'h>(
        &self,
        history: &History<'h>,
        failed: &dyn Fn(Cluster) -> &'h Vec<(Time, Option<Time>)>,
        nodes: &BTreeMap<NodeId, Vec<(Time, Option<Time>)>>,
    ) -> Vec<String> {
        let none = Vec::new();
        let node_down = |n: NodeId| nodes.get(&n).unwrap_or(&none);
        let mut found = Vec::new();
        for (&node, intervals) in nodes {
            for &(start, stop) in intervals {
                let Some((deadline, since)) = self.owed(start, stop) else {
                    continue;
                };
                let shard = node.shard();
                if history.primary_at(shard, start) != Some(node.cluster) {
                    continue;
                }
                let backup = node.peer();
                // A cluster that fails meanwhile is the cluster rules' to judge.
                if overlaps(failed(node.cluster), start, deadline)
                    || overlaps(failed(backup.cluster), since, deadline)
                {
                    continue;
                }
                let promoted = history.promoted(shard, backup.cluster, start, deadline);
                let held = self.held_back(history, (node.cluster, shard), (start, stop), deadline);
                if !overlaps(node_down(backup), since, deadline) {
                    if !promoted && !held {
                        found.push(format!("primary node {node} failed at {start} with {backup} available, and {backup} was not made {shard}'s primary by {deadline}"));
                    }
                } else if Self::failed_at(node_down(backup), start).is_some()
                    && !promoted
                    && !held
                    && !(history.second_alarms.iter())
                        .any(|&(t, c, s)| c == backup.cluster && s == Some(shard) && t <= deadline)
                {
                    found.push(format!("primary node {node} failed at {start} with {backup} down too, and no second alarm naming {shard} was raised by {deadline}"));
                }
            }
        }
        found
    }

    fn measures(&self) -> Measures {
        let truth = self.truth_failed();
        let nodes = self.truth_nodes_down();
        let none = Vec::new();
        // A cluster's failure, or one shard's primary node's.
        let down = |cluster: Cluster, shard: Option<Shard>| match shard {
            None => truth.get(&cluster).unwrap_or(&none),
            Some(s) => nodes.get(&s.node(cluster)).unwrap_or(&none),
        };
        let mut m = Measures {
            availability: availability(&self.out.events),
            ..Measures::default()
        };
        let mut promoted = BTreeSet::new();
        let durable = self.durable_epochs();
        let mut lost: Option<(Time, u16)> = None;
        for (t, event) in self.events() {
            match event {
                Event::LeadLost { replica, .. } => lost = lost.or(Some((t, *replica))),
                Event::Acting { replica, .. } if lost.is_some_and(|(_, r)| r != *replica) => {
                    let (since, _) = lost.take().expect("checked");
                    m.takeover_ms
                        .push(t.saturating_since(since).as_millis() as u64);
                }
                Event::Controller(Note::FailoverStarted { cluster, shard }) => {
                    // The controller acts on heartbeats up to a timeout and its debounce
                    // rounds old: a failure that healed within that span still explains it.
                    let lookback = self.detection_window();
                    let intervals = down(*cluster, *shard);
                    let recent = (intervals.iter())
                        .filter(|(s, e)| *s <= t && e.is_none_or(|e| e + lookback >= t))
                        .map(|(s, _)| *s)
                        .next_back();
                    match recent {
                        Some(since) => m
                            .detection_ms
                            .push(t.saturating_since(since).as_millis() as u64),
                        None => m.false_failovers += 1,
                    }
                }
                Event::Controller(Note::Promoted {
                    epoch,
                    resumed: false,
                    cluster,
                    shard,
                }) if *epoch > Epoch(1) && durable.contains(epoch) && promoted.insert(*epoch) => {
                    // Once per epoch: a leader deposed before its promotion was durable, and
                    // its successor, may both note the same epoch's promotion.
                    m.failovers += 1;
                    let since = Self::failed_at(down(cluster.other(), *shard), t).unwrap_or(t);
                    if let Some(rto) = self.rto(since, *epoch, *shard) {
                        m.rto_ms.push(rto);
                    }
                }
                Event::Controller(Note::DoubleFailure { .. }) => m.double_failure = true,
                Event::EtcdUnreachable { .. } => m.etcd_alarm = true,
                Event::Alarm(AlarmEvent::Raised(a)) if a.kind == AlarmKind::BackupFailed => {
                    m.second_alarm = true
                }
                Event::Alarm(AlarmEvent::Raised(a)) if a.kind == AlarmKind::Lag => {
                    m.lag_alarm = true
                }
                Event::Alarm(AlarmEvent::Raised(a)) if a.kind == AlarmKind::PromotionHeld => {
                    m.promotion_held = true
                }
                Event::Node {
                    event: NodeEvent::Quarantined(q),
                    ..
                } => m.quarantined += q.count,
                _ => {}
            }
        }
        m
    }

    /// From `since` to the moment the last user acknowledged `epoch` or newer: every user,
    /// or, for one shard's failover, that shard's users.
    fn rto(&self, since: Time, epoch: Epoch, shard: Option<Shard>) -> Option<u64> {
        let topology = &self.scenario.topology;
        let moved = |u: UserId| shard.is_none_or(|s| topology.shard_of(u.0) == s);
        let mut acked: BTreeMap<UserId, Time> = BTreeMap::new();
        for (t, event) in self.events() {
            if let Event::CenterAck { user, epoch: e, .. } = event {
                if *e >= epoch && moved(*user) {
                    acked.entry(*user).or_insert(t);
                }
            }
        }
        let users = (0..self.scenario.topology.users).filter(|&u| moved(UserId(u)));
        if acked.len() < users.count() {
            return None;
        }
        acked
            .values()
            .max()
            .map(|t| ms(*t).saturating_sub(ms(since)))
    }

    /// Every declared fault had some effect, and the run shows every effect the scenario
    /// requires: a fault that changed nothing tested nothing.
    fn vacuity(&mut self, effects: &Effects) {
        for (i, (fault, found)) in self
            .scenario
            .faults
            .iter()
            .zip(&effects.per_fault)
            .enumerate()
        {
            let started = self.out.schedule.get(i).is_some_and(|slot| slot.is_some());
            if found.is_empty() && started {
                let what = format!("{:?}", fault.kind);
                self.fail(
                    "vacuity",
                    format!("fault #{i} ({what}) had no observable effect: it tested nothing"),
                );
            }
        }
        for wanted in &self.scenario.expect.effects {
            if !effects.run.contains(wanted.as_str()) {
                self.fail(
                    "vacuity",
                    format!(
                        "the scenario requires the effect `{wanted}`, and the run never showed it"
                    ),
                );
            }
        }
    }

    fn expectations(&mut self, m: &Measures) {
        let e = self.scenario.expect.clone();
        let mut problems = Vec::new();
        if let Some(n) = e.failovers.filter(|&n| n != m.failovers) {
            problems.push(format!(
                "expected exactly {n} failovers, saw {}",
                m.failovers
            ));
        }
        if let Some(n) = e.failovers_max.filter(|&n| m.failovers > n) {
            problems.push(format!(
                "expected at most {n} failovers, saw {}",
                m.failovers
            ));
        }
        if let Some(want) = e.second_alarm.filter(|&w| w != m.second_alarm) {
            problems.push(format!(
                "expected second alarm raised = {want}, saw {}",
                m.second_alarm
            ));
        }
        if let Some(want) = e.double_failure.filter(|&w| w != m.double_failure) {
            problems.push(format!(
                "expected double failure = {want}, saw {}",
                m.double_failure
            ));
        }
        if let Some(want) = e.etcd_alarm.filter(|&w| w != m.etcd_alarm) {
            problems.push(format!(
                "expected the etcd alarm raised = {want}, saw {}",
                m.etcd_alarm
            ));
        }
        if let Some(want) = e.lag_alarm.filter(|&w| w != m.lag_alarm) {
            problems.push(format!(
                "expected a lag alarm raised = {want}, saw {}",
                m.lag_alarm
            ));
        }
        if let Some(want) = e.promotion_held.filter(|&w| w != m.promotion_held) {
            problems.push(format!(
                "expected a promotion held for the operator = {want}, saw {}",
                m.promotion_held
            ));
        }
        if let Some(max) = e.detection_ms_max {
            if let Some(d) = m.detection_ms.iter().find(|&&d| d > max) {
                problems.push(format!("detection took {d} ms, over the {max} ms allowed"));
            }
        }
        if let Some(max) = e.rto_ms_max {
            if let Some(r) = m.rto_ms.iter().find(|&&r| r > max) {
                problems.push(format!("recovery took {r} ms, over the {max} ms allowed"));
            }
        }
        if let Some(max) = e.lost_writes_max.filter(|&max| m.lost_writes > max) {
            problems.push(format!(
                "{} acknowledged writes lost, over the {max} allowed",
                m.lost_writes
            ));
        }
        if let Some(min) = e.quarantined_min.filter(|&min| m.quarantined < min) {
            problems.push(format!(
                "{} writes quarantined, expected at least {min}",
                m.quarantined
            ));
        }
        if m.false_failovers > e.false_failovers_max.unwrap_or(0) {
            problems.push(format!("{} false failovers", m.false_failovers));
        }
        if let Some(want) = e.moved_shards.as_ref() {
            let moved = self.moved_shards();
            if *want != moved {
                problems.push(format!(
                    "expected the primaries of shards {want:?} to move, saw {moved:?}"
                ));
            }
        }
        for message in problems {
            self.fail("expectation", message);
        }
    }
}

impl Checker<'_> {
    /// The shards whose primary left cluster `a` (where every run starts) at some point, by
    /// the epochs made durable.
    fn moved_shards(&self) -> Vec<u16> {
        let mut moved = BTreeSet::new();
        for (_, event) in self.events() {
            if let Event::EpochPersisted { shards, .. } = event {
                let away = shards.iter().filter(|(_, (c, _))| *c != Cluster::A);
                moved.extend(away.map(|(s, _)| s.0));
            }
        }
        moved.into_iter().collect()
    }
}

/// The per-shard losses an alarm was closed with, if it was a first alarm.
fn losses_of(resolution: &Resolution) -> Option<&BTreeMap<Shard, QuarantineSummary>> {
    match resolution {
        Resolution::LossReport(report) | Resolution::Resumed(report) => Some(report),
        Resolution::BackupRecovered
        | Resolution::CaughtUp
        | Resolution::NewEpoch
        | Resolution::Approved
        | Resolution::PrimaryBack => None,
    }
}

/// Opens an interval at `t` when `now_failed` and none is open; closes the open one when not.
fn interval(intervals: &mut Vec<(Time, Option<Time>)>, t: Time, now_failed: bool) {
    let open = intervals.last().is_some_and(|(_, end)| end.is_none());
    if now_failed && !open {
        intervals.push((t, None));
    } else if !now_failed && open {
        intervals.last_mut().expect("open").1 = Some(t);
    }
}

/// Whether any of `intervals` overlaps `[from, to]`.
fn overlaps(intervals: &[(Time, Option<Time>)], from: Time, to: Time) -> bool {
    (intervals.iter()).any(|&(s, e)| s <= to && e.is_none_or(|e| e > from))
}

/// Every shard's primary cluster and the epoch it was made so in, as an epoch made durable
/// says.
type ShardPrimaries = BTreeMap<Shard, (Cluster, Epoch)>;

/// What the controller decided, in time, for the liveness rules.
#[derive(Default)]
struct History<'a> {
    /// Every shard's primary cluster and epoch, from each epoch made durable.
    primaries: Vec<(Time, &'a ShardPrimaries)>,
    /// Promotions noted: the cluster, and the shard of a node's failover.
    promotions: Vec<(Time, Cluster, Option<Shard>)>,
    /// Second alarms: the backup's cluster, and the shard of one about a node.
    second_alarms: Vec<(Time, Cluster, Option<Shard>)>,
    /// Promotion-held alarms: the id, the failed cluster, the shards held back.
    holds: Vec<(Time, u64, Cluster, Vec<Shard>)>,
    /// When each alarm closed, by id.
    cleared: BTreeMap<u64, Time>,
    /// The operator's approvals: when, and which alarms.
    approvals: Vec<(Time, &'a [u64])>,
}

impl History<'_> {
    /// The cluster holding `shard`'s primary at `t`, by the durable epochs.
    fn primary_at(&self, shard: Shard, t: Time) -> Option<Cluster> {
        let (_, shards) = self.primaries.iter().rev().find(|(s, _)| *s <= t)?;
        shards.get(&shard).map(|(c, _)| *c)
    }

    /// Whether `shard` was promoted in `cluster` within `[start, deadline]`: noted, or made
    /// durable (a promotion decided just before the failure and made durable after its start
    /// counts: swarm seed 6369, the truth saw the primary fail between the two).
    fn promoted(&self, shard: Shard, cluster: Cluster, start: Time, deadline: Time) -> bool {
        let within = |t: Time| t >= start && t <= deadline;
        let noted = (self.promotions.iter())
            .any(|&(t, c, s)| within(t) && c == cluster && s.is_none_or(|s| s == shard));
        let durable = (self.primaries.iter())
            .any(|(t, m)| within(*t) && m.get(&shard).is_some_and(|(c, _)| *c == cluster));
        noted || durable
    }
}
