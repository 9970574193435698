//! The two writers of a run, and the log of every write they made.
//!
//! Both write sequentially: a tick every 5 ms, one write per tick, the next tick only after
//! the write returned (a slow write delays the next one; missed ticks are not made up, so at
//! most one write is ever in flight). Each reply is waited for up to 500 ms
//! ([`crate::redis_io::CALL`]); standby's client library has its own retry on top (see
//! `standby_tool.rs`). Keys are unique per writer: `f:<n>` for the writer that follows the
//! tool, `o:<n>` for the one that keeps writing to the old primary's address; the value is
//! `<n>`.

use serde::Serialize;
use standby::types::NodeId;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The period of each writer.
pub const EVERY: Duration = Duration::from_millis(5);

/// Which writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Writer {
    /// Follows the tool: standby's client, or the Sentinel-aware client.
    Following,
    /// Keeps writing to the old primary's (a/0's) address.
    OldAddress,
}

/// What a write came to, as its writer saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged (standby: a success whose reply came within the lease it reports;
    /// Sentinel: `OK`).
    Ack,
    /// The server refused it and did not write it: its error reply (`READONLY ...`,
    /// `LEASE_EXPIRED 3`, ...).
    Refused(String),
    /// Sent, but of unknown fate: no reply within the deadline, a lost connection, or
    /// (standby) a success whose reply came after its lease.
    Unknown(String),
    /// Never sent: no connection, or no master known.
    Unreachable(String),
}

impl Outcome {
    /// `ack`, `refused`, `unknown` or `unreachable`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Ack => "ack",
            Outcome::Refused(_) => "refused",
            Outcome::Unknown(_) => "unknown",
            Outcome::Unreachable(_) => "unreachable",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Outcome::Ack => "",
            Outcome::Refused(s) | Outcome::Unknown(s) | Outcome::Unreachable(s) => s,
        }
    }
}

/// One write.
#[derive(Clone, Debug)]
pub struct Write {
    pub writer: Writer,
    pub key: String,
    pub value: String,
    /// When the writer started it.
    pub sent: Instant,
    /// When it returned.
    pub reply: Instant,
    /// The node it went to (for a write that got no ack from standby's client: the node of
    /// the route the client held when the write returned, where its last attempt went).
    pub target: Option<NodeId>,
    pub outcome: Outcome,
}

/// Every write of a run, in the order they returned.
pub type Log = Arc<Mutex<Vec<Write>>>;

/// One writer's way of making a write.
pub trait WriteOnce: Send + 'static {
    /// Writes `value` under `key`: the node it went to, and the outcome.
    fn write(
        &mut self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = (Option<NodeId>, Outcome)> + Send;
}

/// The running writers of a run.
pub struct Writers {
    pub log: Log,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Writers {
    pub fn new() -> Writers {
        Writers {
            log: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
            tasks: Vec::new(),
        }
    }

    /// Starts `w` as `writer`.
    pub fn spawn(&mut self, writer: Writer, w: impl WriteOnce) {
        let prefix = match writer {
            Writer::Following => "f:",
            Writer::OldAddress => "o:",
        };
        self.tasks.push(tokio::spawn(drive(
            w,
            writer,
            prefix,
            self.log.clone(),
            self.stop.clone(),
        )));
    }

    /// A copy of the log so far.
    pub fn snapshot(&self) -> Vec<Write> {
        self.log.lock().expect("write log").clone()
    }

    /// Stops both writers (each finishes its write in flight) and returns the log.
    pub async fn stop(mut self) -> Result<Vec<Write>, String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut problems = Vec::new();
        for task in self.tasks.drain(..) {
            match tokio::time::timeout(Duration::from_secs(10), task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => problems.push(format!("a writer failed: {e}")),
                Err(_) => problems.push("a writer did not stop within 10 s".to_string()),
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let log = self.log.lock().expect("write log").clone();
        Ok(log)
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn drive(
    mut w: impl WriteOnce,
    writer: Writer,
    prefix: &'static str,
    log: Log,
    stop: Arc<AtomicBool>,
) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        ticks.tick().await;
        if stop.load(Ordering::Relaxed) {
            return;
        }
        n += 1;
        let (key, value) = (format!("{prefix}{n}"), n.to_string());
        let sent = Instant::now();
        let (target, outcome) = w.write(&key, &value).await;
        let reply = Instant::now();
        log.lock().expect("write log").push(Write {
            writer,
            key,
            value,
            sent,
            reply,
            target,
            outcome,
        });
    }
}
