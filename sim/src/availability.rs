//! How available the service was to its users in one run: what became of their writes, and
//! the longest any one of them went without an acknowledged write. A failover's RTO measures
//! the configs' acknowledgements; this measures what users actually got.

use crate::trace::Event;
use serde::Serialize;
use standby::time::Time;
use standby::types::UserId;
use std::collections::{BTreeMap, BTreeSet};

/// The users' writes in one run (or summed over runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Availability {
    /// Writes sent.
    pub attempted: u64,
    /// Writes acknowledged.
    pub acknowledged: u64,
    /// Writes refused (a stale epoch, no lease, not the primary, ...): surely not applied.
    pub refused: u64,
    /// Writes with no answer, or an answer that leaves their fate open (a timeout, a lost
    /// connection, a replication timeout), and writes still in flight when the run ended.
    pub unanswered: u64,
    /// The longest stretch, in ms, that any one user went without an acknowledged write
    /// while it was writing: from its first write (or its last acknowledgement) to its next
    /// acknowledgement, or to its last write.
    pub longest_unacknowledged_ms: u64,
    /// Writes a user sent after its first acknowledged one: the service once it was up for
    /// that user (a run's start-up, before the first lease reaches its primary, left out).
    #[serde(default)]
    pub steady_attempted: u64,
    /// How many of those were acknowledged.
    #[serde(default)]
    pub steady_acknowledged: u64,
}

impl Availability {
    /// Acknowledged writes per attempted write (1 when nothing was attempted).
    pub fn acknowledged_share(&self) -> f64 {
        share(self.acknowledged, self.attempted)
    }

    /// The same over the writes each user sent after its first acknowledged one.
    pub fn steady_share(&self) -> f64 {
        share(self.steady_acknowledged, self.steady_attempted)
    }
}

fn share(part: u64, whole: u64) -> f64 {
    match whole {
        0 => 1.0,
        n => part as f64 / n as f64,
    }
}

/// The sum of two availabilities, with the longer of their longest stretches.
impl std::ops::Add for Availability {
    type Output = Availability;

    fn add(self, other: Availability) -> Availability {
        Availability {
            attempted: self.attempted + other.attempted,
            acknowledged: self.acknowledged + other.acknowledged,
            refused: self.refused + other.refused,
            unanswered: self.unanswered + other.unanswered,
            longest_unacknowledged_ms: (self.longest_unacknowledged_ms)
                .max(other.longest_unacknowledged_ms),
            steady_attempted: self.steady_attempted + other.steady_attempted,
            steady_acknowledged: self.steady_acknowledged + other.steady_acknowledged,
        }
    }
}

