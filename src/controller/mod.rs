//! The controller: a sans-IO state machine that implements claims 1-7 with fencing.
//!
//! Order of calls, for whoever drives it (the tokio service, the simulator, a test):
//! 1. [`Controller::new`] (first start) or [`Controller::restore`] (after a restart, with the
//!    last persisted [`Durable`] state).
//! 2. Whenever the clock reaches [`Controller::next_tick`], call [`Controller::tick`].
//! 3. Feed every node report with [`Controller::handle_report`] and every config-center answer
//!    with [`Controller::handle_publish_reply`].
//! 4. After each call, drain [`Controller::poll_action`] and carry the actions out in order.
//!    A [`Action::Persist`] must be durable before any action after it is carried out.
//!
//! The controller owns no clock, socket or randomness: `now` is always an argument.

mod alarm;
mod failover;
mod health;
mod lag;
mod recovery;
mod state;

pub use alarm::{Alarm, AlarmEvent, AlarmKind, RecoveryPoint, Resolution};
pub use failover::Failover;
pub use health::{Availability, ClusterHealth, NodeTable, NodeView};
pub use lag::{Lag, LagTracker};
pub use state::{Durable, Orders, Scope, ShardState};

use crate::params::Params;
use crate::protocol::{
    Command, Heartbeat, LeaseGrant, NodeReport, PublishReply, Role, Route, Trim,
};
use crate::time::Time;
use crate::types::{Cluster, Epoch, Lsn, NodeId, Shard, UserConfig, UserId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// The two clusters' shape and the users of each shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// Nodes in each cluster (equal: node `a/i` pairs with `b/i`).
    pub nodes_per_cluster: u16,
    /// Every node's address.
    pub addresses: BTreeMap<NodeId, String>,
    /// Every user and the shard it uses.
    pub users: BTreeMap<UserId, Shard>,
}

impl Topology {
    /// Every node of `cluster`.
    pub fn nodes(&self, cluster: Cluster) -> impl Iterator<Item = NodeId> {
        (0..self.nodes_per_cluster).map(move |i| NodeId::new(cluster, i))
    }

    /// Every node of both clusters.
    pub fn all_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        Cluster::BOTH.into_iter().flat_map(|c| self.nodes(c))
    }

    /// The route to `node` in `epoch`.
    pub fn route(&self, epoch: Epoch, node: NodeId) -> Route {
        Route {
            epoch,
            node,
            address: self.addresses.get(&node).cloned().unwrap_or_default(),
        }
    }
}

/// Where the controller is in the failover story, summed up over every shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Every shard's primary serves; its backup replicates from it (or is away).
    Normal,
    /// Some shards' primaries have failed: they are being fenced, replication is stopped, and
    /// the controller waits for the stop answers, the old leases to expire, and the backup
    /// check.
    Failover,
    /// Some shards' primaries and backups have both failed: nothing is promoted for them until
    /// either side is available again.
    DoubleFailure,
}

/// Something that happened inside the controller, for logs, traces and timelines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Note {
    /// A cluster's declared availability changed.
    ClusterDeclared {
        /// The cluster.
        cluster: Cluster,
        /// Its new state.
        availability: Availability,
        /// Available nodes and total at the deciding evaluation.
        nodes: (usize, usize),
    },
    /// A primary cluster was declared failed, or one shard's primary node: failover begins.
    FailoverStarted {
        /// The failed primary's cluster.
        cluster: Cluster,
        /// For a node's failure, its shard; `None`: the whole cluster failed.
        #[serde(default)]
        shard: Option<Shard>,
    },
    /// The backup side has failed too (both clusters, or for one shard, both its nodes).
    DoubleFailure {
        /// For a node's failure, its shard; `None`: both clusters.
        #[serde(default)]
        shard: Option<Shard>,
    },
    /// A cluster was made writable for a set of shards in a new epoch.
    Promoted {
        /// The new epoch.
        epoch: Epoch,
        /// The cluster.
        cluster: Cluster,
        /// Whether this was the old primary resuming (no failover) rather than a failover.
        resumed: bool,
        /// For a node's failure, its shard; `None`: every shard that failed over with the
        /// cluster (or, at the start, every shard).
        #[serde(default)]
        shard: Option<Shard>,
    },
    /// A shard's stop point in the current epoch became known.
    StopPoint {
        /// The shard.
        shard: Shard,
        /// Its stop point.
        lsn: Lsn,
    },
    /// The recovered old primary cluster joins the epoch as backup (for the shards it lost).
    BackupRejoining {
        /// The cluster.
        cluster: Cluster,
        /// The shards whose backup node it is let rejoin.
        #[serde(default)]
        shards: Vec<Shard>,
    },
    /// The config center stored the configs of `epoch`.
    PublishAcked {
        /// The epoch.
        epoch: Epoch,
    },
    /// A node stopped answering heartbeats in time, or answered again.
    NodeDeclared {
        /// The node.
        node: NodeId,
        /// Whether it answers.
        available: bool,
    },
}

