//! A node that is a Redis 7 server, driven by the controller directly over RESP: no agent
//! process beside the server. One heartbeat is a few Redis calls that apply the command and
//! the lease grant with the rules of [`crate::node::Node`], then read the server's state into
//! a [`NodeReport`].
//!
//! The fence itself lives in the server, in the `standby` Function library
//! (`src/real/standby.lua`): it refuses writes unless the node is primary of the write's epoch
//! and the server's own clock is before the lease deadline. So when the controller dies, the
//! lease lapses by itself and the node refuses writes with no standby process alive.
//!
//! The library keeps epoch and role in a Lua upvalue, lost on a Redis restart, a full sync or
//! a library reload (the node is then fenced: fail-safe). What the node rules keep on "disk"
//! (epoch, role, the stop point, the last quarantine, whom it follows) is kept here in a small
//! state file per node, and installed again whenever the server has forgotten it.

use crate::control_plane::store::Guarded;
use crate::control_plane::LeadError;
use crate::protocol::{Command, Heartbeat, LeaseGrant, NodeReport, QuarantineSummary, Role, Trim};
use crate::real::store::write_file_atomically;
use crate::service::controller::{NoReport, NodeLink};
use crate::types::{Epoch, Lsn, NodeId};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// The library's source, loaded on every master that lacks it or has another version.
pub const LIBRARY: &str = include_str!("standby.lua");

/// Report send times kept per node to anchor grants (as [`crate::node::Volatile`]).
const ANCHORS: usize = 16;

/// What the node rules keep across restarts, for one Redis server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// The newest epoch the node has taken.
    pub epoch: Epoch,
    /// Its role in that epoch.
    pub role: Role,
    /// As primary: its LSN when promoted in `epoch`.
    pub epoch_start_lsn: Lsn,
    /// As backup: the Redis address it replicates from (set again after a restart).
    pub following: Option<String>,
    /// What the moves to quarantine that took writes took, oldest first (see
    /// [`QuarantineSummary::record`]).
    #[serde(default)]
    pub quarantines: Vec<QuarantineSummary>,
}

impl Default for NodeState {
    fn default() -> NodeState {
        NodeState {
            epoch: Epoch(0),
            role: Role::Idle,
            epoch_start_lsn: Lsn(0),
            following: None,
            quarantines: Vec::new(),
        }
    }
}

/// Why a heartbeat got no report (logged; to the controller it is an unanswered heartbeat).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Redis refused, failed or timed out.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A state or quarantine file could not be written or read.
    #[error("file {file}: {source}")]
    File {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// An answer that does not fit the library.
    #[error("unexpected answer: {0}")]
    Answer(String),
    /// No report within the heartbeat's timeout.
    #[error("no report within {0:?}")]
    Timeout(Duration),
    /// The node's state in etcd could not be read or written (or this replica was deposed).
    #[error("node state in etcd: {0}")]
    Etcd(#[from] LeadError),
}

impl LinkError {
    /// The server's address refused the connection: no process listens there.
    pub fn is_refusal(&self) -> bool {
        matches!(self, LinkError::Redis(e) if e.is_connection_refusal())
    }

    /// The server closed the connection (or reset it).
    fn is_closed(&self) -> bool {
        matches!(self, LinkError::Redis(e) if e.is_connection_dropped())
    }

    /// The kind of failure, coarse enough that a node failing the same way every heartbeat
    /// is logged once: `refused`, `timeout`, Redis's error code (`WRONGPASS`, `NOPERM`, ...).
    fn kind(&self) -> String {
        match self {
            LinkError::Redis(e) if e.is_connection_refusal() => "refused".into(),
            LinkError::Redis(e) => e
                .code()
                .map_or_else(|| format!("{:?}", e.kind()), str::to_string),
            LinkError::File { file, .. } => format!("file {file}"),
            LinkError::Answer(_) => "answer".into(),
            LinkError::Timeout(_) => "timeout".into(),
            LinkError::Etcd(_) => "etcd".into(),
        }
    }
}

/// How to reach and log in to one Redis server, and where its files go.
#[derive(Clone, Debug)]
pub struct RedisNodeOptions {
    /// Which node it is.
    pub node: NodeId,
    /// `host:port` of the server.
    pub address: String,
    /// The agent ACL user.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Where the node's state lives.
    pub disk: NodeDisk,
    /// The directory of quarantine files.
    pub quarantine_dir: PathBuf,
}

/// Where what a node keeps across restarts lives: a file beside a single controller's state
/// file, or etcd, where whichever controller replica takes the lead finds it.
#[derive(Clone)]
pub enum NodeDisk {
    /// A JSON file.
    File(PathBuf),
    /// A key in etcd, written only while this replica leads.
    Etcd {
        /// The term this replica leads in.
        term: Arc<CurrentTerm>,
        /// The node's key.
        key: String,
    },
}

/// The term a controller replica leads in now, for the nodes' state in etcd. It is set at
/// the start of each term, and a link reads its node's state again when the term changed:
/// another replica may have led, and changed it, in between.
#[derive(Default)]
pub struct CurrentTerm(std::sync::Mutex<(u64, Option<Guarded>)>);

impl CurrentTerm {
    /// A new term begins, its writes guarded by `guarded`.
    pub fn begin(&self, guarded: Guarded) {
        let mut term = self.0.lock().expect("term lock");
        *term = (term.0 + 1, Some(guarded));
    }

    fn now(&self) -> (u64, Option<Guarded>) {
        self.0.lock().expect("term lock").clone()
    }
}

impl std::fmt::Debug for NodeDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeDisk::File(file) => write!(f, "file {}", file.display()),
            NodeDisk::Etcd { key, .. } => write!(f, "etcd key {key}"),
        }
    }
}

