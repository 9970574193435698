//! What `standby status` shows: a snapshot of the controller's state, taken after every input
//! and tick, served as one JSON line to each connection on the status listener.
//!
//! The listener reads nothing and the snapshot is taken by the controller's own loop, so a
//! slow or hostile status client can never hold the controller up.

use crate::controller::{AlarmKind, Availability, Controller, Durable, Phase};
use crate::types::{Cluster, Shard};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The controller's state, for operators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The newest epoch (each shard's own is in `shards`).
    pub epoch: u64,
    /// The cluster holding every shard's primary (`a` or `b`), or, after a shard failed over
    /// alone, each cluster with how many shards' primaries it holds (`a: 4 shards, b: 1`).
    pub primary: String,
    /// `normal`, `failover` or `double failure`: the most serious of any shard's.
    pub phase: String,
    /// Every shard: its primary node, its epoch, and where its failover story is.
    #[serde(default)]
    pub shards: Vec<ShardStatus>,
    /// Both clusters, `a` first.
    pub clusters: Vec<ClusterStatus>,
    /// Alarms not yet closed, oldest first.
    pub open_alarms: Vec<AlarmStatus>,
    /// When the snapshot was taken (wall clock, ms since the Unix epoch): a stale one means
    /// the controller's loop is stuck.
    pub updated_unix_ms: u64,
    /// With the control plane on etcd: the replicas, and which one leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<ControlPlaneStatus>,
}

/// The control plane, as one replica sees it in etcd.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlPlaneStatus {
    /// The replica that answered.
    pub replica: String,
    /// Whether it leads. A replica standing by shows the durable state in etcd, and no
    /// cluster health: only the leader heartbeats the nodes.
    pub leading: bool,
    /// The leader, as etcd's election names it; `None` while no replica leads.
    pub leader: Option<String>,
    /// Every replica running, by name.
    pub replicas: Vec<ReplicaStatus>,
    /// The users' configs in etcd, once the first leader published them.
    #[serde(default)]
    pub configs: Option<ConfigsStatus>,
    /// Why etcd could not be read at the last try (the rest of this is then as of
    /// `etcd_read_unix_ms`).
    pub etcd_error: Option<String>,
    /// When etcd was last read successfully (wall clock, ms since the Unix epoch).
    pub etcd_read_unix_ms: Option<u64>,
}

/// The users' configs in etcd (what every replica's config center serves).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigsStatus {
    /// Their epoch.
    pub epoch: u64,
    /// How many users have one.
    pub users: usize,
    /// How many of them acknowledged this epoch (or a newer one) at some replica's center.
    pub acknowledged: usize,
}

/// One replica, as it says in etcd.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Its name.
    pub name: String,
    /// `leading` or `standing by`.
    pub state: String,
    /// Its status listener.
    pub status: String,
}

/// One shard, as the controller's durable state has it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// The shard.
    pub shard: u16,
    /// Its primary node (`a/0`).
    pub primary: String,
    /// That node's cluster (`a`).
    #[serde(default)]
    pub cluster: String,
    /// The epoch that node was promoted in.
    pub epoch: u64,
    /// `normal`, `failover` (its primary was declared failed, `failover (node)` when the node
    /// alone) or `double failure` (its backup side failed too).
    pub phase: String,
    /// Whether its backup node is let replicate (false after a failover, until the old
    /// primary's cluster recovered).
    pub backup_joined: bool,
}

/// One cluster, as the controller sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// `a` or `b`.
    pub cluster: String,
    /// `primary`, `backup`, or `backup (not rejoined)` after a failover.
    pub role: String,
    /// The declared (debounced) availability: `available` or `failed`.
    pub availability: String,
    /// Nodes that answered heartbeats in time at the last evaluation.
    pub answering: usize,
    /// Nodes in the cluster.
    pub total: usize,
    /// The longest round trip of its nodes' latest heartbeats, in ms.
    #[serde(default)]
    pub round_trip_ms: Option<u64>,
    /// The longest lease last granted to one of its nodes, in ms: sized to the round trip
    /// (`lease_duration_ms` up to `lease_max_ms`). None while it is granted none.
    #[serde(default)]
    pub lease_ms: Option<u64>,
    /// The longest lease the controller grants, at a round trip of the heartbeat timeout.
    #[serde(default)]
    pub lease_max_ms: u64,
}