/// What the controller asks its driver to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Send a heartbeat to a node and feed its report back.
    Heartbeat {
        /// The node.
        node: NodeId,
        /// The heartbeat.
        heartbeat: Heartbeat,
    },
    /// Publish every user's config for an epoch through the config center (claim 3).
    Publish {
        /// The epoch.
        epoch: Epoch,
        /// One config per user.
        configs: Vec<UserConfig>,
    },
    /// Raise or close an alarm.
    Alarm(AlarmEvent),
    /// Make this state durable before carrying out any later action.
    Persist(Durable),
    /// Something happened (for logs and traces only).
    Note(Note),
}

#[cfg(feature = "mutants")]
pub use crate::mutation::Mutation;

/// The controller state machine.
#[derive(Debug)]
pub struct Controller {
    params: Params,
    topology: Topology,
    durable: Durable,
    /// Failovers under way, oldest first; each shard is in at most one.
    failovers: Vec<Failover>,
    health: BTreeMap<Cluster, ClusterHealth>,
    nodes: NodeTable,
    /// The primaries' positions, for the backups' lag (not durable: a restart starts afresh).
    lag: LagTracker,
    /// The promotion-held alarms an operator approved (not durable: the orders are read
    /// again from where the operator wrote them).
    approved: BTreeSet<u64>,
    /// When the controller (re)started: nodes get one timeout of grace, and every lease granted
    /// before a restart is treated as live until one lease wait after it.
    started_at: Time,
    round: u64,
    round_sent_at: BTreeMap<u64, Time>,
    next_tick: Time,
    published: Epoch,
    publish_sent_at: Option<Time>,
    actions: VecDeque<Action>,
    #[cfg(feature = "mutants")]
    mutation: Mutation,
}

impl Controller {
    /// A controller starting for the first time: epoch 1, cluster `a` primary of every shard.
    pub fn new(params: Params, topology: Topology, now: Time) -> Controller {
        let shard = ShardState {
            epoch: Epoch(0),
            primary: Cluster::A,
            backup_joined: true,
            stop_point: None,
            stop_cap: None,
            rejoined: false,
            failing_over: None,
        };
        let shards = (0..topology.nodes_per_cluster).map(|i| (Shard(i), shard.clone()));
        let durable = Durable {
            epoch: Epoch(0),
            shards: shards.collect(),
            open_alarms: BTreeMap::new(),
            next_alarm_id: 1,
            lease_bound_ms: 0,
            incarnation: 0,
        };
        let mut controller = Controller::restore(params, topology, durable, now);
        let all = controller.durable.shards.keys().copied().collect();
        controller.promote_shards(all, Cluster::A, true, None, now);
        controller
    }

    /// A controller restarting from its persisted state. It treats every lease it may have
    /// granted before the restart as live for one more lease wait, presumes failed every
    /// cluster it had reason to think failed (an open alarm, unless a shard was made primary
    /// there since; a cluster holding no primary with a backup not yet rejoined; a primary
    /// declared failed) until it has seen it answer for `recovery_rounds`, and resumes every
    /// failover under way.
    pub fn restore(
        params: Params,
        topology: Topology,
        mut durable: Durable,
        now: Time,
    ) -> Controller {
        let n = topology.nodes_per_cluster as usize;
        let nodes = NodeTable::new(topology.nodes_per_cluster);
        durable.incarnation += 1;
        let presumed_failed = |cluster: Cluster| {
            let shards = durable.shards.values();
            // A shard made primary in the cluster after the alarm's epoch (a shard failed back
            // to it alone) shows the cluster was seen available since: swarm seed 45517, where
            // a leader taking over with a's first alarm still open (a loss report pending)
            // presumed a failed and failed a healthy a/2 over.
            let since = |epoch| (shards.clone()).any(|s| s.primary == cluster && s.epoch > epoch);
            let alarmed =
                (durable.open_alarms.values()).any(|a| a.says_down(cluster) && !since(a.epoch));
            let primary = shards.clone().any(|s| s.primary == cluster);
            let unjoined = !primary && shards.clone().any(|s| !s.backup_joined);
            // Declared failed before the restart, perhaps before its first alarm was out.
            let failing = (shards.clone())
                .any(|s| s.primary == cluster && s.failing_over == Some(Scope::Cluster));
            alarmed || unjoined || failing
        };
        let health = Cluster::BOTH
            .into_iter()
            .map(|c| match presumed_failed(c) {
                true => (c, ClusterHealth::failed(n)),
                false => (c, ClusterHealth::new(n)),
            })
            .collect();
        let failovers = restored_failovers(&durable, now + params.heartbeat_timeout());
        let round = durable.incarnation << 32;
        let mut controller = Controller {
            health,
            params,
            topology,
            durable,
            failovers,
            nodes,
            lag: LagTracker::default(),
            approved: BTreeSet::new(),
            started_at: now,
            round,
            round_sent_at: BTreeMap::new(),
            next_tick: now,
            published: Epoch(0),
            publish_sent_at: None,
            actions: VecDeque::new(),
            #[cfg(feature = "mutants")]
            mutation: Mutation::None,
        };
        controller.persist();
        if controller.durable.epoch > Epoch(0) {
            controller.publish(now);
        }
        controller
    }