impl NodeDisk {
    /// The term the disk's contents belong to (always 0 for a file, which one process owns).
    fn term(&self) -> u64 {
        match self {
            NodeDisk::File(_) => 0,
            NodeDisk::Etcd { term, .. } => term.now().0,
        }
    }

    fn guarded(term: &CurrentTerm) -> Result<Guarded, LinkError> {
        let not_leading = || LeadError::Unreachable("this replica does not lead".into());
        term.now().1.ok_or_else(|| not_leading().into())
    }

    /// The node's state, or a fresh one when none was ever saved (a corrupt one is an
    /// error: its epoch must not be forgotten).
    async fn load(&self) -> Result<NodeState, LinkError> {
        match self {
            NodeDisk::File(file) => read_state(file).map_err(|e| self.error(e)),
            NodeDisk::Etcd { term, key } => match Self::guarded(term)?.get(key.clone()).await? {
                Some(bytes) => {
                    serde_json::from_slice(&bytes).map_err(|e| self.error(std::io::Error::other(e)))
                }
                None => Ok(NodeState::default()),
            },
        }
    }

    /// Saves `state` before the node reports it.
    async fn save(&self, state: &NodeState) -> Result<(), LinkError> {
        let mut json = serde_json::to_vec_pretty(state).expect("a node state serialises");
        json.push(b'\n');
        match self {
            NodeDisk::File(file) => write_file_atomically(file, &json).map_err(|e| self.error(e)),
            NodeDisk::Etcd { term, key } => Ok(Self::guarded(term)?.put(key.clone(), json).await?),
        }
    }

    fn error(&self, source: std::io::Error) -> LinkError {
        LinkError::File {
            file: format!("{self:?}"),
            source,
        }
    }
}

/// The server's state as `standby_status` reads it.
#[derive(Debug)]
struct Status {
    epoch: u64,
    lsn: u64,
    /// The last position discarded from the log.
    trimmed: u64,
    /// The server's clock, in unix ms.
    now_ms: u64,
}

/// One entry of `standby:log`, as exported to a quarantine file.
#[derive(Debug, Serialize)]
struct LogEntry {
    lsn: u64,
    epoch: u64,
    op: String,
    key: String,
    value: String,
}

struct Inner {
    connection: Option<MultiplexedConnection>,
    /// Read from the disk before the first heartbeat (at once, for a file), and again when
    /// a new term begins.
    state: Option<NodeState>,
    /// The term `state` was read in.
    read_in: u64,
    /// Round -> the server's clock when that round's report was read: the lease anchors.
    anchors: BTreeMap<u64, u64>,
    /// Whether the last trim of the write log failed (said once, not every round).
    trim_failing: bool,
}

