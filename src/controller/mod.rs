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
mod health;
mod lag;

pub use alarm::{Alarm, AlarmEvent, AlarmKind, RecoveryPoint, Resolution};
pub use health::{Availability, ClusterHealth, NodeTable, NodeView};
pub use lag::{Lag, LagTracker};

use crate::params::Params;
use crate::protocol::{
    Command, Heartbeat, LeaseGrant, NodeReport, PublishReply, QuarantineSummary, Role, Route,
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

/// The controller's state that must survive a restart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Durable {
    /// The current epoch. Never decreases.
    pub epoch: Epoch,
    /// The writable cluster of `epoch`.
    pub primary: Cluster,
    /// Whether the backup cluster has joined `epoch` (false after a failover, until the old
    /// primary recovers and rejoins).
    pub backup_joined: bool,
    /// Per shard, the primary's log position when it was promoted in `epoch`: the point up to
    /// which the backup's log is shared, and after which it is divergent.
    pub stop_points: BTreeMap<Shard, Lsn>,
    /// Per shard, the most a stop point may be while the other cluster has not rejoined since
    /// an earlier epoch: its log is shared with the primary's only up to the earliest stop
    /// point since it last followed, however far the primary has since written.
    #[serde(default)]
    pub stop_caps: BTreeMap<Shard, Lsn>,
    /// The shards whose backup node has reported itself a backup of `epoch`: their logs are
    /// prefixes of the primary's. Only these may drop their stop caps at the next promotion.
    #[serde(default)]
    pub rejoined: BTreeSet<Shard>,
    /// Alarms not yet closed.
    pub open_alarms: BTreeMap<u64, Alarm>,
    /// The next alarm id.
    pub next_alarm_id: u64,
    /// Whether the primary of `epoch` has been declared failed and no new epoch has begun
    /// yet (failover or double failure under way): a restart resumes the failover.
    pub failing_over: bool,
    /// The longest lease (ms) that may have been granted in `epoch`: set to
    /// `lease_duration_ms` at each promotion, and raised (made durable first) before a longer
    /// lease, sized to a long round trip, is granted. A restarted controller waits out this
    /// much, not more: at short round trips the restart costs no more than it used to.
    #[serde(default)]
    pub lease_bound_ms: u64,
    /// How many times the controller has started. Heartbeat rounds are numbered from
    /// `incarnation << 32`, so a round number is never reused across restarts (a lease is
    /// anchored at a round: a reused number would let a delayed heartbeat blur the anchor).
    pub incarnation: u64,
}

