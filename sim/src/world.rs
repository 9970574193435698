//! The simulated world: storage nodes, the config center, the controller and users, each a
//! madsim node on the simulated network, running the real services; and the fault injector
//! that follows the scenario's schedule under the seed.

use crate::control_plane::{self, Shared};
use crate::scenario::{Fault, FaultKind, Party, Scenario, Trigger};
use crate::trace::{Event, Trace};
use crate::user::{run_user, UserContext};
use madsim::net::NetSim;
use madsim::rand::Rng;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId as SimId;
use standby::control_plane::hold::HoldSwitch;
use standby::controller::{Durable, Mutation, Topology};
use standby::node::{Node, NodeDisk, NodeEvent};
use standby::protocol::Role;
use standby::service::controller::ControllerOptions;
use standby::service::loss::{self, Transmission};
use standby::service::node::{NodeObserver, NodeOptions, NodeService};
use standby::time::{Clock, Time};
use standby::types::{Cluster, NodeId, UserId};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

const PORT: u16 = 7000;

/// After the scenario's duration, users stop writing and the world runs this much longer, so
/// that replication can drain before the final state is judged.
pub const DRAIN: Duration = Duration::from_secs(2);

/// How much longer than [`DRAIN`] the world waits, in steps of [`DRAIN_STEP`], while a backup
/// still lacks entries its primary holds. Under 5% loss a last shipment can be held up for
/// seconds (a lost frame twice, the shipment's deadline doubled, a lost SYN on the reconnect:
/// 1 s), and the final state was judged before it landed (swarm seed 53961). Long enough for
/// the longest deadline (8 replication timeouts) and a few retransmissions; a backup that
/// never catches up still fails convergence.
pub const DRAIN_MORE: Duration = Duration::from_secs(10);
const DRAIN_STEP: Duration = Duration::from_millis(100);

/// Everything a finished run leaves behind for the checkers.
#[derive(Debug)]
pub struct RunOutput {
    /// The trace.
    pub events: Vec<(Time, Event)>,
    /// Every node's disk at the end.
    pub disks: BTreeMap<NodeId, NodeDisk>,
    /// The controller's durable state at the end.
    pub durable: Option<Durable>,
    /// The fault schedule as drawn by the seed and the run: (start, heal) per fault, in ms;
    /// `None` for a fault timed by a controller transition that did not come in time.
    pub schedule: Vec<Option<(u64, Option<u64>)>>,
}

