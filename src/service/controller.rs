//! The controller's service: drives the sans-IO [`Controller`] with a clock, heartbeats over
//! TCP (or any other [`NodeLink`]), the config center, a durable store and alarm sinks.

use crate::controller::{Action, Controller, Durable, Topology};
use crate::params::Params;
use crate::protocol::{Heartbeat, NodeReport};
use crate::service::rpc::Peer;
use crate::time::{Clock, Time};
use crate::types::NodeId;
use crate::wire::Message;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Heartbeats in flight to one node at once: enough for a round trip of up to four heartbeat
/// intervals (a timeout longer than that would be a strange setting).
const HEARTBEAT_SLOTS: usize = 4;

/// How the controller reaches one node: a heartbeat in, the node's report out. The simulator
/// and the TCP services use a [`Peer`] speaking the wire protocol to a node service; the real
/// controller drives a Redis server directly (no agent process beside it), so the node rules
/// run inside the link instead of behind a socket.
pub trait NodeLink: Send + Sync {
    /// Delivers `heartbeat` and returns the node's report, or why none came within
    /// `timeout`.
    fn heartbeat(
        &self,
        heartbeat: Heartbeat,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<NodeReport, NoReport>> + Send + '_>>;
}

/// Why a heartbeat got no report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoReport {
    /// No answer in time, a lost connection, a malformed answer: a heartbeat gone unanswered.
    Silent,
    /// The node's address refused the connection: no process listens there
    /// ([`Controller::handle_refused`]).
    Refused,
}

impl NodeLink for Peer {
    /// Never [`NoReport::Refused`]: the simulator's crashed nodes are silent, and the
    /// detection figures in BENCHMARKS.md measure the heartbeat timeout; only the Redis link
    /// reports refusals.
    fn heartbeat(
        &self,
        heartbeat: Heartbeat,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<NodeReport, NoReport>> + Send + '_>> {
        Box::pin(async move {
            let request = Message::Heartbeat(heartbeat);
            match self.call(&request, timeout).await {
                Ok(Message::Report(report)) => Ok(report),
                _ => Err(NoReport::Silent),
            }
        })
    }
}

/// Where the controller's durable state lives.
pub trait Store: Send + Sync {
    /// The last saved state, if any.
    fn load(&self) -> Option<Durable>;
    /// Saves `state` durably before returning.
    fn save(&self, state: &Durable);
}

/// Receives every action the controller takes (the simulator traces them; the real binary
/// logs them and runs alarm hooks).
pub trait ControllerObserver: Send + Sync {
    /// The controller took `action` at `now` (its clock).
    fn on_action(&self, now: Time, action: &Action);
    /// A node's report arrived at `now` (its clock). Nothing by default.
    fn on_report(&self, _now: Time, _node: NodeId, _report: &NodeReport) {}
    /// The controller has handled an input or a tick and carried out its actions: its state
    /// at `now` (its clock) is settled until the next one. Nothing by default.
    fn on_state(&self, _now: Time, _controller: &Controller) {}
}

/// An observer that only logs.
#[derive(Debug, Default)]
pub struct LogControllerObserver;

impl ControllerObserver for LogControllerObserver {
    fn on_action(&self, now: Time, action: &Action) {
        match action {
            Action::Alarm(alarm) => tracing::warn!(%now, ?alarm, "alarm"),
            Action::Note(note) => tracing::info!(%now, ?note, "controller"),
            Action::Publish { epoch, configs } => {
                tracing::info!(%now, %epoch, users = configs.len(), "publishing configs")
            }
            Action::Persist(_) | Action::Heartbeat { .. } => {}
        }
    }
}

/// How the controller service reaches the world.
pub struct ControllerOptions {
    /// The parameters.
    pub params: Params,
    /// The clusters and users.
    pub topology: Topology,
    /// The config center's address.
    pub config_center: String,
    /// Links replacing the TCP [`Peer`] for some nodes (all of them, in the real controller).
    links: BTreeMap<NodeId, Arc<dyn NodeLink>>,
    #[cfg(feature = "mutants")]
    mutation: crate::controller::Mutation,
}