/// A [`NodeLink`] to one Redis server.
pub struct RedisNode {
    options: RedisNodeOptions,
    client: Client,
    inner: Mutex<Inner>,
    /// The kind of the last heartbeat's failure, if it failed: a change is logged (a wrong
    /// password or a missing ACL rule must not hide at debug level), a repeat is not.
    trouble: std::sync::Mutex<Option<String>>,
}

impl RedisNode {
    /// A link to the server in `options`. A state file is read at once (a missing file is a
    /// fresh node; a corrupt one is an error: its epoch must not be forgotten); a state in
    /// etcd, before the first heartbeat.
    pub fn open(options: RedisNodeOptions) -> Result<RedisNode, LinkError> {
        let file_error = |file: &Path, source| LinkError::File {
            file: file.display().to_string(),
            source,
        };
        let state = match &options.disk {
            NodeDisk::File(file) => Some(read_state(file).map_err(|e| file_error(file, e))?),
            NodeDisk::Etcd { .. } => None,
        };
        std::fs::create_dir_all(&options.quarantine_dir)
            .map_err(|e| file_error(&options.quarantine_dir, e))?;
        let (host, port) = split_address(&options.address)?;
        let info = ConnectionInfo {
            addr: ConnectionAddr::Tcp(host, port),
            redis: RedisConnectionInfo {
                username: Some(options.user.clone()),
                password: Some(options.password.clone()),
                ..RedisConnectionInfo::default()
            },
        };
        Ok(RedisNode {
            client: Client::open(info)?,
            options,
            inner: Mutex::new(Inner {
                connection: None,
                state,
                read_in: 0,
                anchors: BTreeMap::new(),
                trim_failing: false,
            }),
            trouble: std::sync::Mutex::new(None),
        })
    }

    /// Logs a change in how the heartbeats fare: the first failure of a new kind (warning),
    /// or the first answer after failures.
    fn note_trouble(&self, error: Option<&LinkError>) {
        let kind = error.map(LinkError::kind);
        let mut last = self.trouble.lock().expect("trouble lock");
        if *last == kind {
            return;
        }
        let (node, address) = (self.options.node, &self.options.address);
        match error {
            Some(LinkError::Redis(e)) if e.kind() == redis::ErrorKind::AuthenticationFailed => {
                tracing::warn!(%node, %address, error = %e, "no report: the agent user cannot log in (does the server load the ACL file of `standby redis-setup`?)")
            }
            Some(e) => {
                tracing::warn!(%node, %address, error = %e, "no report (logged again only when the error changes)")
            }
            None => tracing::info!(%node, %address, "the node answers again"),
        }
        *last = kind;
    }

    /// The node's current state (as on its disk), once read.
    pub async fn state(&self) -> NodeState {
        self.inner.lock().await.state.clone().unwrap_or_default()
    }

    /// One heartbeat, within `timeout` (waiting for an earlier one included). A failed call
    /// drops the connection; the next heartbeat opens a new one. When the server closed the
    /// connection, a new one is tried at once (a heartbeat is safe to apply twice): a killed
    /// server's kernel closes it within milliseconds, and the new connection's refusal is
    /// then this heartbeat's answer rather than the next one's.
    pub async fn beat(
        &self,
        heartbeat: Heartbeat,
        timeout: Duration,
    ) -> Result<NodeReport, LinkError> {
        let work = async {
            let mut inner = self.inner.lock().await;
            let reused = inner.connection.is_some();
            let mut result = self.beat_locked(&mut inner, &heartbeat, timeout).await;
            if reused && result.as_ref().is_err_and(LinkError::is_closed) {
                inner.connection = None;
                result = self.beat_locked(&mut inner, &heartbeat, timeout).await;
            }
            if result.is_err() {
                inner.connection = None;
            }
            result
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(LinkError::Timeout(timeout)))
    }