/// The availability that the users' writes in `events` show.
pub fn availability(events: &[(Time, Event)]) -> Availability {
    let mut a = Availability::default();
    // Per user: since when it has had no acknowledged write, and its last write.
    let mut since: BTreeMap<UserId, Time> = BTreeMap::new();
    let mut last_sent: BTreeMap<UserId, Time> = BTreeMap::new();
    // Users with an acknowledged write, and the writes sent after it.
    let (mut up, mut steady) = (BTreeSet::new(), BTreeSet::new());
    let mut longest = 0;
    for (t, event) in events {
        match event {
            Event::Invoke { id, .. } => {
                a.attempted += 1;
                since.entry(id.user).or_insert(*t);
                last_sent.insert(id.user, *t);
                if up.contains(&id.user) {
                    a.steady_attempted += 1;
                    steady.insert(*id);
                }
            }
            Event::Ok { id, .. } => {
                a.acknowledged += 1;
                a.steady_acknowledged += steady.remove(id) as u64;
                up.insert(id.user);
                let start = since.insert(id.user, *t).unwrap_or(*t);
                longest = longest.max(t.saturating_since(start).as_millis() as u64);
            }
            Event::Fail { .. } => a.refused += 1,
            _ => {}
        }
    }
    for (user, start) in &since {
        let end = last_sent[user];
        longest = longest.max(end.saturating_since(*start).as_millis() as u64);
    }
    a.unanswered = a.attempted - a.acknowledged - a.refused;
    a.longest_unacknowledged_ms = longest;
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use standby::protocol::RejectReason;
    use standby::types::Cluster;
    use standby::types::{Epoch, Lsn, NodeId, WriteId};

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    fn write(user: u32, seq: u64) -> WriteId {
        WriteId {
            user: UserId(user),
            seq,
        }
    }

    fn invoke(ms: u64, user: u32, seq: u64) -> (Time, Event) {
        let node = NodeId::new(Cluster::A, 0);
        let id = write(user, seq);
        (
            at(ms),
            Event::Invoke {
                id,
                node,
                epoch: Epoch(1),
            },
        )
    }

    fn ok(ms: u64, user: u32, seq: u64) -> (Time, Event) {
        let node = NodeId::new(Cluster::A, 0);
        let (id, lsn, epoch) = (write(user, seq), Lsn(seq), Epoch(1));
        (
            at(ms),
            Event::Ok {
                id,
                node,
                lsn,
                epoch,
            },
        )
    }

    #[test]
    fn counts_each_outcome_and_leaves_the_rest_unanswered() {
        let events = vec![
            invoke(0, 0, 1),
            ok(5, 0, 1),
            invoke(10, 0, 2),
            (
                at(12),
                Event::Fail {
                    id: write(0, 2),
                    reason: RejectReason::NoLease,
                },
            ),
            invoke(20, 0, 3),
            (at(320), Event::Unknown { id: write(0, 3) }),
            invoke(330, 0, 4),
        ];
        let a = availability(&events);
        assert_eq!(
            (a.attempted, a.acknowledged, a.refused, a.unanswered),
            (4, 1, 1, 2)
        );
        assert_eq!(a.acknowledged_share(), 0.25);
        // Writes 2-4 came after the first acknowledgement; none of them was acknowledged.
        assert_eq!((a.steady_attempted, a.steady_acknowledged), (3, 0));
    }

    #[test]
    fn steady_writes_are_those_sent_after_the_users_first_acknowledgement() {
        let refused = |ms, user, seq| {
            let (id, reason) = (write(user, seq), RejectReason::NoLease);
            (at(ms), Event::Fail { id, reason })
        };
        let events = vec![
            invoke(0, 0, 1),
            refused(5, 0, 1), // start-up: no lease yet
            invoke(10, 1, 1),
            invoke(20, 0, 2),
            ok(25, 0, 2), // user 0 is up
            invoke(30, 0, 3),
            ok(35, 0, 3),
            refused(40, 1, 1), // user 1 never got an acknowledgement: none of its are steady
            invoke(50, 0, 4),
            refused(55, 0, 4),
        ];
        let a = availability(&events);
        assert_eq!((a.attempted, a.acknowledged), (4 + 1, 2));
        assert_eq!((a.steady_attempted, a.steady_acknowledged), (2, 1));
        assert_eq!(a.steady_share(), 0.5);
    }

    #[test]
    fn the_longest_stretch_runs_from_a_users_last_acknowledgement_to_its_next_or_its_last_write() {
        let events = vec![
            invoke(100, 0, 1),
            invoke(100, 1, 1),
            ok(150, 0, 1), // user 0: 50 ms from its first write
            ok(190, 1, 1),
            invoke(200, 0, 2),
            invoke(200, 1, 2),
            ok(1_400, 1, 2), // user 1: 1,210 ms since its last acknowledgement
            invoke(1_500, 0, 3),
            invoke(2_000, 0, 4), // user 0: never acknowledged again, 1,850 ms to its last write
        ];
        assert_eq!(availability(&events).longest_unacknowledged_ms, 1_850);
        let without_last = &events[..events.len() - 1];
        assert_eq!(availability(without_last).longest_unacknowledged_ms, 1_350);
    }

    #[test]
    fn sums_add_and_keep_the_longest_stretch() {
        let one = Availability {
            attempted: 3,
            acknowledged: 2,
            refused: 1,
            unanswered: 0,
            longest_unacknowledged_ms: 40,
            steady_attempted: 2,
            steady_acknowledged: 1,
        };
        let two = Availability {
            attempted: 5,
            acknowledged: 1,
            refused: 0,
            unanswered: 4,
            longest_unacknowledged_ms: 900,
            steady_attempted: 4,
            steady_acknowledged: 1,
        };
        let sum = one + two;
        assert_eq!((sum.attempted, sum.acknowledged, sum.unanswered), (8, 3, 4));
        assert_eq!(sum.longest_unacknowledged_ms, 900);
        assert_eq!((sum.steady_attempted, sum.steady_acknowledged), (6, 2));
    }
}
