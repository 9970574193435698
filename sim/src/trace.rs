//! The run's trace: everything that happened, stamped with simulated time, in the order it
//! happened. Checkers read it after the run; replay prints it; its hash proves determinism.

use serde::{Deserialize, Serialize};
use standby::controller::{AlarmEvent, Note};
use standby::node::NodeEvent;
use standby::protocol::{QuarantineSummary, RejectReason};
use standby::time::Time;
use standby::types::{Cluster, Epoch, Lsn, NodeId, Shard, UserId, WriteId};
use std::collections::BTreeMap;
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
        /// For a fault timed by the controller's transitions (`after` in the scenario): the
        /// transition that started it, in words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// The ground truth of a cluster changed: nodes up and reachable from the controller.
    Truth {
        /// The cluster.
        cluster: Cluster,
        /// Nodes up and reachable.
        available: usize,
        /// Nodes in all.
        total: usize,
        /// The indices of its nodes down or unreachable.
        #[serde(default)]
        down: Vec<u16>,
    },
    /// A node changed.
    Node {
        /// The node.
        node: NodeId,
        /// What changed.
        event: NodeEvent,
    },
    /// The controller sent a heartbeat (recorded only for `replay --verbose`).
    Heartbeat {
        /// To which node.
        node: NodeId,
        /// Its round.
        round: u64,
        /// Whether it renews the node's write lease.
        lease: bool,
        /// The role it asks the node to take, if any.
        command: Option<String>,
    },
    /// A node's report reached the controller (recorded only for `replay --verbose`).
    Report {
        /// From which node.
        node: NodeId,
        /// The round it answers.
        round: u64,
        /// The node's epoch.
        epoch: Epoch,
        /// Its role.
        role: String,
        /// Its last log position.
        last_lsn: Lsn,
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
        /// Every shard's writable cluster, and the epoch it was made so in.
        shards: BTreeMap<Shard, (Cluster, Epoch)>,
    },
    /// The controller sent a publication.
    PublishSent {
        /// The epoch.
        epoch: Epoch,
        /// Users in it.
        users: usize,
    },
    /// A replica's config center stored (or refused) a publication.
    CenterPublished {
        /// The replica whose center it is.
        replica: u16,
        /// Its epoch.
        epoch: Epoch,
        /// Stored, or refused as older.
        stored: bool,
    },
    /// A user acknowledged a config at a replica's config center.
    CenterAck {
        /// The replica whose center it is.
        replica: u16,
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
    /// A controller replica won the lead and restored the durable state: it leads in `term`
    /// (its controller's incarnation).
    Leading {
        /// The replica.
        replica: u16,
        /// Its term.
        term: u64,
    },
    /// A replica stopped leading (it takes no action after this).
    LeadLost {
        /// The replica.
        replica: u16,
        /// Why, in words.
        why: String,
    },
    /// A replica raised the alarm that it has not reached etcd since `since`, for longer than
    /// its lease TTL (it cannot lead; while no replica can, the primary's writes are refused).
    EtcdUnreachable {
        /// The replica.
        replica: u16,
        /// When etcd last answered it.
        since: Time,
    },
    /// A replica reaches etcd again: its alarm is cleared (or it restarted).
    EtcdReachable {
        /// The replica.
        replica: u16,
    },
    /// A guarded write that a `held` partition kept from etcd is sent now, at the heal,
    /// `held_ms` after its replica sent it (and long after it gave up on the answer): etcd
    /// takes it only if its writer's leadership guard still holds.
    HeldWriteDelivered {
        /// The replica that wrote it.
        replica: u16,
        /// How long it was held.
        held_ms: u64,
    },
    /// A replica acted (a heartbeat, a publication, an alarm) in a term other than that of
    /// the last action any replica took. These terms must rise: one older than an earlier
    /// one is a deposed leader acting after its successor (`single-leader`).
    Acting {
        /// The replica.
        replica: u16,
        /// The term it acted in.
        term: u64,
    },
    /// An operator's command (a scenario event) ran: what it was, and what came of it. (Last:
    /// the trace hash encodes each event's variant by its place.)
    Operator {
        /// The command, as typed.
        command: String,
        /// What it printed: what it did, or why it did nothing.
        outcome: String,
        /// The promotion-held alarms it approved (none, if it did nothing).
        approved: Vec<u64>,
    },
}