    /// Breaks the controller on purpose (simulator builds only).
    #[cfg(feature = "mutants")]
    pub fn set_mutation(&mut self, mutation: Mutation) {
        self.mutation = mutation;
        // The old restore rule, applied before the restored controller's first step: only an
        // alarm made a restarted controller presume its primary failed.
        for failover in &self.failovers {
            let primary = failover.from;
            let alarmed = (self.durable.open_alarms.values()).any(|a| a.says_down(primary));
            if mutation == Mutation::RestartTrustsPrimary && !alarmed {
                let n = self.topology.nodes_per_cluster as usize;
                self.health.insert(primary, ClusterHealth::new(n));
            }
        }
    }

    fn fencing(&self) -> bool {
        !crate::mutated!(self, NoFencing)
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The clusters' shape and the users.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The durable state.
    pub fn durable(&self) -> &Durable {
        &self.durable
    }

    /// The failover story summed up: a double failure if any shard's is, a failover if any
    /// shard is failing over, normal otherwise.
    pub fn phase(&self) -> Phase {
        if self.failovers.iter().any(|f| f.double) {
            Phase::DoubleFailure
        } else if self.failovers.is_empty() {
            Phase::Normal
        } else {
            Phase::Failover
        }
    }

    /// The failovers under way, oldest first.
    pub fn failovers(&self) -> &[Failover] {
        &self.failovers
    }

    /// A cluster's debounced health.
    pub fn health(&self, cluster: Cluster) -> &ClusterHealth {
        &self.health[&cluster]
    }

    /// What the controller knows of a node.
    pub fn node(&self, node: NodeId) -> Option<&NodeView> {
        self.nodes.get(node)
    }

    /// When [`Controller::tick`] should next be called.
    pub fn next_tick(&self) -> Time {
        self.next_tick
    }

    /// The next action to carry out, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Until when a lease granted before the (re)start may still be live, on our clock: one
    /// wait of the longest lease the durable state allows after the start.
    fn restart_bound(&self) -> Time {
        let bound = Duration::from_millis(self.durable.lease_bound_ms);
        let lease = bound.max(self.params.lease_duration());
        self.started_at + self.params.lease_wait_for(lease)
    }

    /// The time after which no lease granted to `node` can still be live.
    pub fn lease_expires_at(&self, node: NodeId) -> Time {
        let restart_bound = match crate::mutated!(self, TakeoverSkipsLeaseWait) {
            true => self.started_at,
            false => self.restart_bound(),
        };
        self.nodes[node].lease_until.max(restart_bound)
    }

    /// Advances the controller to `now`: evaluates availability, moves the failover story on,
    /// and sends the next heartbeat round. Does nothing before [`Controller::next_tick`].
    pub fn tick(&mut self, now: Time) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + self.params.heartbeat_interval();
        for cluster in Cluster::BOTH {
            self.evaluate(cluster, now);
        }
        self.step(now);
        self.retry_publish(now);
        // This round carries the step's decisions (fences, stops, promotions) at once. A
        // second round at the same instant would only fill a connection: at a long round trip
        // a heartbeat without a warm connection waits a handshake, and misses its timeout.
        self.send_round(now);
    }

    /// Takes a node's report (the answer to a heartbeat).
    pub fn handle_report(&mut self, now: Time, node: NodeId, report: NodeReport) {
        let Some(sent_at) = self.round_sent_at.get(&report.round).copied() else {
            return; // From before a restart, or far too old to tell anything.
        };
        let Some(view) = self.nodes.get_mut(node) else {
            return;
        };
        if view
            .report
            .as_ref()
            .is_some_and(|(r, _)| r.round >= report.round)
        {
            return; // Stale or duplicate.
        }
        view.round_trip = Some(now.saturating_since(sent_at));
        if now.saturating_since(sent_at) <= self.params.heartbeat_timeout() {
            view.answered(report.round, now);
        }
        if report.role == Role::Fenced && report.epoch >= self.durable.epoch {
            // The node dropped its lease before sending this report and refuses grants of this
            // epoch and older: it accepts no write after now.
            view.lease_until = view.lease_until.min(now);
        }
        view.report = Some((report.clone(), now));
        self.learn_from_report(node, &report, now);
    }