/// Where the controller is in the failover story.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Phase {
    /// The primary serves; the backup replicates from it (or is away).
    Normal,
    /// The primary has failed: it is being fenced, replication is stopped, and the controller
    /// waits for the stop answers, the old leases to expire, and the backup check.
    Failover {
        /// When the primary was declared failed.
        detected_at: Time,
        /// After this, the first alarm is raised even if some backup nodes did not answer.
        stop_deadline: Time,
        /// Whether the first alarm is out.
        alarm_raised: bool,
    },
    /// Both clusters have failed: nothing is promoted until one of them is available again.
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
    /// The primary was declared failed: failover begins.
    FailoverStarted {
        /// The failed primary.
        cluster: Cluster,
    },
    /// Both clusters have failed.
    DoubleFailure,
    /// A cluster was made writable in a new epoch.
    Promoted {
        /// The new epoch.
        epoch: Epoch,
        /// The cluster.
        cluster: Cluster,
        /// Whether this was the old primary resuming (no failover) rather than a failover.
        resumed: bool,
    },
    /// A shard's stop point in the current epoch became known.
    StopPoint {
        /// The shard.
        shard: Shard,
        /// Its stop point.
        lsn: Lsn,
    },
    /// The recovered old primary cluster joins the epoch as backup.
    BackupRejoining {
        /// The cluster.
        cluster: Cluster,
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
    phase: Phase,
    health: BTreeMap<Cluster, ClusterHealth>,
    nodes: NodeTable,
    /// The primaries' positions, for the backups' lag (not durable: a restart starts afresh).
    lag: LagTracker,
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
    /// A controller starting for the first time: epoch 1, cluster `a` primary.
    pub fn new(params: Params, topology: Topology, now: Time) -> Controller {
        let durable = Durable {
            epoch: Epoch(0),
            primary: Cluster::A,
            backup_joined: true,
            stop_points: BTreeMap::new(),
            stop_caps: BTreeMap::new(),
            rejoined: BTreeSet::new(),
            open_alarms: BTreeMap::new(),
            next_alarm_id: 1,
            failing_over: false,
            lease_bound_ms: 0,
            incarnation: 0,
        };
        let mut controller = Controller::restore(params, topology, durable, now);
        controller.promote(Cluster::A, true, now);
        controller
    }

    /// A controller restarting from its persisted state. It treats every lease it may have
    /// granted before the restart as live for one more lease wait, presumes failed every
    /// cluster it had reason to think failed (an open alarm, a backup not yet rejoined, a
    /// primary declared failed) until it has seen it answer for `recovery_rounds`, and resumes
    /// a failover under way.
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
            let alarmed = (durable.open_alarms.values()).any(|a| a.says_down(cluster));
            let unjoined = cluster != durable.primary && !durable.backup_joined;
            // Declared failed before the restart, perhaps before its first alarm was out.
            let failing = cluster == durable.primary && durable.failing_over;
            alarmed || unjoined || failing
        };
        let health = Cluster::BOTH
            .into_iter()
            .map(|c| match presumed_failed(c) {
                true => (c, ClusterHealth::failed(n)),
                false => (c, ClusterHealth::new(n)),
            })
            .collect();
        let phase = match durable.failing_over {
            true => Phase::Failover {
                detected_at: now,
                stop_deadline: now + params.heartbeat_timeout(),
                alarm_raised: false,
            },
            false => Phase::Normal,
        };
        let round = durable.incarnation << 32;
        let mut controller = Controller {
            health,
            params,
            topology,
            durable,
            phase,
            nodes,
            lag: LagTracker::default(),
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
        let primary = self.durable.primary;
        let alarmed = (self.durable.open_alarms.values()).any(|a| a.says_down(primary));
        if mutation == Mutation::RestartTrustsPrimary && self.durable.failing_over && !alarmed {
            let n = self.topology.nodes_per_cluster as usize;
            self.health.insert(primary, ClusterHealth::new(n));
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

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
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

    /// The time after which no lease granted to `cluster` can still be live.
    pub fn leases_expire_at(&self, cluster: Cluster) -> Time {
        let restart_bound = match crate::mutated!(self, TakeoverSkipsLeaseWait) {
            true => self.started_at,
            false => self.restart_bound(),
        };
        self.topology
            .nodes(cluster)
            .map(|n| self.nodes[n].lease_until)
            .fold(restart_bound, Time::max)
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

    /// Moves the failover story on by one evaluation.
    fn step(&mut self, now: Time) {
        let primary = self.durable.primary;
        let backup = primary.other();
        match self.phase.clone() {
            Phase::Normal => {
                if !self.health[&primary].is_available() {
                    self.start_failover(now);
                } else {
                    self.watch_backup(backup, now);
                    self.watch_lag(now);
                }
            }
            Phase::Failover {
                stop_deadline,
                alarm_raised,
                ..
            } => {
                if !alarm_raised && (self.backup_stopped() || now >= stop_deadline) {
                    self.raise_first_alarm(now);
                }
                if matches!(
                    self.phase,
                    Phase::Failover {
                        alarm_raised: true,
                        ..
                    }
                ) {
                    self.check_backup(now);
                }
            }
            Phase::DoubleFailure => self.await_either(now),
        }
    }

    /// In normal operation: the second alarm when the backup fails, and the old primary's
    /// rejoin when it has recovered (claim 7).
    fn watch_backup(&mut self, backup: Cluster, now: Time) {
        if self.health[&backup].is_available() {
            self.clear_alarms(
                backup,
                AlarmKind::BackupFailed,
                Resolution::BackupRecovered,
                now,
            );
            if !self.durable.backup_joined && !crate::mutated!(self, NoResync) {
                self.durable.backup_joined = true;
                self.persist();
                self.note(Note::BackupRejoining { cluster: backup });
            }
        } else if !self.has_open_alarm(backup) {
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
            let node = NodeId::new(self.durable.primary, i);
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
        let epoch = self.durable.epoch;
        let position = |node: NodeId, role: Role| {
            let (report, _) = self.nodes[node].report.as_ref()?;
            (report.epoch == epoch && report.role == role).then_some(report.last_lsn)
        };
        let at = position(primary, Role::Primary)?;
        let applied = position(primary.peer(), Role::Backup)?;
        Some(self.lag.lag(primary.shard(), at, applied, now))
    }

    /// Claims 1, 5, 6: the primary has failed. Stop granting it leases (it is fenced by the
    /// heartbeats' commands from now on), stop replication into the backup, and wait for the
    /// stop answers before raising the first alarm with the recovery point.
    fn start_failover(&mut self, now: Time) {
        self.durable.failing_over = true;
        self.persist();
        self.phase = Phase::Failover {
            detected_at: now,
            stop_deadline: now + self.params.heartbeat_timeout(),
            alarm_raised: false,
        };
        self.note(Note::FailoverStarted {
            cluster: self.durable.primary,
        });
    }

    /// Whether every backup node confirmed that its replication stopped.
    fn backup_stopped(&self) -> bool {
        if crate::mutated!(self, KeepReplicating) {
            return true;
        }
        let epoch = self.durable.epoch;
        self.topology.nodes(self.durable.primary.other()).all(|n| {
            self.nodes[n].report.as_ref().is_some_and(|(r, _)| {
                r.epoch > epoch || (r.epoch == epoch && r.role == Role::Stopped)
            })
        })
    }

    fn raise_first_alarm(&mut self, now: Time) {
        if let Phase::Failover { alarm_raised, .. } = &mut self.phase {
            *alarm_raised = true;
        }
        let failed = self.durable.primary;
        // A restart in the middle of this failover finds its alarm open already.
        let already_open = (self.durable.open_alarms.values())
            .any(|a| a.kind == AlarmKind::PrimaryFailed && a.says_down(failed));
        if !already_open {
            self.raise_alarm(AlarmKind::PrimaryFailed, failed, now);
        }
    }

    /// Claim 1: is the backup available? Then promote it, once the old primary's leases have
    /// surely expired. If it has failed too: the second alarm, and the double-failure state.
    fn check_backup(&mut self, now: Time) {
        let backup = self.durable.primary.other();
        let checked = !crate::mutated!(self, NoBackupCheck);
        if checked && !self.health[&backup].is_available() {
            if !self.has_open_alarm_of(backup, AlarmKind::BackupFailed) {
                self.raise_alarm(AlarmKind::BackupFailed, backup, now);
            }
            self.phase = Phase::DoubleFailure;
            self.note(Note::DoubleFailure);
        } else if checked && !self.heard_from_enough(backup) {
            // Available only on the grace of a restart: wait for answers, or its failure.
        } else if self.leases_expired(self.durable.primary, now) {
            self.promote(backup, false, now);
        }
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

    /// Claim 5's double failure: act as soon as either cluster is available again, preferring
    /// the old primary, which has every write (no data is lost if it resumes).
    fn await_either(&mut self, now: Time) {
        let primary = self.durable.primary;
        if !self.leases_expired(primary, now) {
            return;
        }
        let trusts_grace = crate::mutated!(self, RestartTrustsPrimary);
        let back = |c: Cluster| {
            self.health[&c].is_available() && (trusts_grace || self.heard_from_enough(c))
        };
        if back(primary) {
            self.promote(primary, true, now);
        } else if back(primary.other()) {
            self.promote(primary.other(), false, now);
        }
    }

    fn leases_expired(&self, cluster: Cluster, now: Time) -> bool {
        let skip = !self.fencing() || crate::mutated!(self, SkipLeaseWait);
        skip || now >= self.leases_expire_at(cluster)
    }

    /// Starts a new epoch in which `cluster` is writable: persist first, then command the
    /// nodes, rewrite every user's config and publish it (claims 2, 3).
    fn promote(&mut self, cluster: Cluster, resumed: bool, now: Time) {
        let changed_sides = cluster != self.durable.primary;
        self.carry_stop_points();
        let bump = !crate::mutated!(self, NoEpochBump) || self.durable.epoch == Epoch(0);
        if bump {
            self.durable.epoch = self.durable.epoch.next();
        }
        self.mark_resumed(cluster);
        self.durable.primary = cluster;
        if changed_sides {
            // The old primary's log may hold writes the new primary never got: it rejoins
            // (with its divergent suffix quarantined) only when it has recovered.
            self.durable.backup_joined = false;
        }
        self.durable.stop_points.clear();
        self.durable.failing_over = false;
        // Every lease of the epoch before has been waited out (or none was granted).
        self.durable.lease_bound_ms = self.params.lease_duration_ms;
        self.persist();
        self.phase = Phase::Normal;
        self.note(Note::Promoted {
            epoch: self.durable.epoch,
            cluster,
            resumed,
        });
        self.close_accounted_alarms(now);
        self.lag.clear();
        let lagging = (self.durable.open_alarms.values()).filter(|a| a.kind == AlarmKind::Lag);
        for id in lagging.map(|a| a.id).collect::<Vec<_>>() {
            self.clear_alarm(id, Resolution::NewEpoch, now);
        }
        self.publish(now);
    }

    /// Per shard, keeps the current stop point as a cap for the next epoch unless the backup
    /// node has reported itself a backup of this epoch: until it has, its log and the
    /// primary's part at the earliest stop point since it last followed, however far either
    /// has written since. (A cluster the controller let rejoin may not have: a node can crash
    /// before its Follow arrives.) A shard with no stop point had no write in this epoch: its
    /// cap, if any, stands.
    fn carry_stop_points(&mut self) {
        let all = crate::mutated!(self, ClusterWideRejoin) && self.durable.backup_joined;
        let durable = &mut self.durable;
        for (&shard, &lsn) in &durable.stop_points {
            if all || durable.rejoined.contains(&shard) {
                durable.stop_caps.remove(&shard);
            } else {
                let cap = durable.stop_caps.entry(shard).or_insert(lsn);
                *cap = (*cap).min(lsn);
            }
        }
        durable.rejoined.clear();
    }

    /// `cluster` is made primary again in the (new) current epoch: its open first alarms can
    /// no longer be closed by its rejoin. Each waits instead for every node of the cluster to
    /// report from this epoch on what it quarantined in between (a node may have rejoined an
    /// epoch in between and quarantined writes then). With no epoch in between, none can have.
    fn mark_resumed(&mut self, cluster: Cluster) {
        let epoch = self.durable.epoch;
        let forget = crate::mutated!(self, ResumeForgetsRejoins);
        let shards: Vec<Shard> = self.topology.nodes(cluster).map(|n| n.shard()).collect();
        for alarm in self.durable.open_alarms.values_mut() {
            if !alarm.says_down(cluster) || alarm.kind != AlarmKind::PrimaryFailed {
                continue;
            }
            alarm.resumed_in = Some(epoch);
            if forget {
                alarm.losses.clear();
            }
            if forget || alarm.epoch.next() >= epoch {
                for &shard in &shards {
                    let empty = QuarantineSummary::empty(epoch);
                    alarm.losses.entry(shard).or_insert(empty);
                }
            }
        }
    }

    /// Claim 2 with [0046]'s mapping: every user of node `x/i` now uses `y/i`.
    pub fn rewrite_configs(&self) -> Vec<UserConfig> {
        let epoch = self.durable.epoch;
        let cluster = self.durable.primary;
        self.topology
            .users
            .iter()
            .map(|(&user, &shard)| {
                let route = self.topology.route(epoch, shard.node(cluster));
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
        };
        self.actions
            .push_back(Action::Heartbeat { node, heartbeat });
    }

    /// A lease for `node` if it is a confirmed primary of the current epoch in normal
    /// operation, anchored at its latest report, as long as the round trip it took needs
    /// ([`Params::lease_for_round_trip`]).
    fn grant(&mut self, node: NodeId) -> Option<LeaseGrant> {
        let epoch = self.durable.epoch;
        if self.phase != Phase::Normal || node.cluster != self.durable.primary {
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
        let epoch = self.durable.epoch;
        let primary = self.durable.primary;
        if epoch == Epoch(0) {
            return None;
        }
        let peer_route = Some(self.topology.route(epoch, node.peer()));
        match (&self.phase, node.cluster == primary) {
            (Phase::Normal, true) => Some(Command::Promote {
                epoch,
                route: self.topology.route(epoch, node),
            }),
            (Phase::Normal, false) => match self.durable.stop_points.get(&node.shard()) {
                Some(&truncate_after) if self.durable.backup_joined => Some(Command::Follow {
                    epoch,
                    primary: self.topology.route(epoch, node.peer()),
                    truncate_after,
                }),
                _ => Some(Command::Fence {
                    epoch,
                    route: peer_route,
                }),
            },
            (_, true) if !self.fencing() => None,
            (_, true) => Some(Command::Fence { epoch, route: None }),
            (_, false) if crate::mutated!(self, KeepReplicating) => None,
            (_, false) => Some(Command::Stop { epoch }),
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
        let epoch = self.durable.epoch;
        if report.epoch != epoch {
            return;
        }
        if node.cluster == self.durable.primary && report.role == Role::Primary {
            let shard = node.shard();
            self.lag.primary_at(shard, report.last_lsn, now);
            if let std::collections::btree_map::Entry::Vacant(slot) =
                self.durable.stop_points.entry(shard)
            {
                let cap = self.durable.stop_caps.get(&shard).copied();
                let lsn = cap.map_or(report.epoch_start_lsn, |c| c.min(report.epoch_start_lsn));
                slot.insert(lsn);
                self.persist();
                self.note(Note::StopPoint { shard, lsn });
                // A new primary may write only under a lease: grant it now rather than at the
                // next round, so that users are not refused for a whole interval.
                self.send_heartbeat(node, now);
            }
        }
        let backup = node.cluster != self.durable.primary && report.role == Role::Backup;
        if backup && self.durable.rejoined.insert(node.shard()) {
            self.persist();
            // A backup that has just joined lags by everything written while it was away:
            // its lag counts from now, so that only a resync slower than the bound alarms.
            self.lag.forget(node.shard());
        }
    }

    /// Adds to each open first alarm of `node`'s cluster what the node quarantined since the
    /// failure, if this report is evidence of it: the node has since joined an epoch as backup
    /// (and cannot quarantine more before it is primary again), or reports from the epoch its
    /// cluster was made primary again in (its list then holds every join in between). Closes
    /// every alarm whose shards are all in.
    fn account_losses(&mut self, node: NodeId, report: &NodeReport, now: Time) {
        let shard = node.shard();
        let mut added = false;
        for alarm in self.durable.open_alarms.values_mut() {
            let waiting = alarm.kind == AlarmKind::PrimaryFailed
                && alarm.cluster == node.cluster
                && !alarm.losses.contains_key(&shard);
            let evidence = match alarm.resumed_in {
                None => report.role == Role::Backup && report.epoch > alarm.epoch,
                Some(resumed) => report.epoch >= resumed,
            };
            if waiting && evidence {
                let (after, before) = (alarm.epoch, alarm.resumed_in);
                let loss =
                    QuarantineSummary::merged(&report.quarantines, after, before, report.epoch);
                alarm.losses.insert(shard, loss);
                added = true;
            }
        }
        if added {
            self.persist();
            self.close_accounted_alarms(now);
        }
    }

    /// Closes every first alarm with every shard's loss in: with the loss report if the failed
    /// cluster rejoined as backup, as resumed (listing the shards that lost writes) if it was
    /// made primary again.
    fn close_accounted_alarms(&mut self, now: Time) {
        let shards = self.topology.nodes_per_cluster as usize;
        let done: Vec<u64> = (self.durable.open_alarms.values())
            .filter(|a| a.kind == AlarmKind::PrimaryFailed && a.losses.len() == shards)
            .map(|a| a.id)
            .collect();
        for id in done {
            let alarm = self.durable.open_alarms.remove(&id).expect("listed");
            let resolution = match alarm.resumed_in {
                None => Resolution::LossReport(alarm.losses),
                Some(_) => {
                    let lost = alarm.losses.into_iter().filter(|(_, q)| q.count > 0);
                    Resolution::Resumed(lost.collect())
                }
            };
            self.persist();
            self.actions.push_back(Action::Alarm(AlarmEvent::Cleared {
                id,
                kind: AlarmKind::PrimaryFailed,
                at: now,
                resolution,
            }));
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
        let recovery_point = match kind {
            AlarmKind::PrimaryFailed => self.recovery_point(cluster),
            AlarmKind::BackupFailed | AlarmKind::Lag => BTreeMap::new(),
        };
        Alarm {
            id,
            kind,
            cluster,
            raised_at: now,
            epoch: self.durable.epoch,
            available_nodes: self.health[&cluster].last,
            recovery_point,
            resumed_in: None,
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

    /// [DESIGN] 8: per shard, the backup's frozen position, the primary's last report, and the
    /// end of the window in which the primary may have accepted writes nobody has counted.
    fn recovery_point(&self, failed: Cluster) -> BTreeMap<Shard, RecoveryPoint> {
        let epoch = self.durable.epoch;
        self.topology
            .nodes(failed)
            .map(|node| {
                let primary = self.nodes[node].report.as_ref();
                let primary_reported = primary.map(|(r, at)| (r.last_lsn, *at));
                let backup = self.nodes[node.peer()].report.as_ref();
                let frozen = |r: &NodeReport| r.epoch == epoch && r.role == Role::Stopped;
                let any = crate::mutated!(self, KeepReplicating);
                let backup_applied = backup
                    .filter(|(r, _)| any || frozen(r))
                    .map(|(r, _)| r.last_lsn);
                let surely_unapplied = match (primary_reported, backup_applied) {
                    (Some((p, _)), Some(b)) => Some(p.0.saturating_sub(b.0)),
                    _ => None,
                };
                // A lease granted before a restart is unknown to us but bounded by it.
                let restart_bound = self.restart_bound();
                let point = RecoveryPoint {
                    backup_applied,
                    primary_reported,
                    surely_unapplied,
                    window_end: self.nodes[node].lease_until.max(restart_bound),
                };
                (node.shard(), point)
            })
            .collect()
    }

    fn clear_alarms(
        &mut self,
        cluster: Cluster,
        kind: AlarmKind,
        resolution: Resolution,
        now: Time,
    ) {
        let ids: Vec<u64> = (self.durable.open_alarms.values())
            .filter(|a| a.kind == kind && a.cluster == cluster)
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

    fn has_open_alarm_of(&self, cluster: Cluster, kind: AlarmKind) -> bool {
        (self.durable.open_alarms.values()).any(|a| a.cluster == cluster && a.kind == kind)
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
