//! What a failover must know of the logs: the stop points carried from epoch to epoch, the
//! recovery point of the first alarm ([DESIGN] 8), and the loss report that closes it once the
//! old primaries' divergent suffixes are known.

use super::{Action, AlarmEvent, AlarmKind, Controller, RecoveryPoint, Resolution};
use crate::protocol::{NodeReport, QuarantineSummary, Role};
use crate::time::Time;
use crate::types::{Cluster, NodeId, Shard};
use std::collections::{BTreeMap, BTreeSet};

impl Controller {
    /// Keeps `shard`'s current stop point as a cap for its next epoch unless the backup node
    /// has reported itself a backup of this epoch: until it has, its log and the primary's
    /// part at the earliest stop point since it last followed, however far either has written
    /// since. (A node the controller let rejoin may not have: it can crash before its Follow
    /// arrives.) A shard with no stop point had no write in this epoch: its cap, if any,
    /// stands.
    pub(super) fn carry_stop_point(&mut self, shard: Shard) {
        let all = crate::mutated!(self, ClusterWideRejoin);
        let state = self.shard_mut(shard);
        if let Some(lsn) = state.stop_point {
            if state.rejoined || (all && state.backup_joined) {
                state.stop_cap = None;
            } else {
                state.stop_cap = Some(state.stop_cap.map_or(lsn, |cap| cap.min(lsn)));
            }
        }
        state.rejoined = false;
    }

    /// `cluster` is made primary again for `shards` in the (new) current epoch: their shards
    /// in its open first alarms can no longer be closed by a rejoin. Each waits instead for
    /// its node to report from this epoch on what it quarantined in between (a node may have
    /// rejoined an epoch in between and quarantined writes then). With no epoch in between,
    /// none can have.
    pub(super) fn mark_resumed(&mut self, cluster: Cluster, shards: &BTreeSet<Shard>) {
        let epoch = self.durable.epoch;
        let forget = crate::mutated!(self, ResumeForgetsRejoins);
        for alarm in self.durable.open_alarms.values_mut() {
            if alarm.cluster != cluster || alarm.kind != AlarmKind::PrimaryFailed {
                continue;
            }
            let covered = (alarm.recovery_point.keys()).filter(|s| shards.contains(s));
            let resumed: Vec<Shard> = covered
                .filter(|s| !alarm.resumed_in.contains_key(s))
                .copied()
                .collect();
            for shard in resumed {
                alarm.resumed_in.insert(shard, epoch);
                if forget {
                    alarm.losses.remove(&shard);
                }
                if forget || alarm.epoch.next() >= epoch {
                    let empty = QuarantineSummary::empty(epoch);
                    alarm.losses.entry(shard).or_insert(empty);
                }
            }
        }
    }

    /// Adds to each open first alarm of `node`'s cluster covering its shard what the node
    /// quarantined since the failure, if this report is evidence of it: the node has since
    /// joined an epoch as backup (and cannot quarantine more before it is primary again), or
    /// reports from the epoch it was made primary again in (its list then holds every join in
    /// between). Closes every alarm whose shards are all in.
    pub(super) fn account_losses(&mut self, node: NodeId, report: &NodeReport, now: Time) {
        let shard = node.shard();
        let mut added = false;
        for alarm in self.durable.open_alarms.values_mut() {
            let waiting = alarm.kind == AlarmKind::PrimaryFailed
                && alarm.cluster == node.cluster
                && alarm.recovery_point.contains_key(&shard)
                && !alarm.losses.contains_key(&shard);
            let resumed = alarm.resumed_in.get(&shard).copied();
            let evidence = match resumed {
                None => report.role == Role::Backup && report.epoch > alarm.epoch,
                Some(resumed) => report.epoch >= resumed,
            };
            if waiting && evidence {
                let after = alarm.epoch;
                let loss =
                    QuarantineSummary::merged(&report.quarantines, after, resumed, report.epoch);
                alarm.losses.insert(shard, loss);
                added = true;
            }
        }
        if added {
            self.persist();
            self.close_accounted_alarms(now);
        }
    }

    /// Closes every first alarm with every shard's loss in: with the loss report if the failed
    /// side rejoined as backup, as resumed (listing the shards that lost writes) if it was made
    /// primary again.
    pub(super) fn close_accounted_alarms(&mut self, now: Time) {
        let done: Vec<u64> = (self.durable.open_alarms.values())
            .filter(|a| a.accounted())
            .map(|a| a.id)
            .collect();
        for id in done {
            let alarm = self.durable.open_alarms.remove(&id).expect("listed");
            let resolution = match alarm.resumed_in.is_empty() {
                true => Resolution::LossReport(alarm.losses),
                false => {
                    let lost = alarm.losses.into_iter().filter(|(_, q)| q.count > 0);
                    Resolution::Resumed(lost.collect())
                }
            };
            self.persist();
            self.actions.push_back(Action::Alarm(AlarmEvent::Cleared {
                id,
                kind: AlarmKind::PrimaryFailed,
                at: now,
                resolution,
            }));
        }
    }

    /// [DESIGN] 8: per shard of `shards`, the backup's frozen position, the old primary's
    /// last report, and the end of the window in which it may have accepted writes nobody has
    /// counted.
    pub(super) fn recovery_point(
        &self,
        failed: Cluster,
        shards: &BTreeSet<Shard>,
    ) -> BTreeMap<Shard, RecoveryPoint> {
        shards
            .iter()
            .map(|&shard| {
                let epoch = self.durable.shards[&shard].epoch;
                let node = shard.node(failed);
                let primary = self.nodes[node].report.as_ref();
                let primary_reported = primary.map(|(r, at)| (r.last_lsn, *at));
                let backup = self.nodes[node.peer()].report.as_ref();
                let frozen = |r: &NodeReport| r.epoch == epoch && r.role == Role::Stopped;
                let any = crate::mutated!(self, KeepReplicating);
                let backup_applied = backup
                    .filter(|(r, _)| any || frozen(r))
                    .map(|(r, _)| r.last_lsn);
                let surely_unapplied = match (primary_reported, backup_applied) {
                    (Some((p, _)), Some(b)) => Some(p.0.saturating_sub(b.0)),
                    _ => None,
                };
                // A lease granted before a restart is unknown to us but bounded by it.
                let point = RecoveryPoint {
                    backup_applied,
                    primary_reported,
                    surely_unapplied,
                    window_end: self.nodes[node].lease_until.max(self.restart_bound()),
                };
                (shard, point)
            })
            .collect()
    }
}
