//! The simulated control plane: madsim's simulated etcd on a node of its own, and the
//! controller replicas `controller/0..N-1`, each running the real replica code
//! (`standby::control_plane`) against it; and the observer that traces what each replica
//! does, with the term it acts in.

use crate::trace::{Event, Trace};
use madsim::runtime::{Handle, NodeHandle};
use standby::config_center::ConfigCenter;
use standby::control_plane::hold::Hold;
use standby::control_plane::replica::run_replica;
use standby::control_plane::EtcdOptions;
use standby::controller::{Action, Controller, Durable, Mutation};
use standby::service::config_center::{CenterObserver, CenterService};
use standby::service::controller::{ControllerObserver, ControllerOptions, Stopped};
use standby::service::Tasks;
use standby::time::{Clock, Time};
use standby::types::{Epoch, UserId};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

const ETCD_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
/// The operator's machine, where `standby` subcommands run (scenario events).
const OPERATOR_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);
const ETCD_PORT: u16 = 2379;
/// Where each replica's config center listens, on the replica's address.
const CENTER_PORT: u16 = 7001;

/// Replica `r`'s address.
pub fn replica_ip(replica: u16) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, replica as u8 + 1)
}

/// Replica `r`'s config center's address.
pub fn center_address(replica: u16) -> String {
    format!("{}:{CENTER_PORT}", replica_ip(replica))
}

/// Replica `r`'s name: its node's name, and its value in the election.
pub fn replica_name(replica: u16) -> String {
    format!("controller/{replica}")
}

/// What the replicas' observers share: the world's view of who leads, and the last state a
/// leader made durable.
#[derive(Debug, Default)]
pub struct Shared {
    /// The replica leading now, if any (the world resolves `controller/leader` with it).
    pub leader: Mutex<Option<u16>>,
    /// The state the last leader persisted and acted on.
    pub durable: Mutex<Option<Durable>>,
    /// The term of the last action any replica took.
    acting: Mutex<Option<u64>>,
    /// The last epoch traced as persisted.
    last_epoch: Mutex<Epoch>,
}

/// Spawns the simulated etcd. It keeps its data in memory only: an etcd outage is a pause or
/// a partition, never a kill.
pub fn spawn_etcd(handle: &Handle) -> NodeHandle {
    handle
        .create_node()
        .name("etcd")
        .ip(IpAddr::V4(ETCD_IP))
        .init(|| async {
            let address = SocketAddr::from((ETCD_IP, ETCD_PORT));
            if let Err(e) = etcd_client::SimServer::builder().serve(address).await {
                tracing::error!(%e, "simulated etcd stopped");
            }
        })
        .build()
}

/// The etcd options every replica of a scenario uses.
/// The options of one replica's etcd client; `hold` is the replica's own (see
/// [`standby::control_plane::hold`]).
pub fn etcd_options(
    lease_ttl_s: u64,
    max_clock_drift_ppm: u32,
    mutation: Mutation,
    hold: Hold,
) -> EtcdOptions {
    EtcdOptions {
        endpoints: vec![format!("{ETCD_IP}:{ETCD_PORT}")],
        prefix: "standby".into(),
        lease_ttl_s,
        // Short enough that a leader notices a lost etcd well inside its lease.
        // Each simulated etcd call opens a connection of its own: two round trips, of up to
        // 150 ms one way each under the swarm's latency faults.
        call_timeout: Duration::from_secs(2),
        early_expiry: Duration::from_secs(1),
        max_clock_drift_ppm,
        credentials: None,
        mutation,
        hold,
    }
}

/// Spawns replica `replica`; `options` makes the controller's options for each term.
pub fn spawn_replica(
    handle: &Handle,
    replica: u16,
    etcd: EtcdOptions,
    options: Arc<dyn Fn() -> ControllerOptions + Send + Sync>,
    clock: Clock,
    trace: &Trace,
    shared: Arc<Shared>,
) -> NodeHandle {
    let observer = Arc::new(ReplicaTrace {
        replica,
        trace: trace.clone(),
        shared,
        term: Mutex::new(0),
        etcd_lost: Mutex::new(false),
    });
    let center_trace = Arc::new(CenterTrace {
        replica,
        trace: trace.clone(),
    });
    handle
        .create_node()
        .name(replica_name(replica))
        .ip(IpAddr::V4(replica_ip(replica)))
        .init(move || {
            let (etcd, options, clock) = (etcd.clone(), options.clone(), clock.clone());
            let observer: Arc<dyn ControllerObserver> = observer.clone();
            let center_trace: Arc<dyn CenterObserver> = center_trace.clone();
            async move {
                // Its center keeps nothing across a crash: it refills from etcd.
                let state = Arc::new(Mutex::new(ConfigCenter::new()));
                let center = CenterService::closed_to_publications(state, center_trace);
                let listener = TcpListener::bind(center_address(replica)).await;
                let mut serving = Tasks::default();
                serving.spawn(center.clone().run(listener.expect("bind")));
                let make = move |_: &_| options();
                // A simulated replica is never asked to stop: it is killed, or runs to the end.
                let (_never, stop) = tokio::sync::watch::channel(false);
                let name = replica_name(replica);
                run_replica(name, etcd, make, clock, observer, center, stop).await
            }
        })
        .build()
}

/// Traces one replica's config center.
struct CenterTrace {
    replica: u16,
    trace: Trace,
}

