//! The controller's service: drives the sans-IO [`Controller`] with a clock, heartbeats over
//! TCP (or any other [`NodeLink`]), the config center, a durable store and alarm sinks.

use crate::controller::{Action, Controller, Durable, Orders, Topology};
use crate::params::Params;
use crate::protocol::{Heartbeat, NodeReport};
use crate::service::persist::Barrier;
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

/// Heartbeats in flight to one node at once: one per round that a round trip as long as the
/// timeout spans, and room for the extra rounds the controller sends between them (a
/// failover's, a promotion's, a stop point's grant). A heartbeat with no free slot counts as
/// lost: with four slots, a backup across an ocean (round trips of 270 ms, three rounds in
/// flight) was declared failed when a failover's extra round took the last slot.
fn heartbeat_slots(params: &Params) -> usize {
    params
        .heartbeat_timeout_ms
        .div_ceil(params.heartbeat_interval_ms) as usize
        + 4
}

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

/// How the controller reaches the config center: a publication in, the center's reply out
/// (`None`: no reply in time). A controller replica publishes into etcd and then its own
/// center (`control_plane::center::EtcdCenter`); a single controller, to the center in its
/// own process; a center elsewhere is reached over TCP ([`Peer`]).
pub trait CenterLink: Send + Sync {
    /// Delivers `publish`.
    fn publish(
        &self,
        publish: crate::protocol::Publish,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Option<crate::protocol::PublishReply>> + Send + '_>>;
}

impl CenterLink for Peer {
    fn publish(
        &self,
        publish: crate::protocol::Publish,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Option<crate::protocol::PublishReply>> + Send + '_>> {
        Box::pin(async move {
            match self.call(&Message::Publish(publish), timeout).await {
                Ok(Message::PublishReply(reply)) => Some(reply),
                _ => None,
            }
        })
    }
}

impl CenterLink for crate::service::config_center::CenterService {
    fn publish(
        &self,
        publish: crate::protocol::Publish,
        _timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Option<crate::protocol::PublishReply>> + Send + '_>> {
        let reply = crate::service::config_center::CenterService::publish(self, publish);
        Box::pin(std::future::ready(Some(reply)))
    }
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

/// Where the controller's durable state lives: a local file for a single controller, etcd
/// for replicas (`crate::control_plane`).
pub trait Store: Send + Sync {
    /// The last saved state, if any.
    fn load(&self) -> StoreFuture<'_, Option<Durable>>;
    /// Saves `state` durably before returning. An error means the controller may not act on
    /// it: it stops at once.
    fn save<'a>(&'a self, state: &'a Durable) -> StoreFuture<'a, ()>;
    /// Until when (the controller's clock) this process may act on the state: a replica
    /// leads only while its etcd lease is surely alive. `None`: no bound.
    fn act_until(&self) -> Option<Time> {
        None
    }
    /// The operators' standing orders ([`Orders`]), read only while a failover waits for
    /// them. An error is logged and the read tried again a round later: an order that
    /// cannot be read is one not given yet. None, by default.
    fn orders(&self) -> StoreFuture<'_, Orders> {
        Box::pin(std::future::ready(Ok(Orders::default())))
    }
}

/// What a [`Store`] returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Stopped>> + Send + 'a>>;

/// Why the controller stopped: it never acts on a state it could not persist, nor past its
/// store's deadline.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    /// The replica's leadership ended or is in doubt.
    #[error(transparent)]
    Lead(#[from] crate::control_plane::LeadError),
    /// The state could not be read or written.
    #[error("cannot persist the controller state: {0}")]
    Io(String),
    /// The loop did not run for this long (the process was paused, or starved): every
    /// heartbeat it sent looks unanswered, through no fault of the nodes. It restarts from
    /// the durable state instead, as a restarted controller does, with grace for the nodes.
    #[error("the controller's loop stalled for {0} ms; restarting from the durable state")]
    Stalled(u64),
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
    /// A state the controller persisted is durable at `now`. Nothing by default.
    fn on_persisted(&self, _now: Time, _state: &Durable) {}
    /// The controller was started (or restored from its store) at `now`, before its first
    /// action. Nothing by default.
    fn on_started(&self, _now: Time, _controller: &Controller) {}
    /// The controller stopped at `now` for `why`; it takes no action after this. Nothing by
    /// default.
    fn on_stopped(&self, _now: Time, _why: &Stopped) {}
    /// A controller replica has not reached etcd since `lost` (`Some`), for longer than its
    /// lease TTL: it cannot lead, and while no replica can, the primary's writes are refused
    /// once its leases run out. `None`: it reaches etcd again. Told at a replica's start too
    /// (`None`). Nothing by default.
    fn on_etcd_reach(&self, _now: Time, _lost: Option<Time>) {}
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
#[derive(Clone)]
pub struct ControllerOptions {
    /// The parameters.
    pub params: Params,
    /// The clusters and users.
    pub topology: Topology,
    /// The config center's address.
    pub config_center: String,
    /// Links replacing the TCP [`Peer`] for some nodes (all of them, in the real controller).
    links: BTreeMap<NodeId, Arc<dyn NodeLink>>,
    /// The config center in this process, replacing the TCP [`Peer`] to `config_center`.
    center_link: Option<Arc<dyn CenterLink>>,
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
            center_link: None,
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

    /// The deliberate bug these options carry (simulator builds only).
    #[cfg(feature = "mutants")]
    pub fn mutation(&self) -> crate::controller::Mutation {
        self.mutation
    }

    /// Publishes to `center` (in this process) instead of over TCP to `config_center`.
    pub fn with_center_link(mut self, center: Arc<dyn CenterLink>) -> ControllerOptions {
        self.center_link = Some(center);
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

/// Runs the controller until the task is dropped, or until its store fails or its deadline
/// passes (then it returns why, having taken no action since). Resumes from `store` if it
/// holds a state.
pub async fn run_controller(
    options: ControllerOptions,
    clock: Clock,
    store: Arc<dyn Store>,
    observer: Arc<dyn ControllerObserver>,
) -> Stopped {
    let stopped = |why: Stopped| {
        observer.on_stopped(clock.now(), &why);
        why
    };
    #[cfg(feature = "mutants")]
    let mutation = options.mutation;
    let saved = match crate::mutated!(options, ForgetEpoch) {
        true => None,
        false => match store.load().await {
            Ok(saved) => saved,
            Err(why) => return stopped(why),
        },
    };
    let ControllerOptions {
        params,
        topology,
        config_center,
        mut links,
        center_link,
        ..
    } = options;
    let now = clock.now();
    let slots = heartbeat_slots(&params);
    let peers: BTreeMap<NodeId, Arc<dyn NodeLink>> = topology
        .addresses
        .iter()
        .map(|(&node, address)| {
            let link = links
                .remove(&node)
                .unwrap_or_else(|| Arc::new(Peer::with_slots(address.clone(), slots)));
            (node, link)
        })
        .collect();
    let center = center_link.unwrap_or_else(|| Arc::new(Peer::new(config_center)));
    let timeout = params.heartbeat_timeout();
    let mut controller = match saved {
        Some(durable) => Controller::restore(params, topology, durable, now),
        None => Controller::new(params, topology, now),
    };
    #[cfg(feature = "mutants")]
    controller.set_mutation(mutation);
    observer.on_started(now, &controller);
    let (inputs, mut received) = mpsc::unbounded_channel();
    let effects = Effects {
        peers,
        center,
        inputs,
        timeout,
    };
    #[cfg(feature = "mutants")]
    let keeps_acting = mutation == crate::controller::Mutation::DeposedKeepsActing;
    #[cfg(not(feature = "mutants"))]
    let keeps_acting = false;
    let expired = || {
        let past = store.act_until().is_some_and(|until| clock.now() >= until);
        past && !keeps_acting
    };
    let mut barrier = Barrier::new();
    let mut saving: Option<SaveFuture> = None;
    // The operators' orders, read once a round while a failover waits for them.
    let mut reading: Option<OrdersFuture> = None;
    let mut next_read = clock.now();
    // The loop wakes at least every heartbeat interval; a gap much longer than that is a
    // stall of the process, not a silence of the nodes.
    let stall = params_interval_and_timeout(&controller);
    let mut awake_at = clock.now();
    loop {
        // Only a replica restarts on a stall (its successor or itself takes over); a single
        // controller on a state file keeps going, as before the control plane.
        let gap = clock.now().saturating_since(awake_at);
        if gap > stall && store.act_until().is_some() {
            return stopped(Stopped::Stalled(gap.as_millis() as u64));
        }
        awake_at = clock.now();
        while let Some(action) = controller.poll_action() {
            if expired() {
                return stopped(crate::control_plane::LeadError::Expired.into());
            }
            if let Action::Persist(state) = &action {
                observer.on_action(clock.now(), &action);
                barrier.persist(state.clone());
            } else if let Some(action) = barrier.pass(action) {
                observer.on_action(clock.now(), &action);
                effects.carry_out(action);
            }
        }
        if saving.is_none() {
            saving = barrier.start().map(|state| save(store.clone(), state));
        }
        if reading.is_none() && controller.awaiting_operator() && clock.now() >= next_read {
            next_read = clock.now() + controller.params().heartbeat_interval();
            reading = Some(read_orders(store.clone()));
        }
        observer.on_state(clock.now(), &controller);
        // Wake at the store's deadline too, to stop there rather than at the next input.
        let until = store.act_until().map_or(controller.next_tick(), |until| {
            until.min(controller.next_tick())
        });
        let wait = until.saturating_since(clock.now());
        // `biased`: an unbiased select draws its branch order from tokio's own random number
        // generator, which the simulator does not control.
        tokio::select! {
            biased;
            (state, done) = async { saving.as_mut().expect("a save in flight").await }, if saving.is_some() => {
                saving = None;
                if let Err(why) = done {
                    return stopped(why);
                }
                // A save answered after the deadline (the process was paused with it in
                // flight) may have been overtaken by a successor's: trust nothing past it.
                if expired() {
                    return stopped(crate::control_plane::LeadError::Expired.into());
                }
                observer.on_persisted(clock.now(), &state);
                barrier.saved(state);
                for action in barrier.release() {
                    if expired() {
                        return stopped(crate::control_plane::LeadError::Expired.into());
                    }
                    observer.on_action(clock.now(), &action);
                    effects.carry_out(action);
                }
                for node in barrier.resend() {
                    controller.resend(clock.now(), node);
                }
            }
            orders = async { reading.as_mut().expect("a read in flight").await }, if reading.is_some() => {
                reading = None;
                match orders {
                    Ok(orders) => controller.approve(orders.approved),
                    Err(e) => tracing::warn!(%e, "cannot read the operators' orders; trying again"),
                }
            }
            // Inputs before the tick: after a stall, the reports that came meanwhile are
            // taken before the timeouts are judged.
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
                None => unreachable!("the loop holds a sender"),
            },
            _ = tokio::time::sleep(wait) => {
                if expired() {
                    return stopped(crate::control_plane::LeadError::Expired.into());
                }
                controller.tick(clock.now())
            }
        }
    }
}

/// The longest the loop may go without running before it counts as stalled: an interval (it
/// wakes at least that often) and half a timeout (beyond that, a heartbeat it sent before the
/// stall may look unanswered through no fault of the node).
fn params_interval_and_timeout(controller: &Controller) -> Duration {
    let params = controller.params();
    params.heartbeat_interval() + params.heartbeat_timeout() / 2
}

/// A save in flight, with the state it saves.
type SaveFuture = Pin<Box<dyn Future<Output = (Durable, Result<(), Stopped>)> + Send>>;

fn save(store: Arc<dyn Store>, state: Durable) -> SaveFuture {
    Box::pin(async move {
        let done = store.save(&state).await;
        (state, done)
    })
}

/// A read of the operators' orders in flight.
type OrdersFuture = Pin<Box<dyn Future<Output = Result<Orders, Stopped>> + Send>>;

fn read_orders(store: Arc<dyn Store>) -> OrdersFuture {
    Box::pin(async move { store.orders().await })
}

/// Where the controller's actions go: heartbeats to the nodes, publications to the config
/// center, each on a task of its own whose answer comes back as an input.
struct Effects {
    peers: BTreeMap<NodeId, Arc<dyn NodeLink>>,
    center: Arc<dyn CenterLink>,
    inputs: mpsc::UnboundedSender<Input>,
    timeout: Duration,
}

impl Effects {
    fn carry_out(&self, action: Action) {
        let (inputs, timeout) = (self.inputs.clone(), self.timeout);
        match action {
            Action::Heartbeat { node, heartbeat } => {
                let peer = self.peers[&node].clone();
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
                let center = self.center.clone();
                tokio::spawn(async move {
                    let publish = crate::protocol::Publish { epoch, configs };
                    if let Some(reply) = center.publish(publish, timeout).await {
                        let _ = inputs.send(Input::Published(reply));
                    }
                });
            }
            Action::Persist(_) | Action::Alarm(_) | Action::Note(_) => {}
        }
    }
}
