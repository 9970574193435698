//! Persisting without pausing the heartbeat. A save to etcd takes a network round trip; if
//! the controller waited for each one, a slow link to etcd would stop its heartbeats, and
//! every node would look down. So saves run beside the controller's loop, one at a time and
//! coalesced, and what the controller does meanwhile goes out only as far as the state
//! already durable allows: a new leader (or a restarted controller) must never find that its
//! predecessor acted on a state it cannot see.
//!
//! - Publications, alarms and the note that an epoch began wait until every state persisted
//!   before them is durable (a leader that loses etcd mid-promotion never began that epoch).
//! - Heartbeats go at once (they carry the failure detector), but a command is dropped from
//!   them (the controller resends it until the node's report shows it done), and so is a lease
//!   grant that the durable state would not give: a different epoch or primary, or a failover
//!   under way. A lease not renewed for a round is a lease the controller overestimates, which
//!   is safe.

use crate::controller::{Action, Durable, Note};
use crate::protocol::Heartbeat;
use crate::types::NodeId;
use std::collections::VecDeque;

/// The saves under way, and the actions waiting for them.
#[derive(Debug, Default)]
pub struct Barrier {
    /// The newest state known durable.
    saved: Option<Durable>,
    /// The newest state persisted but not yet handed to a save (older ones are covered by it).
    queued: Option<Durable>,
    /// Whether a save is in flight.
    saving: bool,
    /// Actions waiting for the saves.
    held: VecDeque<Action>,
}

impl Barrier {
    /// A barrier with nothing durable yet.
    pub fn new() -> Barrier {
        Barrier::default()
    }

    /// Takes a [`Action::Persist`]'s state, to be saved next.
    pub fn persist(&mut self, state: Durable) {
        self.queued = Some(state);
    }

    /// The state to save now, if no save is in flight and one is queued.
    pub fn start(&mut self) -> Option<Durable> {
        if self.saving {
            return None;
        }
        let state = self.queued.take()?;
        self.saving = true;
        Some(state)
    }

    /// The save of `state` is done.
    pub fn saved(&mut self, state: Durable) {
        self.saving = false;
        self.saved = Some(state);
    }

    fn pending(&self) -> bool {
        self.saving || self.queued.is_some()
    }

    /// What of `action` may be carried out now; a publication, an alarm or a promotion's note
    /// is held instead
    /// while a save is pending (see [`Barrier::release`]).
    pub fn pass(&mut self, action: Action) -> Option<Action> {
        if !self.pending() {
            return Some(action);
        }
        match action {
            Action::Heartbeat { node, heartbeat } => Some(Action::Heartbeat {
                node,
                heartbeat: self.cover(node, heartbeat),
            }),
            Action::Publish { .. } | Action::Alarm(_) | Action::Note(Note::Promoted { .. }) => {
                self.held.push_back(action);
                None
            }
            Action::Persist(_) | Action::Note(_) => Some(action),
        }
    }

    /// The held actions, in order, once no save is pending.
    pub fn release(&mut self) -> Vec<Action> {
        match self.pending() {
            true => Vec::new(),
            false => self.held.drain(..).collect(),
        }
    }

    /// `heartbeat` without what the durable state does not back.
    fn cover(&self, node: NodeId, mut heartbeat: Heartbeat) -> Heartbeat {
        heartbeat.command = None;
        let backed = |epoch| {
            (self.saved.as_ref())
                .is_some_and(|s| s.epoch == epoch && s.primary == node.cluster && !s.failing_over)
        };
        heartbeat.grant = heartbeat.grant.filter(|grant| backed(grant.epoch));
        heartbeat
    }
}