    /// The node's address refused the connection for the heartbeat of `round`: nothing listens
    /// there. The node counts as unavailable from the next evaluation on, until it answers a
    /// later round in time. This is evidence about availability only, never about leases: a
    /// firewall's REJECT refuses too, while the server behind it may still serve its other
    /// clients under the lease it holds, so a failover still waits out every lease.
    pub fn handle_refused(&mut self, node: NodeId, round: u64) {
        if !self.round_sent_at.contains_key(&round) {
            return; // From before a restart, or far too old to tell anything.
        }
        if let Some(view) = self.nodes.get_mut(node) {
            view.connection_refused(round);
        }
    }

    /// Takes the config center's answer to a publication.
    pub fn handle_publish_reply(&mut self, _now: Time, reply: PublishReply) {
        if reply.epoch >= self.durable.epoch && self.published < self.durable.epoch {
            self.published = self.durable.epoch;
            self.note(Note::PublishAcked {
                epoch: self.durable.epoch,
            });
        }
    }

    fn evaluate(&mut self, cluster: Cluster, now: Time) {
        let mut params = self.params.clone();
        if crate::mutated!(self, NoDebounce) {
            // One missed round is enough: no timeout window, no debounce.
            params.heartbeat_timeout_ms = params.heartbeat_interval_ms;
            params.failure_rounds = 1;
            params.node_failure_rounds = 1;
        }
        let params = &params;
        let total = self.topology.nodes_per_cluster as usize;
        // The grace a node never heard from gets counts only while its cluster is presumed
        // available: a failed cluster is declared recovered on real answers alone.
        let failed = !self.health[&cluster].is_available();
        let mut available = 0;
        for node in self.topology.nodes(cluster) {
            let view = self.nodes.get_mut(node).expect("every node has a view");
            let heard = view.last_ok_at.is_some() || !failed;
            let up = heard && view.available(now, params);
            // A refused connection is no lost packet: nothing listens at the node's address
            // (a killed server). It needs no more corroboration than a cluster's failure.
            let failure = match view.refused.is_some() {
                true => params.failure_rounds,
                false => params.node_failure_rounds,
            };
            let rounds = (failure, params.recovery_rounds);
            view.health
                .evaluate_rounds(up as usize, 1, params.ratio_threshold, rounds);
            available += up as usize;
            if view.down == up {
                view.down = !up;
                self.actions.push_back(Action::Note(Note::NodeDeclared {
                    node,
                    available: up,
                }));
            }
        }
        if crate::mutated!(self, RatioInclusive)
            && available as f64 / total as f64 == params.ratio_threshold
        {
            available += 1; // Exactly at the threshold counts as available.
        }
        let health = self.health.get_mut(&cluster).expect("both clusters");
        if let Some(availability) = health.evaluate(available, total, params) {
            self.note(Note::ClusterDeclared {
                cluster,
                availability,
                nodes: (available, total),
            });
            if availability == Availability::Available {
                let resolution = Resolution::BackupRecovered;
                self.clear_alarms(cluster, AlarmKind::BackupFailed, resolution, now);
            }
        }
    }

    /// Moves the failover story on by one evaluation: failovers already under way first
    /// see a newly failed primary only at the next evaluation (the stop commands go out with
    /// this round), and shards promoted now are watched from the next.
    fn step(&mut self, now: Time) {
        self.start_failovers(now);
        for cluster in Cluster::BOTH {
            if self.any_normal_shard(|p| p.cluster == cluster.other()) {
                self.watch_backup(cluster, now);
            }
        }
        self.watch_lag(now);
        // A promotion removes its failover from the list: the next one takes its place.
        let mut index = 0;
        while index < self.failovers.len() {
            let before = self.failovers.len();
            if !self.failovers[index].fresh {
                self.advance(index, now);
            }
            index += (self.failovers.len() == before) as usize;
        }
        for failover in &mut self.failovers {
            failover.fresh = false;
        }
        self.watch_backup_nodes(now);
    }

    /// In normal operation: the second alarm when a backup cluster fails, and the old
    /// primary's rejoin for each shard it lost, once it has recovered (claim 7).
    fn watch_backup(&mut self, backup: Cluster, now: Time) {
        if self.health[&backup].is_available() {
            self.clear_alarms(
                backup,
                AlarmKind::BackupFailed,
                Resolution::BackupRecovered,
                now,
            );
            let unjoined = self.normal_shards(|c, p| {
                p.cluster == backup.other() && !c.durable.shards[&p.shard()].backup_joined
            });
            if !unjoined.is_empty() && !crate::mutated!(self, NoResync) {
                for shard in &unjoined {
                    self.shard_mut(*shard).backup_joined = true;
                }
                self.persist();
                self.note(Note::BackupRejoining {
                    cluster: backup,
                    shards: unjoined.into_iter().collect(),
                });
            }
        } else if !self.has_open_alarm(backup) && !self.failing_over_from(backup) {
            // (A cluster failing over as some shards' primary gets its first alarm, which
            // says it is down; a second one about it as others' backup would say it twice.)
            self.raise_alarm(AlarmKind::BackupFailed, backup, now);
        }
    }

