//! Heartbeat accounting: which nodes answer, and whether each cluster is available by claim 4's
//! ratio, debounced so that a lost packet or a single slow round does not move anything.

use crate::params::{cluster_available, Params};
use crate::protocol::NodeReport;
use crate::time::Time;
use serde::{Deserialize, Serialize};

/// What the controller knows of one node.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    /// When the node last answered a heartbeat within the timeout.
    pub last_ok_at: Option<Time>,
    /// Its latest report (timely or not), and when it arrived.
    pub report: Option<(NodeReport, Time)>,
    /// The latest time, on the controller's clock, at which a lease it was granted may still
    /// be live. Zero when it holds none.
    pub lease_until: Time,
    /// Whether the last evaluation found it unavailable.
    pub down: bool,
}

impl NodeView {
    /// Whether the node counts as available at `now`: it answered in time no longer than the
    /// heartbeat timeout ago. A node never heard from is given one timeout from `since`.
    pub fn available(&self, now: Time, since: Time, params: &Params) -> bool {
        let reference = self.last_ok_at.unwrap_or(since).max(since);
        now.saturating_since(reference) <= params.heartbeat_timeout()
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
        self.last = (available, total);
        let now_ok = cluster_available(available, total, params.ratio_threshold);
        let (disagrees, needed) = match self.declared {
            Availability::Available => (!now_ok, params.failure_rounds),
            Availability::Failed => (now_ok, params.recovery_rounds),
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
