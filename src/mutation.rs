//! Deliberately broken controllers and nodes, for proving that the simulator's checkers catch
//! real bugs: each mutant names the invariant that must catch it. This module exists only
//! with the `mutants` feature, which only the simulator enables; the real binary has none of
//! it.

use serde::{Deserialize, Serialize};

/// One deliberate bug (or none).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum Mutation {
    /// The correct controller.
    #[default]
    None,
    /// Fencing switched off: no fence commands, hour-long leases, and promotion without
    /// waiting for the old primary's leases.
    NoFencing,
    /// Promotes without waiting for the old primary's leases to expire.
    SkipLeaseWait,
    /// Treats a ratio equal to the threshold as available (claim 4 says strictly greater).
    RatioInclusive,
    /// Promotes without checking that the backup is available.
    NoBackupCheck,
    /// Keeps replication running into the backup after the primary failed, and takes the
    /// backup's last reported position as the recovery point.
    KeepReplicating,
    /// On failback, the old primary drops its divergent suffix instead of quarantining it.
    DropSuffix,
    /// On failback, the old primary keeps its divergent suffix (merges it).
    MergeSuffix,
    /// Publishes the new config without bumping the epoch.
    NoEpochBump,
    /// Fails over on a single missed heartbeat round (no timeout window, no debounce).
    NoDebounce,
    /// Never resyncs the recovered old primary.
    NoResync,
    /// Never raises the second alarm.
    NoSecondAlarm,
    /// Forgets its epoch (all its durable state) on restart.
    ForgetEpoch,
    /// Sync mode: the primary acknowledges a write before the backup applied it.
    EarlySyncAck,
    /// A node refusing a write never says where the new primary is.
    NoRejectionRoute,
    /// Drops every shard's stop cap at a promotion once the backup cluster was let rejoin, as
    /// if each of its nodes had (the bug of swarm seed 6262).
    ClusterWideRejoin,
    /// Closes a first alarm as "nothing lost" the moment its cluster is made primary again,
    /// forgetting what its nodes quarantined when they rejoined in between (swarm seed 19023).
    ResumeForgetsRejoins,
    /// Promotes a side not known to answer: a controller restarted mid-failover promotes a
    /// backup it has not heard from since, on the grace its nodes get (swarm seed 1861), and
    /// a side silent in the latest evaluation but not yet declared failed is promoted on its
    /// declared state (swarm seed 96587).
    PromoteOnGrace,
    /// A controller restarted after declaring the primary failed, before its first alarm was
    /// out, presumes that primary available, and resumes it out of a double failure on the
    /// timeout of grace its nodes get (swarm seed 36776).
    RestartTrustsPrimary,
    /// A controller replica acts past its deadline: a leader paused or cut from etcd beyond
    /// its lease goes on heartbeating, granting and publishing after its successor began.
    DeposedKeepsActing,
    /// A replica that takes the lead does not wait out the leases its predecessor may have
    /// granted: it trusts only the leases it granted itself.
    TakeoverSkipsLeaseWait,
    /// A replica that takes the lead acts on the state it held when it last led, instead of
    /// restoring the durable state from etcd first.
    ActsBeforeRestore,
    /// The leader publishes into its own replica's config center only, not into etcd: the
    /// centers of the replicas standing by never learn a new config.
    PublishSkipsEtcd,
    /// A replica that cannot reach etcd never raises the alarm that says so.
    NoEtcdAlarm,
    /// The leader writes into etcd without its leadership guard: a write that reaches etcd
    /// late, after a successor took over, overwrites the successor's state.
    PersistsUnguarded,
    /// Grants leases sized to the round trip but waits out, before a promotion, only the
    /// configured `lease_duration_ms`: at a long round trip the old primary still holds its
    /// lease when the backup is promoted.
    ShortLeaseWait,
    /// Never raises the lag alarm, however far a backup falls behind.
    NoLagAlarm,
    /// A shard's failover (its primary node alone failed) neither fences the old node nor
    /// waits out its lease before promoting the backup node.
    ShardNoFencing,
    /// A shard's failover publishes nothing new: its users keep the old node's route.
    ShardConfigUnchanged,
    /// Lets a primary discard its whole log, not only what its backup holds.
    TrimPastBackup,
    /// Promotes a backup past `promotion_lag_entries` without an operator's approval.
    IgnoresPromotionGate,
    /// Holds a promotion back for an operator, and then ignores the operator's approval.
    IgnoresApproval,
}

