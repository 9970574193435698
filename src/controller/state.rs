//! The controller's durable state: per shard, which cluster's node is writable in which epoch,
//! and what the next promotion must know of its logs.

use super::alarm::Alarm;
use crate::types::{Cluster, Epoch, Lsn, Shard};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What failed, when a shard's primary is declared failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// The primary's whole cluster, by claim 4's ratio: every shard whose primary is in it
    /// fails over together.
    Cluster,
    /// The primary node alone, while its cluster stays available (issue 15, item 1): its
    /// shard fails over to its paired backup node.
    Node,
}

/// One shard's durable state. Every shard moves through the same story (claims 1-7); a
/// cluster failover moves every shard whose primary is in the failed cluster at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardState {
    /// The epoch the shard's primary was last promoted in. Never decreases.
    pub epoch: Epoch,
    /// The cluster whose node is the shard's writable copy in `epoch`.
    pub primary: Cluster,
    /// Whether the backup node has been let rejoin `epoch` (false after a failover, until the
    /// old primary's cluster has recovered).
    pub backup_joined: bool,
    /// The primary's log position when it was promoted in `epoch`: the point up to which the
    /// backup's log is shared, and after which it is divergent. Known from its first report.
    pub stop_point: Option<Lsn>,
    /// The most a stop point may be while the other node has not rejoined since an earlier
    /// epoch: its log is shared with the primary's only up to the earliest stop point since it
    /// last followed, however far the primary has since written.
    pub stop_cap: Option<Lsn>,
    /// Whether the backup node has reported itself a backup of `epoch`: its log is a prefix of
    /// the primary's. Only then may the shard drop its stop cap at the next promotion.
    pub rejoined: bool,
    /// Whether the primary of `epoch` has been declared failed, and how, with no new epoch
    /// begun yet (failover or double failure under way): a restart resumes the failover.
    pub failing_over: Option<Scope>,
}

/// The controller's state that must survive a restart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Durable {
    /// The newest epoch begun by any promotion. Never decreases; each promotion takes the
    /// next, so an epoch names one promotion of one set of shards to one cluster.
    pub epoch: Epoch,
    /// Every shard's state.
    pub shards: BTreeMap<Shard, ShardState>,
    /// Alarms not yet closed.
    pub open_alarms: BTreeMap<u64, Alarm>,
    /// The next alarm id.
    pub next_alarm_id: u64,
    /// The longest lease (ms) that may be live on any shard's primary: set to
    /// `lease_duration_ms` at a promotion of every shard at once, and raised (made durable
    /// first) before a longer lease, sized to a long round trip, is granted. A restarted
    /// controller waits out this much, not more: at short round trips the restart costs no
    /// more than it used to.
    #[serde(default)]
    pub lease_bound_ms: u64,
    /// How many times the controller has started. Heartbeat rounds are numbered from
    /// `incarnation << 32`, so a round number is never reused across restarts (a lease is
    /// anchored at a round: a reused number would let a delayed heartbeat blur the anchor).
    pub incarnation: u64,
}

impl Durable {
    /// `shard`'s state, if it is one of the topology's.
    pub fn shard(&self, shard: Shard) -> Option<&ShardState> {
        self.shards.get(&shard)
    }

    /// The cluster whose node is `shard`'s primary.
    pub fn primary_of(&self, shard: Shard) -> Option<Cluster> {
        self.shard(shard).map(|s| s.primary)
    }

    /// The clusters holding at least one shard's primary, with how many each holds.
    pub fn primaries(&self) -> BTreeMap<Cluster, usize> {
        let mut count = BTreeMap::new();
        for s in self.shards.values() {
            *count.entry(s.primary).or_insert(0) += 1;
        }
        count
    }

    /// The cluster holding every shard's primary, if one does.
    pub fn sole_primary(&self) -> Option<Cluster> {
        let primaries = self.primaries();
        (primaries.len() == 1).then(|| *primaries.keys().next().expect("one"))
    }
}

/// What operators ordered, kept where the durable state is (etcd, or beside the state file)
/// and written only by `standby` subcommands, never by the controller: a promotion-held
/// alarm's approval so far (issue 15, item 2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orders {
    /// The promotion-held alarms whose backups may be promoted (`standby promote`). Alarm
    /// ids are never reused, so an approval cannot reach a later failover.
    pub approved: BTreeSet<u64>,
}

impl Orders {
    /// Approves the open promotion-held alarms of `durable` (only alarm `only`, if given);
    /// returns the ids approved now, or why there is none.
    pub fn approve(&mut self, durable: &Durable, only: Option<u64>) -> Result<Vec<u64>, String> {
        let held: Vec<u64> = (durable.open_alarms.values())
            .filter(|a| a.kind == super::AlarmKind::PromotionHeld)
            .map(|a| a.id)
            .collect();
        let chosen: Vec<u64> = match only {
            None => held.clone(),
            Some(id) => held.iter().copied().filter(|&h| h == id).collect(),
        };
        if chosen.is_empty() {
            let open = match held.is_empty() {
                true => "none is open".to_owned(),
                false => format!("open: {held:?}"),
            };
            let what = only.map_or("any".to_owned(), |id| format!("alarm {id}"));
            return Err(format!(
                "no promotion-held alarm to approve ({what}; {open})"
            ));
        }
        self.approved.extend(&chosen);
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{Alarm, AlarmKind};
    use crate::time::Time;

    fn alarm(id: u64, kind: AlarmKind) -> Alarm {
        Alarm {
            id,
            kind,
            cluster: Cluster::A,
            shard: None,
            users: Vec::new(),
            raised_at: Time::ZERO,
            epoch: Epoch(1),
            available_nodes: (0, 3),
            recovery_point: BTreeMap::new(),
            resumed_in: BTreeMap::new(),
            losses: BTreeMap::new(),
            lag: None,
        }
    }

    fn state(alarms: &[Alarm]) -> Durable {
        Durable {
            epoch: Epoch(1),
            shards: BTreeMap::new(),
            open_alarms: alarms.iter().map(|a| (a.id, a.clone())).collect(),
            next_alarm_id: 10,
            lease_bound_ms: 0,
            incarnation: 1,
        }
    }

    #[test]
    fn only_open_promotion_held_alarms_are_approved() {
        let held = [
            alarm(3, AlarmKind::PrimaryFailed),
            alarm(4, AlarmKind::PromotionHeld),
            alarm(6, AlarmKind::PromotionHeld),
        ];
        let mut orders = Orders::default();
        assert_eq!(orders.approve(&state(&held), Some(6)), Ok(vec![6]));
        assert_eq!(orders.approve(&state(&held), None), Ok(vec![4, 6]));
        assert_eq!(orders.approved, BTreeSet::from([4, 6]));
        // The first alarm is no promotion-held alarm; nothing is approved twice over.
        let refused = orders
            .approve(&state(&held), Some(3))
            .expect_err("not held");
        assert!(
            refused.contains("alarm 3") && refused.contains("[4, 6]"),
            "{refused}"
        );
        let none = orders
            .approve(&state(&held[..1]), None)
            .expect_err("none held");
        assert!(none.contains("none is open"), "{none}");
        assert_eq!(orders.approved, BTreeSet::from([4, 6]));
    }
}