    /// Issue 15, item 2: per shard whose backup node replicates in this epoch, raises the lag
    /// alarm when the backup is further behind than a bound, and clears it once it is back
    /// within half of every bound (so that a lag at the bound does not flap the alarm).
    fn watch_lag(&mut self, now: Time) {
        let (ms, entries) = (self.params.lag_alarm_ms, self.params.lag_alarm_entries);
        let over = |v: u64, bound: u64, num: u64| bound > 0 && v * 2 > bound * num;
        for i in 0..self.topology.nodes_per_cluster {
            let shard = Shard(i);
            if self.failover_of(shard).is_some() {
                continue;
            }
            let node = shard.node(self.durable.shards[&shard].primary);
            let Some(lag) = self.shard_lag(node, now) else {
                continue;
            };
            let open = (self.durable.open_alarms.values())
                .find(|a| a.lag.is_some_and(|l| l.shard == lag.shard))
                .map(|a| a.id);
            let beyond = |num| over(lag.behind_ms, ms, num) || over(lag.entries, entries, num);
            match open {
                None if beyond(2) && !crate::mutated!(self, NoLagAlarm) => {
                    let mut alarm = self.new_alarm(AlarmKind::Lag, node.cluster.other(), now);
                    alarm.lag = Some(lag);
                    self.raise(alarm);
                }
                Some(id) if !beyond(1) => self.clear_alarm(id, Resolution::CaughtUp, now),
                _ => {}
            }
        }
    }

    /// How far the backup of `primary`'s shard is behind it, if both report from this epoch
    /// in their roles (a backup still rejoining, or silent since, has no lag to speak of: the
    /// second alarm and the loss report cover it).
    fn shard_lag(&mut self, primary: NodeId, now: Time) -> Option<Lag> {
        let epoch = self.durable.shards[&primary.shard()].epoch;
        let position = |node: NodeId, role: Role| {
            let (report, _) = self.nodes[node].report.as_ref()?;
            (report.epoch == epoch && report.role == role).then_some(report.last_lsn)
        };
        let at = position(primary, Role::Primary)?;
        let applied = position(primary.peer(), Role::Backup)?;
        Some(self.lag.lag(primary.shard(), at, applied, now))
    }

    /// Whether enough of `cluster`'s nodes have answered since the controller (re)started for
    /// the cluster to count as available. A restarted controller presumes a cluster it had no
    /// reason to think failed available, giving its nodes one timeout of grace; a promotion
    /// needs answers, not grace (swarm seed 1861: a controller restarted mid-failover
    /// promoted a backup that had crashed while it was down, on grace alone).
    fn heard_from_enough(&self, cluster: Cluster) -> bool {
        if crate::mutated!(self, PromoteOnGrace) {
            return true;
        }
        let total = self.topology.nodes_per_cluster as usize;
        let heard = (self.topology.nodes(cluster))
            .filter(|&n| self.nodes[n].last_ok_at.is_some())
            .count();
        crate::params::cluster_available(heard, total, self.params.ratio_threshold)
    }

    /// Ends the failover at `index`: its shards are made writable in `cluster`.
    fn promote(&mut self, index: usize, cluster: Cluster, resumed: bool, now: Time) {
        let failover = self.failovers.remove(index);
        let shard = failover.shard();
        self.promote_shards(failover.shards, cluster, resumed, shard, now);
    }

