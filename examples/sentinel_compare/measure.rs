//! What one run measured: the JSON line written per run, and how it is computed from the
//! write log. The same definitions for both tools. Times are in ms from t0, the moment just
//! before the `kill -s KILL|STOP` of a/0 and a/1 was started.
//!
//! - **first write on the new primary**: the reply time of the following writer's first
//!   acknowledged write on b/0.
//! - **acked writes lost**: acknowledged writes (either writer, the whole run) whose key is
//!   not on b/0 with their value at the end (read after a/0 became b/0's replica). For
//!   standby, those found in a quarantine file (`key`/`value` lines) are counted as
//!   **quarantined** instead of lost.
//! - **accepted by two primaries**: writes acknowledged by a/0 (either writer) whose reply
//!   came after the reply of b/0's first acknowledged write (of either writer).
//!   `two_primaries_sent_after` counts those that were even sent after it.
//! - **new primary refused writes**: from the reply of the first write b/0 refused (a server
//!   error reply; replies after t0) to the reply of b/0's first acknowledged write; 0 if b/0
//!   refused none before it. Refusals by b/0 after its first ack are counted apart.
//!   standby's client retries a refusal once by itself: a refusal followed by a successful
//!   retry is inside one ack and not seen (see `standby_tool.rs`); `new_primary_named_ms`
//!   (when the tool first named b/0 to the following writer) bounds that from outside.

use crate::procs::{a, b};
use crate::writers::{Outcome, Write, Writer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// A figure for each writer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PerWriter<T> {
    pub following: T,
    pub old_address: T,
}

impl<T> PerWriter<T> {
    pub fn get_mut(&mut self, writer: Writer) -> &mut T {
        match writer {
            Writer::Following => &mut self.following,
            Writer::OldAddress => &mut self.old_address,
        }
    }
}

/// One run, as one JSON line of `--out`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunRecord {
    /// The campaign (its start, ms since the Unix epoch).
    pub campaign: u64,
    /// `standby` or `sentinel`.
    pub tool: String,
    /// `kill` or `pause`.
    pub fault: String,
    /// Sentinel's down-after-milliseconds = standby's heartbeat_timeout_ms.
    pub setting_ms: u64,
    /// standby's heartbeat interval and lease (recorded for Sentinel runs too).
    pub interval_ms: u64,
    pub lease_ms: u64,
    /// standby's client: `route_wait` (see `--client-route-wait-ms`).
    pub client_route_wait_ms: u64,
    /// The run's number within its cell, from 1.
    pub run: u32,
    pub started_unix_ms: u64,
    /// t0 on the wall clock (ms since the Unix epoch), to read the logs against.
    pub t0_unix_ms: Option<u64>,
    /// Wall time of the whole run, setup and teardown included.
    pub duration_ms: u64,
    /// False when the run could not be measured (see `failure`).
    pub ok: bool,
    pub failure: Option<String>,
    /// The run's directory, when kept (failed runs, or `--keep`).
    pub run_dir: Option<String>,

    pub first_new_primary_ms: Option<f64>,
    /// When the tool first named b/0 to the following writer: standby's client got a route
    /// to b/0; a sentinel answered b/0's address.
    pub new_primary_named_ms: Option<f64>,
    /// When the servers were restarted (kill) or resumed (pause).
    pub restarted_or_resumed_ms: Option<f64>,
    /// When a/0 was first seen as b/0's connected replica (standby: and its backup).
    pub old_primary_replica_ms: Option<f64>,
    /// The reply of a/0's last acknowledged write (either writer).
    pub last_old_primary_ack_ms: Option<f64>,

    /// Writes attempted (unreachable ones included).
    pub writes: PerWriter<u64>,
    pub acked: PerWriter<u64>,
    pub lost: PerWriter<u64>,
    pub quarantined: PerWriter<u64>,
    /// Sent, fate unknown (timeout, lost connection, reply after the lease).
    pub unknown: PerWriter<u64>,
    /// Never sent (no connection, no master known).
    pub unreachable: PerWriter<u64>,
    /// Refusals by error code (`READONLY`, `FENCED`, `LEASE_EXPIRED`, ...).
    pub refused: PerWriter<BTreeMap<String, u64>>,
    pub two_primaries: u64,
    pub two_primaries_sent_after: u64,
    pub new_primary_refused_ms: Option<f64>,
    pub new_primary_refused_after_first_ack: u64,
    /// The tool's own steps (see `milestones.rs`), in ms from t0.
    pub steps_ms: BTreeMap<String, f64>,
    /// Anything odd, in words.
    pub notes: Vec<String>,
}

/// ms from `t0` to `t` (negative before it), to 0.1 ms.
pub fn ms(t0: Instant, t: Instant) -> f64 {
    let d = if t >= t0 {
        (t - t0).as_secs_f64()
    } else {
        -(t0 - t).as_secs_f64()
    };
    (d * 10_000.0).round() / 10.0
}

