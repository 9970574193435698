//! Persisting without pausing the heartbeat. A save to etcd takes a network round trip; if
//! the controller waited for each one, a slow link to etcd would stop its heartbeats, and
//! every node would look down. So saves run beside the controller's loop, one at a time and
//! coalesced, and what the controller does meanwhile goes out only as far as the state
//! already durable allows: a new leader (or a restarted controller) must never find that its
//! predecessor acted on a state it cannot see.
//!
//! - A publication waits until the states persisted before it are durable: users must never
//!   route by an epoch that a new leader might not find (it could reuse the epoch for the
//!   other cluster). A publication still held when the controller stops is dropped; the next
//!   leader publishes its durable epoch at once.
//! - Heartbeats go at once (they carry the failure detector), but a command is dropped from
//!   them (the controller resends it until the node's report shows it done), and so is a lease
//!   grant that the durable state would not give: a different epoch or primary, or a failover
//!   under way. A lease not renewed for a round is a lease the controller overestimates, which
//!   is safe.
//! - Alarms and notes go at once. An alarm is delivered at least once: a leader that stops
//!   before its state is durable leaves the next one to raise or close it again, and a
//!   duplicate costs less than a lost loss report.

use crate::controller::{Action, Durable};
use crate::protocol::{Heartbeat, LeaseGrant};
use crate::types::NodeId;
use std::collections::{BTreeSet, VecDeque};

/// The saves under way, and the publications waiting for them.
#[derive(Debug, Default)]
pub struct Barrier {
    /// The newest state known durable.
    saved: Option<Durable>,
    /// The newest state persisted but not yet handed to a save (older ones are covered by it).
    queued: Option<Durable>,
    /// Persists taken so far.
    persisted: u64,
    /// How many of them the save in flight covers.
    in_flight: u64,
    /// How many of them are durable.
    durable: u64,
    /// Whether a save is in flight.
    saving: bool,
    /// Publications waiting, each with the number of persists that must be durable first.
    held: VecDeque<(u64, Action)>,
    /// The nodes whose heartbeats lost a command or a grant to [`Barrier::cover`] since the
    /// last save: they get a heartbeat again as soon as the state is durable, rather than a
    /// round later (a promotion's Promote, and the new primary's first grant, each wait for
    /// a save).
    stripped: BTreeSet<NodeId>,
}

impl Barrier {
    /// A barrier with nothing durable yet.
    pub fn new() -> Barrier {
        Barrier::default()
    }

    /// Takes a [`Action::Persist`]'s state, to be saved next.
    pub fn persist(&mut self, state: Durable) {
        self.queued = Some(state);
        self.persisted += 1;
    }

    /// The state to save now, if no save is in flight and one is queued.
    pub fn start(&mut self) -> Option<Durable> {
        if self.saving {
            return None;
        }
        let state = self.queued.take()?;
        self.saving = true;
        self.in_flight = self.persisted;
        Some(state)
    }

    /// The save of `state` is done.
    pub fn saved(&mut self, state: Durable) {
        self.saving = false;
        self.saved = Some(state);
        self.durable = self.in_flight;
    }

    /// What of `action` may be carried out now; a publication is held instead while a state
    /// persisted before it is not yet durable (see [`Barrier::release`]).
    pub fn pass(&mut self, action: Action) -> Option<Action> {
        if self.durable == self.persisted {
            return Some(action);
        }
        match action {
            Action::Heartbeat { node, heartbeat } => Some(Action::Heartbeat {
                node,
                heartbeat: self.cover(node, heartbeat),
            }),
            Action::Publish { .. } => {
                self.held.push_back((self.persisted, action));
                None
            }
            Action::Persist(_) | Action::Alarm(_) | Action::Note(_) => Some(action),
        }
    }

    /// The nodes to send a heartbeat again now that a save is done (see `stripped`).
    pub fn resend(&mut self) -> BTreeSet<NodeId> {
        std::mem::take(&mut self.stripped)
    }

    /// The held publications whose states are now durable, in order.
    pub fn release(&mut self) -> Vec<Action> {
        let mut free = Vec::new();
        while self
            .held
            .front()
            .is_some_and(|(needs, _)| *needs <= self.durable)
        {
            free.extend(self.held.pop_front().map(|(_, action)| action));
        }
        free
    }

    /// `heartbeat` without what the durable state does not back. A lease needs the node's
    /// cluster primary of its shard in the lease's epoch, no failover of the shard under way,
    /// the shard's stop point in that epoch durable, and a durable lease bound at least as long as the
    /// lease. No shard may take a write in an epoch before a successor could learn where
    /// that epoch's log began (swarm seed 13417: a leader lost etcd while saving a stop point,
    /// the new primary wrote on its lease, and the successor, not knowing the stop point, let
    /// the old primary keep a divergent suffix); and a successor waits out only the leases
    /// the bound it finds allows.
    fn cover(&mut self, node: NodeId, mut heartbeat: Heartbeat) -> Heartbeat {
        let had = (
            heartbeat.command.take().is_some(),
            heartbeat.grant.is_some(),
        );
        let backed = |grant: &LeaseGrant| {
            let saved = self.saved.as_ref();
            let shard = saved.and_then(|s| s.shard(node.shard()));
            (saved.zip(shard)).is_some_and(|(saved, s)| {
                s.epoch == grant.epoch
                    && s.primary == node.cluster
                    && s.failing_over.is_none()
                    && s.stop_point.is_some()
                    && saved.lease_bound_ms >= grant.duration_ms
            })
        };
        heartbeat.grant = heartbeat.grant.filter(backed);
        if had.0 || (had.1 && heartbeat.grant.is_none()) {
            self.stripped.insert(node);
        }
        heartbeat
    }
}
