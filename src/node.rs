//! The node side of the protocol, sans-IO: a storage node's epoch, role, write lease, log,
//! quarantine and replication position. The simulator's storage nodes are this state machine
//! behind a TCP service; a real agent beside a storage server would keep the same rules.
//!
//! The rules that make split brain impossible live here: a node accepts a write only as the
//! primary of the write's epoch, under a lease anchored at the send time of its own report,
//! and it never goes back to an older epoch.

use crate::protocol::{
    Append, AppendReply, Command, Entry, Heartbeat, NodeReport, QuarantineSummary, RejectReason,
    Role, Route, Write, WriteReply,
};
use crate::time::Time;
use crate::types::{Epoch, Lsn, NodeId, WriteId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// What a node keeps on disk: survives a crash and restart, lost only to a wipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeDisk {
    /// Who the node is.
    pub id: NodeId,
    /// The newest epoch it has seen.
    pub epoch: Epoch,
    /// Its role in that epoch.
    pub role: Role,
    /// As primary: its last position when it was promoted in `epoch`.
    pub epoch_start_lsn: Lsn,
    /// The newest route it knows for its shard (told by the controller).
    pub route: Option<Route>,
    /// The last position discarded from the log, once the backup held it (see
    /// [`crate::protocol::Trim`]).
    pub trimmed: Lsn,
    /// The data as of `trimmed`: the discarded entries applied.
    pub trimmed_data: BTreeMap<String, u64>,
    /// The log after `trimmed`; entry `k` has LSN `trimmed + k + 1`.
    pub log: Vec<Entry>,
    /// The key/value data, the log applied to `trimmed_data`.
    pub data: BTreeMap<String, u64>,
    /// Entries moved out of the log because the primary of a later epoch never had them.
    pub quarantine: Vec<Entry>,
    /// What the moves to quarantine that took writes took, oldest first (see
    /// [`QuarantineSummary::record`]).
    pub quarantines: Vec<QuarantineSummary>,
}

/// What a node forgets on restart.
#[derive(Clone, Debug, Default)]
pub struct Volatile {
    /// The write lease: the epoch it is for and when it ends on the node's clock.
    pub lease: Option<(Epoch, Time)>,
    /// When (node clock) the report for each recent round was sent: the anchors of leases.
    pub report_sent: BTreeMap<u64, Time>,
    /// As primary: the backup's last confirmed position in the current epoch.
    pub peer_lsn: Option<Lsn>,
}

/// A change of role or data a node went through, for traces and checkers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NodeEvent {
    /// The node took a new epoch or role.
    Role {
        /// The epoch.
        epoch: Epoch,
        /// The role.
        role: Role,
    },
    /// A write was accepted into the log as primary.
    Accepted(Entry),
    /// The divergent suffix was moved to quarantine.
    Quarantined(QuarantineSummary),
    /// Entries were applied from the primary.
    Applied {
        /// The first position applied.
        from: Lsn,
        /// The last position applied.
        to: Lsn,
    },
    /// The log was discarded up to `through`: these entries, by position and write.
    Trimmed {
        /// The new trimmed position.
        through: Lsn,
        /// What was discarded (for the checkers, which see every entry a node held).
        ids: Vec<(Lsn, WriteId)>,
    },
    /// The log was replaced by the primary's data as of `base` (the backup lacked entries
    /// the primary had discarded).
    Installed {
        /// The primary's trimmed position, now this node's.
        base: Lsn,
    },
}

/// A storage node: its disk and its volatile state.
#[derive(Clone, Debug)]
pub struct Node {
    /// Survives restarts.
    pub disk: NodeDisk,
    /// Lost on restart.
    pub volatile: Volatile,
    /// A deliberate bug (simulator builds only).
    #[cfg(feature = "mutants")]
    pub mutation: crate::mutation::Mutation,
}