    /// Starts a new epoch in which `cluster` is writable for `shards`: persist first, then
    /// command the nodes, rewrite the configs and publish them (claims 2, 3).
    fn promote_shards(
        &mut self,
        shards: BTreeSet<Shard>,
        cluster: Cluster,
        resumed: bool,
        shard: Option<Shard>,
        now: Time,
    ) {
        let bump = !crate::mutated!(self, NoEpochBump) || self.durable.epoch == Epoch(0);
        if bump {
            self.durable.epoch = self.durable.epoch.next();
        }
        let epoch = self.durable.epoch;
        self.mark_resumed(cluster, &shards);
        for &s in &shards {
            self.carry_stop_point(s);
            let state = self.shard_mut(s);
            if state.primary != cluster {
                // The old primary's log may hold writes the new primary never got: it rejoins
                // (with its divergent suffix quarantined) only when it has recovered.
                state.backup_joined = false;
            }
            state.primary = cluster;
            state.epoch = epoch;
            state.stop_point = None;
            state.failing_over = None;
        }
        if shards.len() == self.durable.shards.len() {
            // Every lease of the epochs before has been waited out (or none was granted).
            self.durable.lease_bound_ms = self.params.lease_duration_ms;
        }
        self.persist();
        self.note(Note::Promoted {
            epoch,
            cluster,
            resumed,
            shard,
        });
        self.close_accounted_alarms(now);
        for s in &shards {
            self.lag.forget(*s);
        }

        let lagging = (self.durable.open_alarms.values()).filter(|a| {
            a.kind == AlarmKind::Lag && a.lag.is_some_and(|l| shards.contains(&l.shard))
        });
        for id in lagging.map(|a| a.id).collect::<Vec<_>>() {
            self.clear_alarm(id, Resolution::NewEpoch, now);
        }
        let held = (self.durable.open_alarms.values()).filter(|a| {
            a.kind == AlarmKind::PromotionHeld
                && a.recovery_point.keys().any(|s| shards.contains(s))
        });
        for (id, from) in held.map(|a| (a.id, a.cluster)).collect::<Vec<_>>() {
            let resolution = match (from == cluster, self.approved.contains(&id)) {
                (true, _) => Resolution::PrimaryBack,
                (false, true) => Resolution::Approved,
                // The bound was lifted (a restart with other parameters).
                (false, false) => Resolution::NewEpoch,
            };
            self.clear_alarm(id, resolution, now);
        }
        if shard.is_some() && crate::mutated!(self, ShardConfigUnchanged) {
            self.published = epoch; // Nothing published, and nothing left to retry.
            return;
        }
        self.publish(now);
    }

    /// `shard`'s state, mutably.
    fn shard_mut(&mut self, shard: Shard) -> &mut ShardState {
        self.durable
            .shards
            .get_mut(&shard)
            .expect("a shard of the topology")
    }

    /// Claim 2 with [0046]'s mapping: every user of node `x/i` uses `y/i` once shard `i`
    /// has failed over to cluster `y`, in the epoch it was promoted in.
    pub fn rewrite_configs(&self) -> Vec<UserConfig> {
        self.topology
            .users
            .iter()
            .filter_map(|(&user, &shard)| Some((user, shard, self.durable.shard(shard)?)))
            .map(|(user, shard, state)| {
                let epoch = state.epoch;
                let route = self.topology.route(epoch, shard.node(state.primary));
                UserConfig {
                    user,
                    epoch,
                    node: route.node,
                    address: route.address,
                }
            })
            .collect()
    }

    fn publish(&mut self, now: Time) {
        self.publish_sent_at = Some(now);
        self.actions.push_back(Action::Publish {
            epoch: self.durable.epoch,
            configs: self.rewrite_configs(),
        });
    }

    fn retry_publish(&mut self, now: Time) {
        let due = self
            .publish_sent_at
            .is_none_or(|t| now.saturating_since(t) >= self.params.heartbeat_timeout());
        if self.published < self.durable.epoch && due {
            self.publish(now);
        }
    }

    /// Sends one heartbeat to every node, each carrying the lease and the command the node
    /// needs, if any.
    fn send_round(&mut self, now: Time) {
        self.round += 1;
        self.round_sent_at.insert(self.round, now);
        // Rounds older than a timeout cannot produce timely answers; keep a few more for acks.
        let keep_after = self.round.saturating_sub(64);
        self.round_sent_at = self.round_sent_at.split_off(&keep_after);
        let nodes: Vec<NodeId> = self.topology.all_nodes().collect();
        for node in nodes {
            self.push_heartbeat(node);
        }
    }

    /// Sends one extra heartbeat to `node`, in a round of its own (a lease is anchored at the
    /// report of one round: two reports of the same round would blur the anchor).
    /// Sends `node` a heartbeat now, outside the rounds: what the driver's persistence held
    /// back from its last one (a command, a grant) may go now that the state is durable.
    pub fn resend(&mut self, now: Time, node: NodeId) {
        if self.nodes.get(node).is_some() {
            self.send_heartbeat(node, now);
        }
    }

    fn send_heartbeat(&mut self, node: NodeId, now: Time) {
        self.round += 1;
        self.round_sent_at.insert(self.round, now);
        self.push_heartbeat(node);
    }

    fn push_heartbeat(&mut self, node: NodeId) {
        let sent = self.round_sent_at[&self.round];
        (self.nodes.get_mut(node))
            .expect("every node has a view")
            .sent(self.round, sent);
        let heartbeat = Heartbeat {
            round: self.round,
            grant: self.grant(node),
            command: self.pending_command(node),
            trim: self.trim(node),
        };
        self.actions
            .push_back(Action::Heartbeat { node, heartbeat });
    }

