//! Heartbeat accounting: which nodes answer, and whether each cluster is available by claim 4's
//! ratio, debounced so that a lost packet or a single slow round does not move anything.

use crate::params::{cluster_available, Params};
use crate::protocol::NodeReport;
use crate::time::Time;
use crate::types::{Cluster, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// The most heartbeats remembered as unanswered per node: the oldest is what counts, and a
/// node this far behind is long unavailable.
const OUTSTANDING_MAX: usize = 64;

/// What the controller knows of one node.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    /// When the node last answered a heartbeat within the timeout.
    pub last_ok_at: Option<Time>,
    /// Heartbeats sent to it and not yet answered in time, oldest first: (round, sent at).
    pub outstanding: VecDeque<(u64, Time)>,
    /// The newest round it answered in time.
    pub answered_round: Option<u64>,
    /// A round for which its address refused the connection, when no later round has been
    /// answered in time since: no process listens there.
    pub refused: Option<u64>,
    /// Its latest report (timely or not), and when it arrived.
    pub report: Option<(NodeReport, Time)>,
    /// The latest time, on the controller's clock, at which a lease it was granted may still
    /// be live. Zero when it holds none.
    pub lease_until: Time,
    /// Whether the last evaluation found it unavailable.
    pub down: bool,
    /// The round trip of its latest report: from its heartbeat's send to the report's receipt.
    pub round_trip: Option<Duration>,
    /// The lease last granted to it, sized to the round trip ([`Params::lease_for_age`]).
    pub lease_granted: Option<Duration>,
    /// Its own debounced availability, by the cluster's rule applied to a cluster of one:
    /// what a shard failover (issue 15, item 1) is decided on.
    pub health: ClusterHealth,
}

impl NodeView {
    /// Whether the node counts as available at `now`: no heartbeat sent to it after the last
    /// one it answered in time has gone unanswered for the heartbeat timeout (claim 4: "no
    /// response within the preset time"). Each heartbeat gets its full timeout,
    /// so one answer slowed by a lost packet does not count against the node as long as it
    /// comes within the timeout, and detection still takes at most about one timeout plus one
    /// interval from the failure.
    ///
    /// A refused connection makes it unavailable at once, until it answers a later round:
    /// a killed server's port refuses within milliseconds, long before any timeout.
    pub fn available(&self, now: Time, params: &Params) -> bool {
        self.refused.is_none()
            && (self.outstanding.front())
                .is_none_or(|&(_, sent)| now.saturating_since(sent) < params.heartbeat_timeout())
    }

    /// A heartbeat of `round` was sent to the node at `sent`.
    pub fn sent(&mut self, round: u64, sent: Time) {
        if self.outstanding.len() < OUTSTANDING_MAX {
            self.outstanding.push_back((round, sent));
        }
    }

    /// The node answered the heartbeat of `round` in time at `now`: it and every earlier one
    /// are settled.
    pub fn answered(&mut self, round: u64, now: Time) {
        self.last_ok_at = Some(now);
        self.answered_round = self.answered_round.max(Some(round));
        if self.refused.is_some_and(|r| r <= round) {
            self.refused = None;
        }
        while self.outstanding.front().is_some_and(|&(r, _)| r <= round) {
            self.outstanding.pop_front();
        }
    }

    /// The node's address refused the connection for the heartbeat of `round`. Ignored when a
    /// later round was already answered (the refusal is older news).
    pub fn connection_refused(&mut self, round: u64) {
        if self.answered_round.is_none_or(|answered| answered < round) {
            self.refused = self.refused.max(Some(round));
        }
    }
}

/// Every node's view, indexed by position (cluster, then index) rather than looked up in an
/// ordered map: a heartbeat round touches each node several times, and at 10,000 nodes a
/// cluster the lookups made a round grow faster than the number of nodes.
#[derive(Clone, Debug)]
pub struct NodeTable {
    per_cluster: usize,
    views: Vec<NodeView>,
}