impl NodeDisk {
    /// A fresh (or wiped) node: epoch 0, idle, empty.
    pub fn new(id: NodeId) -> NodeDisk {
        NodeDisk {
            id,
            epoch: Epoch(0),
            role: Role::Idle,
            epoch_start_lsn: Lsn(0),
            route: None,
            trimmed: Lsn(0),
            trimmed_data: BTreeMap::new(),
            log: Vec::new(),
            data: BTreeMap::new(),
            quarantine: Vec::new(),
            quarantines: Vec::new(),
        }
    }

    /// The last log position.
    pub fn last_lsn(&self) -> Lsn {
        Lsn(self.trimmed.0 + self.log.len() as u64)
    }

    /// The index in `log` of the entry after position `lsn` (clamped to the log).
    fn index_after(&self, lsn: Lsn) -> usize {
        (lsn.0.saturating_sub(self.trimmed.0) as usize).min(self.log.len())
    }

    /// Discards the log up to `through` (at most the last position), folding it into
    /// `trimmed_data`.
    fn trim(&mut self, through: Lsn, events: &mut Vec<NodeEvent>) {
        let through = through.min(self.last_lsn());
        if through <= self.trimmed {
            return;
        }
        let end = self.index_after(through);
        let gone: Vec<Entry> = self.log.drain(..end).collect();
        for entry in &gone {
            self.trimmed_data.insert(entry.key.clone(), entry.value);
        }
        self.trimmed = through;
        let ids = gone.iter().map(|e| (e.lsn, e.id)).collect();
        events.push(NodeEvent::Trimmed { through, ids });
    }

    /// The data rebuilt from what is left: `trimmed_data` and the log.
    fn rebuild_data(&mut self) {
        self.data = self.trimmed_data.clone();
        for entry in &self.log {
            self.data.insert(entry.key.clone(), entry.value);
        }
    }
}

impl Node {
    /// A fresh node.
    pub fn new(id: NodeId) -> Node {
        Node {
            disk: NodeDisk::new(id),
            volatile: Volatile::default(),
            #[cfg(feature = "mutants")]
            mutation: crate::mutation::Mutation::None,
        }
    }

    /// The node after a restart: its disk, nothing else.
    pub fn restart(&mut self) {
        self.volatile = Volatile::default();
    }

    /// Whether it holds a write lease for its epoch at `now` (its own clock).
    pub fn has_lease(&self, now: Time) -> bool {
        matches!(self.volatile.lease, Some((e, until)) if e == self.disk.epoch && now < until)
    }

    /// Answers a heartbeat: takes the lease grant and the command, then reports. `now` is the
    /// node's clock; the report is taken to be sent at `now` and anchors the next grant.
    pub fn on_heartbeat(
        &mut self,
        heartbeat: &Heartbeat,
        now: Time,
        events: &mut Vec<NodeEvent>,
    ) -> NodeReport {
        if let Some(command) = &heartbeat.command {
            self.apply_command(command, events);
        }
        if let Some(trim) = heartbeat.trim {
            if self.disk.role == Role::Primary && trim.epoch == self.disk.epoch {
                self.disk.trim(trim.through, events);
            }
        }
        if let Some(grant) = heartbeat.grant {
            let anchored = self.volatile.report_sent.get(&grant.anchor_round).copied();
            let primary = self.disk.role == Role::Primary && grant.epoch == self.disk.epoch;
            if let (Some(sent), true) = (anchored, primary) {
                let until = sent + Duration::from_millis(grant.duration_ms);
                let current = self.volatile.lease.map_or(Time::ZERO, |(_, t)| t);
                self.volatile.lease = Some((grant.epoch, until.max(current)));
            }
        }
        // The first send of a round anchors it: a duplicate arriving late must never move an
        // anchor later than the controller's bound assumes.
        self.volatile
            .report_sent
            .entry(heartbeat.round)
            .or_insert(now);
        while self.volatile.report_sent.len() > 16 {
            self.volatile.report_sent.pop_first();
        }
        self.report(heartbeat.round)
    }

