//! The failover story (claims 1, 4, 5, 6), one mechanism for two scopes: a whole primary
//! cluster failed by claim 4's ratio, whose shards all fail over together, or one shard's
//! primary node failed while its cluster stays available (issue 15, item 1). Either way the
//! old primaries are fenced, the backups' replication stopped, the first alarm raised with the
//! recovery point, the backup checked, the old leases waited out, and the shards promoted in
//! one new epoch.

use super::alarm::{Alarm, RecoveryPoint};
use super::state::Scope;
use super::{AlarmKind, Controller, Note, Resolution};
use crate::protocol::Role;
use crate::time::Time;
use crate::types::{Cluster, NodeId, Shard, UserId};
use std::collections::BTreeSet;

/// A failover under way: the primaries of `shards`, all in `from`, declared failed together.
#[derive(Clone, Debug, PartialEq)]
pub struct Failover {
    /// What failed: the cluster, or one shard's node.
    pub scope: Scope,
    /// The failed primaries' cluster.
    pub from: Cluster,
    /// The shards failing over (one, for a node's failure).
    pub shards: BTreeSet<Shard>,
    /// After this, the first alarm is raised even if some backup nodes did not answer.
    pub stop_deadline: Time,
    /// Whether the first alarm is out.
    pub alarm_raised: bool,
    /// Whether the backup side failed too: nothing is promoted until either side is back.
    pub double: bool,
    /// Started at this evaluation: it moves on from the next one.
    pub fresh: bool,
}

impl Failover {
    /// The one shard of a node's failure.
    pub(super) fn shard(&self) -> Option<Shard> {
        (self.scope == Scope::Node).then(|| *self.shards.first().expect("one shard"))
    }
}

impl Controller {
    /// Claims 1, 5, 6 and issue 15's shard failover: every shard not already failing over
    /// whose primary's cluster has failed starts a cluster failover; with shard failover on,
    /// every other whose primary node alone has failed starts one of its own.
    pub(super) fn start_failovers(&mut self, now: Time) {
        for cluster in Cluster::BOTH {
            if !self.health[&cluster].is_available() {
                let mut shards = self.normal_shards(|_, primary| primary.cluster == cluster);
                // A node's failure that turns out to be its cluster's (its nodes rarely stop
                // answering in the same evaluation) joins the cluster's failover: one epoch,
                // one story, as if all had been seen at once.
                let (nodes, rest) = std::mem::take(&mut self.failovers)
                    .into_iter()
                    .partition(|f| f.scope == Scope::Node && f.from == cluster);
                self.failovers = rest;
                for failover in nodes {
                    shards.extend(failover.shards);
                }
                if !shards.is_empty() {
                    self.start_failover(Scope::Cluster, cluster, shards, now);
                }
            }
        }
        if !self.params.shard_failover {
            return;
        }
        // Declared failed and still not answering: a node declared failed long ago that
        // answers again (its recovery rounds not yet done) is coming back, not failing.
        let failed = self.normal_shards(|c, p| {
            let view = &c.nodes[p];
            c.health[&p.cluster].is_available() && !view.health.is_available() && view.down
        });
        for shard in failed {
            let from = self.durable.shards[&shard].primary;
            self.start_failover(Scope::Node, from, BTreeSet::from([shard]), now);
        }
    }

    /// The shards in normal operation (no failover under way) whose primary node passes
    /// `filter`.
    pub(super) fn normal_shards(
        &self,
        filter: impl Fn(&Controller, NodeId) -> bool,
    ) -> BTreeSet<Shard> {
        (self.durable.shards.iter())
            .filter(|(shard, _)| self.failover_of(**shard).is_none())
            .filter(|(shard, s)| filter(self, shard.node(s.primary)))
            .map(|(shard, _)| *shard)
            .collect()
    }

    /// Whether some shard in normal operation has its primary node passing `filter` (every
    /// evaluation asks: no set is built for it).
    pub(super) fn any_normal_shard(&self, filter: impl Fn(NodeId) -> bool) -> bool {
        (self.durable.shards.iter())
            .any(|(shard, s)| filter(shard.node(s.primary)) && self.failover_of(*shard).is_none())
    }

