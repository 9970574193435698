//! The client side of real mode: one user's route, followed from the config center, and its
//! fenced writes to the route's Redis server (`FCALL standby_write`).
//!
//! A write is acknowledged only when it is known to be durable in the route's epoch: the
//! server ran it under a lease, and its reply came back while that lease was still running.
//! The reply of a write that ran just before the lease ended can arrive after it (the server
//! was paused between running the write and replying, docs/redis-fence-experiments.md); by
//! then the controller may have promoted the other cluster, and the write may be only in the
//! old primary's divergent suffix. Such a write is [`WriteError::Unknown`], never an ack.
//!
//! The route comes from the config center's pushes (a new one on every epoch). A write
//! rejected by its node, lost with its connection, or overtaken by a newer route, is tried
//! again on the newest route until `route_wait` has passed: a failover shows up to the caller
//! as one slow write, not an error.

use crate::protocol::{ConfigAck, Route, Subscribe};
use crate::types::{Epoch, Lsn, NodeId, UserId};
use crate::wire::{read_frame, write_frame, Message};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How a [`Client`] reaches the config center and logs in to the Redis servers.
#[derive(Clone)]
pub struct ClientOptions {
    /// The config center's address (`host:port`): one, or one per controller replica. The
    /// client follows every one of them and takes the newest epoch any of them pushes, so
    /// that the loss of one replica's config service costs no route.
    pub config_centers: Vec<String>,
    /// The user whose route this client follows.
    pub user: UserId,
    /// The ACL user allowed to call the library's writes (`writer_user` of the controller).
    pub writer_user: String,
    /// Its password.
    pub writer_password: String,
    /// The longest wait for a TCP connection (config center or Redis): a dead server must
    /// cost little, since the failover that routes around it is what the caller waits for.
    pub connect_timeout: Duration,
    /// The longest wait for a Redis reply. A write whose reply does not come in time is of
    /// unknown fate.
    pub reply_timeout: Duration,
    /// How long a write keeps trying (on a newer route, or on a node catching up with its
    /// route) before it gives up.
    pub route_wait: Duration,
}

impl ClientOptions {
    /// Follows every config center in `centers` (see [`ClientOptions::config_centers`]).
    pub fn with_config_centers(mut self, centers: Vec<String>) -> ClientOptions {
        self.config_centers = centers;
        self
    }

    /// Options with the default timeouts (connect 500 ms, reply 1 s, route wait 2 s).
    pub fn new(
        config_center: impl Into<String>,
        user: UserId,
        writer_user: impl Into<String>,
        writer_password: impl Into<String>,
    ) -> ClientOptions {
        ClientOptions {
            config_centers: vec![config_center.into()],
            user,
            writer_user: writer_user.into(),
            writer_password: writer_password.into(),
            connect_timeout: Duration::from_millis(500),
            reply_timeout: Duration::from_secs(1),
            route_wait: Duration::from_secs(2),
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("config_centers", &self.config_centers)
            .field("user", &self.user)
            .field("writer_user", &self.writer_user)
            .field("connect_timeout", &self.connect_timeout)
            .field("reply_timeout", &self.reply_timeout)
            .field("route_wait", &self.route_wait)
            .finish_non_exhaustive()
    }
}

/// An acknowledged write: durable in `epoch` on `node` (replicated to the backup
/// asynchronously; a failover keeps it on the new primary or in the old one's quarantine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Its position in the node's log.
    pub lsn: Lsn,
    /// The epoch it was accepted in.
    pub epoch: Epoch,
    /// The node that accepted it.
    pub node: NodeId,
}