/// An open alarm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlarmStatus {
    /// The alarm's id.
    pub id: u64,
    /// `primary failed` (the first alarm), `backup failed` (the second), `backup lagging` or
    /// `promotion held`.
    pub kind: String,
    /// The cluster that failed.
    pub cluster: String,
    /// For an alarm about one shard's node: the shard.
    #[serde(default)]
    pub shard: Option<u16>,
    /// For an alarm about one shard's node: that shard's users.
    #[serde(default)]
    pub users: Vec<u32>,
    /// When it was raised, on the controller's clock (time since that controller started).
    pub raised_at: String,
    /// When it was raised (wall clock, ms since the Unix epoch), if this controller process
    /// raised it; an alarm restored from the state file has only `raised_at`, on the clock of
    /// an earlier process.
    pub raised_unix_ms: Option<u64>,
    /// The first alarm's recovery point, per shard (empty for the second alarm).
    #[serde(default)]
    pub recovery_point: Vec<ShardRecovery>,
    /// First alarm: the newest epoch its cluster was made primary again in for any shard the
    /// alarm covers, if it was (the alarm then waits for each such node to report what it
    /// quarantined meanwhile).
    #[serde(default)]
    pub resumed_in: Option<u64>,
    /// First alarm: the shards whose loss is known so far, and how many writes each lost.
    #[serde(default)]
    pub losses: Vec<(u16, u64)>,
    /// Lag alarm: the shard, the entries its backup lacked and the age of the oldest (ms),
    /// when it was raised.
    #[serde(default)]
    pub lag: Option<(u16, u64, u64)>,
}

/// What one shard's backup had when replication stopped, against what its failed primary last
/// reported (claim 2's recovery point).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardRecovery {
    /// The shard.
    pub shard: u16,
    /// The backup's applied LSN, frozen by the stop; unknown if it did not answer the stop.
    pub backup_applied: Option<u64>,
    /// The failed primary's last reported LSN, if it ever reported.
    pub primary_reported: Option<u64>,
    /// Writes the primary surely had and the backup surely lacks (a lower bound: the primary
    /// may have taken more after its last report, until its lease ended).
    pub surely_unapplied: Option<u64>,
}

/// The latest snapshot, shared by the controller's observer and the status listener.
pub type Snapshot = Arc<Mutex<Option<Status>>>;

impl Status {
    /// The snapshot of `controller`; `raised` holds the wall-clock time of the alarms this
    /// process raised.
    pub fn of(controller: &Controller, raised: &BTreeMap<u64, SystemTime>) -> Status {
        let durable = controller.durable();
        let clusters = Cluster::BOTH
            .into_iter()
            .map(|cluster| cluster_status(controller, cluster))
            .collect();
        let open_alarms = open_alarms(durable, raised);
        let failovers = controller.failovers();
        let phase_of = |shard: Shard| {
            let failover = failovers.iter().find(|f| f.shards.contains(&shard));
            failover.map(|f| match f.double {
                true => Phase::DoubleFailure,
                false => Phase::Failover,
            })
        };
        Status {
            epoch: durable.epoch.0,
            primary: primary_text(durable),
            phase: phase_text(controller.phase()).to_string(),
            shards: shard_status(durable, phase_of),
            clusters,
            open_alarms,
            updated_unix_ms: unix_ms(SystemTime::now()),
            control_plane: None,
        }
    }