    /// As [`crate::node::Node::on_heartbeat`]: the command, then the grant, then the report,
    /// whose read of the server's clock anchors later grants.
    async fn beat_locked(
        &self,
        inner: &mut Inner,
        heartbeat: &Heartbeat,
        timeout: Duration,
    ) -> Result<NodeReport, LinkError> {
        let mut con = match &inner.connection {
            Some(con) => con.clone(),
            None => {
                let con = self.connect(timeout).await?;
                inner.connection = Some(con.clone());
                con
            }
        };
        let term = self.options.disk.term();
        if inner.state.is_none() || inner.read_in != term {
            inner.state = Some(self.options.disk.load().await?);
            inner.read_in = term;
        }
        let state = inner.state.as_mut().expect("just read");
        let status = status(&mut con).await?;
        if status.epoch < state.epoch.0 {
            // The server forgot (restart, full sync, library reload): install the node's
            // epoch and role again, with no lease until the next grant. Its anchors are of
            // the forgotten lease too.
            self.reinstall(&mut con, state).await?;
            inner.anchors.clear();
        }
        if let Some(command) = &heartbeat.command {
            self.apply_command(&mut con, state, command).await?;
        }
        if let Some(grant) = heartbeat.grant {
            grant_lease(&mut con, inner, grant).await?;
        }
        if let Some(leave) = heartbeat.trim {
            let state = inner.state.as_ref().expect("read above");
            // A backup discards by replication; only the primary is told.
            if state.role == Role::Primary && state.epoch == leave.epoch {
                // Housekeeping: a failed trim must not fail the heartbeat (the node would
                // look down). Only a server whose ACL file predates the trim refuses it.
                let failed = trim(&mut con, leave).await.err();
                if let (Some(e), false) = (&failed, inner.trim_failing) {
                    tracing::warn!(node = %self.options.node, error = %e, "cannot trim the write log: write the ACL file again with `standby redis-setup` (it needs xtrim)");
                }
                inner.trim_failing = failed.is_some();
            }
        }
        let status = self::status(&mut con).await?;
        inner
            .anchors
            .entry(heartbeat.round)
            .or_insert(status.now_ms);
        while inner.anchors.len() > ANCHORS {
            inner.anchors.pop_first();
        }
        let state = inner.state.as_ref().expect("read above");
        Ok(report(state, heartbeat.round, &status))
    }