/// Why a write was not acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The node refused it, and it was not written: the library's error (`FENCED 2`,
    /// `STALE_EPOCH 2`, `NOT_PRIMARY backup`, `LEASE_EXPIRED 12`) or another server error.
    #[error("rejected: {0}")]
    Rejected(String),
    /// It may or may not have been written: the reply came after the lease it reports, or
    /// never came. Read the key to find out; after a failover it may be in a quarantine file.
    #[error("unknown outcome: {0}")]
    Unknown(String),
    /// The node could not be reached, so the write was never sent.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No route yet: the config center has not pushed this user's config.
    #[error("no route from the config center")]
    NoRoute,
}

impl WriteError {
    /// A short name for the kind of failure, for counting: the library's error code
    /// (`FENCED`, `STALE_EPOCH`, ...) for a rejection, else `unknown`, `unreachable`,
    /// `no route`.
    pub fn reason(&self) -> &str {
        match self {
            WriteError::Rejected(text) => text.split_whitespace().next().unwrap_or("rejected"),
            WriteError::Unknown(_) => "unknown",
            WriteError::Unreachable(_) => "unreachable",
            WriteError::NoRoute => "no route",
        }
    }
}

/// Why a read failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No route yet.
    #[error("no route from the config center")]
    NoRoute,
    /// The node refused it: it may not answer reads linearizably now (the library's error:
    /// `FENCED 2`, `STALE_EPOCH 2`, `NOT_PRIMARY backup`, `LEASE_EXPIRED 12`).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The node could not be reached, or its reply was lost.
    #[error("{0}")]
    Failed(String),
}

impl From<WriteError> for ReadError {
    fn from(error: WriteError) -> ReadError {
        match error {
            WriteError::NoRoute => ReadError::NoRoute,
            WriteError::Rejected(why) => ReadError::Rejected(why),
            WriteError::Unknown(why) | WriteError::Unreachable(why) => ReadError::Failed(why),
        }
    }
}

/// One user's client: follows the user's route from the config center (in a background task,
/// stopped when the client is dropped) and writes to and reads from the route's node.
pub struct Client {
    options: ClientOptions,
    routes: watch::Receiver<Option<Route>>,
    subscription: JoinHandle<()>,
    /// One connection per server address, reused across writes; dropped when it fails.
    connections: Mutex<BTreeMap<String, MultiplexedConnection>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.subscription.abort();
    }
}

/// An operation a [`Client`] tries until it is done or `route_wait` has passed.
#[derive(Clone, Copy, Debug)]
enum Op<'a> {
    Write { key: &'a str, value: &'a str },
    Read { key: &'a str },
}

/// What a done operation answered.
enum Done {
    Written(Ack),
    Read(Option<String>),
}

/// What one attempt of a write (or a read) came to.
enum Attempt<T = Ack> {
    Acked(T),
    /// The reply came after the lease it reported.
    Late(String),
    Rejected(String),
    /// Sent, but the connection failed or the reply timed out.
    Lost(String),
    /// Never sent.
    Unreachable(String),
}

impl Client {
    /// Starts following `options.user`'s route. Needs a tokio runtime; returns at once (see
    /// [`Client::wait_for_route`] for the first route).
    pub fn start(options: ClientOptions) -> Client {
        let (routes_in, routes) = watch::channel(None);
        let (centers, user, timeout) = (
            options.config_centers.clone(),
            options.user,
            options.connect_timeout,
        );
        let subscription = tokio::spawn(async move {
            let mut followers = crate::service::Tasks::default();
            for center in centers {
                followers.spawn(follow(center, user, timeout, routes_in.clone()));
            }
            routes_in.closed().await;
        });
        Client {
            options,
            routes,
            subscription,
            connections: Mutex::new(BTreeMap::new()),
        }
    }

    /// The route the client follows now.
    pub fn route(&self) -> Option<Route> {
        self.routes.borrow().clone()
    }

    /// Every change of route as it happens (for callers that log or time them).
    pub fn watch_route(&self) -> watch::Receiver<Option<Route>> {
        self.routes.clone()
    }

    /// The current route, or the first one pushed within `timeout`.
    pub async fn wait_for_route(&self, timeout: Duration) -> Option<Route> {
        self.newer_route(Epoch(0), timeout).await
    }