    /// What a replica standing by shows: the durable state in etcd (no cluster observed).
    pub fn of_durable(durable: &crate::controller::Durable) -> Status {
        // The leader's phase is not durable; what is: a failover under way, and the second
        // alarm it raises when it finds the backup failed too (its double failure).
        let phase_of = |shard: Shard| {
            let state = durable.shard(shard)?;
            state.failing_over?;
            let backup_failed = (durable.open_alarms.values()).any(|alarm| {
                alarm.kind == AlarmKind::BackupFailed
                    && alarm.cluster == state.primary.other()
                    && alarm.shard.is_none_or(|s| s == shard)
            });
            Some(match backup_failed {
                true => Phase::DoubleFailure,
                false => Phase::Failover,
            })
        };
        let shards = shard_status(durable, phase_of);
        let worst = (shards.iter().map(|s| s.phase.as_str()))
            .find(|p| *p == "double failure")
            .or_else(|| {
                shards
                    .iter()
                    .map(|s| s.phase.as_str())
                    .find(|p| *p != "normal")
            });
        let phase = match worst {
            Some("double failure") => "double failure",
            Some(_) => "failover",
            None => "normal",
        };
        Status {
            epoch: durable.epoch.0,
            primary: primary_text(durable),
            phase: phase.to_string(),
            shards,
            clusters: Vec::new(),
            open_alarms: open_alarms(durable, &BTreeMap::new()),
            updated_unix_ms: unix_ms(SystemTime::now()),
            control_plane: None,
        }
    }
}

/// The open alarms of `durable`; `raised` holds the wall-clock time of those this process
/// raised.
fn open_alarms(
    durable: &crate::controller::Durable,
    raised: &BTreeMap<u64, SystemTime>,
) -> Vec<AlarmStatus> {
    (durable.open_alarms.values())
        .map(|alarm| AlarmStatus {
            id: alarm.id,
            kind: kind_text(alarm.kind).to_string(),
            cluster: alarm.cluster.to_string(),
            raised_at: alarm.raised_at.to_string(),
            raised_unix_ms: raised.get(&alarm.id).map(|t| unix_ms(*t)),
            recovery_point: (alarm.recovery_point.iter())
                .map(|(shard, point)| ShardRecovery {
                    shard: shard.0,
                    backup_applied: point.backup_applied.map(|l| l.0),
                    primary_reported: point.primary_reported.map(|(l, _)| l.0),
                    surely_unapplied: point.surely_unapplied,
                })
                .collect(),
            resumed_in: alarm.resumed_in.values().map(|e| e.0).max(),
            shard: alarm.shard.map(|s| s.0),
            users: alarm.users.iter().map(|u| u.0).collect(),
            losses: (alarm.losses.iter()).map(|(s, q)| (s.0, q.count)).collect(),
            lag: (alarm.lag).map(|l| (l.shard.0, l.entries, l.behind_ms)),
        })
        .collect()
}

/// The cluster holding every shard's primary, or how many each holds.
fn primary_text(durable: &Durable) -> String {
    if let Some(cluster) = durable.sole_primary() {
        return cluster.to_string();
    }
    let count = durable.primaries().into_iter();
    let parts: Vec<String> = count
        .map(|(c, n)| format!("{c}: {n} {}", shards_word(n)))
        .collect();
    parts.join(", ")
}

/// Every shard's status; `phase_of` says which are failing over.
fn shard_status(durable: &Durable, phase_of: impl Fn(Shard) -> Option<Phase>) -> Vec<ShardStatus> {
    (durable.shards.iter())
        .map(|(&shard, state)| {
            let phase = match (phase_of(shard), state.failing_over) {
                (Some(Phase::Failover), Some(crate::controller::Scope::Node)) => "failover (node)",
                (Some(phase), _) => phase_text(phase),
                (None, _) => "normal",
            };
            ShardStatus {
                shard: shard.0,
                primary: shard.node(state.primary).to_string(),
                cluster: state.primary.to_string(),
                epoch: state.epoch.0,
                phase: phase.to_string(),
                backup_joined: state.backup_joined,
            }
        })
        .collect()
}

fn shards_word(n: usize) -> &'static str {
    if n == 1 {
        "shard"
    } else {
        "shards"
    }
}

