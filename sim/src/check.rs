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
    let (lost_writes, lost_span_ms) = checker.lost_writes();
    checker.convergence();
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

    /// The epochs that became durable. A leader that loses etcd while saving a promotion has
    /// noted an epoch that never began: its successor restores the one before.
    fn durable_epochs(&self) -> BTreeSet<Epoch> {
        (self.events())
            .filter_map(|(_, e)| match e {
                Event::EpochPersisted { epoch, .. } => Some(*epoch),
                _ => None,
            })
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
    fn lost_writes(&mut self) -> (u64, u64) {
        let Some(durable) = &self.out.durable else {
            return (0, 0);
        };
        let primary = durable.primary;
        let in_log = |node: NodeId| -> BTreeSet<WriteId> {
            self.out.disks[&node].log.iter().map(|e| e.id).collect()
        };
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
            if wiped.contains(&shard.node(primary)) {
                continue; // A wiped primary's data is gone by the fault's own definition.
            }
            let log = logs
                .entry(shard)
                .or_insert_with(|| in_log(shard.node(primary)));
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
                    shard.node(primary)
                )));
            } else if !quarantined && !self.alarm_open_for(node.cluster) {
                found.push(("accounted-loss", format!(
                    "{id} accepted by {node} at {lsn} at {t} and acknowledged is in neither the final primary {} nor any quarantine, and no alarm is open",
                    shard.node(primary)
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

    fn alarm_open_for(&self, cluster: Cluster) -> bool {
        (self.out.durable.iter())
            .flat_map(|d| d.open_alarms.values())
            .any(|a| a.kind == AlarmKind::PrimaryFailed && a.cluster == cluster)
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
        if !reported && !self.alarm_open_for(node.cluster) {
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
    fn convergence(&mut self) {
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
        for i in 0..self.scenario.topology.nodes_per_cluster {
            let (p, b) = (
                NodeId::new(durable.primary, i),
                NodeId::new(durable.primary.other(), i),
            );
            let (pd, bd) = (&self.out.disks[&p], &self.out.disks[&b]);
            if pd.role != Role::Primary || pd.epoch != durable.epoch {
                found.push(format!(
                    "{p} is {:?} at {}, not primary at {}",
                    pd.role, pd.epoch, durable.epoch
                ));
            }
            if bd.role != Role::Backup || bd.epoch != durable.epoch {
                found.push(format!(
                    "{b} is {:?} at {}, not backup at {}",
                    bd.role, bd.epoch, durable.epoch
                ));
            }
            let ids = |d: &standby::node::NodeDisk| {
                d.log.iter().map(|e| (e.lsn, e.id)).collect::<Vec<_>>()
            };
            if ids(pd) != ids(bd) {
                found.push(format!(
                    "shard {i}: {p} holds {} entries, {b} holds {}, and they differ",
                    pd.log.len(),
                    bd.log.len()
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

    /// After a publication, every user applies it within the bound, and no user writes with
    /// an older epoch after that.
    fn users_converge(&mut self) {
        let bound = Duration::from_millis(self.scenario.expect.users_converge_ms);
        let end = Time::from_millis(self.scenario.duration_s * 1000);
        let durable = self.durable_epochs();
        let Some((published_at, epoch)) = self
            .events()
            .filter_map(|(t, e)| match e {
                Event::Controller(Note::Promoted { epoch, .. }) if durable.contains(epoch) => {
                    Some((t, *epoch))
                }
                _ => None,
            })
            .last()
        else {
            return;
        };
        let deadline = published_at + bound;
        if deadline > end {
            return;
        }
        let mut applied: BTreeMap<UserId, Time> = BTreeMap::new();
        let mut stale = None;
        for (t, event) in self.events() {
            match event {
                Event::UserConfig { user, epoch: e, .. } if *e >= epoch => {
                    applied.entry(*user).or_insert(t);
                }
                Event::Invoke { id, node, epoch: e }
                    if *e < epoch && t > deadline && stale.is_none() =>
                {
                    stale = Some(format!("{} wrote {id} to {node} with old epoch {e} at {t}, after {epoch} was published at {published_at}", id.user));
                }
                _ => {}
            }
        }
        for u in 0..self.scenario.topology.users {
            match applied.get(&UserId(u)) {
                Some(&t) if t <= deadline => {}
                Some(&t) => self.fail(
                    "users-converge",
                    format!("user {u} applied {epoch} at {t}, later than {deadline}"),
                ),
                None => self.fail(
                    "users-converge",
                    format!("user {u} never applied {epoch} (published at {published_at})"),
                ),
            }
        }
        if let Some(message) = stale {
            self.fail("users-converge", message);
        }
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
            } = event
            else {
                continue;
            };
            let intervals = out.entry(*cluster).or_default();
            let open = intervals.last().is_some_and(|(_, end)| end.is_none());
            let failed = !cluster_available(*available, *total, threshold);
            if failed && !open {
                intervals.push((t, None));
            } else if !failed && open {
                intervals.last_mut().expect("open").1 = Some(t);
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
    /// the backup failed too, the second alarm is raised and nothing is promoted.
    fn liveness(&mut self) {
        let truth = self.truth_failed();
        let bound = Duration::from_millis(self.scenario.expect.failover_within_ms);
        let end = Time::from_millis(self.scenario.duration_s * 1000);
        let none = Vec::new();
        let failed = |c: Cluster| truth.get(&c).unwrap_or(&none);
        // Which cluster was primary when: from every epoch the controller made durable.
        let mut primaries: Vec<(Time, Cluster)> = Vec::new();
        let mut promotions: Vec<(Time, Cluster)> = Vec::new();
        let mut second_alarms: Vec<(Time, Cluster)> = Vec::new();
        let mut found = Vec::new();
        for (t, event) in self.events() {
            match event {
                Event::EpochPersisted { primary, .. } => primaries.push((t, *primary)),
                Event::Controller(Note::Promoted { cluster, epoch, .. }) => {
                    // A cluster that failed less than a detection window ago may still look
                    // available: no controller can know sooner.
                    let known_down = Self::failed_at(failed(*cluster), t)
                        .is_some_and(|since| t.saturating_since(since) >= self.detection_window());
                    if *epoch > Epoch(1) && known_down {
                        found.push(format!(
                            "cluster {cluster} was promoted at {t} in {epoch} while it was down"
                        ));
                    }
                    promotions.push((t, *cluster));
                }
                Event::Alarm(AlarmEvent::Raised(a)) if a.kind == AlarmKind::BackupFailed => {
                    second_alarms.push((t, a.cluster))
                }
                _ => {}
            }
        }
        let primary_at = |t: Time| {
            primaries
                .iter()
                .rev()
                .find(|(s, _)| *s <= t)
                .map(|(_, c)| *c)
        };
        for cluster in Cluster::BOTH {
            for &(start, stop) in failed(cluster) {
                let lasting = stop.unwrap_or(end).saturating_since(start) >= bound;
                if !lasting || start + bound > end || primary_at(start) != Some(cluster) {
                    continue;
                }
                let other = cluster.other();
                let deadline = start + bound;
                // The backup must stay available for the whole bound to owe a failover; if
                // it fails meanwhile, the double-failure rules apply instead.
                let backup_down_meanwhile = failed(other)
                    .iter()
                    .any(|&(s, e)| s <= deadline && e.is_none_or(|e| e > start));
                if !backup_down_meanwhile {
                    // A promotion decided just before the failure and made durable after
                    // its start counts (swarm seed 6369: the truth saw the primary fail
                    // between the two).
                    let within =
                        |&(t, c): &(Time, Cluster)| c == other && t >= start && t <= deadline;
                    let promoted = promotions.iter().any(within) || primaries.iter().any(within);
                    if !promoted {
                        found.push(format!("primary {cluster} failed at {start} with {other} available, and {other} was not promoted by {deadline}"));
                    }
                } else if Self::failed_at(failed(other), start).is_some()
                    && !second_alarms
                        .iter()
                        .any(|&(t, c)| c == other && t <= deadline)
                    // A backup that came back soon enough to be promoted owed no alarm.
                    && !promotions
                        .iter()
                        .any(|&(t, c)| c == other && t >= start && t <= deadline)
                {
                    found.push(format!("primary {cluster} failed at {start} with {other} down too, and no second alarm for {other} was raised by {deadline}"));
                }
            }
        }
        for message in found.into_iter().take(3) {
            self.fail("liveness", message);
        }
    }

    fn measures(&self) -> Measures {
        let truth = self.truth_failed();
        let none = Vec::new();
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
                Event::Controller(Note::FailoverStarted { cluster }) => {
                    // The controller acts on heartbeats up to a timeout and its debounce
                    // rounds old: a failure that healed within that span still explains it.
                    let lookback = self.detection_window();
                    let intervals = truth.get(cluster).unwrap_or(&none);
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
                }) if *epoch > Epoch(1) && durable.contains(epoch) && promoted.insert(*epoch) => {
                    // Once per epoch: a leader deposed before its promotion was durable, and
                    // its successor, may both note the same epoch's promotion.
                    m.failovers += 1;
                    let since = Self::failed_at(truth.get(&cluster.other()).unwrap_or(&none), t)
                        .unwrap_or(t);
                    if let Some(rto) = self.rto(since, *epoch) {
                        m.rto_ms.push(rto);
                    }
                }
                Event::Controller(Note::DoubleFailure) => m.double_failure = true,
                Event::EtcdUnreachable { .. } => m.etcd_alarm = true,
                Event::Alarm(AlarmEvent::Raised(a)) if a.kind == AlarmKind::BackupFailed => {
                    m.second_alarm = true
                }
                Event::Alarm(AlarmEvent::Raised(a)) if a.kind == AlarmKind::Lag => {
                    m.lag_alarm = true
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

    /// From `since` to the moment the last user acknowledged `epoch` or newer.
    fn rto(&self, since: Time, epoch: Epoch) -> Option<u64> {
        let mut acked: BTreeMap<UserId, Time> = BTreeMap::new();
        for (t, event) in self.events() {
            if let Event::CenterAck { user, epoch: e, .. } = event {
                if *e >= epoch {
                    acked.entry(*user).or_insert(t);
                }
            }
        }
        if acked.len() < self.scenario.topology.users as usize {
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
        if m.false_failovers > 0 {
            problems.push(format!("{} false failovers", m.false_failovers));
        }
        for message in problems {
            self.fail("expectation", message);
        }
    }
}

/// The per-shard losses an alarm was closed with, if it was a first alarm.
fn losses_of(resolution: &Resolution) -> Option<&BTreeMap<Shard, QuarantineSummary>> {
    match resolution {
        Resolution::LossReport(report) | Resolution::Resumed(report) => Some(report),
        Resolution::BackupRecovered | Resolution::CaughtUp | Resolution::NewEpoch => None,
    }
}