    /// A route of an epoch after `epoch`, waiting up to `timeout` for one to be pushed.
    async fn newer_route(&self, epoch: Epoch, timeout: Duration) -> Option<Route> {
        let mut routes = self.routes.clone();
        let newer = |r: &Option<Route>| r.as_ref().is_some_and(|r| r.epoch > epoch);
        let found = match tokio::time::timeout(timeout, routes.wait_for(newer)).await {
            Ok(Ok(route)) => route.clone(),
            _ => None,
        };
        found
    }

    /// Writes `value` under `key` with the route's epoch. A write that cannot be
    /// acknowledged where it went is tried again, until `route_wait` has passed since it
    /// started: on a newer route as soon as one is pushed, or on the same route, after a
    /// short pause, when the node is only behind it (not yet promoted, or its first lease not
    /// yet granted: it catches up within a heartbeat or two). A write still waiting for its
    /// reply when a newer route arrives is abandoned for it: the controller has deposed the
    /// node it went to, which is likely paused or dead.
    pub async fn write(&self, key: &str, value: &str) -> Result<Ack, WriteError> {
        match self.retried(Op::Write { key, value }).await? {
            Done::Written(ack) => Ok(ack),
            Done::Read(_) => unreachable!("a write answers with an ack"),
        }
    }