thread_local! {
    /// When the run on this thread began: log lines are stamped with simulated time since.
    static RUN_ORIGIN: std::cell::Cell<Option<madsim::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// Stamps log lines with the simulated time since the run on this thread began (each seed
/// runs on one thread, in a runtime of its own).
pub struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match RUN_ORIGIN.with(|origin| origin.get()) {
            Some(origin) => {
                let now = Time(
                    madsim::time::Instant::now()
                        .saturating_duration_since(origin)
                        .as_micros() as u64,
                );
                write!(w, "{now:>10}")
            }
            None => write!(w, "{:>10}", "-"),
        }
    }
}

/// A shared, append-only trace.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    events: Arc<Mutex<Vec<(Time, Event)>>>,
    origin: Arc<Mutex<Option<madsim::time::Instant>>>,
    messages: bool,
    /// Notified whenever the controller's story moves on (a note or an alarm is recorded):
    /// what faults timed by a controller transition wait for.
    story: Arc<tokio::sync::Notify>,
}

impl Trace {
    /// An empty trace whose clock starts now (also the clock of this thread's log lines).
    pub fn new() -> Trace {
        let trace = Trace::default();
        let now = madsim::time::Instant::now();
        *trace.origin.lock().expect("trace lock") = Some(now);
        RUN_ORIGIN.with(|origin| origin.set(Some(now)));
        trace
    }

    /// Also records every heartbeat and report (for `replay --verbose`).
    pub fn with_messages(mut self, messages: bool) -> Trace {
        self.messages = messages;
        self
    }

    /// Whether heartbeats and reports are recorded.
    pub fn records_messages(&self) -> bool {
        self.messages
    }

    /// Simulated time since the run began.
    pub fn now(&self) -> Time {
        let origin = self.origin.lock().expect("trace lock").expect("started");
        Time(origin.elapsed().as_micros() as u64)
    }

    /// Records `event` now (and logs it at debug level: `RUST_LOG=standby_sim=debug`).
    pub fn record(&self, event: Event) {
        let now = self.now();
        tracing::debug!("{}", describe(&event));
        let story = matches!(event, Event::Controller(_) | Event::Alarm(_));
        self.events.lock().expect("trace lock").push((now, event));
        if story {
            self.story.notify_one();
        }
    }

    /// What is notified whenever a controller note or alarm is recorded.
    pub fn story_changed(&self) -> Arc<tokio::sync::Notify> {
        self.story.clone()
    }

    /// Calls `f` on every event recorded from index `from` on; returns the next index.
    pub fn scan_from(&self, from: usize, mut f: impl FnMut(Time, &Event)) -> usize {
        let events = self.events.lock().expect("trace lock");
        for (at, event) in &events[from.min(events.len())..] {
            f(*at, event);
        }
        events.len()
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<(Time, Event)> {
        self.events.lock().expect("trace lock").clone()
    }
}

/// One line of a JSON-lines trace: the simulated time in microseconds since the run began,
/// and the event. The schema is these serde types; see docs/trace-schema.md.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceLine {
    /// Microseconds since the run began.
    pub time: Time,
    /// What happened.
    pub event: Event,
}

/// The trace as JSON lines, one event per line.
pub fn to_jsonl(events: &[(Time, Event)]) -> String {
    let mut out = String::new();
    for (time, event) in events {
        let line = TraceLine {
            time: *time,
            event: event.clone(),
        };
        out += &serde_json::to_string(&line).expect("trace events serialise");
        out.push('\n');
    }
    out
}

/// Reads a JSON-lines trace back.
pub fn from_jsonl(text: &str) -> Result<Vec<(Time, Event)>, serde_json::Error> {
    (text.lines())
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str::<TraceLine>(line).map(|l| (l.time, l.event)))
        .collect()
}

/// Whether an event is one of the messages only `replay --verbose` records.
pub fn is_message(event: &Event) -> bool {
    matches!(event, Event::Heartbeat { .. } | Event::Report { .. })
}

/// A 64-bit FNV-1a hash of the trace's postcard encoding: equal traces, equal hashes, on any
/// machine.
/// Messages recorded only by `--verbose` are left out, so a verbose replay has the same hash.
pub fn hash(events: &[(Time, Event)]) -> u64 {
    let mut fnv = Fnv1a(0xcbf2_9ce4_8422_2325);
    for event in events.iter().filter(|(_, e)| !is_message(e)) {
        postcard::to_io(event, &mut fnv).expect("trace events serialise");
    }
    fnv.0
}

/// FNV-1a as an `io::Write`, so events are hashed straight from their compact encoding
/// (formatting every event with `Debug` took most of a seed's checking time).
struct Fnv1a(u64);

