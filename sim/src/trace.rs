//! The run's trace: everything that happened, stamped with simulated time, in the order it
//! happened. Checkers read it after the run; replay prints it; its hash proves determinism.

use serde::{Deserialize, Serialize};
use standby::controller::{AlarmEvent, Note};
use standby::node::NodeEvent;
use standby::protocol::RejectReason;
use standby::time::Time;
use standby::types::{Cluster, Epoch, Lsn, NodeId, UserId, WriteId};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// The injector started or healed a fault.
    Fault {
        /// What, in words.
        what: String,
        /// Whether it healed (false: it began).
        healed: bool,
    },
    /// The ground truth of a cluster changed: nodes up and reachable from the controller.
    Truth {
        /// The cluster.
        cluster: Cluster,
        /// Nodes up and reachable.
        available: usize,
        /// Nodes in all.
        total: usize,
    },
    /// A node changed.
    Node {
        /// The node.
        node: NodeId,
        /// What changed.
        event: NodeEvent,
    },
    /// A node lost its disk.
    Wiped {
        /// The node.
        node: NodeId,
    },
    /// The controller noted something.
    Controller(Note),
    /// The controller raised or closed an alarm.
    Alarm(AlarmEvent),
    /// The controller made a new epoch durable.
    EpochPersisted {
        /// The epoch.
        epoch: Epoch,
        /// Its writable cluster.
        primary: Cluster,
    },
    /// The controller sent a publication.
    PublishSent {
        /// The epoch.
        epoch: Epoch,
        /// Users in it.
        users: usize,
    },
    /// The config center stored (or refused) a publication.
    CenterPublished {
        /// Its epoch.
        epoch: Epoch,
        /// Stored, or refused as older.
        stored: bool,
    },
    /// A user acknowledged a config at the config center.
    CenterAck {
        /// The user.
        user: UserId,
        /// The epoch.
        epoch: Epoch,
    },
    /// A user applied a new config.
    UserConfig {
        /// The user.
        user: UserId,
        /// The epoch applied.
        epoch: Epoch,
        /// The node it now writes to.
        node: NodeId,
        /// Learned from a write's rejection (true) or pushed by the config center (false).
        from_rejection: bool,
    },
    /// A user sent a write.
    Invoke {
        /// The write.
        id: WriteId,
        /// Where.
        node: NodeId,
        /// With which epoch.
        epoch: Epoch,
    },
    /// The write was acknowledged.
    Ok {
        /// The write.
        id: WriteId,
        /// By which node.
        node: NodeId,
        /// Its position.
        lsn: Lsn,
        /// The epoch it was accepted in.
        epoch: Epoch,
    },
    /// The write was refused (it surely did not happen, unless `reason` says it may have).
    Fail {
        /// The write.
        id: WriteId,
        /// Why.
        reason: RejectReason,
    },
    /// The write's outcome is unknown (timeout, connection lost).
    Unknown {
        /// The write.
        id: WriteId,
    },
}

/// A shared, append-only trace.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    events: Arc<Mutex<Vec<(Time, Event)>>>,
    origin: Arc<Mutex<Option<madsim::time::Instant>>>,
}

impl Trace {
    /// An empty trace whose clock starts now.
    pub fn new() -> Trace {
        let trace = Trace::default();
        *trace.origin.lock().expect("trace lock") = Some(madsim::time::Instant::now());
        trace
    }

    /// Simulated time since the run began.
    pub fn now(&self) -> Time {
        let origin = self.origin.lock().expect("trace lock").expect("started");
        Time(origin.elapsed().as_micros() as u64)
    }

    /// Records `event` now.
    pub fn record(&self, event: Event) {
        let now = self.now();
        self.events.lock().expect("trace lock").push((now, event));
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<(Time, Event)> {
        self.events.lock().expect("trace lock").clone()
    }
}

/// One line per event: `time  event`.
pub fn render(events: &[(Time, Event)]) -> String {
    let mut out = String::new();
    for (time, event) in events {
        let _ = writeln!(out, "{time:>10}  {event:?}");
    }
    out
}

/// A 64-bit FNV-1a hash of the rendered trace: equal traces, equal hashes, on any machine.
pub fn hash(events: &[(Time, Event)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in render(events).bytes() {
        h ^= byte as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
