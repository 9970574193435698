//! A storage node's service: answers heartbeats, writes and appends over TCP, and, as
//! primary, ships its log to its paired backup node.

use crate::node::{Node, NodeEvent};
use crate::protocol::{RejectReason, WriteReply};
use crate::service::rpc::{Peer, RpcError};
use crate::service::Tasks;
use crate::time::Clock;
use crate::types::NodeId;
use crate::wire::{read_frame, write_frame, Message};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// When a primary acknowledges a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    /// At once; the backup catches up in the background (a failover may lose writes).
    Async,
    /// Only after the backup applied it (a failover loses no acknowledged write).
    Sync,
}

/// Receives every change a node goes through (the simulator records them; the real binary
/// logs them).
pub trait NodeObserver: Send + Sync {
    /// `events` happened at `node`.
    fn on_events(&self, node: NodeId, events: &[NodeEvent]);
}

/// An observer that only logs.
#[derive(Debug, Default)]
pub struct LogObserver;

impl NodeObserver for LogObserver {
    fn on_events(&self, node: NodeId, events: &[NodeEvent]) {
        for event in events {
            tracing::debug!(%node, ?event, "node event");
        }
    }
}

/// How a node service behaves.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// When writes are acknowledged.
    pub mode: ReplicationMode,
    /// The paired node's address (replication target when primary).
    pub peer_address: String,
    /// How long a shipment to the backup may take before it is retried.
    pub replication_timeout: Duration,
    /// The most entries in one shipment.
    pub replication_batch: usize,
    /// Sync mode: how long a write waits for the backup before it is answered as unknown.
    pub sync_timeout: Duration,
}

/// Everything the node's tasks share.
pub struct NodeService {
    /// The node's state. Its disk half outlives the service (the simulator keeps it across
    /// restarts).
    pub node: Arc<Mutex<Node>>,
    /// The node's clock (possibly drifting).
    pub clock: Clock,
    /// Behaviour.
    pub options: NodeOptions,
    /// Where events go.
    pub observer: Arc<dyn NodeObserver>,
    /// Wakes the replication task when the log grows.
    log_grew: Notify,
    /// Wakes sync-mode writers when the backup confirms.
    peer_advanced: Notify,
}

impl NodeService {
    /// A service over `node`.
    pub fn new(
        node: Arc<Mutex<Node>>,
        clock: Clock,
        options: NodeOptions,
        observer: Arc<dyn NodeObserver>,
    ) -> Arc<NodeService> {
        Arc::new(NodeService {
            node,
            clock,
            options,
            observer,
            log_grew: Notify::new(),
            peer_advanced: Notify::new(),
        })
    }