thread_local! {
    /// Test-only: makes this thread's runs depend on something outside the seed.
    static NONDETERMINISTIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Counts runs in this process; only the nondeterministic harness reads it.
static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Test-only: from now on, runs on this thread are deliberately nondeterministic (each
/// starts its faults a little later than the previous one did), so that a determinism check
/// can be shown to catch a world whose behaviour does not follow from the seed alone.
#[doc(hidden)]
pub fn make_this_thread_nondeterministic(on: bool) {
    NONDETERMINISTIC.with(|flag| flag.set(on));
}

/// Runs `scenario` under `seed` in a fresh madsim runtime.
pub fn run(scenario: &Scenario, seed: u64, mutation: Mutation) -> RunOutput {
    run_with(scenario, seed, mutation, false)
}

/// Like [`run`]; with `messages`, every heartbeat and report is recorded too (what `replay
/// --verbose` shows). The run itself is the same: the trace hash leaves them out.
pub fn run_with(scenario: &Scenario, seed: u64, mutation: Mutation, messages: bool) -> RunOutput {
    let mut config = madsim::Config::default();
    config.net.send_latency = latency(
        scenario.network.latency_min_ms,
        scenario.network.latency_max_ms,
    );
    // Loss is modelled as TCP retransmission delays (see `set_loss`), not by madsim.
    config.net.packet_loss_rate = 0.0;
    let mut runtime = madsim::runtime::Runtime::with_seed_and_config(seed, config);
    // A run that outlives its schedule by this much is stuck: fail it rather than hang.
    runtime.set_time_limit(Duration::from_secs(scenario.duration_s + 60) + DRAIN);
    let scenario = scenario.clone();
    let skew = match NONDETERMINISTIC.with(|flag| flag.get()) {
        true => {
            Duration::from_millis(1 + RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 7)
        }
        false => Duration::ZERO,
    };
    let out = runtime.block_on(async move {
        let world = World::build(scenario, mutation, messages).await;
        madsim::time::sleep(skew).await;
        world.run().await
    });
    loss::set_hook(None);
    out
}

/// When `fault`, started at `start`, heals: `None` if it never does, or not before `end`.
fn heal_time(fault: &Fault, start: u64, end: u64) -> Option<u64> {
    fault.duration_ms.map(|d| start + d).filter(|&h| h < end)
}

/// The faults of a run that wait for a controller transition, and how often each one's
/// transition has happened so far.
struct Triggers {
    /// The faults still waiting, by index, with their triggers and durations.
    waiting: Vec<(usize, Fault)>,
    /// Trace events already counted.
    seen: usize,
    /// Per waiting fault, how often its transition has happened since its `from_ms`.
    counts: BTreeMap<usize, u32>,
}

impl Triggers {
    fn new(scenario: &Scenario) -> Triggers {
        let waiting = (scenario.faults.iter().cloned().enumerate())
            .filter(|(_, f)| f.after.is_some())
            .collect();
        Triggers {
            waiting,
            seen: 0,
            counts: BTreeMap::new(),
        }
    }

    /// Counts the transitions recorded since the last call; returns every waiting fault they
    /// start, with its start and heal, in ms. A fault whose start would be at or past its
    /// `before_ms` never starts.
    fn resolve(&mut self, trace: &Trace, end: u64) -> Vec<(usize, u64, Option<u64>)> {
        let mut started = Vec::new();
        let (counts, waiting) = (&mut self.counts, &mut self.waiting);
        self.seen = trace.scan_from(self.seen, |at, event| {
            let Some(name) = crate::effects::transition(event) else {
                return;
            };
            waiting.retain(|(i, fault)| {
                let trigger = fault.after.as_ref().expect("a waiting fault has a trigger");
                if trigger.transition != name || at < Time::from_millis(trigger.from_ms) {
                    return true;
                }
                let count = counts.entry(*i).or_default();
                *count += 1;
                if trigger.nth != *count {
                    return true;
                }
                let start = at.as_millis() + trigger.delay_ms;
                if start < trigger.before_ms.min(end) {
                    started.push((*i, start, heal_time(fault, start, end)));
                }
                false
            });
        });
        started
    }
}

/// Linux's least retransmission timeout: what a lost segment costs at the least.
pub const TCP_MIN_RTO: Duration = Duration::from_millis(200);
/// Linux's first SYN retransmission timeout: what a lost connection attempt costs.
const TCP_SYN_RTO: Duration = Duration::from_secs(1);

/// From now on, each frame and connection attempt in this thread's world is lost with
/// probability `percent`/100 per try, and costs TCP's retransmission timeouts when it is.
fn set_loss(percent: f64) {
    let rate = percent / 100.0;
    if rate <= 0.0 {
        return loss::set_hook(None);
    }
    loss::set_hook(Some(Box::new(move |transmission| {
        let first = match transmission {
            Transmission::Frame => TCP_MIN_RTO,
            Transmission::Connect => TCP_SYN_RTO,
        };
        loss::retransmission_delay(first, || madsim::rand::thread_rng().gen_bool(rate))
    })));
}

fn latency(min_ms: u64, max_ms: u64) -> std::ops::Range<Duration> {
    Duration::from_millis(min_ms)..Duration::from_millis(max_ms) + Duration::from_micros(1)
}

fn address(ip: Ipv4Addr) -> String {
    format!("{ip}:{PORT}")
}

fn node_ip(node: NodeId) -> Ipv4Addr {
    let cluster = match node.cluster {
        Cluster::A => 1,
        Cluster::B => 2,
    };
    Ipv4Addr::new(10, cluster, 0, node.index as u8 + 1)
}

fn user_ip(user: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 3, (user / 250) as u8, (user % 250) as u8 + 1)
}

struct World {
    scenario: Scenario,
    trace: Trace,
    handle: Handle,
    disks: BTreeMap<NodeId, Arc<Mutex<Node>>>,
    nodes: BTreeMap<NodeId, NodeHandle>,
    /// The controller replicas, `controller/0..N-1`.
    replicas: Vec<NodeHandle>,
    /// Each replica's hold on its guarded writes to etcd (`held` partitions), and how many
    /// running faults hold it.
    holds: Vec<(HoldSwitch, u32)>,
    etcd: NodeHandle,
    /// The operator's machine, if the scenario has operator's commands.
    operator: Option<NodeHandle>,
    users: Vec<NodeHandle>,
    /// Who leads, and the last durable state, as the replicas' observers saw them.
    shared: Arc<Shared>,
    /// The replica each running replica fault (by index) hit: `controller/leader` is resolved
    /// at the fault's start, and its heal must reach the same replica.
    hit: BTreeMap<usize, Vec<u16>>,
    /// The same for each running partition: the parties of each side.
    partitioned: BTreeMap<usize, (Vec<SimId>, Vec<SimId>)>,
    stop_users: Arc<AtomicBool>,
    /// Directed links currently cut, counted so that overlapping faults heal correctly.
    cut: BTreeMap<(SimId, SimId), u32>,
    down: BTreeSet<NodeId>,
    truth: BTreeMap<Cluster, Vec<u16>>,
}

impl World {
    async fn build(scenario: Scenario, mutation: Mutation, messages: bool) -> World {
        let handle = Handle::current();
        set_loss(scenario.network.packet_loss_percent);
        let trace = Trace::new().with_messages(messages);
        let origin = madsim::time::Instant::now();
        let n = scenario.topology.nodes_per_cluster;
        let topology = Topology {
            nodes_per_cluster: n,
            addresses: Cluster::BOTH
                .into_iter()
                .flat_map(|c| (0..n).map(move |i| NodeId::new(c, i)))
                .map(|node| (node, address(node_ip(node))))
                .collect(),
            users: (0..scenario.topology.users)
                .map(|u| (UserId(u), scenario.topology.shard_of(u)))
                .collect(),
        };
        let mut disks = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        for &node in topology.addresses.keys() {
            let mut fresh = Node::new(node);
            fresh.mutation = mutation;
            let disk = Arc::new(Mutex::new(fresh));
            let drift = draw_drift(scenario.topology.clock_drift_ppm);
            let clock = Clock::with_origin(origin, drift);
            nodes.insert(
                node,
                spawn_storage(&handle, &scenario, node, disk.clone(), clock, &trace),
            );
            disks.insert(node, disk);
        }
        let etcd = control_plane::spawn_etcd(&handle);
        let shared = Arc::new(Shared::default());
        let (params, controller_topology) = (scenario.controller.clone(), topology.clone());
        let options: Arc<dyn Fn() -> ControllerOptions + Send + Sync> = Arc::new(move || {
            // Each replica publishes into etcd and its own center (`with_center_link`).
            ControllerOptions::new(params.clone(), controller_topology.clone(), String::new())
                .with_mutation(mutation)
        });
        let plane = &scenario.control_plane;
        let mut holds = Vec::new();
        let replicas = (0..plane.replicas)
            .map(|r| {
                let traced = trace.clone();
                let (switch, hold) = standby::control_plane::hold::hold(move |held| {
                    let held_ms = held.as_millis() as u64;
                    traced.record(Event::HeldWriteDelivered {
                        replica: r,
                        held_ms,
                    });
                });
                holds.push(switch);
                control_plane::spawn_replica(
                    &handle,
                    r,
                    control_plane::etcd_options(
                        plane.etcd_lease_ttl_s,
                        scenario.controller.max_clock_drift_ppm,
                        mutation,
                        hold,
                    ),
                    options.clone(),
                    Clock::with_origin(origin, 0),
                    &trace,
                    shared.clone(),
                )
            })
            .collect();
        let stop_users = Arc::new(AtomicBool::new(false));
        let users = (0..scenario.topology.users)
            .map(|u| {
                let centers = (0..plane.replicas).map(control_plane::center_address);
                let user = (u, centers.collect());
                spawn_user(&handle, &scenario, &topology, user, &trace, &stop_users)
            })
            .collect();
        let truth = Cluster::BOTH.into_iter().map(|c| (c, Vec::new())).collect();
        // Only where it is needed: a node more changes every other scenario's traces.
        let commands = (scenario.faults.iter()).any(|f| f.kind == FaultKind::Approve);
        let operator = commands.then(|| control_plane::spawn_operator(&handle));
        World {
            scenario,
            trace,
            handle,
            disks,
            nodes,
            replicas,
            holds: holds.into_iter().map(|switch| (switch, 0)).collect(),
            etcd,
            operator,
            users,
            shared,
            hit: BTreeMap::new(),
            partitioned: BTreeMap::new(),
            stop_users,
            cut: BTreeMap::new(),
            down: BTreeSet::new(),
            truth,
        }
    }

    async fn run(mut self) -> RunOutput {
        let mut schedule = self.draw_schedule();
        let mut steps: BTreeSet<(u64, usize, bool)> = BTreeSet::new();
        for (i, slot) in schedule.iter().enumerate() {
            if let Some((start, heal)) = slot {
                steps.insert((*start, i, false));
                steps.extend(heal.map(|heal| (heal, i, true)));
            }
        }
        let mut triggers = Triggers::new(&self.scenario);
        let end = self.scenario.duration_s * 1000;
        let story = self.trace.story_changed();
        loop {
            let next_ms = steps.first().map_or(end, |step| step.0);
            if triggers.waiting.is_empty() {
                let Some((at_ms, i, heal)) = steps.pop_first() else {
                    break;
                };
                self.sleep_until(at_ms).await;
                self.apply(i, heal);
                continue;
            }
            // `biased`: an unbiased select draws its branch order from tokio's own random
            // number generator, which the simulator does not control.
            tokio::select! {
                biased;
                _ = story.notified() => {
                    let started = triggers.resolve(&self.trace, end);
                    for (i, start, heal) in started {
                        schedule[i] = Some((start, heal));
                        steps.insert((start, i, false));
                        steps.extend(heal.map(|heal| (heal, i, true)));
                    }
                }
                _ = self.sleep_until(next_ms) => match steps.pop_first() {
                    Some((_, i, heal)) => self.apply(i, heal),
                    None => break,
                },
            }
        }
        self.sleep_until(end).await;
        self.stop_users.store(true, Ordering::Relaxed);
        madsim::time::sleep(DRAIN).await;
        let mut more = Duration::ZERO;
        while more < DRAIN_MORE && !self.drained() {
            madsim::time::sleep(DRAIN_STEP).await;
            more += DRAIN_STEP;
        }
        let out = RunOutput {
            events: self.trace.events(),
            disks: (self.disks.iter())
                .map(|(&id, node)| (id, node.lock().expect("disk").disk.clone()))
                .collect(),
            durable: self.shared.durable.lock().expect("durable").clone(),
            schedule,
        };
        self.kill_everything();
        out
    }

    /// Whether every shard whose nodes are primary and backup of one epoch holds the same
    /// log on both (as far as its length tells).
    fn drained(&self) -> bool {
        let state = |id| {
            let node = self.disks[&id].lock().expect("disk");
            (node.disk.epoch, node.disk.role, node.disk.last_lsn())
        };
        (0..self.scenario.topology.nodes_per_cluster).all(|i| {
            let (a, b) = (
                state(NodeId::new(Cluster::A, i)),
                state(NodeId::new(Cluster::B, i)),
            );
            let roles = (a.1, b.1);
            let replicating = a.0 == b.0
                && matches!(
                    roles,
                    (Role::Primary, Role::Backup) | (Role::Backup, Role::Primary)
                );
            !replicating || a.2 == b.2
        })
    }

    /// Kills every simulated node. madsim does not drop the tasks still pending when its
    /// runtime is dropped (madsim-rs/madsim#242), so without this each run leaked its whole
    /// world, about 4 MB a seed: a 12,000-seed bench ran out of memory.
    fn kill_everything(&self) {
        let ids = (self.nodes.values().chain(self.users.iter()))
            .chain(self.replicas.iter())
            .chain([&self.etcd])
            .chain(self.operator.iter())
            .map(|node| node.id());
        for id in ids {
            self.handle.kill(id);
        }
    }

    async fn sleep_until(&self, at_ms: u64) {
        let now = self.trace.now();
        let target = Time::from_millis(at_ms);
        madsim::time::sleep(target.saturating_since(now)).await;
    }

    /// Draws every fault's start (and heal) time, in the order of the file. A fault timed by a
    /// controller transition has none yet.
    fn draw_schedule(&self) -> Vec<Option<(u64, Option<u64>)>> {
        let end = self.scenario.duration_s * 1000;
        (self.scenario.faults.iter())
            .map(|fault: &Fault| {
                let start = match (fault.at_ms, fault.window_ms) {
                    (Some(at), _) => at,
                    (None, Some([lo, hi])) => madsim::rand::thread_rng().gen_range(lo..=hi),
                    (None, None) => return None,
                };
                Some((start, heal_time(fault, start, end)))
            })
            .collect()
    }

    fn apply(&mut self, i: usize, heal: bool) {
        let fault = self.scenario.faults[i].clone();
        let what = fault.kind.describe();
        let after = (fault.after.as_ref())
            .filter(|_| !heal)
            .map(Trigger::describe);
        self.trace.record(Event::Fault {
            what,
            healed: heal,
            after,
        });
        match &fault.kind {
            FaultKind::Crash { nodes } => {
                for node in self.expand_nodes(nodes) {
                    self.crash(node, heal);
                }
            }
            FaultKind::Wipe { nodes } if !heal => {
                for node in self.expand_nodes(nodes) {
                    self.wipe(node);
                }
            }
            FaultKind::Wipe { .. } => {}
            FaultKind::Partition {
                from,
                to,
                one_way,
                held,
            } => {
                // Parties resolved at the start (`controller/leader` names a replica then);
                // the heal restores the same links.
                let (from, to) = match heal {
                    true => self.partitioned.remove(&i).unwrap_or_default(),
                    false => {
                        let sides = (self.expand_parties(from), self.expand_parties(to));
                        self.partitioned.insert(i, sides.clone());
                        sides
                    }
                };
                for &x in &from {
                    for &y in &to {
                        self.cut_link(x, y, heal);
                        if !one_way {
                            self.cut_link(y, x, heal);
                        }
                    }
                }
                if *held {
                    // After the links heal: what was held is sent over them.
                    self.hold_writes(from.iter().chain(&to), heal);
                }
            }
            FaultKind::LinkCut { shards } => {
                let all: Vec<u16> = (0..self.scenario.topology.nodes_per_cluster).collect();
                let shards = if shards.is_empty() { &all } else { shards };
                for &s in shards {
                    let a = self.nodes[&NodeId::new(Cluster::A, s)].id();
                    let b = self.nodes[&NodeId::new(Cluster::B, s)].id();
                    self.cut_link(a, b, heal);
                    self.cut_link(b, a, heal);
                }
            }
            FaultKind::PacketLoss { percent } => {
                let rate = if heal {
                    self.scenario.network.packet_loss_percent
                } else {
                    *percent
                };
                set_loss(rate);
            }
            FaultKind::Latency { min_ms, max_ms } => {
                let net = &self.scenario.network;
                let range = if heal {
                    latency(net.latency_min_ms, net.latency_max_ms)
                } else {
                    latency(*min_ms, *max_ms)
                };
                NetSim::current().update_config(|c| c.send_latency = range);
            }
            FaultKind::ControllerCrash => {
                self.hit_replicas(i, &["controller/leader".into()], heal, Hit::Crash)
            }
            FaultKind::ReplicaCrash { replicas } => {
                self.hit_replicas(i, replicas, heal, Hit::Crash)
            }
            FaultKind::ReplicaPause { replicas } => {
                self.hit_replicas(i, replicas, heal, Hit::Pause)
            }
            FaultKind::EtcdPause => match heal {
                true => self.handle.resume(self.etcd.id()),
                false => self.handle.pause(self.etcd.id()),
            },
            FaultKind::Approve => {
                let operator = self.operator.as_ref().expect("made for its commands");
                control_plane::approve(operator, &self.trace);
            }
        }
        self.update_truth();
    }

    /// Crashes (restarting at the heal) or pauses (resuming at the heal) the replicas that
    /// `names` resolve to at the fault's start.
    fn hit_replicas(&mut self, i: usize, names: &[String], heal: bool, hit: Hit) {
        let replicas = match heal {
            true => self.hit.remove(&i).unwrap_or_default(),
            false => {
                let replicas = self.resolve_replicas(names);
                self.hit.insert(i, replicas.clone());
                replicas
            }
        };
        for r in replicas {
            let id = self.replicas[r as usize].id();
            match (hit, heal) {
                (Hit::Crash, false) => {
                    self.handle.kill(id);
                    self.killed_leader(r);
                }
                (Hit::Crash, true) => self.handle.restart(id),
                (Hit::Pause, false) => self.handle.pause(id),
                (Hit::Pause, true) => self.handle.resume(id),
            }
        }
    }

    /// Holds (or, at the heal, sends) the guarded writes to etcd of the replicas among `ids`.
    fn hold_writes<'a>(&mut self, ids: impl Iterator<Item = &'a SimId>, heal: bool) {
        for &id in ids {
            let Some(r) = self.replicas.iter().position(|r| r.id() == id) else {
                continue;
            };
            let (switch, count) = &mut self.holds[r];
            *count = if heal {
                count.saturating_sub(1)
            } else {
                *count + 1
            };
            switch.set(*count > 0);
        }
    }

    /// A killed replica that led stops leading there and then (a paused one stops when it
    /// resumes, and says so itself): the leader-loss benchmark measures from this event.
    fn killed_leader(&self, replica: u16) {
        let mut leader = self.shared.leader.lock().expect("leader");
        if *leader == Some(replica) {
            *leader = None;
            self.trace.record(Event::LeadLost {
                replica,
                why: "killed".into(),
            });
        }
    }

    /// The replicas `names` stand for now: `controller` (all), `controller/N`,
    /// `controller/leader` (none if no replica leads at this instant).
    fn resolve_replicas(&self, names: &[String]) -> Vec<u16> {
        let mut out = BTreeSet::new();
        for name in names {
            match Party::parse(name, &self.scenario) {
                Ok(Party::Controller) => out.extend(0..self.replicas.len() as u16),
                Ok(Party::Replica(r)) => {
                    out.insert(r);
                }
                Ok(Party::Leader) => out.extend(*self.shared.leader.lock().expect("leader")),
                _ => {}
            }
        }
        out.into_iter().collect()
    }

    fn crash(&mut self, node: NodeId, heal: bool) {
        let id = self.nodes[&node].id();
        if heal {
            if self.down.remove(&node) {
                self.handle.restart(id);
            }
        } else if self.down.insert(node) {
            self.handle.kill(id);
        }
    }

    fn wipe(&mut self, node: NodeId) {
        let id = self.nodes[&node].id();
        self.handle.kill(id);
        let mut disk = self.disks[&node].lock().expect("disk");
        disk.disk = NodeDisk::new(node);
        disk.volatile = Default::default();
        drop(disk);
        self.trace.record(Event::Wiped { node });
        if !self.down.contains(&node) {
            self.handle.restart(id);
        }
    }

    fn cut_link(&mut self, from: SimId, to: SimId, heal: bool) {
        let net = NetSim::current();
        let count = self.cut.entry((from, to)).or_insert(0);
        if heal {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.cut.remove(&(from, to));
                net.unclog_link(from, to);
            }
        } else {
            *count += 1;
            net.clog_link(from, to);
        }
    }

    /// Records each cluster's true availability: nodes up and able to talk both ways with
    /// some controller replica.
    /// A node is available when it is up and the leading replica reaches it (any replica,
    /// while none leads): the leader alone judges the clusters, so a leader cut from the
    /// primary fails it over rightly, as a lone controller cut from it does. Taken when a fault
    /// starts or heals (the swarm draws one control-plane fault a run, so the leader it
    /// resolves stays the leader while it lasts).
    fn update_truth(&mut self) {
        let leader = *self.shared.leader.lock().expect("leader");
        let replicas: Vec<SimId> = match leader {
            Some(r) => vec![self.replicas[r as usize].id()],
            None => self.replicas.iter().map(|r| r.id()).collect(),
        };
        for cluster in Cluster::BOTH {
            let total = self.scenario.topology.nodes_per_cluster as usize;
            let down: Vec<u16> = (0..total as u16)
                .map(|i| NodeId::new(cluster, i))
                .filter(|n| {
                    let id = self.nodes[n].id();
                    self.down.contains(n)
                        || !replicas.iter().any(|&r| {
                            !self.cut.contains_key(&(id, r)) && !self.cut.contains_key(&(r, id))
                        })
                })
                .map(|n| n.index)
                .collect();
            if self.truth.get(&cluster) != Some(&down) {
                self.truth.insert(cluster, down.clone());
                self.trace.record(Event::Truth {
                    cluster,
                    available: total - down.len(),
                    total,
                    down,
                });
            }
        }
    }

    fn expand_nodes(&self, names: &[String]) -> Vec<NodeId> {
        let mut out = BTreeSet::new();
        for name in names {
            match Party::parse(name, &self.scenario) {
                Ok(Party::Node(node)) => {
                    out.insert(node);
                }
                Ok(Party::Cluster(c)) => out.extend(self.nodes.keys().filter(|n| n.cluster == c)),
                _ => {}
            }
        }
        out.into_iter().collect()
    }

    fn expand_parties(&self, names: &[String]) -> Vec<SimId> {
        let mut out = BTreeSet::new();
        for name in names {
            let ids: Vec<SimId> = match Party::parse(name, &self.scenario) {
                Ok(Party::Controller | Party::Replica(_) | Party::Leader) => {
                    (self.resolve_replicas(std::slice::from_ref(name)).iter())
                        .map(|&r| self.replicas[r as usize].id())
                        .collect()
                }
                Ok(Party::Etcd) => vec![self.etcd.id()],
                // Every replica serves a config center.
                Ok(Party::ConfigCenter) => self.replicas.iter().map(|r| r.id()).collect(),
                Ok(Party::Users) => self.users.iter().map(|u| u.id()).collect(),
                Ok(Party::User(u)) => vec![self.users[u as usize].id()],
                Ok(Party::Cluster(_)) | Ok(Party::Node(_)) => {
                    (self.expand_nodes(std::slice::from_ref(name)).iter())
                        .map(|n| self.nodes[n].id())
                        .collect()
                }
                Err(_) => Vec::new(),
            };
            out.extend(ids);
        }
        out.into_iter().collect()
    }
}