    /// Connects as the agent and makes sure the server runs this build's library.
    async fn connect(&self, timeout: Duration) -> Result<MultiplexedConnection, LinkError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let mut con = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        ensure_library(&mut con, &self.options.address).await?;
        Ok(con)
    }

    /// Puts the server back in the role `state` says, with no lease.
    async fn reinstall(
        &self,
        con: &mut MultiplexedConnection,
        state: &NodeState,
    ) -> Result<(), LinkError> {
        tracing::info!(node = %self.options.node, epoch = %state.epoch, role = ?state.role, "redis forgot its role: installing it again");
        let epoch = state.epoch.0;
        match state.role {
            Role::Idle => {}
            Role::Primary => grant(con, epoch, "primary", 0).await?,
            Role::Backup => {
                grant(con, epoch, "backup", 0).await?;
                if let Some(address) = &state.following {
                    replicaof(con, Some(address)).await?;
                }
            }
            Role::Stopped => grant(con, epoch, "backup", 0).await?,
            Role::Fenced => fence(con, epoch).await?,
        }
        Ok(())
    }

    /// Mirrors [`crate::node::Node::apply_command`]: which command applies at which epoch and
    /// role is the same; each step is ordered so that a heartbeat cut off half way (timeout,
    /// crash) leaves a state the next heartbeat completes by applying the command again.
    async fn apply_command(
        &self,
        con: &mut MultiplexedConnection,
        state: &mut NodeState,
        command: &Command,
    ) -> Result<(), LinkError> {
        let (epoch, role) = (state.epoch, state.role);
        let newer = command.epoch() > epoch;
        let same = command.epoch() == epoch;
        match command {
            Command::Promote { epoch: e, .. } if newer => self.promote(con, state, *e).await,
            Command::Follow {
                epoch: e,
                primary,
                truncate_after,
            } if newer || (same && role != Role::Backup && role != Role::Primary) => {
                self.follow(con, state, *e, &primary.address, *truncate_after)
                    .await
            }
            Command::Stop { epoch: e } if newer || (same && role == Role::Backup) => {
                // Replication stops first; the library refuses writes as NOT_PRIMARY.
                replicaof(con, None).await?;
                grant(con, e.0, "backup", 0).await?;
                self.save(state, *e, Role::Stopped, None).await
            }
            Command::Fence { epoch: e, .. } if newer || (same && role != Role::Fenced) => {
                fence(con, e.0).await?;
                self.save(state, *e, Role::Fenced, None).await
            }
            _ => Ok(()),
        }
    }

    /// Stops replicating (so no write of the old primary lands after the stop point), takes
    /// the stop point, records the new role, then opens the library as primary with no lease.
    async fn promote(
        &self,
        con: &mut MultiplexedConnection,
        state: &mut NodeState,
        epoch: Epoch,
    ) -> Result<(), LinkError> {
        replicaof(con, None).await?;
        state.epoch_start_lsn = Lsn(status(con).await?.lsn);
        self.save(state, epoch, Role::Primary, None).await?;
        grant(con, epoch.0, "primary", 0).await
    }

    /// Stops writes (backup role in the library), exports the divergent suffix, then
    /// follows the new primary: REPLICAOF would erase the suffix (a full resync).
    async fn follow(
        &self,
        con: &mut MultiplexedConnection,
        state: &mut NodeState,
        epoch: Epoch,
        primary: &str,
        truncate_after: Lsn,
    ) -> Result<(), LinkError> {
        grant(con, epoch.0, "backup", 0).await?;
        let summary = self.quarantine(con, epoch, truncate_after).await?;
        replicaof(con, Some(primary)).await?;
        QuarantineSummary::record(&mut state.quarantines, summary);
        self.save(state, epoch, Role::Backup, Some(primary.to_string()))
            .await
    }

    /// As [`crate::node::Node`]'s quarantine: every entry after the stop point from the first
    /// one of an older epoch on, written to the node's quarantine file for `epoch` before
    /// anything erases it. A repeated Follow (after a cut-off heartbeat, when the resync may
    /// already have erased the suffix) reuses the file's summary. Nothing divergent, no file:
    /// a repeat then finds nothing divergent either (the log after the stop point can only
    /// have gained entries of `epoch`).
    async fn quarantine(
        &self,
        con: &mut MultiplexedConnection,
        epoch: Epoch,
        stop_point: Lsn,
    ) -> Result<QuarantineSummary, LinkError> {
        let file = self.quarantine_file(epoch);
        if let Some(summary) = read_summary(&file) {
            return Ok(summary);
        }
        let suffix = suffix(con, stop_point.0).await?;
        let moved: Vec<LogEntry> = match suffix.iter().position(|e| e.epoch < epoch.0) {
            Some(first) => suffix.into_iter().skip(first).collect(),
            None => Vec::new(),
        };
        let summary = QuarantineSummary {
            epoch,
            count: moved.len() as u64,
            lsns: (moved.first().zip(moved.last())).map(|(f, l)| (Lsn(f.lsn), Lsn(l.lsn))),
            // The library's log keeps no acceptance time.
            span: None,
        };
        if !moved.is_empty() {
            write_quarantine(&file, &moved, &summary)?;
            tracing::warn!(node = %self.options.node, count = moved.len(), file = %file.display(), "divergent writes moved to quarantine");
        }
        Ok(summary)
    }

    /// `<quarantine_dir>/<cluster>-<i>.epoch-<e>.jsonl`: one JSON line per entry, then a
    /// `{"summary": ...}` line.
    pub fn quarantine_file(&self, epoch: Epoch) -> PathBuf {
        let node = self.options.node;
        let name = format!("{}-{}.epoch-{}.jsonl", node.cluster, node.index, epoch.0);
        self.options.quarantine_dir.join(name)
    }

    /// Records the node's new epoch and role on its state file before reporting them.
    async fn save(
        &self,
        state: &mut NodeState,
        epoch: Epoch,
        role: Role,
        following: Option<String>,
    ) -> Result<(), LinkError> {
        let mut next = state.clone();
        (next.epoch, next.role, next.following) = (epoch, role, following);
        self.options.disk.save(&next).await?;
        tracing::info!(node = %self.options.node, epoch = %epoch, ?role, "node role");
        *state = next;
        Ok(())
    }
}

