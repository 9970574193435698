//! A simulated user: watches its config at every replica's config center (acknowledging
//! each epoch it applies) and writes to the node its config names at a steady rate,
//! recording every operation. After repeated failures it tries the paired node, whose rejection names the
//! newest config: that is how a user cut off from the config center still finds the new
//! primary.

use crate::scenario::WorkloadSpec;
use crate::trace::{Event, Trace};
use madsim::rand::Rng;
use standby::protocol::{ConfigAck, RejectReason, Route, Subscribe, Write, WriteReply};
use standby::service::loss::{self, Transmission};
use standby::service::rpc::Peer;
use standby::types::{NodeId, UserConfig, UserId, WriteId};
use standby::wire::{read_frame, write_frame, Message};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long the user waits for a connection to the config center before trying afresh.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Every this many failed writes in a row, the user tries the paired node once.
const FAILURES_BEFORE_PROBE: u32 = 3;

/// What a user knows and where it reports.
pub struct UserContext {
    /// Who it is.
    pub user: UserId,
    /// What it does.
    pub workload: WorkloadSpec,
    /// Every replica's config center: the user follows them all, and takes the newest
    /// epoch any of them pushes.
    pub centers: Vec<String>,
    /// Every node's address (to reach the paired node when probing).
    pub addresses: BTreeMap<NodeId, String>,
    /// Where it records.
    pub trace: Trace,
    /// Set when the run ends: the user stops writing, so replication can drain.
    pub stop: Arc<AtomicBool>,
}

/// Runs a user until its node is killed.
pub async fn run_user(context: Arc<UserContext>) {
    let route: Arc<Mutex<Option<Route>>> = Arc::default();
    for center in &context.centers {
        tokio::spawn(watch(context.clone(), center.clone(), route.clone()));
    }
    let peers: BTreeMap<NodeId, Peer> = (context.addresses.iter())
        .map(|(&node, address)| (node, Peer::new(address.clone())))
        .collect();
    let period_us = 1_000_000 / context.workload.writes_per_s as u64;
    let timeout = Duration::from_millis(context.workload.write_timeout_ms);
    let (mut seq, mut failures) = (0u64, 0u32);
    loop {
        let jitter = madsim::rand::thread_rng().gen_range(period_us / 2..=period_us * 3 / 2);
        tokio::time::sleep(Duration::from_micros(jitter)).await;
        if context.stop.load(Ordering::Relaxed) {
            continue;
        }
        let Some(current) = route.lock().expect("route").clone() else {
            continue;
        };
        seq += 1;
        let id = WriteId {
            user: context.user,
            seq,
        };
        let target = if failures % (FAILURES_BEFORE_PROBE + 1) == FAILURES_BEFORE_PROBE {
            current.node.peer()
        } else {
            current.node
        };
        let write = Write {
            id,
            epoch: current.epoch,
            key: format!(
                "u{}k{}",
                context.user.0,
                seq % context.workload.keys_per_user as u64
            ),
            value: seq,
        };
        context.trace.record(Event::Invoke {
            id,
            node: target,
            epoch: current.epoch,
        });
        let outcome = peers[&target].call(&Message::Write(write), timeout).await;
        failures = match outcome {
            Ok(Message::WriteReply(WriteReply::Ok { lsn, epoch })) => {
                context.trace.record(Event::Ok {
                    id,
                    node: target,
                    lsn,
                    epoch,
                });
                0
            }
            Ok(Message::WriteReply(WriteReply::Rejected {
                reason,
                route: offered,
            })) => {
                if reason == RejectReason::ReplicationTimeout {
                    context.trace.record(Event::Unknown { id });
                } else {
                    context.trace.record(Event::Fail { id, reason });
                }
                match offered {
                    Some(offered) if adopt(&context, &route, &offered, true) => 0,
                    _ => failures + 1,
                }
            }
            _ => {
                context.trace.record(Event::Unknown { id });
                failures + 1
            }
        };
    }
}

/// Takes `offered` if it is newer than what the user holds. Returns whether it was taken.
fn adopt(
    context: &UserContext,
    route: &Mutex<Option<Route>>,
    offered: &Route,
    from_rejection: bool,
) -> bool {
    let mut current = route.lock().expect("route");
    if current.as_ref().is_some_and(|r| r.epoch >= offered.epoch) {
        return false;
    }
    *current = Some(offered.clone());
    context.trace.record(Event::UserConfig {
        user: context.user,
        epoch: offered.epoch,
        node: offered.node,
        from_rejection,
    });
    true
}

/// Subscribes at `center`, applies every pushed config and acknowledges it; reconnects
/// when the connection fails.
async fn watch(context: Arc<UserContext>, center: String, route: Arc<Mutex<Option<Route>>>) {
    loop {
        let connect = async {
            loss::delay(Transmission::Connect).await;
            TcpStream::connect(center.as_str()).await
        };
        // A lost SYN is retried by TCP only after 1 s, then 2 s, 4 s...: a fresh attempt
        // after a short timeout gets through sooner, as any client with a connect timeout.
        if let Ok(Ok(mut stream)) = tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            let subscribe = Message::Subscribe(Subscribe { user: context.user });
            if write_frame(&mut stream, &subscribe).await.is_ok() {
                while let Ok(Message::Config(config)) = read_frame(&mut stream).await {
                    apply_pushed(&context, &route, &config);
                    let ack = Message::ConfigAck(ConfigAck {
                        user: context.user,
                        epoch: config.epoch,
                    });
                    if write_frame(&mut stream, &ack).await.is_err() {
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn apply_pushed(context: &UserContext, route: &Mutex<Option<Route>>, config: &UserConfig) {
    let offered = Route {
        epoch: config.epoch,
        node: config.node,
        address: config.address.clone(),
    };
    adopt(context, route, &offered, false);
}