impl NodeTable {
    /// A fresh view for each of `per_cluster` nodes in both clusters.
    pub fn new(per_cluster: u16) -> NodeTable {
        NodeTable {
            per_cluster: per_cluster as usize,
            views: vec![NodeView::default(); 2 * per_cluster as usize],
        }
    }

    fn position(&self, node: NodeId) -> Option<usize> {
        let index = node.index as usize;
        let base = match node.cluster {
            Cluster::A => 0,
            Cluster::B => self.per_cluster,
        };
        (index < self.per_cluster).then_some(base + index)
    }

    /// The view of `node`, if it is one of the topology's.
    pub fn get(&self, node: NodeId) -> Option<&NodeView> {
        self.position(node).map(|i| &self.views[i])
    }

    /// The view of `node`, mutably, if it is one of the topology's.
    pub fn get_mut(&mut self, node: NodeId) -> Option<&mut NodeView> {
        self.position(node).map(|i| &mut self.views[i])
    }
}

impl std::ops::Index<NodeId> for NodeTable {
    type Output = NodeView;

    fn index(&self, node: NodeId) -> &NodeView {
        self.get(node).expect("a node of the topology")
    }
}

/// A cluster's declared state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Availability {
    /// Serving (ratio above the threshold, or not yet failed for long enough).
    Available,
    /// Declared failed after `failure_rounds` failed evaluations.
    Failed,
}

/// The debounced availability of one cluster.
#[derive(Clone, Debug)]
pub struct ClusterHealth {
    /// The declared state.
    pub declared: Availability,
    /// Consecutive evaluations that disagree with `declared`.
    pub streak: u32,
    /// The last evaluation: available nodes and total.
    pub last: (usize, usize),
}

impl Default for ClusterHealth {
    /// A single node presumed available.
    fn default() -> ClusterHealth {
        ClusterHealth::new(1)
    }
}

impl ClusterHealth {
    /// A cluster presumed available.
    pub fn new(total: usize) -> ClusterHealth {
        ClusterHealth {
            declared: Availability::Available,
            streak: 0,
            last: (total, total),
        }
    }

    /// A cluster presumed failed (after a restart, when there was reason to think so): it
    /// must answer for `recovery_rounds` evaluations to be declared available.
    pub fn failed(total: usize) -> ClusterHealth {
        ClusterHealth {
            declared: Availability::Failed,
            streak: 0,
            last: (0, total),
        }
    }

    /// Feeds one evaluation (`available` of `total` nodes). Returns the new declared state
    /// when it changed.
    pub fn evaluate(
        &mut self,
        available: usize,
        total: usize,
        params: &Params,
    ) -> Option<Availability> {
        let rounds = (params.failure_rounds, params.recovery_rounds);
        self.evaluate_rounds(available, total, params.ratio_threshold, rounds)
    }

    /// [`ClusterHealth::evaluate`] with the threshold and the (failure, recovery) rounds
    /// given apart: a single node's health is debounced by rounds of its own.
    pub fn evaluate_rounds(
        &mut self,
        available: usize,
        total: usize,
        threshold: f64,
        (failure_rounds, recovery_rounds): (u32, u32),
    ) -> Option<Availability> {
        self.last = (available, total);
        let now_ok = cluster_available(available, total, threshold);
        let (disagrees, needed) = match self.declared {
            Availability::Available => (!now_ok, failure_rounds),
            Availability::Failed => (now_ok, recovery_rounds),
        };
        if !disagrees {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < needed {
            return None;
        }
        self.streak = 0;
        self.declared = match self.declared {
            Availability::Available => Availability::Failed,
            Availability::Failed => Availability::Available,
        };
        Some(self.declared)
    }

    /// Whether the cluster is declared available.
    pub fn is_available(&self) -> bool {
        self.declared == Availability::Available
    }
}