impl std::io::Write for Fnv1a {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for &byte in bytes {
            self.0 = (self.0 ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A readable timeline: one line per event that tells the failover story (faults, truth,
/// roles, controller decisions, alarms, publications, acknowledgements), plus the first write
/// each node refused for each reason and the start of each resync, and at the end a count of
/// every refusal. `verbose` adds every write, append and per-user acknowledgement.
pub fn timeline(events: &[(Time, Event)], users: u32, verbose: bool) -> String {
    use std::collections::{BTreeMap, BTreeSet};
    let mut out = String::new();
    // Users who acknowledged each epoch, at any replica's center.
    let mut acks: BTreeMap<Epoch, BTreeSet<UserId>> = BTreeMap::new();
    let mut target: BTreeMap<WriteId, NodeId> = BTreeMap::new();
    let mut refused: BTreeMap<(NodeId, String), u64> = BTreeMap::new();
    let mut rejoined: BTreeSet<NodeId> = BTreeSet::new();
    for (time, event) in events {
        let line = match event {
            Event::CenterAck { epoch, user, .. } => {
                let acked = acks.entry(*epoch).or_default();
                let first = acked.insert(*user);
                match (first && acked.len() == users as usize, verbose) {
                    (true, _) => Some(format!("center    all {users} users acknowledged {epoch}")),
                    (false, true) => Some(describe(event)),
                    (false, false) => None,
                }
            }
            Event::Invoke { id, node, .. } => {
                target.insert(*id, *node);
                verbose.then(|| describe(event))
            }
            Event::Fail { id, reason } => {
                let node = target
                    .get(id)
                    .copied()
                    .unwrap_or(NodeId::new(Cluster::A, 0));
                let count = refused.entry((node, format!("{reason:?}"))).or_default();
                *count += 1;
                match (*count == 1, verbose) {
                    (_, true) => Some(describe(event)),
                    (true, false) => Some(format!(
                        "{:<9} refused {id} ({reason:?}): the first such refusal here, the rest are counted below",
                        node.to_string()
                    )),
                    (false, false) => None,
                }
            }
            Event::Node {
                node,
                event: NodeEvent::Quarantined(_),
            } => {
                rejoined.insert(*node);
                Some(describe(event))
            }
            Event::Node {
                node,
                event: NodeEvent::Applied { from, .. },
            } if rejoined.remove(node) && !verbose => Some(format!(
                "{:<9} resync from its new primary begins at lsn {}",
                node.to_string(),
                from.0
            )),
            _ if verbose || !is_detail(event) => Some(describe(event)),
            _ => None,
        };
        if let Some(line) = line {
            let _ = writeln!(out, "{time:>10}  {line}");
        }
    }
    if !refused.is_empty() {
        let _ = writeln!(out, "writes refused, by node and reason:");
        for ((node, reason), count) in &refused {
            let _ = writeln!(out, "{:>12}{node}: {count} x {reason}", "");
        }
    }
    out
}

/// Events shown only with `--verbose`.
fn is_detail(event: &Event) -> bool {
    matches!(
        event,
        Event::Invoke { .. }
            | Event::Ok { .. }
            | Event::Fail { .. }
            | Event::Unknown { .. }
            | Event::Node {
                event: NodeEvent::Accepted(_)
                    | NodeEvent::Applied { .. }
                    | NodeEvent::Trimmed { .. },
                ..
            }
            | Event::UserConfig {
                from_rejection: false,
                ..
            }
            | Event::EpochPersisted { .. }
            | Event::Heartbeat { .. }
            | Event::Report { .. }
    )
}

/// One event in words.
pub fn describe(event: &Event) -> String {
    use standby::controller::{AlarmKind, Resolution};
    match event {
        Event::Fault {
            what,
            healed: false,
            after: None,
        } => format!("FAULT     {what}"),
        Event::Fault {
            what,
            healed: false,
            after: Some(after),
        } => format!("FAULT     {what} ({after})"),
        Event::Fault {
            what, healed: true, ..
        } => format!("HEALED    {what}"),
        Event::Operator {
            command, outcome, ..
        } => format!("OPERATOR  {command}: {outcome}"),
        Event::Truth {
            cluster,
            available,
            total,
            ..
        } => {
            format!("truth     cluster {cluster}: {available}/{total} nodes up and reachable")
        }
        Event::Node { node, event } => format!("{:<9} {}", node.to_string(), describe_node(event)),
        Event::Heartbeat {
            node,
            round,
            lease,
            command,
        } => {
            let lease = if *lease { ", renews the lease" } else { "" };
            let command = command
                .as_ref()
                .map_or(String::new(), |c| format!(", asks {c}"));
            // Rounds are numbered from the controller's incarnation: show it apart.
            format!(
                "ctl       heartbeat #{}.{} to {node}{lease}{command}",
                round >> 32,
                round & 0xffff_ffff
            )
        }
        Event::Report {
            node,
            round,
            epoch,
            role,
            last_lsn,
        } => {
            let (incarnation, round) = (round >> 32, round & 0xffff_ffff);
            format!(
                "{:<9} reports #{incarnation}.{round}: {role} in {epoch}, last lsn {}",
                node.to_string(),
                last_lsn.0
            )
        }
        Event::Wiped { node } => format!("{:<9} WIPED: disk lost", node.to_string()),
        Event::Leading { replica, term } => {
            format!("ctl/{replica:<5} LEADS in term {term}")
        }
        Event::LeadLost { replica, why } => format!("ctl/{replica:<5} stopped leading: {why}"),
        Event::EtcdUnreachable { replica, since } => format!(
            "ctl/{replica:<5} ALARM: etcd unreachable since {since}: no replica without it may lead"
        ),
        Event::EtcdReachable { replica } => format!("ctl/{replica:<5} reaches etcd again"),
        Event::HeldWriteDelivered { replica, held_ms } => {
            format!("ctl/{replica:<5} its write held {held_ms} ms in the network reaches etcd now")
        }
        Event::Acting { replica, term } => format!("ctl/{replica:<5} acts in term {term}"),
        Event::Controller(note) => format!("ctl       {}", describe_note(note)),
        Event::Alarm(AlarmEvent::Raised(alarm)) if alarm.kind == AlarmKind::Lag => {
            let lag = alarm.lag.as_ref().map_or(String::new(), |l| {
                let node = l.shard.node(alarm.cluster);
                format!(
                    ": {node} lacks {} entries, the oldest first seen {} ms ago",
                    l.entries, l.behind_ms
                )
            });
            format!(
                "ALARM #{} LAG: a backup is behind beyond the bound in {}{lag}",
                alarm.id, alarm.epoch
            )
        }
        Event::Alarm(AlarmEvent::Raised(alarm)) if alarm.kind == AlarmKind::PromotionHeld => {
            let lacks = (alarm.recovery_point.iter()).map(|(shard, point)| {
                let lacks = point.surely_unapplied;
                let lacks = lacks.map_or("an unknown number of".into(), |n| n.to_string());
                let (old, new) = (shard.node(alarm.cluster), shard.node(alarm.cluster.other()));
                format!("{new} lacks {lacks} writes of {old}")
            });
            format!(
                "ALARM #{} PROMOTION HELD beyond the lag bound: {}; waiting for `standby promote`, or for {} to answer again",
                alarm.id,
                lacks.collect::<Vec<_>>().join(", "),
                alarm.shard.map_or(alarm.cluster.to_string(), |s| s.node(alarm.cluster).to_string()),
            )
        }
        Event::Alarm(AlarmEvent::Raised(alarm)) => {
            let (up, total) = alarm.available_nodes;
            let which = match alarm.kind {
                AlarmKind::PrimaryFailed => "FIRST ALARM: primary",
                AlarmKind::BackupFailed | AlarmKind::Lag => "SECOND ALARM: backup",
                AlarmKind::PromotionHeld => "PROMOTION HELD: primary",
            };
            let mut line = match alarm.shard {
                None => format!(
                    "ALARM #{} {which} {} failed ({up}/{total} answering) in {}",
                    alarm.id, alarm.cluster, alarm.epoch
                ),
                Some(shard) => format!(
                    "ALARM #{} {which} node {} failed: {shard}'s users {} cannot write",
                    alarm.id,
                    shard.node(alarm.cluster),
                    users_text(&alarm.users)
                ),
            };
            for (shard, point) in &alarm.recovery_point {
                let backup = point
                    .backup_applied
                    .map_or("unknown".into(), |l| l.0.to_string());
                let primary = point
                    .primary_reported
                    .map_or("never".into(), |(l, at)| format!("{} at {at}", l.0));
                let lost = point
                    .surely_unapplied
                    .map_or("unknown".into(), |n| n.to_string());
                let _ = write!(line, "\n{:>12}recovery point {shard}: backup applied lsn {backup}, primary reported lsn {primary}, surely unapplied {lost}, more writes possible until {}", "", point.window_end);
            }
            line
        }
        Event::Alarm(AlarmEvent::Cleared {
            id,
            at: _,
            kind: _,
            resolution,
        }) => match resolution {
            Resolution::Resumed(lost) if lost.is_empty() => {
                format!("ALARM #{id} closed: the old primary resumed, nothing lost")
            }
            Resolution::Resumed(lost) => {
                let total: u64 = lost.values().map(|q| q.count).sum();
                let head = format!("ALARM #{id} closed: the old primary resumed; {total} writes quarantined by nodes that had rejoined in between");
                head + &loss_lines(lost)
            }
            Resolution::BackupRecovered => format!("ALARM #{id} closed: the backup recovered"),
            Resolution::CaughtUp => format!("ALARM #{id} closed: the backup caught up"),
            Resolution::NewEpoch => format!("ALARM #{id} closed: a new epoch began"),
            Resolution::Approved => {
                format!("ALARM #{id} closed: the operator approved, the backup was promoted")
            }
            Resolution::PrimaryBack => {
                format!("ALARM #{id} closed: the old primary answered again and was made primary")
            }
            Resolution::LossReport(report) => {
                let total: u64 = report.values().map(|q| q.count).sum();
                let head =
                    format!("ALARM #{id} closed with the loss report: {total} writes quarantined");
                head + &loss_lines(report)
            }
        },
        Event::EpochPersisted { epoch, shards } => {
            format!(
                "ctl       persisted {epoch} (primary {})",
                primaries_text(shards)
            )
        }
        Event::PublishSent { epoch, users } => {
            format!("ctl       publishing the configs of {epoch} for {users} users")
        }
        Event::CenterPublished {
            replica,
            epoch,
            stored: true,
        } => format!("center/{replica}  stored the configs of {epoch}, pushing to subscribers"),
        Event::CenterPublished {
            replica,
            epoch,
            stored: false,
        } => format!("center/{replica}  refused the configs of {epoch} (older than held)"),
        Event::CenterAck {
            replica,
            user,
            epoch,
        } => format!("center/{replica}  {user} acknowledged {epoch}"),
        Event::UserConfig {
            user,
            epoch,
            node,
            from_rejection,
        } => {
            let how = if *from_rejection {
                "learned from a rejection"
            } else {
                "pushed"
            };
            format!(
                "{:<9} now writes to {node} in {epoch} ({how})",
                format!("user/{}", user.0)
            )
        }
        Event::Invoke { id, node, epoch } => format!(
            "{:<9} write {id} to {node} in {epoch}",
            format!("user/{}", id.user.0)
        ),
        Event::Ok {
            id,
            node,
            lsn,
            epoch,
        } => format!(
            "{:<9} write {id} ok: {node} lsn {} in {epoch}",
            format!("user/{}", id.user.0),
            lsn.0
        ),
        Event::Fail { id, reason } => format!(
            "{:<9} write {id} refused: {reason:?}",
            format!("user/{}", id.user.0)
        ),
        Event::Unknown { id } => format!(
            "{:<9} write {id} outcome unknown (no answer)",
            format!("user/{}", id.user.0)
        ),
    }
}

fn describe_node(event: &NodeEvent) -> String {
    match event {
        NodeEvent::Role { epoch, role } => format!("is now {role:?} in {epoch}"),
        NodeEvent::Accepted(entry) => format!(
            "accepted {} at lsn {} in {}",
            entry.id, entry.lsn.0, entry.epoch
        ),
        NodeEvent::Quarantined(q) if q.count == 0 => {
            format!("joined {} as backup: nothing divergent", q.epoch)
        }
        NodeEvent::Quarantined(q) => {
            let lsns = q
                .lsns
                .map_or(String::new(), |(a, b)| format!(" (lsn {}..{})", a.0, b.0));
            format!(
                "joined {} as backup: QUARANTINED {} divergent writes{lsns}",
                q.epoch, q.count
            )
        }
        NodeEvent::Applied { from, to } => {
            format!("applied lsn {}..{} from its primary", from.0, to.0)
        }
        NodeEvent::Trimmed { through, ids } => {
            format!(
                "discarded {} log entries through lsn {}",
                ids.len(),
                through.0
            )
        }
        NodeEvent::Installed { base } => format!(
            "lacked entries its primary discarded: installed its data as of lsn {}",
            base.0
        ),
    }
}

fn describe_note(note: &Note) -> String {
    match note {
        Note::ClusterDeclared {
            cluster,
            availability,
            nodes: (up, total),
        } => {
            format!("cluster {cluster} declared {availability:?} ({up}/{total} answering)")
        }
        Note::FailoverStarted {
            cluster,
            shard: None,
        } => {
            format!("PRIMARY {cluster} FAILED: stop granting leases, fence it, stop replication")
        }
        Note::FailoverStarted {
            cluster,
            shard: Some(shard),
        } => format!(
            "PRIMARY NODE {} FAILED ({cluster} available): {shard} alone fails over; stop granting it leases, fence it, stop replication",
            shard.node(*cluster)
        ),
        Note::DoubleFailure { shard: None } => {
            "DOUBLE FAILURE: both clusters down, promoting nothing".into()
        }
        Note::DoubleFailure { shard: Some(shard) } => {
            format!("DOUBLE FAILURE: both nodes of {shard} down, promoting nothing")
        }
        Note::Promoted {
            epoch,
            cluster,
            resumed: true,
            ..
        } if *epoch == Epoch(1) => {
            format!("{epoch} decided: {cluster} is primary")
        }
        Note::Promoted {
            epoch,
            cluster,
            resumed: true,
            shard: None,
        } => format!("{epoch} decided: {cluster} RESUMES as primary"),
        Note::Promoted {
            epoch,
            cluster,
            resumed: false,
            shard: None,
        } => format!("{epoch} decided: FAILOVER, {cluster} is promoted"),
        Note::Promoted {
            epoch,
            cluster,
            resumed: true,
            shard: Some(shard),
        } => format!("{epoch} decided: {} RESUMES as {shard}'s primary", shard.node(*cluster)),
        Note::Promoted {
            epoch,
            cluster,
            resumed: false,
            shard: Some(shard),
        } => format!(
            "{epoch} decided: SHARD FAILOVER, {} is {shard}'s primary",
            shard.node(*cluster)
        ),
        Note::StopPoint { shard, lsn } => format!("{shard} stop point: lsn {}", lsn.0),
        Note::BackupRejoining { cluster, shards } if shards.len() <= 3 => {
            let nodes: Vec<String> = shards.iter().map(|s| s.node(*cluster).to_string()).collect();
            format!("cluster {cluster} available: {} rejoin as backups", nodes.join(", "))
        }
        Note::BackupRejoining { cluster, shards } => {
            let n = shards.len();
            format!("cluster {cluster} available: {n} of its nodes rejoin as backups")
        }
        Note::PublishAcked { epoch } => format!("config center confirmed the configs of {epoch}"),
        Note::NodeDeclared {
            node,
            available: false,
        } => format!("{node} stopped answering heartbeats"),
        Note::NodeDeclared {
            node,
            available: true,
        } => format!("{node} answers heartbeats again"),
    }
}

/// One line per shard that lost writes: how many, their LSNs and when they were accepted.
fn loss_lines(report: &BTreeMap<Shard, QuarantineSummary>) -> String {
    let mut lines = String::new();
    for (shard, q) in report.iter().filter(|(_, q)| q.count > 0) {
        let lsns = (q.lsns).map_or(String::new(), |(a, b)| format!(", lsn {}..{}", a.0, b.0));
        let span = (q.span).map_or(String::new(), |(a, b)| format!(", accepted {a}..{b}"));
        let _ = write!(lines, "\n{:>12}{shard}: {} writes{lsns}{span}", "", q.count);
    }
    lines
}

/// `a` when every shard's primary is in `a`; otherwise each cluster with its shards.
fn primaries_text(shards: &BTreeMap<Shard, (Cluster, Epoch)>) -> String {
    let mut by_cluster: BTreeMap<Cluster, Vec<u16>> = BTreeMap::new();
    for (shard, (cluster, _)) in shards {
        by_cluster.entry(*cluster).or_default().push(shard.0);
    }
    if by_cluster.len() == 1 {
        return by_cluster.keys().next().expect("one").to_string();
    }
    let parts = by_cluster.iter().map(|(c, shards)| {
        let shards: Vec<String> = shards.iter().map(|s| s.to_string()).collect();
        format!("{c} for shards {}", shards.join(","))
    });
    parts.collect::<Vec<_>>().join("; ")
}

/// `1, 4, 9`: users by number.
fn users_text(users: &[UserId]) -> String {
    let numbers: Vec<String> = users.iter().map(|u| u.0.to_string()).collect();
    numbers.join(", ")
}