/// `primary`, `backup`, `backup (not rejoined)`, or, when the cluster holds the primaries of
/// some shards only, `primary of N shards, backup of M`.
fn role_text(durable: &Durable, cluster: Cluster) -> String {
    let shards = durable.shards.values();
    let primary = shards.clone().filter(|s| s.primary == cluster).count();
    let backup = shards.clone().filter(|s| s.primary != cluster);
    let unjoined = backup.clone().any(|s| !s.backup_joined);
    let backup = backup.count();
    match (primary, backup, unjoined) {
        (_, 0, _) => "primary".to_string(),
        (0, _, false) => "backup".to_string(),
        (0, _, true) => "backup (not rejoined)".to_string(),
        (p, b, false) => format!("primary of {p} {}, backup of {b}", shards_word(p)),
        (p, b, true) => format!(
            "primary of {p} {}, backup of {b} (not all rejoined)",
            shards_word(p)
        ),
    }
}

fn cluster_status(controller: &Controller, cluster: Cluster) -> ClusterStatus {
    let durable = controller.durable();
    let health = controller.health(cluster);
    let role = role_text(durable, cluster);
    let availability = match health.declared {
        Availability::Available => "available",
        Availability::Failed => "failed",
    };
    let views = || (controller.topology().nodes(cluster)).filter_map(|n| controller.node(n));
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let primary = (durable.shards.values()).any(|s| s.primary == cluster);
    ClusterStatus {
        cluster: cluster.to_string(),
        role,
        availability: availability.to_string(),
        answering: health.last.0,
        total: health.last.1,
        round_trip_ms: views().filter_map(|v| v.round_trip).map(ms).max(),
        lease_ms: (views().filter_map(|v| v.lease_granted).map(ms).max()).filter(|_| primary),
        lease_max_ms: ms(controller.params().lease_duration_max()),
    }
}

fn phase_text(phase: Phase) -> &'static str {
    match phase {
        Phase::Normal => "normal",
        Phase::Failover => "failover",
        Phase::DoubleFailure => "double failure",
    }
}

fn kind_text(kind: AlarmKind) -> &'static str {
    match kind {
        AlarmKind::PrimaryFailed => "primary failed",
        AlarmKind::BackupFailed => "backup failed",
        AlarmKind::Lag => "backup lagging",
        AlarmKind::PromotionHeld => "promotion held",
    }
}

/// Milliseconds since the Unix epoch (0 for a clock set before it).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "epoch {}, primary {}, phase: {}",
            self.epoch, self.primary, self.phase
        )?;
        if let Some(plane) = &self.control_plane {
            write!(f, "{plane}")?;
        }
        self.fmt_shards(f)?;
        for c in &self.clusters {
            let (answering, total) = (c.answering, c.total);
            write!(
                f,
                "{}: {} ({answering}/{total} answering), {}",
                c.cluster, c.availability, c.role
            )?;
            if let Some(round_trip) = c.round_trip_ms {
                write!(f, "; round trips up to {round_trip} ms")?;
            }
            if let Some(lease) = c.lease_ms {
                write!(f, ", leases {lease} ms (at most {} ms)", c.lease_max_ms)?;
            }
            writeln!(f)?;
        }
        if self.open_alarms.is_empty() {
            return writeln!(f, "open alarms: none");
        }
        writeln!(f, "open alarms:")?;
        self.fmt_alarms(f)
    }
}

impl Status {
    /// One line per shard that is not served by the cluster most shards are, or is failing
    /// over: where the others are is said by the first line.
    fn fmt_shards(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &self.shards {
            *count.entry(&s.cluster).or_default() += 1;
        }
        let most = count.iter().max_by_key(|(_, n)| **n).map(|(c, _)| *c);
        for s in &self.shards {
            if Some(s.cluster.as_str()) != most || s.phase != "normal" {
                let joined = match s.backup_joined {
                    true => "",
                    false => ", its backup not rejoined",
                };
                writeln!(
                    f,
                    "shard {}: primary {} in e{}, {}{joined}",
                    s.shard, s.primary, s.epoch, s.phase
                )?;
            }
        }
        Ok(())
    }