    /// The node's state, as it reports it.
    pub fn report(&self, round: u64) -> NodeReport {
        let disk = &self.disk;
        NodeReport {
            round,
            epoch: disk.epoch,
            role: disk.role,
            last_lsn: disk.last_lsn(),
            epoch_start_lsn: disk.epoch_start_lsn,
            trimmed: disk.trimmed,
            quarantines: disk.quarantines.clone(),
        }
    }

    /// Applies a controller command, if it is not older than what the node has seen.
    pub fn apply_command(&mut self, command: &Command, events: &mut Vec<NodeEvent>) {
        let (epoch, role) = (self.disk.epoch, self.disk.role);
        let newer = command.epoch() > epoch;
        let same = command.epoch() == epoch;
        match command {
            Command::Promote { epoch: e, route } if newer => {
                self.disk.epoch_start_lsn = self.disk.last_lsn();
                self.disk.route = Some(route.clone());
                self.volatile.peer_lsn = None;
                self.enter(*e, Role::Primary, events);
            }
            Command::Follow {
                epoch: e,
                primary,
                truncate_after,
            } if newer || (same && role != Role::Backup && role != Role::Primary) => {
                self.quarantine_after(*truncate_after, *e, events);
                self.disk.route = Some(primary.clone());
                self.enter(*e, Role::Backup, events);
            }
            Command::Stop { epoch: e } if newer || (same && role == Role::Backup) => {
                self.enter(*e, Role::Stopped, events);
            }
            Command::Fence { epoch: e, route } if newer || (same && role != Role::Fenced) => {
                if let Some(route) = route {
                    self.learn_route(route);
                }
                self.enter(*e, Role::Fenced, events);
            }
            _ => {}
        }
    }

    fn enter(&mut self, epoch: Epoch, role: Role, events: &mut Vec<NodeEvent>) {
        self.disk.epoch = epoch;
        self.disk.role = role;
        self.volatile.lease = None;
        events.push(NodeEvent::Role { epoch, role });
    }

    fn learn_route(&mut self, route: &Route) {
        if self
            .disk
            .route
            .as_ref()
            .is_none_or(|r| r.epoch < route.epoch)
        {
            self.disk.route = Some(route.clone());
        }
    }

    /// Moves the divergent suffix to the quarantine (claim 7 with [DESIGN] 6: never silently
    /// dropped, never merged), and rebuilds the data from what is left.
    ///
    /// The new primary of `epoch` held exactly `stop_point` entries when it was promoted, and
    /// every entry it has after that is of `epoch`. So an entry of this log after the stop
    /// point is divergent exactly when it is of an older epoch: the old primary's writes that
    /// never reached the new one. Entries of `epoch` came from the new primary and stay. This
    /// makes the rule safe to apply to any follower, including one that was already
    /// following in `epoch` (whose log holds nothing divergent).
    ///
    /// The log holds no entry at or before `trimmed`, and needs none: the backup held them
    /// before they were discarded, so every stop point is at or past them.
    fn quarantine_after(&mut self, stop_point: Lsn, epoch: Epoch, events: &mut Vec<NodeEvent>) {
        let start = self.disk.index_after(stop_point);
        let keep = (self.disk.log[start..].iter())
            .position(|entry| entry.epoch < epoch)
            .map_or(self.disk.log.len(), |offset| start + offset);
        let keep = match crate::mutated!(self, MergeSuffix) {
            true => self.disk.log.len(), // Keeps the divergent writes as if they were shared.
            false => keep,
        };
        let moved: Vec<Entry> = self.disk.log.split_off(keep);
        let summary = QuarantineSummary {
            epoch,
            count: moved.len() as u64,
            lsns: moved.first().zip(moved.last()).map(|(f, l)| (f.lsn, l.lsn)),
            span: moved.first().zip(moved.last()).map(|(f, l)| (f.at, l.at)),
        };
        if !moved.is_empty() {
            self.disk.rebuild_data();
            if !crate::mutated!(self, DropSuffix) {
                self.disk.quarantine.extend(moved);
            }
        }
        events.push(NodeEvent::Quarantined(summary.clone()));
        QuarantineSummary::record(&mut self.disk.quarantines, summary);
    }