/// What a replica fault does to its replicas.
#[derive(Clone, Copy)]
enum Hit {
    Crash,
    Pause,
}

fn draw_drift(max_ppm: u32) -> i64 {
    if max_ppm == 0 {
        return 0;
    }
    let max = max_ppm as i64;
    madsim::rand::thread_rng().gen_range(-max..=max)
}

fn spawn_storage(
    handle: &Handle,
    scenario: &Scenario,
    node: NodeId,
    disk: Arc<Mutex<Node>>,
    clock: Clock,
    trace: &Trace,
) -> NodeHandle {
    let replication = &scenario.replication;
    let options = NodeOptions {
        mode: replication.mode,
        peer_address: address(node_ip(node.peer())),
        replication_timeout: Duration::from_millis(replication.timeout_ms),
        replication_batch: replication.batch,
        sync_timeout: Duration::from_millis(replication.sync_timeout_ms),
    };
    let observer: Arc<dyn NodeObserver> = Arc::new(TraceObserver(trace.clone()));
    handle
        .create_node()
        .name(node.to_string())
        .ip(IpAddr::V4(node_ip(node)))
        .init(move || {
            let (disk, clock, options, observer) = (
                disk.clone(),
                clock.clone(),
                options.clone(),
                observer.clone(),
            );
            async move {
                disk.lock().expect("disk").restart();
                let listener = TcpListener::bind(address(node_ip(node)))
                    .await
                    .expect("bind");
                NodeService::new(disk, clock, options, observer)
                    .run(listener)
                    .await;
            }
        })
        .build()
}

fn spawn_user(
    handle: &Handle,
    scenario: &Scenario,
    topology: &Topology,
    (user, centers): (u32, Vec<String>),
    trace: &Trace,
    stop: &Arc<AtomicBool>,
) -> NodeHandle {
    let context = Arc::new(UserContext {
        user: UserId(user),
        workload: scenario.workload.clone(),
        centers,
        addresses: topology.addresses.clone(),
        trace: trace.clone(),
        stop: stop.clone(),
    });
    handle
        .create_node()
        .name(format!("user/{user}"))
        .ip(IpAddr::V4(user_ip(user)))
        .init(move || run_user(context.clone()))
        .build()
}

struct TraceObserver(Trace);

impl NodeObserver for TraceObserver {
    fn on_events(&self, node: NodeId, events: &[NodeEvent]) {
        for event in events {
            self.0.record(Event::Node {
                node,
                event: event.clone(),
            });
        }
    }
}
