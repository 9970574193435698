//! What the parties say to each other: the controller to nodes (heartbeats carrying leases and
//! commands), nodes to the controller (reports), users to nodes (writes), primary nodes to their
//! backup peers (log appends), and everyone to the config center. These are plain data; the
//! framing on the wire is in [`crate::wire`].

use crate::time::Time;
use crate::types::{Epoch, Lsn, NodeId, UserConfig, UserId, WriteId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the writable copy of a shard lives in an epoch: what a user needs to write to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The epoch this route belongs to.
    pub epoch: Epoch,
    /// The node that accepts the shard's writes in that epoch.
    pub node: NodeId,
    /// That node's network address.
    pub address: String,
}

/// A heartbeat from the controller to a node. It asks for a report, may renew the node's write
/// lease, and may carry the role the controller wants the node to take.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The controller's round number, echoed in the report.
    pub round: u64,
    /// A write lease, anchored at the node's send time of the report for `anchor_round`.
    pub grant: Option<LeaseGrant>,
    /// The role the controller wants the node in, resent until the node's report shows it.
    pub command: Option<Command>,
    /// Log entries the primary may discard: its backup holds them.
    pub trim: Option<Trim>,
}

/// Leave to discard the log up to `through`, given to a shard's primary of `epoch` once its
/// backup, following it in that epoch, reported holding that position. Every later stop
/// point of the shard is at or past it (the backup's position only grows while it follows,
/// and a failover stops it where it is), so nothing a quarantine exports is ever discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trim {
    /// The epoch the backup reported it in: a node in another epoch or role ignores it.
    pub epoch: Epoch,
    /// The last position the node may discard.
    pub through: Lsn,
}

/// A write lease: the node may accept writes of `epoch` until its own clock reads the send
/// time of its report for `anchor_round` plus `duration_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrant {
    /// The epoch the lease is for.
    pub epoch: Epoch,
    /// The round whose report's send time anchors the lease.
    pub anchor_round: u64,
    /// How long the lease lasts on the node's clock, in ms.
    pub duration_ms: u64,
}

/// A role the controller assigns to a node. Every command names an epoch; a node ignores a
/// command older than the newest epoch it has seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Become the shard's writable copy in `epoch` (accepting writes only under a lease), and
    /// replicate to the paired node.
    Promote {
        /// The new epoch.
        epoch: Epoch,
        /// The route users of the shard follow in this epoch (this node).
        route: Route,
    },
    /// Become the backup of `primary` in `epoch`: first move every log entry after
    /// `truncate_after` to the quarantine (the divergent suffix), then accept appends.
    Follow {
        /// The epoch.
        epoch: Epoch,
        /// The shard's primary in this epoch.
        primary: Route,
        /// The last log position shared with the primary (the stop point).
        truncate_after: Lsn,
    },
    /// Stop applying appends from the primary (claim 6: replication stops on primary failure).
    Stop {
        /// The epoch whose replication stops.
        epoch: Epoch,
    },
    /// Accept no more writes: drop the lease at once and refuse new ones for `epoch`.
    Fence {
        /// The epoch being fenced (the node refuses leases of this epoch and older).
        epoch: Epoch,
        /// The route users should follow instead, when it is already known.
        route: Option<Route>,
    },
}

impl Command {
    /// The epoch the command belongs to.
    pub fn epoch(&self) -> Epoch {
        match self {
            Command::Promote { epoch, .. }
            | Command::Follow { epoch, .. }
            | Command::Stop { epoch }
            | Command::Fence { epoch, .. } => *epoch,
        }
    }
}

/// A node's role within its current epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Never told anything (a fresh or wiped node).
    Idle,
    /// The writable copy of its shard.
    Primary,
    /// Applying appends from its primary.
    Backup,
    /// A backup whose replication was stopped.
    Stopped,
    /// Accepting no writes.
    Fenced,
}

/// A node's answer to a heartbeat: its state, for availability, acknowledgement of commands,
/// and the recovery point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The heartbeat round this answers.
    pub round: u64,
    /// The newest epoch the node has seen.
    pub epoch: Epoch,
    /// Its role in that epoch.
    pub role: Role,
    /// The last log position it holds.
    pub last_lsn: Lsn,
    /// As primary: the last position when it was promoted in `epoch` (the stop point).
    pub epoch_start_lsn: Lsn,
    /// The last position it discarded from its log (0: none): its log holds
    /// `trimmed + 1 ..= last_lsn`.
    pub trimmed: Lsn,
    /// Every move to quarantine that took writes, oldest first, at most [`QUARANTINES_KEPT`]:
    /// the evidence a loss report is made of. All of them, not only this epoch's, because a
    /// node may join an epoch (and quarantine) out of the controller's sight, and be promoted
    /// or join again before the controller hears from it.
    pub quarantines: Vec<QuarantineSummary>,
}

/// How many quarantine summaries a node keeps and reports, the newest. A node can only move
/// writes to quarantine after it was a primary, so this is that many failovers of its cluster
/// that lost writes before the controller heard of the first.
pub const QUARANTINES_KEPT: usize = 16;