    /// The route to hand a user whose write carried `epoch`, if the node knows a newer one.
    fn newer_route(&self, epoch: Epoch) -> Option<Route> {
        if crate::mutated!(self, NoRejectionRoute) {
            return None;
        }
        self.disk.route.clone().filter(|r| r.epoch > epoch)
    }

    /// Takes a user's write. On success the entry is in the log; in sync mode the caller
    /// still waits for the backup before acknowledging it.
    pub fn on_write(
        &mut self,
        write: &Write,
        now: Time,
        events: &mut Vec<NodeEvent>,
    ) -> WriteReply {
        let reject = |reason| WriteReply::Rejected {
            reason,
            route: self.newer_route(write.epoch),
        };
        let disk = &self.disk;
        if write.epoch < disk.epoch {
            return reject(RejectReason::StaleEpoch);
        }
        if write.epoch > disk.epoch {
            return reject(RejectReason::FutureEpoch);
        }
        if disk.role != Role::Primary {
            return reject(RejectReason::NotPrimary);
        }
        if !self.has_lease(now) {
            return reject(RejectReason::NoLease);
        }
        let entry = Entry {
            lsn: Lsn(disk.last_lsn().0 + 1),
            epoch: disk.epoch,
            id: write.id,
            key: write.key.clone(),
            value: write.value,
            at: now,
        };
        let (lsn, epoch) = (entry.lsn, entry.epoch);
        self.append_entry(entry.clone());
        events.push(NodeEvent::Accepted(entry));
        WriteReply::Ok { lsn, epoch }
    }

    fn append_entry(&mut self, entry: Entry) {
        self.disk.data.insert(entry.key.clone(), entry.value);
        self.disk.log.push(entry);
    }

    /// As primary: the next shipment for the backup, at most `max` entries, or `None` when
    /// the node is not primary. While the backup's position is unknown (after a promotion or
    /// a restart) the shipment is an empty probe: the backup answers with its position, and
    /// a backup that is away does not cost a full batch on every retry.
    pub fn next_append(&self, max: usize) -> Option<Append> {
        let disk = &self.disk;
        if disk.role != Role::Primary {
            return None;
        }
        let Some(peer) = self.volatile.peer_lsn else {
            return Some(self.append(Lsn(0), 0, None));
        };
        // A backup behind what was discarded (it lost its data) gets the data as of the
        // trimmed position first, as Redis's full sync would.
        if peer < disk.trimmed {
            let snapshot = Some(disk.trimmed_data.clone());
            return Some(self.append(disk.trimmed, max, snapshot));
        }
        Some(self.append(peer.min(disk.last_lsn()), max, None))
    }

    /// At most `max` entries after `prev_lsn` (at or past the trimmed position).
    fn append(&self, prev_lsn: Lsn, max: usize, snapshot: Option<BTreeMap<String, u64>>) -> Append {
        let disk = &self.disk;
        let from = disk.index_after(prev_lsn);
        let to = (from + max).min(disk.log.len());
        Append {
            epoch: disk.epoch,
            prev_lsn,
            entries: disk.log[from..to].to_vec(),
            trimmed: disk.trimmed,
            snapshot,
        }
    }

    /// As primary: takes the backup's answer. A newer epoch at the backup means this node is
    /// no longer primary: it fences itself at once.
    pub fn on_append_reply(&mut self, reply: &AppendReply, events: &mut Vec<NodeEvent>) {
        if reply.epoch > self.disk.epoch {
            // A newer epoch exists: stop writing at once. Stay in our own epoch, though: the
            // controller may yet promote this node in that newer epoch, and a node already in
            // it would ignore the command.
            if self.disk.role != Role::Fenced {
                self.enter(self.disk.epoch, Role::Fenced, events);
            }
            return;
        }
        if reply.epoch == self.disk.epoch && self.disk.role == Role::Primary {
            let last = reply.last_lsn.min(self.disk.last_lsn());
            self.volatile.peer_lsn = match reply.applied {
                // Only a follower that applied confirms a position (sync acks rest on it).
                true => Some(last),
                // A refusal only ever moves the resend point back: a node that is not
                // following reports a log that may not be ours at all.
                false => self.volatile.peer_lsn.map(|p| p.min(last)),
            };
        }
    }

