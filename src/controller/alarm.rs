//! Alarms (claim 5) and what they carry: the recovery point when a primary fails ([DESIGN] 8),
//! and the loss report that closes the alarm once the old primary's divergent suffix is known.

use super::lag::Lag;
use crate::protocol::QuarantineSummary;
use crate::time::Time;
use crate::types::{Cluster, Epoch, Lsn, Shard, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AlarmKind {
    /// The first alarm: the primary cluster failed (or, for an alarm about one shard, its
    /// primary node).
    PrimaryFailed,
    /// The second alarm: the backup cluster failed (or, for an alarm about one shard, its
    /// backup node, when its primary node failed too): no disaster recovery is possible.
    BackupFailed,
    /// One shard's backup is further behind its primary than the bound (issue 15, item 2):
    /// a failover now would lose that much. It says nothing of the cluster's health.
    Lag,
    /// A failover's backup surely lacks more than `promotion_lag_entries` of its old
    /// primary's writes, or nobody knows how many (issue 15, item 2): it is not promoted until
    /// an operator approves this alarm (`standby promote`). Its recovery point lists the
    /// shards held back.
    PromotionHeld,
}

/// An alarm for an operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// Unique, increasing id.
    pub id: u64,
    /// Which alarm.
    pub kind: AlarmKind,
    /// The cluster that failed (or the failed node's cluster).
    pub cluster: Cluster,
    /// For an alarm about one shard's node rather than a whole cluster: the shard.
    #[serde(default)]
    pub shard: Option<Shard>,
    /// For an alarm about one shard's node: the users of that shard, who cannot write.
    #[serde(default)]
    pub users: Vec<UserId>,
    /// When it was raised (controller clock).
    pub raised_at: Time,
    /// The epoch in force when the failure was declared.
    pub epoch: Epoch,
    /// Nodes answering when the failure was declared, and the cluster's size.
    pub available_nodes: (usize, usize),
    /// First alarm: per shard it covers (every shard that failed over with it), what is
    /// known of the recovery point. Promotion-held alarm: the same, for the shards whose
    /// backup is beyond the bound.
    pub recovery_point: BTreeMap<Shard, RecoveryPoint>,
    /// First alarm only: per shard whose node in the failed cluster was made primary again
    /// (it resumed, or the other side failed back to it) before it rejoined, the epoch.
    #[serde(default)]
    pub resumed_in: BTreeMap<Shard, Epoch>,
    /// First alarm only: per shard whose evidence is in, what its node of the failed cluster
    /// moved to quarantine since the failure. The alarm closes when every shard's is in.
    #[serde(default)]
    pub losses: BTreeMap<Shard, QuarantineSummary>,
    /// Lag alarm only: the shard, and how far its backup was behind when it was raised.
    #[serde(default)]
    pub lag: Option<Lag>,
}

impl Alarm {
    /// Whether this alarm says `cluster` is down: a first or second alarm about `cluster`,
    /// which has not been made primary again since (an alarm that waits for a resumed
    /// cluster's losses says nothing of its health, nor does a lag or promotion-held alarm,
    /// or one about a single node).
    pub fn says_down(&self, cluster: Cluster) -> bool {
        let failure = matches!(
            self.kind,
            AlarmKind::PrimaryFailed | AlarmKind::BackupFailed
        );
        self.cluster == cluster && self.resumed_in.is_empty() && failure && self.shard.is_none()
    }

    /// Whether every shard the alarm covers has its loss in: a first alarm closes then.
    pub fn accounted(&self) -> bool {
        self.kind == AlarmKind::PrimaryFailed && self.losses.len() == self.recovery_point.len()
    }
}

/// The recovery point of one shard, as far as anyone can know it while the primary is gone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecoveryPoint {
    /// The backup's applied position, frozen by the stop; `None` if the backup node did not
    /// answer the stop (then it is not known).
    pub backup_applied: Option<Lsn>,
    /// The primary's last reported position and when it was reported; `None` if it never
    /// reported.
    pub primary_reported: Option<(Lsn, Time)>,
    /// Writes the primary surely had and the backup surely lacks: a lower bound on the loss,
    /// known only when both positions are.
    pub surely_unapplied: Option<u64>,
    /// The end of the window in which the primary may have accepted more writes: the end of
    /// its last lease, on the controller's clock. Writes after its last report and before this
    /// may exist that nobody can count until the old primary returns.
    pub window_end: Time,
}

/// How an alarm was closed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Resolution {
    /// The failed cluster was made primary again: it resumed, or the other cluster failed
    /// back to it. Per shard whose node had rejoined as backup in between, what it moved to
    /// quarantine then (lost); every shard not listed kept all its writes.
    Resumed(BTreeMap<Shard, QuarantineSummary>),
    /// The old primary rejoined as backup: per shard, what it moved to quarantine.
    LossReport(BTreeMap<Shard, QuarantineSummary>),
    /// The backup cluster is available again.
    BackupRecovered,
    /// Lag alarm: the shard's backup is back within half the bound.
    CaughtUp,
    /// Lag alarm: a new epoch began (a promotion), with new primaries and backups. Promotion-held
    /// alarm: a promotion without approval, the bound having been lifted since.
    NewEpoch,
    /// Promotion-held alarm: an operator approved it, and the backup was promoted.
    Approved,
    /// Promotion-held alarm: the old primary answered again first and was made primary
    /// again, with every write it had.
    PrimaryBack,
}

/// An alarm raised or closed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AlarmEvent {
    /// A new alarm.
    Raised(Alarm),
    /// An alarm closed, and why.
    Cleared {
        /// The alarm's id.
        id: u64,
        /// Which alarm.
        kind: AlarmKind,
        /// When (controller clock).
        at: Time,
        /// How it was resolved.
        resolution: Resolution,
    },
}