/// What a node moved to its quarantine when it joined an epoch as backup: the divergent suffix
/// its primary never had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineSummary {
    /// The epoch the node joined.
    pub epoch: Epoch,
    /// How many writes were quarantined.
    pub count: u64,
    /// Their log positions, first and last (empty when `count` is 0).
    pub lsns: Option<(Lsn, Lsn)>,
    /// The node-clock times at which the first and last of them were accepted.
    pub span: Option<(Time, Time)>,
}

impl QuarantineSummary {
    /// Nothing moved on joining `epoch`.
    pub fn empty(epoch: Epoch) -> QuarantineSummary {
        QuarantineSummary {
            epoch,
            count: 0,
            lsns: None,
            span: None,
        }
    }

    /// Adds a join's move to a node's list of them: only moves that took writes, one per
    /// epoch (a repeated join in the same epoch finds what the first one took), the newest
    /// [`QUARANTINES_KEPT`].
    pub fn record(list: &mut Vec<QuarantineSummary>, summary: QuarantineSummary) {
        if summary.count == 0 || list.iter().any(|q| q.epoch == summary.epoch) {
            return;
        }
        list.push(summary);
        if list.len() > QUARANTINES_KEPT {
            list.remove(0);
        }
    }

    /// Everything the moves of a node's `list` in epochs after `after` and before `before` took,
    /// as one summary of `epoch` (empty if none did).
    pub fn merged(
        list: &[QuarantineSummary],
        after: Epoch,
        before: Option<Epoch>,
        epoch: Epoch,
    ) -> QuarantineSummary {
        let within = |q: &&QuarantineSummary| q.epoch > after && before.is_none_or(|b| q.epoch < b);
        let mut total = QuarantineSummary::empty(epoch);
        for q in list.iter().filter(within) {
            total.count += q.count;
            total.lsns = widen(total.lsns, q.lsns);
            total.span = widen(total.span, q.span);
        }
        total
    }
}

/// The smallest range holding both.
fn widen<T: Ord + Copy>(a: Option<(T, T)>, b: Option<(T, T)>) -> Option<(T, T)> {
    match (a, b) {
        (Some((a0, a1)), Some((b0, b1))) => Some((a0.min(b0), a1.max(b1))),
        (a, b) => a.or(b),
    }
}

/// One write in a shard's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its position.
    pub lsn: Lsn,
    /// The epoch in which the primary accepted it.
    pub epoch: Epoch,
    /// Who wrote it.
    pub id: WriteId,
    /// The key written.
    pub key: String,
    /// The value written.
    pub value: u64,
    /// When the primary accepted it, on the primary's clock.
    pub at: Time,
}

/// A user's write to the node its route names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// The write's identity.
    pub id: WriteId,
    /// The epoch of the user's route.
    pub epoch: Epoch,
    /// The key.
    pub key: String,
    /// The value.
    pub value: u64,
}

/// Why a node refused a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// The node is not the primary of the write's epoch.
    NotPrimary,
    /// The write's epoch is older than the node's.
    StaleEpoch,
    /// The write's epoch is newer than the node's (it has not been promoted yet).
    FutureEpoch,
    /// The node holds no valid write lease (fenced, or cut off from the controller).
    NoLease,
    /// Sync mode: the backup did not confirm the write in time. The write may still survive.
    ReplicationTimeout,
}

/// A node's answer to a write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteReply {
    /// Accepted (and, in sync mode, applied by the backup).
    Ok {
        /// Its log position.
        lsn: Lsn,
        /// The epoch it was accepted in.
        epoch: Epoch,
    },
    /// Refused. `route` is the newest route the node knows for the shard, when newer than the
    /// write's epoch: a user cut off from the config center learns the new config from it.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// Where to write instead, when known.
        route: Option<Route>,
    },
}

/// A primary node's log shipment to its backup peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Append {
    /// The primary's epoch.
    pub epoch: Epoch,
    /// The position just before `entries` (the backup must hold exactly this many).
    pub prev_lsn: Lsn,
    /// The entries, in order.
    pub entries: Vec<Entry>,
    /// The primary's trimmed position: the backup discards its log up to it too.
    pub trimmed: Lsn,
    /// When the backup needs entries the primary has discarded: the data as of `prev_lsn`
    /// (the primary's trimmed position), to install in place of the backup's log.
    pub snapshot: Option<BTreeMap<String, u64>>,
}

/// A backup's answer to an append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendReply {
    /// The backup's epoch. Newer than the append's: the primary is stale and must fence itself.
    pub epoch: Epoch,
    /// Whether the entries were applied.
    pub applied: bool,
    /// The backup's last position after this append: where the next one should start.
    pub last_lsn: Lsn,
}

/// A controller's publication of every user's config for a new epoch (claim 3's interface).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// The epoch of the configs.
    pub epoch: Epoch,
    /// One config per user.
    pub configs: Vec<UserConfig>,
}

/// The config center's answer to a publication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishReply {
    /// The config center's epoch after the publication (it never decreases).
    pub epoch: Epoch,
    /// Whether this publication was stored (false: it was older than what the center holds).
    pub stored: bool,
}

/// A user's subscription to its config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    /// The user.
    pub user: UserId,
}

/// A user's acknowledgement that it applied its config of `epoch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigAck {
    /// The user.
    pub user: UserId,
    /// The epoch it applied.
    pub epoch: Epoch,
}