impl CenterObserver for CenterTrace {
    fn on_publish(&self, epoch: Epoch, stored: bool) {
        self.trace.record(Event::CenterPublished {
            replica: self.replica,
            epoch,
            stored,
        });
    }
    fn on_ack(&self, user: UserId, epoch: Epoch) {
        self.trace.record(Event::CenterAck {
            replica: self.replica,
            user,
            epoch,
        });
    }
}

/// Traces one replica's controller.
struct ReplicaTrace {
    replica: u16,
    trace: Trace,
    shared: Arc<Shared>,
    /// The term it leads in (its controller's incarnation), once started.
    term: Mutex<u64>,
    /// Whether its etcd alarm is raised (kept across its restarts, to trace changes only).
    etcd_lost: Mutex<bool>,
}

impl ReplicaTrace {
    /// Records a switch of the acting term: the checker requires the terms of these events to
    /// rise (a replica of an older term acting after a newer one is two acting leaders).
    fn acts(&self) {
        let term = *self.term.lock().expect("term");
        let mut acting = self.shared.acting.lock().expect("acting");
        if *acting != Some(term) {
            *acting = Some(term);
            self.trace.record(Event::Acting {
                replica: self.replica,
                term,
            });
        }
    }
}

impl ReplicaTrace {
    /// Traces `state`'s epoch as persisted, unless it already was.
    fn traced_durable(&self, state: &Durable) {
        let mut last = self.shared.last_epoch.lock().expect("epoch");
        if state.epoch != *last {
            *last = state.epoch;
            self.trace.record(Event::EpochPersisted {
                epoch: state.epoch,
                shards: (state.shards.iter())
                    .map(|(s, st)| (*s, (st.primary, st.epoch)))
                    .collect(),
            });
        }
    }
}

impl ControllerObserver for ReplicaTrace {
    fn on_started(&self, _now: Time, controller: &Controller) {
        let term = controller.durable().incarnation;
        *self.term.lock().expect("term") = term;
        *self.shared.leader.lock().expect("leader") = Some(self.replica);
        self.trace.record(Event::Leading {
            replica: self.replica,
            term,
        });
        // The epoch found in etcd is durable, though a predecessor may have died before it
        // heard so (and never traced it).
        self.traced_durable(controller.durable());
    }

    fn on_stopped(&self, _now: Time, why: &Stopped) {
        let mut leader = self.shared.leader.lock().expect("leader");
        if *leader == Some(self.replica) {
            *leader = None;
        }
        self.trace.record(Event::LeadLost {
            replica: self.replica,
            why: why.to_string(),
        });
    }

    fn on_etcd_reach(&self, _now: Time, lost: Option<Time>) {
        let mut alarmed = self.etcd_lost.lock().expect("etcd alarm");
        if *alarmed == lost.is_some() {
            return;
        }
        *alarmed = lost.is_some();
        let replica = self.replica;
        self.trace.record(match lost {
            Some(since) => Event::EtcdUnreachable { replica, since },
            None => Event::EtcdReachable { replica },
        });
    }

    fn on_persisted(&self, _now: Time, state: &Durable) {
        *self.shared.durable.lock().expect("durable") = Some(state.clone());
        self.traced_durable(state);
    }

    fn on_report(
        &self,
        _now: Time,
        node: standby::types::NodeId,
        report: &standby::protocol::NodeReport,
    ) {
        if self.trace.records_messages() {
            self.trace.record(Event::Report {
                node,
                round: report.round,
                epoch: report.epoch,
                role: format!("{:?}", report.role),
                last_lsn: report.last_lsn,
            });
        }
    }

    fn on_action(&self, _now: Time, action: &Action) {
        let event = match action {
            Action::Note(note) => Event::Controller(note.clone()),
            Action::Alarm(alarm) => {
                self.acts();
                Event::Alarm(alarm.clone())
            }
            Action::Publish { epoch, configs } => {
                self.acts();
                Event::PublishSent {
                    epoch: *epoch,
                    users: configs.len(),
                }
            }
            // Traced when durable (`on_persisted`): a save a deposed leader tried is not one.
            Action::Persist(_) => return,
            Action::Heartbeat { node, heartbeat } => {
                self.acts();
                if !self.trace.records_messages() {
                    return;
                }
                Event::Heartbeat {
                    node: *node,
                    round: heartbeat.round,
                    lease: heartbeat.grant.is_some(),
                    command: heartbeat.command.as_ref().map(|c| format!("{c:?}")),
                }
            }
        };
        self.trace.record(event);
    }
}

/// Spawns the operator's machine: nothing runs there until an operator's command does.
pub fn spawn_operator(handle: &Handle) -> NodeHandle {
    handle
        .create_node()
        .name("operator")
        .ip(IpAddr::V4(OPERATOR_IP))
        .build()
}

/// Runs `standby promote` on the operator's machine: the real command's code, against the
/// simulated etcd, its outcome traced.
pub fn approve(operator: &NodeHandle, trace: &Trace) {
    let trace = trace.clone();
    operator.spawn(async move {
        let (_, hold) = standby::control_plane::hold::hold(|_| {});
        let options = etcd_options(1, 0, Mutation::None, hold);
        let approved = async {
            let client = standby::control_plane::connect(&options).await?;
            standby::control_plane::orders::approve(&client, &options, None).await
        };
        let (outcome, approved) = match approved.await {
            Ok(Ok(ids)) => (format!("approved promotion-held alarm(s) {ids:?}"), ids),
            Ok(Err(why)) => (format!("refused: {why}"), Vec::new()),
            Err(e) => (format!("failed: {e}"), Vec::new()),
        };
        trace.record(Event::Operator {
            command: "standby promote".into(),
            outcome,
            approved,
        });
    });
}