    /// The failover `shard` is in, if any.
    pub(super) fn failover_of(&self, shard: Shard) -> Option<&Failover> {
        self.failovers.iter().find(|f| f.shards.contains(&shard))
    }

    /// Whether a failover of `cluster` as a whole is under way.
    pub(super) fn failing_over_from(&self, cluster: Cluster) -> bool {
        (self.failovers.iter()).any(|f| f.scope == Scope::Cluster && f.from == cluster)
    }

    /// Whether `shard`'s old primary is to be fenced: it is failing over (and not by the
    /// mutant that forgets to fence a node's failover).
    pub(super) fn fenced(&self, shard: Shard) -> bool {
        let unfenced =
            |f: &Failover| f.scope == Scope::Node && crate::mutated!(self, ShardNoFencing);
        self.failover_of(shard).is_some_and(|f| !unfenced(f))
    }

    /// The primaries of `shards` in `from` have failed: stop granting them leases (they are
    /// fenced by the heartbeats' commands from now on), stop replication into their backups,
    /// and wait for the stop answers before raising the first alarm with the recovery point.
    fn start_failover(&mut self, scope: Scope, from: Cluster, shards: BTreeSet<Shard>, now: Time) {
        for shard in &shards {
            let state = self.durable.shards.get_mut(shard).expect("a shard");
            state.failing_over = Some(scope);
        }
        self.persist();
        let failover = Failover {
            scope,
            from,
            shards,
            stop_deadline: now + self.params.heartbeat_timeout(),
            alarm_raised: false,
            double: false,
            fresh: true,
        };
        self.note(Note::FailoverStarted {
            cluster: from,
            shard: failover.shard(),
        });
        self.failovers.push(failover);
    }

    /// Moves the failover at `index` on by one evaluation.
    pub(super) fn advance(&mut self, index: usize, now: Time) {
        let failover = self.failovers[index].clone();
        if failover.double {
            return self.await_either(index, now);
        }
        if !failover.alarm_raised
            && (self.backups_stopped(&failover) || now >= failover.stop_deadline)
        {
            self.raise_first_alarm(index, now);
        }
        if self.failovers[index].alarm_raised {
            self.check_backup(index, now);
        }
    }

    /// Whether every backup node of the failover's shards confirmed that its replication
    /// stopped.
    fn backups_stopped(&self, failover: &Failover) -> bool {
        if crate::mutated!(self, KeepReplicating) {
            return true;
        }
        failover.shards.iter().all(|&shard| {
            let epoch = self.durable.shards[&shard].epoch;
            let backup = shard.node(failover.from.other());
            self.nodes[backup].report.as_ref().is_some_and(|(r, _)| {
                r.epoch > epoch || (r.epoch == epoch && r.role == Role::Stopped)
            })
        })
    }

    fn raise_first_alarm(&mut self, index: usize, now: Time) {
        self.failovers[index].alarm_raised = true;
        let failover = self.failovers[index].clone();
        let failed = failover.from;
        let shard = failover.shard();
        // A restart in the middle of this failover finds its alarm open already.
        let already_open = (self.durable.open_alarms.values()).any(|a| {
            a.kind == AlarmKind::PrimaryFailed
                && match shard {
                    None => a.says_down(failed),
                    Some(s) => {
                        a.cluster == failed && a.shard == Some(s) && !a.resumed_in.contains_key(&s)
                    }
                }
        });
        if already_open {
            return;
        }
        let mut alarm = self.new_alarm(AlarmKind::PrimaryFailed, failed, now);
        alarm.recovery_point = self.recovery_point(failed, &failover.shards);
        alarm.shard = shard;
        alarm.users = self.users_of(shard);
        self.raise(alarm);
    }

    /// The users of `shard`, for an alarm about one shard (none for a cluster's).
    pub(super) fn users_of(&self, shard: Option<Shard>) -> Vec<UserId> {
        let Some(shard) = shard else {
            return Vec::new();
        };
        (self.topology.users.iter())
            .filter(|(_, s)| **s == shard)
            .map(|(u, _)| *u)
            .collect()
    }