    /// As backup: applies a shipment from the primary of its epoch. Entries it already holds
    /// are skipped (the logs share every position up to the stop point, and after it the
    /// backup only ever received this primary's entries).
    pub fn on_append(&mut self, append: &Append, events: &mut Vec<NodeEvent>) -> AppendReply {
        let follows = append.epoch == self.disk.epoch && self.disk.role == Role::Backup;
        if let (true, Some(data)) = (follows, &append.snapshot) {
            if append.prev_lsn > self.disk.last_lsn() {
                self.install(append.prev_lsn, data, events);
            }
        }
        let last = self.disk.last_lsn();
        if !follows || append.prev_lsn > last {
            return AppendReply {
                epoch: self.disk.epoch,
                applied: false,
                last_lsn: last,
            };
        }
        let end = Lsn(append.prev_lsn.0 + append.entries.len() as u64);
        if end > last {
            let skip = (last.0 - append.prev_lsn.0) as usize;
            for entry in &append.entries[skip..] {
                self.append_entry(entry.clone());
            }
            events.push(NodeEvent::Applied {
                from: Lsn(last.0 + 1),
                to: end,
            });
        }
        // The primary discarded these after this node held them: so may it.
        self.disk.trim(append.trimmed, events);
        AppendReply {
            epoch: self.disk.epoch,
            applied: true,
            last_lsn: self.disk.last_lsn(),
        }
    }