impl ControllerOptions {
    /// Options for a correct controller.
    pub fn new(params: Params, topology: Topology, config_center: String) -> ControllerOptions {
        ControllerOptions {
            params,
            topology,
            config_center,
            links: BTreeMap::new(),
            #[cfg(feature = "mutants")]
            mutation: crate::controller::Mutation::None,
        }
    }

    /// Reaches the nodes in `links` through them instead of over TCP to their topology
    /// address; the others keep the TCP path.
    pub fn with_links(mut self, links: BTreeMap<NodeId, Arc<dyn NodeLink>>) -> ControllerOptions {
        self.links = links;
        self
    }

    /// Breaks the controller on purpose (simulator builds only).
    #[cfg(feature = "mutants")]
    pub fn with_mutation(mut self, mutation: crate::controller::Mutation) -> ControllerOptions {
        self.mutation = mutation;
        self
    }
}

enum Input {
    Report(NodeId, NodeReport),
    /// The node's address refused the connection for a heartbeat of this round.
    Refused(NodeId, u64),
    Published(crate::protocol::PublishReply),
}

/// Runs the controller until the task is dropped. Resumes from `store` if it holds a state.
pub async fn run_controller(
    options: ControllerOptions,
    clock: Clock,
    store: Arc<dyn Store>,
    observer: Arc<dyn ControllerObserver>,
) {
    #[cfg(feature = "mutants")]
    let mutation = options.mutation;
    let saved = match crate::mutated!(options, ForgetEpoch) {
        true => None,
        false => store.load(),
    };
    let ControllerOptions {
        params,
        topology,
        config_center,
        mut links,
        ..
    } = options;
    let now = clock.now();
    let peers: BTreeMap<NodeId, Arc<dyn NodeLink>> = topology
        .addresses
        .iter()
        .map(|(&node, address)| {
            let link = links
                .remove(&node)
                .unwrap_or_else(|| Arc::new(Peer::with_slots(address.clone(), HEARTBEAT_SLOTS)));
            (node, link)
        })
        .collect();
    let center = Arc::new(Peer::new(config_center));
    let timeout = params.heartbeat_timeout();
    let mut controller = match saved {
        Some(durable) => Controller::restore(params, topology, durable, now),
        None => Controller::new(params, topology, now),
    };
    #[cfg(feature = "mutants")]
    controller.set_mutation(mutation);
    let (inputs, mut received) = mpsc::unbounded_channel();
    loop {
        while let Some(action) = controller.poll_action() {
            observer.on_action(clock.now(), &action);
            match action {
                Action::Heartbeat { node, heartbeat } => {
                    let (peer, inputs) = (peers[&node].clone(), inputs.clone());
                    tokio::spawn(async move {
                        let round = heartbeat.round;
                        let input = match peer.heartbeat(heartbeat, timeout).await {
                            Ok(report) => Input::Report(node, report),
                            Err(NoReport::Refused) => Input::Refused(node, round),
                            Err(NoReport::Silent) => return,
                        };
                        let _ = inputs.send(input);
                    });
                }
                Action::Publish { epoch, configs } => {
                    let (center, inputs) = (center.clone(), inputs.clone());
                    tokio::spawn(async move {
                        let request = Message::Publish(crate::protocol::Publish { epoch, configs });
                        if let Ok(Message::PublishReply(reply)) =
                            center.call(&request, timeout).await
                        {
                            let _ = inputs.send(Input::Published(reply));
                        }
                    });
                }
                Action::Persist(durable) => store.save(&durable),
                Action::Alarm(_) | Action::Note(_) => {}
            }
        }
        observer.on_state(clock.now(), &controller);
        let wait = controller.next_tick().saturating_since(clock.now());
        // `biased`: an unbiased select draws its branch order from tokio's own random number
        // generator, which the simulator does not control.
        tokio::select! {
            biased;
            _ = tokio::time::sleep(wait) => controller.tick(clock.now()),
            input = received.recv() => match input {
                Some(Input::Report(node, report)) => {
                    observer.on_report(clock.now(), node, &report);
                    controller.handle_report(clock.now(), node, report)
                }
                Some(Input::Refused(node, round)) => {
                    tracing::debug!(%node, round, "connection refused");
                    controller.handle_refused(node, round)
                }
                Some(Input::Published(reply)) => controller.handle_publish_reply(clock.now(), reply),
                None => return,
            },
        }
    }
}