    /// Claim 1: is the backup side available? Then promote it, once the old primaries' leases
    /// have surely expired. If it has failed too: the second alarm, and the double failure.
    fn check_backup(&mut self, index: usize, now: Time) {
        let failover = self.failovers[index].clone();
        let backup = failover.from.other();
        let checked = !crate::mutated!(self, NoBackupCheck);
        let (available, heard) = match failover.shard() {
            None => (
                self.health[&backup].is_available(),
                self.heard_from_enough(backup),
            ),
            Some(shard) => (self.node_eligible(shard.node(backup)), true),
        };
        if checked && !available {
            self.backup_failed_too(index, now);
        } else if checked && !heard {
            // Available only on the grace of a restart: wait for answers, or its failure.
        } else if !self.leases_expired(&failover, now) {
            // The old primaries may still write: nothing moves before their leases end.
        } else if checked && !self.answering(&failover, backup) {
            // Not declared failed, but silent in the latest evaluation: wait for an answer,
            // or for its failure to be declared.
        } else if self.promotion_allowed(index, now) {
            self.promote(index, backup, false, now);
        } else if self.may_take(&failover, failover.from) {
            // Held back by the lag bound, and the old primary is back with every write.
            self.promote(index, failover.from, true, now);
        }
    }

    /// Issue 15, item 2: whether the failover at `index` may promote its backup side. With
    /// `promotion_lag_entries` set, not while a shard's backup surely lacks more entries
    /// than that, or nobody knows (its first alarm's recovery point), unless an operator
    /// approved the promotion-held alarm, raised here the first time (listing every shard
    /// of the failover: they are held together).
    fn promotion_allowed(&mut self, index: usize, now: Time) -> bool {
        let bound = self.params.promotion_lag_entries;
        if bound == 0 || crate::mutated!(self, IgnoresPromotionGate) {
            return true;
        }
        let failover = &self.failovers[index];
        let beyond = |point: &RecoveryPoint| point.surely_unapplied.is_none_or(|n| n > bound);
        let points = self.first_alarm(failover).map(|a| &a.recovery_point);
        if !points.is_some_and(|p| p.values().any(beyond)) {
            return true;
        }
        // Its shards fail over together: every one of them is held, and listed.
        let held = points.cloned().unwrap_or_default();
        if let Some(alarm) = self.hold_alarm(failover) {
            return self.approved.contains(&alarm.id) && !crate::mutated!(self, IgnoresApproval);
        }
        let (from, shard) = (failover.from, failover.shard());
        let mut alarm = self.new_alarm(AlarmKind::PromotionHeld, from, now);
        alarm.shard = shard;
        alarm.users = self.users_of(shard);
        alarm.recovery_point = held;
        self.raise(alarm);
        false
    }

    /// The open first alarm of `failover`.
    fn first_alarm(&self, failover: &Failover) -> Option<&Alarm> {
        let shard = failover.shard();
        (self.durable.open_alarms.values()).find(|a| {
            a.kind == AlarmKind::PrimaryFailed
                && a.cluster == failover.from
                && a.shard == shard
                && a.resumed_in.is_empty()
        })
    }

    /// The open promotion-held alarm of `failover`, if its promotion was held back.
    fn hold_alarm(&self, failover: &Failover) -> Option<&Alarm> {
        (self.durable.open_alarms.values()).find(|a| {
            a.kind == AlarmKind::PromotionHeld
                && a.cluster == failover.from
                && a.shard == failover.shard()
        })
    }

    /// Whether some failover waits for an operator's approval (its driver then reads the
    /// operator's orders, [`Controller::approve`]).
    pub fn awaiting_operator(&self) -> bool {
        (self.durable.open_alarms.values()).any(|a| a.kind == AlarmKind::PromotionHeld)
    }

    /// The operator's standing orders: the promotion-held alarms approved so far (a set
    /// that only grows; an id never comes back, so an approval never reaches a later
    /// failover).
    pub fn approve(&mut self, approved: BTreeSet<u64>) {
        self.approved = approved;
    }