    /// Replaces the log by the primary's data as of `base`: everything this node held is
    /// older than `base`, and it follows that primary.
    fn install(&mut self, base: Lsn, data: &BTreeMap<String, u64>, events: &mut Vec<NodeEvent>) {
        let disk = &mut self.disk;
        disk.log.clear();
        disk.trimmed = base;
        disk.trimmed_data = data.clone();
        disk.data = data.clone();
        events.push(NodeEvent::Installed { base });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Trim;
    use crate::types::{Cluster, UserId};

    fn route(epoch: u64, node: NodeId) -> Route {
        Route {
            epoch: Epoch(epoch),
            node,
            address: String::new(),
        }
    }

    /// A primary of epoch 1 holding `writes` writes (keys k0..k2), and its backup holding
    /// the first `shipped` of them.
    fn pair(writes: u64, shipped: usize) -> (Node, Node, Vec<NodeEvent>) {
        let (a, b) = (NodeId::new(Cluster::A, 0), NodeId::new(Cluster::B, 0));
        let (mut primary, mut backup, mut events) = (Node::new(a), Node::new(b), Vec::new());
        let promote = Command::Promote {
            epoch: Epoch(1),
            route: route(1, a),
        };
        primary.apply_command(&promote, &mut events);
        primary.volatile.lease = Some((Epoch(1), Time::from_millis(1_000)));
        for seq in 0..writes {
            let write = Write {
                id: WriteId {
                    user: UserId(0),
                    seq,
                },
                epoch: Epoch(1),
                key: format!("k{}", seq % 3),
                value: seq,
            };
            let reply = primary.on_write(&write, Time::ZERO, &mut events);
            assert!(matches!(reply, WriteReply::Ok { .. }), "{reply:?}");
        }
        let follow = Command::Follow {
            epoch: Epoch(1),
            primary: route(1, a),
            truncate_after: Lsn(0),
        };
        backup.apply_command(&follow, &mut events);
        let probe = primary.next_append(0).expect("primary");
        let reply = backup.on_append(&probe, &mut events);
        primary.on_append_reply(&reply, &mut events);
        let batch = primary.next_append(shipped).expect("primary");
        let reply = backup.on_append(&batch, &mut events);
        primary.on_append_reply(&reply, &mut events);
        (primary, backup, events)
    }

    fn trim(node: &mut Node, through: u64, events: &mut Vec<NodeEvent>) {
        let heartbeat = Heartbeat {
            round: 1,
            grant: None,
            command: None,
            trim: Some(Trim {
                epoch: Epoch(1),
                through: Lsn(through),
            }),
        };
        node.on_heartbeat(&heartbeat, Time::ZERO, events);
    }

    #[test]
    fn a_trimmed_primary_still_quarantines_every_write_its_backup_lacked() {
        let (mut primary, backup, mut events) = pair(10, 6);
        assert_eq!(backup.disk.last_lsn(), Lsn(6));
        trim(&mut primary, 6, &mut events);
        assert_eq!((primary.disk.trimmed, primary.disk.log.len()), (Lsn(6), 4));
        assert_eq!(primary.report(1).trimmed, Lsn(6));
        // The backup is promoted at its position, 6; the old primary rejoins it.
        let follow = Command::Follow {
            epoch: Epoch(2),
            primary: route(2, backup.disk.id),
            truncate_after: Lsn(6),
        };
        primary.apply_command(&follow, &mut events);
        let moved: Vec<u64> = primary.disk.quarantine.iter().map(|e| e.lsn.0).collect();
        assert_eq!(moved, [7, 8, 9, 10]);
        assert_eq!(primary.disk.last_lsn(), Lsn(6));
        // What is left is the data of writes 1..=6: the discarded entries, not the log alone.
        assert_eq!(primary.disk.data, backup.disk.data);
    }

    #[test]
    fn a_trim_never_passes_the_node_s_last_position_nor_applies_in_another_epoch() {
        let (mut primary, _, mut events) = pair(4, 4);
        trim(&mut primary, 99, &mut events);
        assert_eq!(
            (primary.disk.trimmed, primary.disk.last_lsn()),
            (Lsn(4), Lsn(4))
        );
        let (mut other, _, mut events) = pair(4, 4);
        let fence = Command::Fence {
            epoch: Epoch(2),
            route: None,
        };
        other.apply_command(&fence, &mut events);
        trim(&mut other, 3, &mut events);
        assert_eq!(other.disk.trimmed, Lsn(0));
    }

    #[test]
    fn a_backup_behind_the_trimmed_position_installs_the_primary_s_data() {
        let (mut primary, mut backup, mut events) = pair(9, 9);
        trim(&mut primary, 9, &mut events);
        // The backup loses its data (a wipe) and follows again, from nothing.
        backup.disk = NodeDisk::new(backup.disk.id);
        let follow = Command::Follow {
            epoch: Epoch(1),
            primary: route(1, primary.disk.id),
            truncate_after: Lsn(0),
        };
        backup.apply_command(&follow, &mut events);
        let probe = primary.next_append(8).expect("primary");
        let reply = backup.on_append(&probe, &mut events);
        primary.on_append_reply(&reply, &mut events);
        let append = primary.next_append(8).expect("primary");
        assert!(append.snapshot.is_some());
        let reply = backup.on_append(&append, &mut events);
        assert!(reply.applied);
        assert_eq!(backup.disk.last_lsn(), Lsn(9));
        assert_eq!(backup.disk.data, primary.disk.data);
        assert!(events.contains(&NodeEvent::Installed { base: Lsn(9) }));
    }

    #[test]
    fn a_backup_discards_what_its_primary_discarded() {
        let (mut primary, mut backup, mut events) = pair(10, 10);
        trim(&mut primary, 7, &mut events);
        let append = primary.next_append(8).expect("primary");
        backup.on_append(&append, &mut events);
        assert_eq!(
            (backup.disk.trimmed, backup.disk.last_lsn()),
            (Lsn(7), Lsn(10))
        );
        assert_eq!(backup.disk.data, primary.disk.data);
    }
}