impl NodeLink for RedisNode {
    fn heartbeat(
        &self,
        heartbeat: Heartbeat,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<NodeReport, NoReport>> + Send + '_>> {
        Box::pin(async move {
            let result = self.beat(heartbeat, timeout).await;
            self.note_trouble(result.as_ref().err());
            result.map_err(|e| match e.is_refusal() {
                true => NoReport::Refused,
                false => NoReport::Silent,
            })
        })
    }
}

/// As [`crate::node::Node::report`].
fn report(state: &NodeState, round: u64, status: &Status) -> NodeReport {
    NodeReport {
        round,
        epoch: state.epoch,
        role: state.role,
        last_lsn: Lsn(status.lsn),
        epoch_start_lsn: state.epoch_start_lsn,
        trimmed: Lsn(status.trimmed),
        quarantines: state.quarantines.clone(),
    }
}

/// As the grant rule of [`crate::node::Node::on_heartbeat`]: only a primary of the grant's
/// epoch, and only anchored at a round whose report it read the server's clock for. The
/// deadline is absolute on the server's clock (the library keeps the later of two).
async fn grant_lease(
    con: &mut MultiplexedConnection,
    inner: &Inner,
    lease: LeaseGrant,
) -> Result<(), LinkError> {
    let Some(state) = &inner.state else {
        return Ok(());
    };
    let primary = state.role == Role::Primary && lease.epoch == state.epoch;
    match (inner.anchors.get(&lease.anchor_round), primary) {
        (Some(&sent), true) => grant(con, lease.epoch.0, "primary", sent + lease.duration_ms).await,
        _ => Ok(()),
    }
}

fn split_address(address: &str) -> Result<(String, u16), LinkError> {
    let bad = || LinkError::Answer(format!("{address:?} is not host:port"));
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    Ok((host.to_string(), port.parse().map_err(|_| bad())?))
}

/// The node's state file, or a fresh state when there is none.
fn read_state(file: &Path) -> std::io::Result<NodeState> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NodeState::default()),
        Err(e) => Err(e),
    }
}

/// One JSON line per entry, then `{"summary": ...}`, replaced atomically.
fn write_quarantine(
    file: &Path,
    moved: &[LogEntry],
    summary: &QuarantineSummary,
) -> Result<(), LinkError> {
    let mut text = String::new();
    for entry in moved {
        text.push_str(&serde_json::to_string(entry).expect("an entry serialises"));
        text.push('\n');
    }
    let line = serde_json::json!({ "summary": summary });
    text.push_str(&format!("{line}\n"));
    write_file_atomically(file, text.as_bytes()).map_err(|source| LinkError::File {
        file: file.display().to_string(),
        source,
    })
}

/// The summary line of a quarantine file already written, if any.
fn read_summary(file: &Path) -> Option<QuarantineSummary> {
    let text = std::fs::read_to_string(file).ok()?;
    let last: serde_json::Value = serde_json::from_str(text.lines().last()?).ok()?;
    serde_json::from_value(last.get("summary")?.clone()).ok()
}

async fn status(con: &mut MultiplexedConnection) -> Result<Status, LinkError> {
    let (epoch, _role, lsn, _left, now_ms, trimmed): (u64, String, u64, i64, u64, u64) =
        redis::cmd("FCALL")
            .arg("standby_status")
            .arg(0)
            .query_async(con)
            .await?;
    Ok(Status {
        epoch,
        lsn,
        trimmed,
        now_ms,
    })
}

/// Discards the log up to `trim.through` if the server is primary of `trim.epoch`.
async fn trim(con: &mut MultiplexedConnection, trim: Trim) -> Result<(), LinkError> {
    let _gone: u64 = redis::cmd("FCALL")
        .arg("standby_trim")
        .arg(0)
        .arg(trim.epoch.0)
        .arg(trim.through.0)
        .query_async(con)
        .await?;
    Ok(())
}