    /// Whether `cluster` may be made primary again for the failover's shards: its cluster
    /// (or, for a node's failure, its node) is available and has answered since the restart.
    fn may_take(&self, failover: &Failover, cluster: Cluster) -> bool {
        let trusts_grace = crate::mutated!(self, RestartTrustsPrimary);
        let declared = match failover.shard() {
            None => {
                self.health[&cluster].is_available()
                    && (trusts_grace || self.heard_from_enough(cluster))
            }
            Some(shard) => self.node_eligible(shard.node(cluster)),
        };
        declared && self.answering(failover, cluster)
    }

    /// Whether `cluster`'s side of the failover answered in the latest evaluation: its node,
    /// or a ratio of its nodes above the threshold. A declared state lags by its debounce,
    /// and a promotion goes only to a side that answers now (swarm seed 96587 of the gate's
    /// release check: b/4, cut off from the controller but not yet declared failed by its
    /// four node rounds, was made shard 4's primary, could be granted no lease, and was
    /// failed over again half a second later).
    fn answering(&self, failover: &Failover, cluster: Cluster) -> bool {
        if crate::mutated!(self, PromoteOnGrace) {
            return true; // The declared state, however stale, is enough.
        }
        match failover.shard() {
            Some(shard) => !self.nodes[shard.node(cluster)].down,
            None => {
                let (up, total) = self.health[&cluster].last;
                crate::params::cluster_available(up, total, self.params.ratio_threshold)
            }
        }
    }

    /// The backup side of the failover at `index` has failed too: the second alarm (naming
    /// the shard and its users, for a node), and nothing promoted until either side is back.
    fn backup_failed_too(&mut self, index: usize, now: Time) {
        let failover = &self.failovers[index];
        let (backup, shard) = (failover.from.other(), failover.shard());
        let open = (self.durable.open_alarms.values())
            .any(|a| a.cluster == backup && a.kind == AlarmKind::BackupFailed && a.shard == shard);
        let muted = shard.is_none() && crate::mutated!(self, NoSecondAlarm);
        if !open && !muted {
            let mut alarm = self.new_alarm(AlarmKind::BackupFailed, backup, now);
            alarm.shard = shard;
            alarm.users = self.users_of(shard);
            self.raise(alarm);
        }
        self.failovers[index].double = true;
        self.note(Note::DoubleFailure { shard });
    }

    /// Whether `node` may be made its shard's primary: its cluster is available, it is
    /// available itself, and it has answered since the controller (re)started.
    pub(super) fn node_eligible(&self, node: NodeId) -> bool {
        let view = &self.nodes[node];
        let heard = view.last_ok_at.is_some() || crate::mutated!(self, PromoteOnGrace);
        self.health[&node.cluster].is_available() && view.health.is_available() && heard
    }

    /// Claim 5's double failure: act as soon as either side is available again, preferring
    /// the old primary, which has every write (no data is lost if it resumes).
    fn await_either(&mut self, index: usize, now: Time) {
        let failover = self.failovers[index].clone();
        if !self.leases_expired(&failover, now) {
            return;
        }
        let primary = failover.from;
        if self.may_take(&failover, primary) {
            self.promote(index, primary, true, now);
        } else if self.may_take(&failover, primary.other()) && self.promotion_allowed(index, now) {
            self.promote(index, primary.other(), false, now);
        }
    }

    /// Closes every alarm about one shard's backup node once that node may be made primary
    /// again.
    pub(super) fn watch_backup_nodes(&mut self, now: Time) {
        let recovered: Vec<u64> = (self.durable.open_alarms.values())
            .filter(|a| a.kind == AlarmKind::BackupFailed)
            .filter(|a| {
                a.shard
                    .is_some_and(|s| self.node_eligible(s.node(a.cluster)))
            })
            .map(|a| a.id)
            .collect();
        for id in recovered {
            self.clear_alarm(id, Resolution::BackupRecovered, now);
        }
    }

    /// Whether every lease granted to the failover's old primaries has surely expired.
    fn leases_expired(&self, failover: &Failover, now: Time) -> bool {
        let unfenced = failover.scope == Scope::Node && crate::mutated!(self, ShardNoFencing);
        let skip = !self.fencing() || crate::mutated!(self, SkipLeaseWait) || unfenced;
        let expire = (failover.shards.iter())
            .map(|s| self.lease_expires_at(s.node(failover.from)))
            .max()
            .unwrap_or(Time::ZERO);
        skip || now >= expire
    }
}