impl Mutation {
    /// Every mutant (not `None`).
    pub const ALL: [Mutation; 31] = [
        Mutation::NoFencing,
        Mutation::SkipLeaseWait,
        Mutation::RatioInclusive,
        Mutation::NoBackupCheck,
        Mutation::KeepReplicating,
        Mutation::DropSuffix,
        Mutation::MergeSuffix,
        Mutation::NoEpochBump,
        Mutation::NoDebounce,
        Mutation::NoResync,
        Mutation::NoSecondAlarm,
        Mutation::ForgetEpoch,
        Mutation::EarlySyncAck,
        Mutation::NoRejectionRoute,
        Mutation::ClusterWideRejoin,
        Mutation::ResumeForgetsRejoins,
        Mutation::PromoteOnGrace,
        Mutation::RestartTrustsPrimary,
        Mutation::DeposedKeepsActing,
        Mutation::TakeoverSkipsLeaseWait,
        Mutation::ActsBeforeRestore,
        Mutation::PublishSkipsEtcd,
        Mutation::NoEtcdAlarm,
        Mutation::PersistsUnguarded,
        Mutation::ShortLeaseWait,
        Mutation::NoLagAlarm,
        Mutation::ShardNoFencing,
        Mutation::ShardConfigUnchanged,
        Mutation::TrimPastBackup,
        Mutation::IgnoresPromotionGate,
        Mutation::IgnoresApproval,
    ];

    /// The name used on the command line (`--mutant no-fencing`).
    pub fn name(self) -> &'static str {
        match self {
            Mutation::None => "none",
            Mutation::NoFencing => "no-fencing",
            Mutation::SkipLeaseWait => "skip-lease-wait",
            Mutation::RatioInclusive => "ratio-inclusive",
            Mutation::NoBackupCheck => "no-backup-check",
            Mutation::KeepReplicating => "keep-replicating",
            Mutation::DropSuffix => "drop-suffix",
            Mutation::MergeSuffix => "merge-suffix",
            Mutation::NoEpochBump => "no-epoch-bump",
            Mutation::NoDebounce => "no-debounce",
            Mutation::NoResync => "no-resync",
            Mutation::NoSecondAlarm => "no-second-alarm",
            Mutation::ForgetEpoch => "forget-epoch",
            Mutation::EarlySyncAck => "early-sync-ack",
            Mutation::NoRejectionRoute => "no-rejection-route",
            Mutation::ClusterWideRejoin => "cluster-wide-rejoin",
            Mutation::ResumeForgetsRejoins => "resume-forgets-rejoins",
            Mutation::PromoteOnGrace => "promote-on-grace",
            Mutation::RestartTrustsPrimary => "restart-trusts-primary",
            Mutation::DeposedKeepsActing => "deposed-keeps-acting",
            Mutation::TakeoverSkipsLeaseWait => "takeover-skips-lease-wait",
            Mutation::ActsBeforeRestore => "acts-before-restore",
            Mutation::PublishSkipsEtcd => "publish-skips-etcd",
            Mutation::NoEtcdAlarm => "no-etcd-alarm",
            Mutation::PersistsUnguarded => "persists-unguarded",
            Mutation::ShortLeaseWait => "short-lease-wait",
            Mutation::NoLagAlarm => "no-lag-alarm",
            Mutation::ShardNoFencing => "shard-no-fencing",
            Mutation::ShardConfigUnchanged => "shard-config-unchanged",
            Mutation::TrimPastBackup => "trim-past-backup",
            Mutation::IgnoresPromotionGate => "ignores-promotion-gate",
            Mutation::IgnoresApproval => "ignores-approval",
        }
    }

    /// The mutant called `name`.
    pub fn from_name(name: &str) -> Option<Mutation> {
        std::iter::once(Mutation::None)
            .chain(Mutation::ALL)
            .find(|m| m.name() == name)
    }
}