async fn grant(
    con: &mut MultiplexedConnection,
    epoch: u64,
    role: &str,
    deadline: u64,
) -> Result<(), LinkError> {
    let _left: i64 = redis::cmd("FCALL")
        .arg("standby_grant")
        .arg(0)
        .arg(epoch)
        .arg(role)
        .arg(deadline)
        .query_async(con)
        .await?;
    Ok(())
}

async fn fence(con: &mut MultiplexedConnection, epoch: u64) -> Result<(), LinkError> {
    let _epoch: u64 = redis::cmd("FCALL")
        .arg("standby_fence")
        .arg(0)
        .arg(epoch)
        .query_async(con)
        .await?;
    Ok(())
}

/// `REPLICAOF host port`, or `REPLICAOF NO ONE` for `None`.
async fn replicaof(
    con: &mut MultiplexedConnection,
    primary: Option<&str>,
) -> Result<(), LinkError> {
    let (host, port) = match primary {
        Some(address) => {
            let (host, port) = split_address(address)?;
            (host, port.to_string())
        }
        None => ("NO".to_string(), "ONE".to_string()),
    };
    let _: redis::Value = redis::cmd("REPLICAOF")
        .arg(host)
        .arg(port)
        .query_async(con)
        .await?;
    Ok(())
}

/// The log entries after `after`, oldest first.
async fn suffix(con: &mut MultiplexedConnection, after: u64) -> Result<Vec<LogEntry>, LinkError> {
    let raw: Vec<(String, Vec<String>)> = redis::cmd("FCALL")
        .arg("standby_suffix")
        .arg(0)
        .arg(after)
        .query_async(con)
        .await?;
    raw.into_iter()
        .map(|(id, fields)| log_entry(&id, &fields))
        .collect()
}

fn log_entry(id: &str, fields: &[String]) -> Result<LogEntry, LinkError> {
    let map: BTreeMap<&str, &str> = fields
        .chunks(2)
        .filter_map(|pair| Some((pair.first()?.as_str(), pair.get(1)?.as_str())))
        .collect();
    let field = |name: &str| map.get(name).map(|v| v.to_string());
    let number = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok());
    let bad = || LinkError::Answer(format!("log entry {id}: {fields:?}"));
    Ok(LogEntry {
        lsn: number("lsn").ok_or_else(bad)?,
        epoch: number("epoch").ok_or_else(bad)?,
        op: field("op").ok_or_else(bad)?,
        key: field("key").ok_or_else(bad)?,
        value: field("value").unwrap_or_default(),
    })
}

/// Loads the library on a master that lacks it or runs another version. A replica refuses
/// FUNCTION LOAD: it gets the library from its master by replication.
async fn ensure_library(con: &mut MultiplexedConnection, address: &str) -> Result<(), LinkError> {
    let listed: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("LIBRARYNAME")
        .arg("standby")
        .arg("WITHCODE")
        .query_async(con)
        .await?;
    if library_code(&listed).as_deref() == Some(LIBRARY) {
        return Ok(());
    }
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(con)
        .await?;
    if !info.lines().any(|l| l.trim() == "role:master") {
        return Ok(());
    }
    tracing::info!(%address, "loading the standby library");
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(LIBRARY)
        .query_async(con)
        .await?;
    Ok(())
}

/// The `library_code` of the `standby` library in a FUNCTION LIST reply.
fn library_code(listed: &redis::Value) -> Option<String> {
    let redis::Value::Array(libraries) = listed else {
        return None;
    };
    libraries.iter().find_map(|library| {
        let redis::Value::Array(fields) = library else {
            return None;
        };
        let mut pairs = fields.chunks(2);
        pairs.find_map(|pair| match pair {
            [redis::Value::BulkString(k), redis::Value::BulkString(code)]
                if k == b"library_code" =>
            {
                Some(String::from_utf8_lossy(code).into_owned())
            }
            _ => None,
        })
    })
}