    /// Leave for `node`, its shard's primary, to discard what its backup holds: the
    /// backup's reported position while it follows in the same epoch ([`Trim`] says why no
    /// quarantine ever needs what is discarded).
    fn trim(&self, node: NodeId) -> Option<Trim> {
        let state = self.durable.shard(node.shard())?;
        if node.cluster != state.primary {
            return None;
        }
        let report = |n: NodeId| self.nodes.get(n)?.report.as_ref().map(|(r, _)| r);
        let primary = report(node)?;
        let backup = report(node.peer())?;
        let epoch = state.epoch;
        let is = |r: &NodeReport, role| r.epoch == epoch && r.role == role;
        if !is(primary, Role::Primary) || !is(backup, Role::Backup) {
            return None;
        }
        let through = match crate::mutated!(self, TrimPastBackup) {
            true => primary.last_lsn,
            false => backup.last_lsn.min(primary.last_lsn),
        };
        (through > primary.trimmed).then_some(Trim { epoch, through })
    }

    /// A lease for `node` if it is a confirmed primary of its shard's epoch, its shard in
    /// normal operation, anchored at its latest report, as long as the round trip it took
    /// needs ([`Params::lease_for_round_trip`]).
    fn grant(&mut self, node: NodeId) -> Option<LeaseGrant> {
        let state = self.durable.shard(node.shard())?;
        let epoch = state.epoch;
        if self.failover_of(node.shard()).is_some() || node.cluster != state.primary {
            return None;
        }
        let view = self.nodes.get(node)?;
        let (report, received_at) = view.report.as_ref()?;
        if report.epoch != epoch || report.role != Role::Primary {
            return None;
        }
        let (round, received_at) = (report.round, *received_at);
        // Measured with the report (`handle_report` takes none of a round it did not send).
        let round_trip = view.round_trip.unwrap_or(Duration::MAX);
        let lease = self.params.lease_for_round_trip(round_trip);
        let waited = match crate::mutated!(self, ShortLeaseWait) {
            true => self.params.lease_duration(),
            false => lease,
        };
        let view = self.nodes.get_mut(node)?;
        // The report was sent before it was received: a lease anchored at its send time on
        // the node's clock ends, on ours, no later than its receipt plus the stretched lease.
        view.lease_until = (view.lease_until).max(received_at + self.params.lease_wait_for(waited));
        view.lease_granted = Some(lease);
        let duration_ms = match self.fencing() {
            true => lease.as_millis() as u64,
            false => 3_600_000,
        };
        self.raise_lease_bound(duration_ms);
        Some(LeaseGrant {
            epoch,
            anchor_round: round,
            duration_ms,
        })
    }

    /// Makes a lease of `duration_ms` one that a restarted controller would wait out: a lease
    /// longer than the durable bound raises it, and the grant waits for that to be durable
    /// (`crate::service::persist`). Leases come in whole intervals, so an epoch raises its
    /// bound at most `ceil(timeout / interval) - 1` times.
    fn raise_lease_bound(&mut self, duration_ms: u64) {
        if duration_ms > self.durable.lease_bound_ms {
            self.durable.lease_bound_ms = duration_ms;
            self.persist();
        }
    }

    /// The role `node` should be in now.
    pub fn desired(&self, node: NodeId) -> Option<Command> {
        let state = self.durable.shard(node.shard())?;
        let (epoch, primary) = (state.epoch, state.primary);
        if epoch == Epoch(0) {
            return None;
        }
        let normal = self.failover_of(node.shard()).is_none();
        let unfenced = !normal && !self.fenced(node.shard());
        match (normal, node.cluster == primary) {
            (false, true) if unfenced => None,
            (true, true) => Some(Command::Promote {
                epoch,
                route: self.topology.route(epoch, node),
            }),
            (true, false) => match state.stop_point {
                Some(truncate_after) if state.backup_joined => Some(Command::Follow {
                    epoch,
                    primary: self.topology.route(epoch, node.peer()),
                    truncate_after,
                }),
                _ => Some(Command::Fence {
                    epoch,
                    route: Some(self.topology.route(epoch, node.peer())),
                }),
            },
            (false, true) if !self.fencing() => None,
            (false, true) => Some(Command::Fence { epoch, route: None }),
            (false, false) if crate::mutated!(self, KeepReplicating) => None,
            (false, false) => Some(Command::Stop { epoch }),
        }
    }

    /// The desired command, unless the node's latest report shows it is already carried out.
    fn pending_command(&self, node: NodeId) -> Option<Command> {
        let command = self.desired(node)?;
        let report = self.nodes[node].report.as_ref().map(|(r, _)| r);
        match report {
            Some(r) if command_done(&command, r) => None,
            _ => Some(command),
        }
    }