/// Fills the write figures of `record` from `log`, `on_b0` (key -> value read on b/0 for
/// every acknowledged write) and the quarantine (standby only).
pub fn analyze(
    record: &mut RunRecord,
    log: &[Write],
    t0: Instant,
    on_b0: &BTreeMap<String, Option<String>>,
    quarantine: Option<&BTreeSet<(String, String)>>,
) {
    let (a0, b0) = (a(0), b(0));
    let acked_on = |w: &Write, node| w.target == Some(node) && w.outcome == Outcome::Ack;
    let first_following = log
        .iter()
        .filter(|w| w.writer == Writer::Following && acked_on(w, b0))
        .map(|w| w.reply)
        .min();
    let first_any = log
        .iter()
        .filter(|w| acked_on(w, b0))
        .map(|w| w.reply)
        .min();
    record.first_new_primary_ms = first_following.map(|t| ms(t0, t));
    record.last_old_primary_ack_ms = log
        .iter()
        .filter(|w| acked_on(w, a0))
        .map(|w| ms(t0, w.reply))
        .reduce(f64::max);

    for w in log {
        *record.writes.get_mut(w.writer) += 1;
        match &w.outcome {
            Outcome::Ack => *record.acked.get_mut(w.writer) += 1,
            Outcome::Refused(why) => {
                let code = crate::redis_io::error_code(why);
                *record.refused.get_mut(w.writer).entry(code).or_default() += 1;
            }
            Outcome::Unknown(_) => *record.unknown.get_mut(w.writer) += 1,
            Outcome::Unreachable(_) => *record.unreachable.get_mut(w.writer) += 1,
        }
        if w.outcome == Outcome::Ack {
            let kept = on_b0.get(&w.key).and_then(|v| v.as_deref()) == Some(w.value.as_str());
            if kept {
                continue;
            }
            let pair = (w.key.clone(), w.value.clone());
            if quarantine.is_some_and(|q| q.contains(&pair)) {
                *record.quarantined.get_mut(w.writer) += 1;
            } else {
                *record.lost.get_mut(w.writer) += 1;
            }
        }
    }

    if let Some(first) = first_any {
        let late = log.iter().filter(|w| acked_on(w, a0) && w.reply > first);
        record.two_primaries = late.clone().count() as u64;
        record.two_primaries_sent_after = late.filter(|w| w.sent > first).count() as u64;
        let refusals_on_b0: Vec<&Write> = log
            .iter()
            .filter(|w| {
                w.target == Some(b0) && matches!(w.outcome, Outcome::Refused(_)) && w.reply >= t0
            })
            .collect();
        let first_refusal = refusals_on_b0.iter().map(|w| w.reply).min();
        record.new_primary_refused_ms = Some(match first_refusal {
            Some(r) if r < first => ms(r, first),
            _ => 0.0,
        });
        record.new_primary_refused_after_first_ack =
            refusals_on_b0.iter().filter(|w| w.reply > first).count() as u64;
    }

    let unknown_after: u64 = log
        .iter()
        .filter(|w| matches!(w.outcome, Outcome::Unknown(_)) && w.sent >= t0)
        .count() as u64;
    if unknown_after > 0 {
        let mut by_writer: BTreeMap<&str, u64> = BTreeMap::new();
        for w in log
            .iter()
            .filter(|w| matches!(w.outcome, Outcome::Unknown(_)) && w.sent >= t0)
        {
            let name = match w.writer {
                Writer::Following => "following",
                Writer::OldAddress => "old-address",
            };
            *by_writer.entry(name).or_default() += 1;
        }
        record.notes.push(format!(
            "{unknown_after} writes of unknown fate after t0: {by_writer:?}"
        ));
    }
    let lost_keys: Vec<&str> = log
        .iter()
        .filter(|w| w.outcome == Outcome::Ack)
        .filter(|w| on_b0.get(&w.key).and_then(|v| v.as_deref()) != Some(w.value.as_str()))
        .filter(|w| !quarantine.is_some_and(|q| q.contains(&(w.key.clone(), w.value.clone()))))
        .map(|w| w.key.as_str())
        .collect();
    if !lost_keys.is_empty() {
        let shown: Vec<&str> = lost_keys.iter().take(5).copied().collect();
        record.notes.push(format!(
            "{} acked writes lost, first {shown:?}",
            lost_keys.len()
        ));
    }
}

/// The write log as JSON lines (kept in the run directory for failed runs and `--keep`).
pub fn log_lines(log: &[Write], t0: Instant) -> String {
    let mut text = String::new();
    for w in log {
        let line = serde_json::json!({
            "writer": w.writer,
            "key": w.key,
            "value": w.value,
            "sent_ms": ms(t0, w.sent),
            "reply_ms": ms(t0, w.reply),
            "target": w.target.map(|n| n.to_string()),
            "outcome": w.outcome.kind(),
            "detail": w.outcome.detail(),
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    text
}
