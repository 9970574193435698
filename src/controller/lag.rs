//! Replication lag (issue 15, item 2): per shard, how far the backup is behind its primary, in
//! entries and in time, from the nodes' reports alone.
//!
//! Entries are the primary's last reported position less the backup's. Time is the age of the
//! oldest write the backup still lacks, as the controller saw it: how long ago the first report
//! of the primary that showed a position past the backup's came in. A write is accepted before
//! the report that shows it, so this never overstates the age by more than the coarsening
//! below, and understates it by at most a report's round trip.

use crate::time::Time;
use crate::types::{Lsn, Shard};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Positions remembered per shard. Past this, the newest is moved on instead of a new one
/// kept: the writes between the two look older than they are (the alarm errs early), and
/// memory stays bounded however far the backup falls behind.
const SEEN_MAX: usize = 256;

/// How far one shard's backup is behind its primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lag {
    /// The shard.
    pub shard: Shard,
    /// Entries the primary reported that the backup has not applied.
    pub entries: u64,
    /// The age of the oldest of them, in ms (0 when there is none).
    pub behind_ms: u64,
}

/// The primary positions seen per shard, each with when it was first seen.
#[derive(Clone, Debug, Default)]
pub struct LagTracker {
    seen: BTreeMap<Shard, VecDeque<(Lsn, Time)>>,
}

impl LagTracker {
    /// Forgets the positions of `shard` (its backup has just joined).
    pub fn forget(&mut self, shard: Shard) {
        self.seen.remove(&shard);
    }

    /// The primary of `shard` reported position `lsn` at `now`.
    pub fn primary_at(&mut self, shard: Shard, lsn: Lsn, now: Time) {
        let seen = self.seen.entry(shard).or_default();
        let full = seen.len() >= SEEN_MAX;
        match seen.back_mut() {
            Some((newest, _)) if *newest >= lsn => {}
            Some((newest, _)) if full => *newest = lsn,
            _ => seen.push_back((lsn, now)),
        }
    }

    /// How far the backup of `shard`, at `applied`, is behind a primary at `primary`.
    pub fn lag(&mut self, shard: Shard, primary: Lsn, applied: Lsn, now: Time) -> Lag {
        let seen = self.seen.entry(shard).or_default();
        while seen.front().is_some_and(|&(lsn, _)| lsn <= applied) {
            seen.pop_front();
        }
        let entries = primary.0.saturating_sub(applied.0);
        let oldest = seen.front().filter(|_| entries > 0);
        Lag {
            shard,
            entries,
            behind_ms: oldest.map_or(0, |&(_, at)| now.saturating_since(at).as_millis() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    #[test]
    fn the_age_is_that_of_the_first_report_showing_a_write_the_backup_lacks() {
        let (mut lag, shard) = (LagTracker::default(), Shard(0));
        lag.primary_at(shard, Lsn(5), at(100));
        lag.primary_at(shard, Lsn(5), at(200)); // no new write: no new position
        lag.primary_at(shard, Lsn(9), at(300));
        // The backup only moves on: at 3, it lacks writes first seen at 100 ms.
        let behind = lag.lag(shard, Lsn(9), Lsn(3), at(1_000));
        assert_eq!((behind.entries, behind.behind_ms), (6, 900));
        let behind = lag.lag(shard, Lsn(9), Lsn(5), at(1_000));
        assert_eq!((behind.entries, behind.behind_ms), (4, 700));
        assert_eq!(lag.lag(shard, Lsn(9), Lsn(9), at(1_100)).behind_ms, 0);
        // Forgotten (the backup just joined): its lag counts from the next position seen.
        lag.primary_at(shard, Lsn(12), at(1_200));
        lag.forget(shard);
        lag.primary_at(shard, Lsn(12), at(1_500));
        assert_eq!(lag.lag(shard, Lsn(12), Lsn(9), at(2_000)).behind_ms, 500);
    }

    #[test]
    fn memory_is_bounded_and_the_coarsened_writes_look_older() {
        let (mut lag, shard) = (LagTracker::default(), Shard(1));
        for i in 1..=10 * SEEN_MAX as u64 {
            lag.primary_at(shard, Lsn(i), at(i));
        }
        assert_eq!(lag.seen[&shard].len(), SEEN_MAX);
        let last = 10 * SEEN_MAX as u64;
        // Past the kept positions, the newest stands for everything after it, first seen when
        // it was: older than the truth, never younger.
        let behind = lag.lag(shard, Lsn(last), Lsn(last - 1), at(last));
        assert_eq!(behind.entries, 1);
        assert!(behind.behind_ms >= 1, "{behind:?}");
    }
}