    fn fmt_alarms(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for alarm in &self.open_alarms {
            write!(f, "  #{} {} on ", alarm.id, alarm.kind)?;
            match alarm.shard {
                Some(shard) => write!(f, "{}/{shard} (shard {shard}", alarm.cluster)?,
                None => write!(f, "{}", alarm.cluster)?,
            }
            if alarm.shard.is_some() {
                let users: Vec<String> = alarm.users.iter().map(|u| u.to_string()).collect();
                write!(f, ", users {})", users.join(", "))?;
            }
            write!(f, ", raised ")?;
            match alarm.raised_unix_ms {
                Some(ms) => writeln!(f, "{} ago", ago(ms, self.updated_unix_ms))?,
                None => writeln!(f, "before the controller's last restart")?,
            }
            for shard in &alarm.recovery_point {
                writeln!(f, "    {shard}")?;
            }
            if let Some((shard, entries, behind_ms)) = alarm.lag {
                writeln!(f, "    shard {shard}: the backup lacked {entries} entries, the oldest first seen on the primary {behind_ms} ms before")?;
            }
            if alarm.kind == kind_text(AlarmKind::PromotionHeld) {
                writeln!(f, "    the backup is not promoted until an operator runs `standby promote` (or the old primary answers again first)")?;
            }
            if let Some(epoch) = alarm.resumed_in {
                writeln!(f, "    {} was made primary again (last in e{epoch}): waiting for each of its nodes to say what it quarantined before", alarm.cluster)?;
            }
            if !alarm.losses.is_empty() {
                let known = (alarm.losses.iter()).map(|(s, n)| format!("shard {s}: {n}"));
                let known: Vec<String> = known.collect();
                writeln!(
                    f,
                    "    loss known so far (writes quarantined): {}",
                    known.join(", ")
                )?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for ControlPlaneStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.leading {
            true => "leading",
            false => "standing by",
        };
        let leader = self
            .leader
            .as_deref()
            .unwrap_or("none (an election is under way)");
        writeln!(f, "replica {} ({role}); leader: {leader}", self.replica)?;
        for replica in &self.replicas {
            let (name, state, status) = (&replica.name, &replica.state, &replica.status);
            writeln!(f, "  {name:<16} {state:<12} status {status}")?;
        }
        if let Some(configs) = &self.configs {
            let ConfigsStatus {
                epoch,
                users,
                acknowledged,
            } = configs;
            writeln!(
                f,
                "configs in etcd: epoch {epoch}, acknowledged by {acknowledged} of {users} users"
            )?;
        }
        if let Some(error) = &self.etcd_error {
            let read = match self.etcd_read_unix_ms {
                Some(ms) => format!("{} ago", ago(ms, unix_ms(SystemTime::now()))),
                None => "never".to_string(),
            };
            writeln!(f, "etcd UNREACHABLE: {error} (last read: {read})")?;
            writeln!(
                f,
                "  this replica cannot lead; while no replica reaches etcd, none leads, and the \
                 primary refuses writes once its leases run out, until etcd answers (no failsafe)"
            )?;
        }
        if !self.leading {
            writeln!(
                f,
                "(standing by: the state as in etcd; the leader alone sees the clusters)"
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for ShardRecovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lsn = |l: Option<u64>| l.map_or("unknown".to_string(), |l| format!("lsn {l}"));
        write!(
            f,
            "shard {}: backup had {}, primary last reported {}: ",
            self.shard,
            lsn(self.backup_applied),
            lsn(self.primary_reported)
        )?;
        match self.surely_unapplied {
            Some(0) => write!(f, "no write known to be missing from the backup"),
            Some(n) => write!(f, "at least {n} write(s) missing from the backup"),
            None => write!(f, "how many writes the backup misses is unknown"),
        }
    }
}

/// `then` as seen from `now` (both ms since the Unix epoch), e.g. `1h 2m 3s`.
fn ago(then: u64, now: u64) -> String {
    let s = now.saturating_sub(then) / 1000;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, s) => format!("{h}h {m}m {s}s"),
    }
}

/// What a replica standing by serves: the control plane as it read it from etcd, with the
/// durable state there.
pub type PlaneSnapshot = Arc<Mutex<Option<(ControlPlaneStatus, Option<Status>)>>>;

/// Answers every connection on `listener` with the snapshot as one JSON line, then closes
/// it. Runs until dropped. With `plane` (a controller replica), the answer carries the control
/// plane, and a replica not leading answers with the durable state in etcd.
pub async fn serve(listener: TcpListener, snapshot: Snapshot, plane: Option<PlaneSnapshot>) {
    let mut tasks = crate::service::Tasks::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => tasks.spawn(answer(stream, snapshot.clone(), plane.clone())),
            // Out of file descriptors, say: back off rather than spin.
            Err(e) => {
                tracing::warn!(%e, "status listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The status to serve: the controller's, or with a control plane, the controller's while
/// this replica leads and etcd's durable state otherwise; or why there is none yet.
fn current(snapshot: &Snapshot, plane: Option<&PlaneSnapshot>) -> Result<Status, String> {
    let starting = || "the controller is starting".to_string();
    let controller = snapshot.lock().expect("status lock").clone();
    let Some(plane) = plane else {
        return controller.ok_or_else(starting);
    };
    let Some((mut plane, durable)) = plane.lock().expect("status lock").clone() else {
        return controller.ok_or_else(starting);
    };
    plane.leading = controller.is_some();
    let Some(mut status) = controller.or(durable) else {
        return Err(match &plane.etcd_error {
            Some(error) => format!("replica {} cannot read etcd: {error}", plane.replica),
            None => format!("replica {}: no controller state in etcd yet", plane.replica),
        });
    };
    status.control_plane = Some(plane);
    Ok(status)
}

async fn answer(mut stream: TcpStream, snapshot: Snapshot, plane: Option<PlaneSnapshot>) {
    let line = match current(&snapshot, plane.as_ref()) {
        Ok(status) => serde_json::to_string(&status).expect("a status serialises"),
        Err(error) => serde_json::json!({ "error": error }).to_string(),
    };
    let write = async {
        stream.write_all(line.as_bytes()).await?;
        stream.write_all(b"\n").await?;
        stream.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(Duration::from_secs(5), write).await {
        tracing::debug!(%e, "status client too slow");
    }
}

/// Why `standby status` got no status.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No connection, or no answer in time.
    #[error("cannot reach the controller's status listener at {address}: {reason}")]
    Unreachable {
        /// The address asked.
        address: String,
        /// Why.
        reason: String,
    },
    /// An answer that is not a status.
    #[error("the controller at {address} answered: {answer}")]
    Unexpected {
        /// The address asked.
        address: String,
        /// The answer (or its error field).
        answer: String,
    },
}

/// Asks the status listener at `address`: the raw JSON line and the status it holds.
pub async fn query(address: &str, within: Duration) -> Result<(String, Status), QueryError> {
    let unreachable = |reason: String| QueryError::Unreachable {
        address: address.to_string(),
        reason,
    };
    let read = async {
        let mut stream = TcpStream::connect(address).await?;
        let mut line = String::new();
        // One line, and never more than a status could be (a wrong port could stream forever).
        (&mut stream)
            .take(1 << 20)
            .read_to_string(&mut line)
            .await?;
        Ok::<_, std::io::Error>(line)
    };
    let line = match tokio::time::timeout(within, read).await {
        Ok(Ok(line)) => line.trim().to_string(),
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable(format!("no answer within {within:?}"))),
    };
    match serde_json::from_str::<Status>(&line) {
        Ok(status) => Ok((line, status)),
        Err(_) => Err(QueryError::Unexpected {
            address: address.to_string(),
            answer: error_field(&line).unwrap_or(line),
        }),
    }
}

fn error_field(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(value.get("error")?.as_str()?.to_string())
}