    /// Serves on `listener` and replicates, until the future is dropped, which stops every
    /// task it started.
    pub async fn run(self: Arc<Self>, listener: TcpListener) {
        let mut tasks = Tasks::default();
        tasks.spawn(self.clone().replicate());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => tasks.spawn(self.clone().serve_connection(stream)),
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    return;
                }
            }
        }
    }

    fn id(&self) -> NodeId {
        self.node.lock().expect("node lock").disk.id
    }

    /// Answers requests on one connection until it closes or sends something malformed.
    async fn serve_connection(self: Arc<Self>, mut stream: TcpStream) {
        loop {
            let request = match read_frame(&mut stream).await {
                Ok(request) => request,
                Err(error) => {
                    tracing::debug!(node = %self.id(), %error, "closing connection");
                    return;
                }
            };
            let Some(reply) = self.answer(request).await else {
                tracing::debug!(node = %self.id(), "unexpected message, closing connection");
                return;
            };
            if write_frame(&mut stream, &reply).await.is_err() {
                return;
            }
        }
    }

    async fn answer(&self, request: Message) -> Option<Message> {
        let mut events = Vec::new();
        let now = self.clock.now();
        let reply = match request {
            Message::Heartbeat(heartbeat) => {
                let mut node = self.node.lock().expect("node lock");
                Message::Report(node.on_heartbeat(&heartbeat, now, &mut events))
            }
            Message::Append(append) => {
                let mut node = self.node.lock().expect("node lock");
                Message::AppendReply(node.on_append(&append, &mut events))
            }
            Message::Write(write) => {
                let reply = self
                    .node
                    .lock()
                    .expect("node lock")
                    .on_write(&write, now, &mut events);
                self.publish(&events);
                return Some(Message::WriteReply(self.acknowledge(reply).await));
            }
            _ => return None,
        };
        self.publish(&events);
        Some(reply)
    }

    fn publish(&self, events: &[NodeEvent]) {
        if events.is_empty() {
            return;
        }
        if events.iter().any(|e| matches!(e, NodeEvent::Accepted(_))) {
            self.log_grew.notify_one();
        }
        self.observer.on_events(self.id(), events);
    }

    /// In sync mode, holds an accepted write's answer until the backup confirmed it.
    async fn acknowledge(&self, reply: WriteReply) -> WriteReply {
        let WriteReply::Ok { lsn, .. } = reply else {
            return reply;
        };
        let early = crate::mutated!(self.node.lock().expect("node lock"), EarlySyncAck);
        if self.options.mode == ReplicationMode::Async || early {
            return reply;
        }
        let confirmed = async {
            loop {
                let notified = self.peer_advanced.notified();
                let peer = self.node.lock().expect("node lock").volatile.peer_lsn;
                if peer.is_some_and(|p| p >= lsn) {
                    return;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(self.options.sync_timeout, confirmed).await {
            Ok(()) => reply,
            Err(_) => WriteReply::Rejected {
                reason: RejectReason::ReplicationTimeout,
                route: None,
            },
        }
    }

    /// As primary, ships the log to the backup peer: at once when it grows, and at least
    /// every replication timeout (which is also the retry pace when the peer is away).
    async fn replicate(self: Arc<Self>) {
        let peer = Peer::new(self.options.peer_address.clone());
        let base = self.options.replication_timeout;
        // A shipment's deadline follows the round trips it measures: with a fixed one shorter
        // than a round trip (a WAN pair), every shipment timed out and the backup never got
        // an entry. Bounded, so that a dead peer is still retried at a steady pace.
        let mut deadline = base;
        loop {
            let batch = {
                let node = self.node.lock().expect("node lock");
                let caught_up = node.volatile.peer_lsn == Some(node.disk.last_lsn());
                node.next_append(self.options.replication_batch)
                    .filter(|_| !caught_up)
            };
            let Some(append) = batch else {
                let _ = tokio::time::timeout(
                    self.options.replication_timeout,
                    self.log_grew.notified(),
                )
                .await;
                continue;
            };
            let timeout = base;
            let prev_lsn = append.prev_lsn;
            let sent = self.clock.now();
            let answer = peer.call(&Message::Append(append), deadline).await;
            let took = self.clock.now().saturating_since(sent);
            deadline = shipment_deadline(base, deadline, &answer, took);
            match answer {
                Ok(Message::AppendReply(reply)) => {
                    let mut events = Vec::new();
                    self.node
                        .lock()
                        .expect("node lock")
                        .on_append_reply(&reply, &mut events);
                    self.publish(&events);
                    self.peer_advanced.notify_waiters();
                    // A refusal for a gap is retried at once from the backup's position; any
                    // other refusal (the peer is not following this epoch) waits.
                    if !reply.applied && reply.last_lsn >= prev_lsn {
                        tokio::time::sleep(timeout).await;
                    }
                }
                // A call that timed out has already waited its timeout: try again at once, on
                // a fresh connection. Under packet loss a lost frame costs TCP at least 200 ms,
                // so a replication timeout that short fails calls by chance; sleeping on top of
                // each such failure left a backup behind for seconds.
                Err(RpcError::Timeout(_)) => {}
                _ => tokio::time::sleep(timeout).await,
            }
        }
    }
}

/// The most a shipment's deadline grows to, in replication timeouts.
pub const SHIPMENT_DEADLINE_MAX_FACTOR: u32 = 8;

/// The next shipment's deadline after one that took `took` and ended in `answer`: twice the
/// round trip it measured when answered, twice the last deadline when it timed out; never
/// below the replication timeout `base`, nor above [`SHIPMENT_DEADLINE_MAX_FACTOR`] times it.
pub fn shipment_deadline(
    base: Duration,
    last: Duration,
    answer: &Result<Message, RpcError>,
    took: Duration,
) -> Duration {
    let next = match answer {
        Err(RpcError::Timeout(_)) => last * 2,
        Ok(_) => took * 2,
        Err(_) => last,
    };
    next.clamp(base, base * SHIPMENT_DEADLINE_MAX_FACTOR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PublishReply;
    use crate::types::Epoch;

    const BASE: Duration = Duration::from_millis(200);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_shipment_deadline_doubles_on_a_timeout_and_follows_the_measured_round_trip() {
        let timeout: Result<Message, RpcError> = Err(RpcError::Timeout(BASE));
        let answered: Result<Message, RpcError> = Ok(Message::PublishReply(PublishReply {
            epoch: Epoch(1),
            stored: true,
        }));
        // A round trip of 280 ms: the first shipment times out, the second arrives.
        let second = shipment_deadline(BASE, BASE, &timeout, BASE);
        assert_eq!(second, ms(400));
        assert_eq!(shipment_deadline(BASE, second, &answered, ms(280)), ms(560));
        // Near round trips bring it back to the replication timeout, never below.
        assert_eq!(shipment_deadline(BASE, ms(560), &answered, ms(3)), BASE);
        // A dead peer: bounded at 8 timeouts.
        let mut deadline = BASE;
        for _ in 0..10 {
            deadline = shipment_deadline(BASE, deadline, &timeout, deadline);
        }
        assert_eq!(deadline, BASE * SHIPMENT_DEADLINE_MAX_FACTOR);
        // Any other failure (a refused connection) leaves it as it was.
        let refused = Err(RpcError::Busy);
        assert_eq!(shipment_deadline(BASE, ms(400), &refused, ms(1)), ms(400));
    }
}