    /// The retries of [`Client::write`] and [`Client::read`].
    async fn retried(&self, op: Op<'_>) -> Result<Done, WriteError> {
        let deadline = Instant::now() + self.options.route_wait;
        let mut route = self.route().ok_or(WriteError::NoRoute)?;
        // An attempt that may have been written: if no later one is acknowledged, the
        // write's fate is unknown, whatever the last attempt says.
        let mut maybe_written = None;
        let mut pause = RETRY_PAUSE_MIN;
        loop {
            let attempt = tokio::select! {
                biased;
                attempt = self.attempt_op(&route, op) => attempt,
                Some(newer) = self.newer_route(route.epoch, MAX_WAIT) => {
                    Attempt::Lost(format!("{}: no reply before the epoch {} route", route.node, newer.epoch))
                }
            };
            let behind = attempt.behind(route.epoch);
            let last = match attempt {
                Attempt::Acked(ack) => return Ok(ack),
                // It ran under a lease that may be over: no retry can tell its fate.
                Attempt::Late(why) => return Err(WriteError::Unknown(why)),
                Attempt::Lost(why) => maybe_written.insert(WriteError::Unknown(why)).clone(),
                other => other.into_error(),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = if behind { left.min(pause) } else { left };
            route = match self.newer_route(route.epoch, wait).await {
                Some(newer) => newer,
                None if behind && !left.is_zero() => route,
                None => return Err(maybe_written.unwrap_or(last)),
            };
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
            tracing::debug!(?op, epoch = %route.epoch, node = %route.node, "retrying");
        }
    }

    /// Reads `key` through the fence (`FCALL_RO standby_read`): the route's node answers
    /// only while it is primary in the route's epoch under an unexpired lease, so no other
    /// node can have taken a write since (a promotion waits every old lease out): the value
    /// is the newest acknowledged one when the read ran, never a deposed primary's stale
    /// one. Unlike a write's, a late reply changes nothing: the read ran under the lease.
    /// Refusals are retried on the newest route as writes are, for up to `route_wait`.
    pub async fn read(&self, key: &str) -> Result<Option<String>, ReadError> {
        match self.retried(Op::Read { key }).await? {
            Done::Read(value) => Ok(value),
            Done::Written(_) => unreachable!("a read answers with a value"),
        }
    }

    /// One attempt of `op` on `route`.
    async fn attempt_op(&self, route: &Route, op: Op<'_>) -> Attempt<Done> {
        match op {
            Op::Write { key, value } => self.attempt(route, key, value).await.map(Done::Written),
            Op::Read { key } => self.read_attempt(route, key).await.map(Done::Read),
        }
    }

    /// One `FCALL_RO standby_read` on `route`.
    async fn read_attempt(&self, route: &Route, key: &str) -> Attempt<Option<String>> {
        let address = &route.address;
        let mut con = match self.connection(address).await {
            Ok(con) => con,
            Err(e) => return Attempt::Unreachable(format!("{} ({address}): {e}", route.node)),
        };
        let reply: redis::RedisResult<(Option<String>, i64)> = redis::cmd("FCALL_RO")
            .arg("standby_read")
            .arg(1)
            .arg(key)
            .arg(route.epoch.0)
            .query_async(&mut con)
            .await;
        match reply {
            Ok((value, _left_ms)) => Attempt::Acked(value),
            Err(e) => self.failed(route, e),
        }
    }

    /// One `FCALL standby_write` on `route`, judged against the lease its reply reports.
    async fn attempt(&self, route: &Route, key: &str, value: &str) -> Attempt {
        let address = &route.address;
        let mut con = match self.connection(address).await {
            Ok(con) => con,
            Err(e) => return Attempt::Unreachable(format!("{} ({address}): {e}", route.node)),
        };
        let sent = Instant::now();
        let reply: redis::RedisResult<(u64, i64)> = redis::cmd("FCALL")
            .arg("standby_write")
            .arg(1)
            .arg(key)
            .arg(route.epoch.0)
            .arg(value)
            .query_async(&mut con)
            .await;
        let elapsed = sent.elapsed();
        match reply {
            Ok((lsn, left_ms)) => {
                // `left_ms` was measured by the server when the write ran, which was after we
                // sent it: if the round trip took at least that long, the lease may have
                // ended before we saw the reply.
                let left = Duration::from_millis(left_ms.max(0) as u64);
                if elapsed >= left {
                    return Attempt::Late(format!(
                        "{}: reply after {} ms, lease had {left_ms} ms left (lsn {lsn})",
                        route.node,
                        elapsed.as_millis()
                    ));
                }
                Attempt::Acked(Ack {
                    lsn: Lsn(lsn),
                    epoch: route.epoch,
                    node: route.node,
                })
            }
            Err(e) => self.failed(route, e),
        }
    }

    /// What a call to `route` that failed with `e` came to.
    fn failed<T>(&self, route: &Route, e: redis::RedisError) -> Attempt<T> {
        match e.code() {
            // The server answered with an error: the library refuses before it acts.
            Some(code) => {
                let text = match e.detail() {
                    Some(detail) => format!("{code} {detail}"),
                    None => code.to_string(),
                };
                Attempt::Rejected(text.trim().to_string())
            }
            None => {
                self.forget(&route.address);
                Attempt::Lost(format!("{} ({}): {e}", route.node, route.address))
            }
        }
    }

    /// The cached connection to `address`, or a new one logged in as the writer.
    async fn connection(&self, address: &str) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(con) = self.connections.lock().expect("client lock").get(address) {
            return Ok(con.clone());
        }
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "not host:port",
                    address.to_string(),
                ))
            })?;
        let info = ConnectionInfo {
            addr: ConnectionAddr::Tcp(host.to_string(), port),
            redis: RedisConnectionInfo {
                username: Some(self.options.writer_user.clone()),
                password: Some(self.options.writer_password.clone()),
                ..RedisConnectionInfo::default()
            },
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.options.connect_timeout)
            .set_response_timeout(self.options.reply_timeout);
        let con = redis::Client::open(info)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut connections = self.connections.lock().expect("client lock");
        connections.insert(address.to_string(), con.clone());
        Ok(con)
    }

    /// Drops the connection to `address` (it failed): the next call reconnects.
    fn forget(&self, address: &str) {
        self.connections
            .lock()
            .expect("client lock")
            .remove(address);
    }
}

