//! The controller's parameters, with units in their names, and their validation.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How the controller watches the clusters and how cautious it is. Durations are in
/// milliseconds, ratios are fractions of one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// How often every node is sent a heartbeat, and how often availability is evaluated.
    pub heartbeat_interval_ms: u64,
    /// A node is available while it answered a heartbeat, within this long of the heartbeat
    /// being sent, no longer than this long ago (claim 4's "preset time").
    pub heartbeat_timeout_ms: u64,
    /// A cluster is available when available/total is strictly greater than this (claim 4).
    pub ratio_threshold: f64,
    /// Consecutive failed evaluations before a cluster is declared failed. The timeout already
    /// absorbs `timeout / interval` lost heartbeats; these rounds come on top of it.
    pub failure_rounds: u32,
    /// Consecutive available evaluations before a failed cluster is declared recovered, so a
    /// flapping cluster is not taken back at its first good round.
    pub recovery_rounds: u32,
    /// How long a write lease lasts, from the node's send time of the heartbeat reply it was
    /// granted on, measured on the node's own clock.
    pub lease_duration_ms: u64,
    /// The largest rate error of any clock, in parts per million. Lease waits are stretched by
    /// it, so a node whose clock runs slow cannot outlive the controller's wait.
    pub max_clock_drift_ppm: u32,
    /// A shard whose backup lacks a write the controller first saw on its primary this long
    /// ago raises the lag alarm, cleared once the lag is back under half of it; 0: never.
    pub lag_alarm_ms: u64,
    /// The same bound in entries the backup lacks; 0 (the default): never.
    pub lag_alarm_entries: u64,
    /// Whether a shard whose primary node alone has failed (its cluster still available by
    /// the ratio) fails over to its paired backup node on its own (issue 15, item 1). Off:
    /// only a whole cluster's failure moves anything, as claim 4 alone asks.
    pub shard_failover: bool,
    /// Consecutive failed evaluations before a primary node alone is declared failed (its
    /// shard's failover): a cluster's failure needs most of its nodes to miss a heartbeat at
    /// once, a node's only its own, which a lost packet can do; these rounds stand in for the
    /// corroboration the other nodes give. A node whose address refuses the connection (no
    /// lost packet does that) needs only `failure_rounds`.
    pub node_failure_rounds: u32,
    /// Issue 15, item 2 (Patroni's `maximum_lag_on_failover`): a failover whose backup surely
    /// lacks more than this many of its old primary's entries, or whose lag is not known, is
    /// not promoted automatically: the promotion-held alarm asks an operator (`standby
    /// promote`), and the old primary is made primary again if it returns first. 0 (the
    /// default): every failover promotes on its own.
    pub promotion_lag_entries: u64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            heartbeat_interval_ms: 100,
            heartbeat_timeout_ms: 300,
            ratio_threshold: 0.5,
            failure_rounds: 1,
            recovery_rounds: 5,
            lease_duration_ms: 300,
            max_clock_drift_ppm: 10_000,
            lag_alarm_ms: 10_000,
            lag_alarm_entries: 0,
            shard_failover: true,
            node_failure_rounds: 3,
            promotion_lag_entries: 0,
        }
    }
}

/// Why a set of parameters cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParamsError {
    /// A duration that must be positive is zero.
    #[error("{field} must be greater than zero")]
    Zero {
        /// The offending field.
        field: &'static str,
    },
    /// The ratio threshold is not strictly between 0 and 1.
    #[error("ratio_threshold must be strictly between 0 and 1, got {0}")]
    Threshold(f64),
    /// The clock drift bound is not below 10% (at which lease waits would make no sense).
    #[error("max_clock_drift_ppm must be below 100000 (10%), got {0}")]
    Drift(u32),
    /// The lease cannot be renewed before it expires.
    #[error("lease_duration_ms ({lease}) must exceed heartbeat_interval_ms ({interval}), or leases lapse between renewals")]
    LeaseTooShort {
        /// The lease duration, in ms.
        lease: u64,
        /// The heartbeat interval, in ms.
        interval: u64,
    },
}