    /// Records what a report tells beyond liveness: losses, stop points and rejoins.
    fn learn_from_report(&mut self, node: NodeId, report: &NodeReport, now: Time) {
        self.account_losses(node, report, now);
        let shard = node.shard();
        let Some(state) = self.durable.shard(shard) else {
            return;
        };
        if report.epoch != state.epoch {
            return;
        }
        let primary = state.primary;
        if node.cluster == primary && report.role == Role::Primary {
            self.lag.primary_at(shard, report.last_lsn, now);
            if state.stop_point.is_none() {
                let cap = state.stop_cap;
                let lsn = cap.map_or(report.epoch_start_lsn, |c| c.min(report.epoch_start_lsn));
                self.shard_mut(shard).stop_point = Some(lsn);
                self.persist();
                self.note(Note::StopPoint { shard, lsn });
                // A new primary may write only under a lease: grant it now rather than at the
                // next round, so that users are not refused for a whole interval.
                self.send_heartbeat(node, now);
            }
        }
        let backup = node.cluster != primary && report.role == Role::Backup;
        if backup && !self.durable.shards[&shard].rejoined {
            self.shard_mut(shard).rejoined = true;
            self.persist();
            // A backup that has just joined lags by everything written while it was away:
            // its lag counts from now, so that only a resync slower than the bound alarms.
            self.lag.forget(node.shard());
        }
    }

    fn raise_alarm(&mut self, kind: AlarmKind, cluster: Cluster, now: Time) {
        if kind == AlarmKind::BackupFailed && crate::mutated!(self, NoSecondAlarm) {
            return;
        }
        let alarm = self.new_alarm(kind, cluster, now);
        self.raise(alarm);
    }

    /// An alarm of `kind` about `cluster`, with the next id (not raised yet).
    fn new_alarm(&mut self, kind: AlarmKind, cluster: Cluster, now: Time) -> Alarm {
        let id = self.durable.next_alarm_id;
        self.durable.next_alarm_id += 1;
        Alarm {
            id,
            kind,
            cluster,
            shard: None,
            users: Vec::new(),
            raised_at: now,
            epoch: self.durable.epoch,
            available_nodes: self.health[&cluster].last,
            recovery_point: BTreeMap::new(),
            resumed_in: BTreeMap::new(),
            losses: BTreeMap::new(),
            lag: None,
        }
    }

    fn raise(&mut self, alarm: Alarm) {
        self.durable.open_alarms.insert(alarm.id, alarm.clone());
        self.persist();
        self.actions
            .push_back(Action::Alarm(AlarmEvent::Raised(alarm)));
    }

    fn clear_alarms(
        &mut self,
        cluster: Cluster,
        kind: AlarmKind,
        resolution: Resolution,
        now: Time,
    ) {
        let ids: Vec<u64> = (self.durable.open_alarms.values())
            .filter(|a| a.kind == kind && a.cluster == cluster && a.shard.is_none())
            .map(|a| a.id)
            .collect();
        for id in ids {
            self.clear_alarm(id, resolution.clone(), now);
        }
    }

    fn clear_alarm(&mut self, id: u64, resolution: Resolution, now: Time) {
        let Some(alarm) = self.durable.open_alarms.remove(&id) else {
            return;
        };
        self.persist();
        self.actions.push_back(Action::Alarm(AlarmEvent::Cleared {
            id,
            kind: alarm.kind,
            at: now,
            resolution,
        }));
    }

    fn has_open_alarm(&self, cluster: Cluster) -> bool {
        (self.durable.open_alarms.values()).any(|a| a.says_down(cluster))
    }

    fn persist(&mut self) {
        self.actions
            .push_back(Action::Persist(self.durable.clone()));
    }

    fn note(&mut self, note: Note) {
        self.actions.push_back(Action::Note(note));
    }
}

/// Whether a node's report shows `command` carried out.
pub fn command_done(command: &Command, report: &NodeReport) -> bool {
    let e = command.epoch();
    match command {
        Command::Promote { .. } => report.epoch == e && report.role == Role::Primary,
        Command::Follow { .. } => report.epoch == e && report.role == Role::Backup,
        Command::Stop { .. } => {
            report.epoch > e || (report.epoch == e && report.role == Role::Stopped)
        }
        Command::Fence { .. } => report.epoch >= e && report.role == Role::Fenced,
    }
}

/// The failovers a restarted controller resumes: one per cluster whose primaries were declared
/// failed together, one per shard whose primary node alone was.
fn restored_failovers(durable: &Durable, stop_deadline: Time) -> Vec<Failover> {
    let mut failovers: Vec<Failover> = Vec::new();
    for (&shard, state) in &durable.shards {
        let Some(scope) = state.failing_over else {
            continue;
        };
        let joins = |f: &Failover| scope == Scope::Cluster && f.scope == scope;
        match failovers
            .iter_mut()
            .find(|f| joins(f) && f.from == state.primary)
        {
            Some(failover) => {
                failover.shards.insert(shard);
            }
            None => failovers.push(Failover {
                scope,
                from: state.primary,
                shards: BTreeSet::from([shard]),
                stop_deadline,
                alarm_raised: false,
                double: false,
                fresh: false,
            }),
        }
    }
    failovers
}