/// The first pause before a write refused by a node that is behind its route is retried
/// there; it doubles up to [`RETRY_PAUSE_MAX`]. Short, since the node catches up within a
/// heartbeat or two, and a refused write costs the server one function call.
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(5);
/// The longest pause between two tries on the same route.
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(50);
/// Longer than any write waits: the race of a reply against a newer route ends with one.
const MAX_WAIT: Duration = Duration::from_secs(3600);

impl<T> Attempt<T> {
    /// The same attempt, its success mapped by `f`.
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Attempt<U> {
        match self {
            Attempt::Acked(done) => Attempt::Acked(f(done)),
            Attempt::Late(why) => Attempt::Late(why),
            Attempt::Rejected(why) => Attempt::Rejected(why),
            Attempt::Lost(why) => Attempt::Lost(why),
            Attempt::Unreachable(why) => Attempt::Unreachable(why),
        }
    }

    /// Whether the node refused because it has not caught up with `epoch` yet: its epoch is
    /// older (`STALE_EPOCH n` or `FENCED n`, n < epoch: a backup fenced at bootstrap is
    /// promoted a heartbeat after the route is published), or its lease has not been granted
    /// or renewed.
    fn behind(&self, epoch: Epoch) -> bool {
        let Attempt::Rejected(text) = self else {
            return false;
        };
        let mut words = text.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|n| n.parse::<u64>().ok()),
        ) {
            (Some("STALE_EPOCH" | "FENCED"), Some(n)) => n < epoch.0,
            (Some("LEASE_EXPIRED"), _) => true,
            _ => false,
        }
    }

    fn into_error(self) -> WriteError {
        match self {
            Attempt::Acked(_) => unreachable!("an ack is no error"),
            Attempt::Late(why) | Attempt::Lost(why) => WriteError::Unknown(why),
            Attempt::Rejected(why) => WriteError::Rejected(why),
            Attempt::Unreachable(why) => WriteError::Unreachable(why),
        }
    }
}

/// Pause between attempts to reach the config center.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Follows `user`'s config at the config center into `routes`, reconnecting whenever the
/// connection fails, until every receiver is gone.
async fn follow(
    center: String,
    user: UserId,
    connect_timeout: Duration,
    routes: watch::Sender<Option<Route>>,
) {
    while !routes.is_closed() {
        if let Err(e) = subscribe(&center, user, connect_timeout, &routes).await {
            tracing::debug!(%center, %user, %e, "config center connection ended");
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// One subscription: applies every pushed config that is newer than the route held, and
/// acknowledges the epoch applied (the center counts a user as moved only when it acks).
async fn subscribe(
    center: &str,
    user: UserId,
    connect_timeout: Duration,
    routes: &watch::Sender<Option<Route>>,
) -> Result<(), String> {
    let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(center))
        .await
        .map_err(|_| format!("no connection within {connect_timeout:?}"))?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let subscribe = Message::Subscribe(Subscribe { user });
    write_frame(&mut writer, &subscribe)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let config = match read_frame(&mut reader).await.map_err(|e| e.to_string())? {
            Message::Config(config) if config.user == user => config,
            other => return Err(format!("unexpected message {other:?}")),
        };
        let route = Route {
            epoch: config.epoch,
            node: config.node,
            address: config.address,
        };
        routes.send_if_modified(|current| {
            let newer = current.as_ref().is_none_or(|c| route.epoch > c.epoch);
            if newer {
                tracing::info!(%user, epoch = %route.epoch, node = %route.node, address = %route.address, "new route");
                *current = Some(route);
            }
            newer
        });
        let applied = routes.borrow().as_ref().map_or(config.epoch, |r| r.epoch);
        let ack = Message::ConfigAck(ConfigAck {
            user,
            epoch: applied,
        });
        write_frame(&mut writer, &ack)
            .await
            .map_err(|e| e.to_string())?;
    }
}