impl ParamsError {
    /// The field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            ParamsError::Zero { field } => field,
            ParamsError::Threshold(_) => "ratio_threshold",
            ParamsError::Drift(_) => "max_clock_drift_ppm",
            ParamsError::LeaseTooShort { .. } => "lease_duration_ms",
        }
    }
}

impl Params {
    /// Checks that the parameters make sense together.
    pub fn validate(&self) -> Result<(), ParamsError> {
        for (field, value) in [
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("heartbeat_timeout_ms", self.heartbeat_timeout_ms),
            ("lease_duration_ms", self.lease_duration_ms),
            ("failure_rounds", self.failure_rounds as u64),
            ("node_failure_rounds", self.node_failure_rounds as u64),
            ("recovery_rounds", self.recovery_rounds as u64),
        ] {
            if value == 0 {
                return Err(ParamsError::Zero { field });
            }
        }
        // NaN fails both comparisons, so it is rejected too.
        if !(self.ratio_threshold > 0.0 && self.ratio_threshold < 1.0) {
            return Err(ParamsError::Threshold(self.ratio_threshold));
        }
        if self.max_clock_drift_ppm >= 100_000 {
            return Err(ParamsError::Drift(self.max_clock_drift_ppm));
        }
        if self.lease_duration_ms <= self.heartbeat_interval_ms {
            return Err(ParamsError::LeaseTooShort {
                lease: self.lease_duration_ms,
                interval: self.heartbeat_interval_ms,
            });
        }
        Ok(())
    }

    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    /// The heartbeat timeout.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms)
    }

    /// The lease duration, as the lease holder measures it.
    pub fn lease_duration(&self) -> Duration {
        Duration::from_millis(self.lease_duration_ms)
    }

    /// The lease to grant on a report that came back `round_trip` after its heartbeat was
    /// sent: `lease_duration_ms`, plus one interval for each interval beyond the first that
    /// the round trip spans, up to [`Params::lease_duration_max`]. A grant reaches its node a
    /// round trip and up to an interval after the lease's anchor (the report's send), so at any
    /// round trip the node holds it for about as long as it would at a short one; a node whose
    /// answers take longer than the heartbeat timeout is unavailable anyway (issue 15, item 3).
    /// At round trips within one interval the lease is the configured one.
    pub fn lease_for_round_trip(&self, round_trip: Duration) -> Duration {
        let interval = self.heartbeat_interval_ms as u128;
        let spanned =
            (round_trip.as_millis().div_ceil(interval)).clamp(1, self.rounds_max() as u128);
        let extra = (spanned as u64 - 1) * self.heartbeat_interval_ms;
        Duration::from_millis(self.lease_duration_ms + extra)
    }

    /// The most heartbeat intervals a timely answer's round trip spans.
    fn rounds_max(&self) -> u64 {
        self.heartbeat_timeout_ms
            .div_ceil(self.heartbeat_interval_ms)
            .max(1)
    }

    /// The longest lease ever granted: the lease of a report answered within the heartbeat
    /// timeout, `lease_duration_ms + (ceil(timeout / interval) - 1) * interval` (500 ms with
    /// the defaults).
    pub fn lease_duration_max(&self) -> Duration {
        let extra = (self.rounds_max() - 1) * self.heartbeat_interval_ms;
        Duration::from_millis(self.lease_duration_ms + extra)
    }

    /// How long the controller must wait, on its own clock, from the anchor of a grant of
    /// `lease` until that lease has surely expired: the lease runs on the holder's clock, which
    /// may be slow by the drift bound, and is measured on the controller's, which may be fast
    /// by it.
    pub fn lease_wait_for(&self, lease: Duration) -> Duration {
        let drift = self.max_clock_drift_ppm as u128;
        let stretched = (lease.as_micros() * (1_000_000 + drift)).div_ceil(1_000_000 - drift);
        Duration::from_micros(stretched as u64)
    }
}

/// Whether a cluster with `available` of `total` nodes answering is available: the ratio must
/// be strictly greater than the threshold (claim 4, [0029], [0040]). An empty cluster is never
/// available.
pub fn cluster_available(available: usize, total: usize, threshold: f64) -> bool {
    total > 0 && (available as f64 / total as f64) > threshold
}
