//! Scenario files: a story in TOML. Topology, controller parameters, replication mode,
//! workload, network, a fault schedule, and what must happen. Unknown or ill-typed fields are
//! errors that name the file, the line and the field.

use serde::{Deserialize, Serialize};
use standby::params::Params;
use standby::service::node::ReplicationMode;
use standby::types::Shard;
use std::path::{Path, PathBuf};

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The scenario's name (the file stem when absent).
    #[serde(default)]
    pub name: String,
    /// Simulated run length, in seconds.
    pub duration_s: u64,
    /// The clusters and users.
    pub topology: TopologySpec,
    /// The controller's parameters (defaults for any field left out).
    #[serde(default)]
    pub controller: Params,
    /// The control plane: controller replicas and their etcd.
    #[serde(default)]
    pub control_plane: ControlPlaneSpec,
    /// Replication between paired nodes.
    #[serde(default)]
    pub replication: ReplicationSpec,
    /// What users do.
    #[serde(default)]
    pub workload: WorkloadSpec,
    /// The network's normal behaviour.
    #[serde(default)]
    pub network: NetworkSpec,
    /// The fault schedule.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// What must happen.
    #[serde(default)]
    pub expect: Expect,
    /// For a regression scenario (scenarios/regressions/): the failure it was shrunk from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<Regression>,
}

impl FaultKind {
    /// The fault in a few words, for traces and reports.
    pub fn describe(&self) -> String {
        match self {
            FaultKind::Crash { nodes } => format!("crash {}", nodes.join(" ")),
            FaultKind::Wipe { nodes } => format!("wipe {}", nodes.join(" ")),
            FaultKind::Partition {
                from,
                to,
                one_way,
                held,
            } => {
                let arrow = if *one_way { "->" } else { "<->" };
                let held = if *held { ", writes held" } else { "" };
                format!(
                    "partition {} {arrow} {}{held}",
                    from.join(" "),
                    to.join(" ")
                )
            }
            FaultKind::LinkCut { shards } if shards.is_empty() => {
                "replication links cut, all shards".into()
            }
            FaultKind::LinkCut { shards } => format!("replication links cut, shards {shards:?}"),
            FaultKind::PacketLoss { percent } => format!("packet loss {percent}%"),
            FaultKind::Latency { min_ms, max_ms } => format!("latency {min_ms}..{max_ms} ms"),
            FaultKind::ControllerCrash => "controller crash (the leader)".to_owned(),
            FaultKind::ReplicaCrash { replicas } => format!("crash {}", replicas.join(" ")),
            FaultKind::ReplicaPause { replicas } => format!("pause {}", replicas.join(" ")),
            FaultKind::EtcdPause => "etcd paused".to_owned(),
            FaultKind::Approve => "the operator runs `standby promote`".to_owned(),
        }
    }
}

/// Where a regression scenario came from: a failing run, shrunk. With the correct controller
/// it must pass every invariant; with `mutant` (when given) it must still break `invariant`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regression {
    /// The invariant the original run broke.
    pub invariant: String,
    /// The seed that breaks it.
    pub seed: u64,
    /// The mutant the failure came from (`cargo sim mutants`), if it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutant: Option<String>,
    /// The seed at which the mutant breaks the invariant, when it is no longer `seed`: how a
    /// seed draws a story depends on every party of the world (adding the control plane's
    /// nodes moved the draws), so a mutant's seed may move while the correct controller
    /// still passes at `seed`. Found again with `cargo sim run FILE --seeds 32 --mutant M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutant_seed: Option<u64>,
    /// The scenario (or swarm seed) it was shrunk from.
    pub source: String,
}

/// The clusters and users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// Nodes in each cluster (1 to 64).
    pub nodes_per_cluster: u16,
    /// Users, spread over the shards round-robin.
    pub users: u32,
    /// Each node's clock runs off by a rate drawn by the seed within +-this many parts per
    /// million (0: perfect clocks). Must not exceed the controller's `max_clock_drift_ppm`.
    #[serde(default)]
    pub clock_drift_ppm: u32,
}

impl TopologySpec {
    /// The shard `user` writes to: users are spread over the shards round-robin. The one rule
    /// the world, the bare loop, the checkers and the timeline share.
    pub fn shard_of(&self, user: u32) -> Shard {
        Shard((user % self.nodes_per_cluster.max(1) as u32) as u16)
    }
}

/// The control plane: how many controller replicas campaign for the lead in etcd, and the
/// TTL of their etcd leases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlPlaneSpec {
    /// Controller replicas, `controller/0..N-1` (1 to 7).
    pub replicas: u16,
    /// Each replica's etcd lease TTL, in seconds (2 to 60): how long a dead leader holds
    /// the lead, and how long a leader cut from etcd may go on acting, at most.
    pub etcd_lease_ttl_s: u64,
}

impl Default for ControlPlaneSpec {
    fn default() -> ControlPlaneSpec {
        ControlPlaneSpec {
            replicas: 1,
            etcd_lease_ttl_s: 3,
        }
    }
}

/// Replication between paired nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationSpec {
    /// `async` (ack at once) or `sync` (ack after the backup applied).
    pub mode: ReplicationMode,
    /// The most entries in one shipment.
    pub batch: usize,
    /// How long a shipment may take before it is retried, in ms.
    pub timeout_ms: u64,
    /// Sync mode: how long a write waits for the backup before it is answered as unknown.
    pub sync_timeout_ms: u64,
}

impl Default for ReplicationSpec {
    fn default() -> ReplicationSpec {
        ReplicationSpec {
            mode: ReplicationMode::Async,
            batch: 128,
            timeout_ms: 200,
            sync_timeout_ms: 500,
        }
    }
}

/// What users do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadSpec {
    /// Writes per second, per user.
    pub writes_per_s: u32,
    /// Distinct keys each user writes.
    pub keys_per_user: u32,
    /// How long a user waits for a write's answer, in ms.
    pub write_timeout_ms: u64,
}

impl Default for WorkloadSpec {
    fn default() -> WorkloadSpec {
        WorkloadSpec {
            writes_per_s: 10,
            keys_per_user: 8,
            write_timeout_ms: 500,
        }
    }
}

/// The network's normal behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSpec {
    /// The least one-way latency, in ms.
    pub latency_min_ms: u64,
    /// The greatest one-way latency, in ms (jitter is the spread).
    pub latency_max_ms: u64,
    /// Packets lost, in percent (simulated TCP turns loss into retransmission delay).
    pub packet_loss_percent: f64,
}

impl Default for NetworkSpec {
    fn default() -> NetworkSpec {
        NetworkSpec {
            latency_min_ms: 1,
            latency_max_ms: 5,
            packet_loss_percent: 0.0,
        }
    }
}

/// When a fault starts: a fixed time, or a window the seed draws from. (Unknown fields are
/// refused by the flattened kind, which sees every field not named here.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// A fixed start, in ms from the run's start.
    #[serde(default)]
    pub at_ms: Option<u64>,
    /// A window `[earliest, latest]` in ms; the seed draws the start in it.
    #[serde(default)]
    pub window_ms: Option<[u64; 2]>,
    /// A start relative to the controller's own story: a while after one of its transitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Trigger>,
    /// How long until it heals, in ms; absent: it never heals.
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// When a fault starts, relative to the controller's own transitions: `delay_ms` after the
/// `nth` time since `from_ms` that the controller made `transition` (a name of the coverage
/// report, such as `backup-rejoining`), if that is before `before_ms` from the run's start. Otherwise the
/// fault never starts (the run records it so, and no effect is asked of it). This puts a
/// fault inside a window the controller opens itself (during a rejoin, while a loss report
/// waits, inside the lease wait of a second failover), which fixed times hit once in
/// thousands of seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The controller transition, by its coverage name.
    pub transition: String,
    /// Which occurrence of it, from 1.
    #[serde(default = "first")]
    pub nth: u32,
    /// Only occurrences at or after this, in ms from the run's start, count.
    #[serde(default)]
    pub from_ms: u64,
    /// How long after it the fault starts, in ms.
    #[serde(default)]
    pub delay_ms: u64,
    /// The latest start, in ms from the run's start.
    pub before_ms: u64,
}

fn first() -> u32 {
    1
}

impl Trigger {
    /// The trigger in a few words, for traces: `after backup-rejoining #1 + 40 ms`.
    pub fn describe(&self) -> String {
        let since = match self.from_ms {
            0 => String::new(),
            ms => format!(" since {}", standby::time::Time::from_millis(ms)),
        };
        format!(
            "after {} #{}{since} + {} ms",
            self.transition, self.nth, self.delay_ms
        )
    }
}

/// The kinds of fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultKind {
    /// Nodes crash; they restart (disk intact) when the fault heals.
    Crash {
        /// Nodes, as `a/0`, or whole clusters, as `a`.
        nodes: Vec<String>,
    },
    /// Nodes lose their disk: they crash, come back empty at once.
    Wipe {
        /// Nodes, as `a/0`.
        nodes: Vec<String>,
    },
    /// Every link from each party in `from` to each party in `to` is clogged (and back unless
    /// `one_way`): new connections are refused, and messages already on a connection are held
    /// until the partition heals. Parties: `controller`, `config-center`, `users`, `a`, `b`,
    /// `a/0`, `user/3`.
    Partition {
        /// One side.
        from: Vec<String>,
        /// The other side.
        to: Vec<String>,
        /// Only `from` -> `to` is cut.
        #[serde(default)]
        one_way: bool,
        /// Between controller replicas and etcd only: each guarded write a replica sends
        /// during the cut is held, not lost, and reaches etcd when the cut heals (as TCP
        /// delivers what it had buffered), long after the replica gave up on it.
        #[serde(default)]
        held: bool,
    },
    /// The replication links of some shards (`a/i` <-> `b/i`) are cut.
    LinkCut {
        /// The shards; empty means all.
        #[serde(default)]
        shards: Vec<u16>,
    },
    /// Packet loss over the whole network.
    PacketLoss {
        /// Percent of packets lost.
        percent: f64,
    },
    /// Latency and jitter over the whole network.
    Latency {
        /// The least one-way latency, in ms.
        min_ms: u64,
        /// The greatest one-way latency, in ms.
        max_ms: u64,
    },
    /// The leading controller replica crashes (the only one, with one replica); it restarts
    /// when the fault heals, and leads again once it wins the election.
    ControllerCrash,
    /// Controller replicas crash (`controller/1`, `controller/leader`: the one leading at the
    /// fault's start, `controller`: all); each restarts when the fault heals.
    ReplicaCrash {
        /// The replicas.
        replicas: Vec<String>,
    },
    /// Controller replicas stop (as SIGSTOP does) and resume when the fault heals, their
    /// memory intact and their clocks read afresh.
    ReplicaPause {
        /// The replicas.
        replicas: Vec<String>,
    },
    /// etcd stops answering until the fault heals (it keeps its data: a simulated etcd would
    /// come back from a crash empty, which a real one never does).
    EtcdPause,
    /// An operator runs `standby promote`: it approves every open promotion-held alarm in
    /// etcd, from a node of its own (the real command's code). Not a fault: it never heals.
    Approve,
}

/// What must happen in every seed's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    /// Exactly this many failovers (promotions of the other cluster).
    pub failovers: Option<u32>,
    /// At most this many failovers.
    pub failovers_max: Option<u32>,
    /// Whether the second alarm (backup failed) must be raised (true) or must not be (false).
    pub second_alarm: Option<bool>,
    /// Whether the double-failure state must be entered.
    pub double_failure: Option<bool>,
    /// Whether some replica must raise the alarm that it cannot reach etcd (true), or none
    /// may (false).
    pub etcd_alarm: Option<bool>,
    /// Whether a lag alarm (a backup behind beyond `controller.lag_alarm_ms` or
    /// `lag_alarm_entries`) must be raised (true), or none may be (false).
    pub lag_alarm: Option<bool>,
    /// Whether a promotion must be held back for an operator (`promotion_lag_entries`)
    /// (true), or none may be (false).
    pub promotion_held: Option<bool>,
    /// Whether the run must end converged (every fault healed; data identical; no alarm).
    pub converge: bool,
    /// Quiet time after the last heal before convergence is checked, in ms.
    pub quiet_ms: u64,
    /// Largest detection latency allowed, in ms.
    pub detection_ms_max: Option<u64>,
    /// Largest recovery time (to the last live user's ack) allowed, in ms.
    pub rto_ms_max: Option<u64>,
    /// After a publication, every live user must apply it within this long, in ms.
    pub users_converge_ms: u64,
    /// A primary failure with an available backup must end in a failover within this, in ms.
    pub failover_within_ms: u64,
    /// Largest number of acknowledged writes allowed to be lost (sync mode: 0).
    pub lost_writes_max: Option<u64>,
    /// At least this many writes must have been quarantined over the run.
    pub quarantined_min: Option<u64>,
    /// The shards whose primary must move to the other cluster at some point of the run, and
    /// no other (e.g. `[2]`: shard 2 failed over alone, the others were untouched).
    pub moved_shards: Option<Vec<u16>>,
    /// False failovers allowed (a failover of a primary the ground truth calls available);
    /// none unless a scenario makes them likely on purpose (heavy loss).
    pub false_failovers_max: Option<u32>,
    /// Effects the run must show (see `standby_sim::effects::EFFECTS`), e.g.
    /// `["fenced-write-rejected"]`. Every declared fault must have some effect regardless.
    pub effects: Vec<String>,
}

impl Default for Expect {
    fn default() -> Expect {
        Expect {
            failovers: None,
            failovers_max: None,
            second_alarm: None,
            double_failure: None,
            etcd_alarm: None,
            lag_alarm: None,
            promotion_held: None,
            converge: true,
            quiet_ms: 10_000,
            detection_ms_max: None,
            rto_ms_max: None,
            users_converge_ms: 5_000,
            failover_within_ms: 10_000,
            lost_writes_max: None,
            quarantined_min: None,
            moved_shards: None,
            false_failovers_max: None,
            effects: Vec::new(),
        }
    }
}

/// Why a scenario file cannot be used. Each names the file; parse errors name the line and
/// the field too.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed, or a field is unknown, missing or of the wrong type.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// The file.
        file: PathBuf,
        /// The line (1-based), 0 when unknown.
        line: usize,
        /// The parser's message, which names the field.
        message: String,
    },
    /// A value is out of range.
    #[error("{file}: field `{field}`: {reason}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}

impl Scenario {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            file: path.to_owned(),
            source,
        })?;
        Scenario::parse(path, &text)
    }

    /// Parses and validates scenario text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let mut scenario: Scenario =
            toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
        if scenario.name.is_empty() {
            scenario.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        scenario
            .validate()
            .map_err(|(field, reason)| ScenarioError::Invalid {
                file: path.to_owned(),
                field,
                reason,
            })?;
        Ok(scenario)
    }

    /// Checks ranges and cross-field rules; returns the field and the reason.
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, reason: String| Err((field.to_owned(), reason));
        let n = self.topology.nodes_per_cluster;
        if !(1..=64).contains(&n) {
            return bad(
                "topology.nodes_per_cluster",
                format!("must be 1 to 64, got {n}"),
            );
        }
        if self.duration_s == 0 {
            return bad("duration_s", "must be greater than zero".into());
        }
        let plane = &self.control_plane;
        if !(1..=7).contains(&plane.replicas) {
            let reason = format!("must be 1 to 7, got {}", plane.replicas);
            return bad("control_plane.replicas", reason);
        }
        if !(2..=60).contains(&plane.etcd_lease_ttl_s) {
            let reason = format!("must be 2 to 60 s, got {}", plane.etcd_lease_ttl_s);
            return bad("control_plane.etcd_lease_ttl_s", reason);
        }
        if let Err(e) = self.controller.validate() {
            return bad(&format!("controller.{}", e.field()), e.to_string());
        }
        if self.topology.clock_drift_ppm > self.controller.max_clock_drift_ppm {
            return bad(
                "topology.clock_drift_ppm",
                format!(
                    "{} exceeds controller.max_clock_drift_ppm {}: the lease wait would not cover it",
                    self.topology.clock_drift_ppm, self.controller.max_clock_drift_ppm
                ),
            );
        }
        if self.network.latency_min_ms > self.network.latency_max_ms {
            return bad(
                "network.latency_min_ms",
                "must not exceed latency_max_ms".into(),
            );
        }
        if !(0.0..100.0).contains(&self.network.packet_loss_percent) {
            return bad("network.packet_loss_percent", "must be in [0, 100)".into());
        }
        if self.workload.writes_per_s == 0 || self.workload.keys_per_user == 0 {
            return bad(
                "workload",
                "writes_per_s and keys_per_user must be positive".into(),
            );
        }
        for effect in &self.expect.effects {
            if !crate::effects::EFFECTS.contains(&effect.as_str()) {
                let known = crate::effects::EFFECTS.join(", ");
                return bad(
                    "expect.effects",
                    format!("unknown effect `{effect}`; the effects are: {known}"),
                );
            }
        }
        for (i, fault) in self.faults.iter().enumerate() {
            self.validate_fault(fault)
                .map_err(|(field, reason)| (format!("faults[{i}].{field}"), reason))?;
        }
        Ok(())
    }

    fn validate_fault(&self, fault: &Fault) -> Result<(), (String, String)> {
        let run_ms = self.duration_s * 1000;
        let starts = [
            fault.at_ms.is_some(),
            fault.window_ms.is_some(),
            fault.after.is_some(),
        ];
        if starts.iter().filter(|&&given| given).count() != 1 {
            let reason = "give exactly one of at_ms, window_ms and after";
            return Err(("at_ms".into(), reason.into()));
        }
        if let Some(trigger) = &fault.after {
            validate_trigger(trigger, run_ms).map_err(|(f, r)| (format!("after.{f}"), r))?;
        }
        match (fault.at_ms, fault.window_ms) {
            (Some(at), None) if at >= run_ms => {
                return Err((
                    "at_ms".into(),
                    format!("{at} is not before the run's end ({run_ms} ms)"),
                ))
            }
            (None, Some([lo, hi])) if lo > hi || hi >= run_ms => {
                return Err((
                    "window_ms".into(),
                    format!("[{lo}, {hi}] must be ordered and end before {run_ms} ms"),
                ))
            }
            _ => {}
        }
        let parties: Vec<(&str, &String)> = match &fault.kind {
            FaultKind::Crash { nodes } | FaultKind::Wipe { nodes } => {
                for node in nodes {
                    let party = Party::parse(node, self)
                        .map_err(|r| ("nodes".to_owned(), format!("`{node}`: {r}")))?;
                    if !matches!(party, Party::Node(_) | Party::Cluster(_)) {
                        return Err((
                            "nodes".into(),
                            format!("`{node}` is not a storage node or cluster"),
                        ));
                    }
                }
                Vec::new()
            }
            FaultKind::Partition { from, to, held, .. } => {
                if *held {
                    self.validate_held(from, to)?;
                }
                let from = from.iter().map(|p| ("from", p));
                from.chain(to.iter().map(|p| ("to", p))).collect()
            }
            FaultKind::ReplicaCrash { replicas } | FaultKind::ReplicaPause { replicas } => {
                for name in replicas {
                    let party = Party::parse(name, self)
                        .map_err(|r| ("replicas".to_owned(), format!("`{name}`: {r}")))?;
                    if !matches!(party, Party::Controller | Party::Replica(_) | Party::Leader) {
                        let reason = format!("`{name}` is not a controller replica");
                        return Err(("replicas".into(), reason));
                    }
                }
                Vec::new()
            }
            FaultKind::LinkCut { shards } => {
                if let Some(s) = shards
                    .iter()
                    .find(|&&s| s >= self.topology.nodes_per_cluster)
                {
                    return Err(("shards".into(), format!("shard {s} does not exist")));
                }
                Vec::new()
            }
            FaultKind::PacketLoss { percent } if !(0.0..100.0).contains(percent) => {
                return Err(("percent".into(), "must be in [0, 100)".into()))
            }
            FaultKind::Latency { min_ms, max_ms } if min_ms > max_ms => {
                return Err(("min_ms".into(), "must not exceed max_ms".into()))
            }
            FaultKind::Approve if fault.duration_ms.is_some() => {
                let reason = "an operator's command does not heal: remove it".into();
                return Err(("duration_ms".into(), reason));
            }
            _ => Vec::new(),
        };
        for (field, party) in parties {
            Party::parse(party, self)
                .map_err(|reason| (field.to_owned(), format!("`{party}`: {reason}")))?;
        }
        Ok(())
    }

    /// A held partition is between controller replicas on one side and etcd alone on the
    /// other: only a replica's writes to etcd are held.
    fn validate_held(&self, from: &[String], to: &[String]) -> Result<(), (String, String)> {
        let replicas = |side: &[String]| {
            !side.is_empty()
                && side.iter().all(|p| {
                    matches!(
                        Party::parse(p, self),
                        Ok(Party::Controller | Party::Replica(_) | Party::Leader)
                    )
                })
        };
        let etcd = |side: &[String]| side.len() == 1 && side[0] == "etcd";
        if (replicas(from) && etcd(to)) || (etcd(from) && replicas(to)) {
            return Ok(());
        }
        let reason = "a held partition must have controller replicas on one side and only \
                      `etcd` on the other (only a replica's writes to etcd are held)";
        Err(("held".into(), reason.into()))
    }
}

fn validate_trigger(trigger: &Trigger, run_ms: u64) -> Result<(), (String, String)> {
    if !crate::effects::TRANSITIONS.contains(&trigger.transition.as_str()) {
        let known = crate::effects::TRANSITIONS.join(", ");
        let reason = format!(
            "unknown transition `{}`; the transitions are: {known}",
            trigger.transition
        );
        return Err(("transition".into(), reason));
    }
    if trigger.nth == 0 {
        return Err(("nth".into(), "counts from 1".into()));
    }
    if trigger.before_ms > run_ms {
        let reason = format!("{} is after the run's end ({run_ms} ms)", trigger.before_ms);
        return Err(("before_ms".into(), reason));
    }
    if trigger.from_ms >= trigger.before_ms {
        let (from, before) = (trigger.from_ms, trigger.before_ms);
        let reason = format!("{from} is not before before_ms ({before})");
        return Err(("from_ms".into(), reason));
    }
    Ok(())
}

/// A parse error naming the line and, when the message does not already, the field: the key
/// of the line the error points at.
fn parse_error(path: &Path, text: &str, error: &toml::de::Error) -> ScenarioError {
    let message = error.message().trim().to_owned();
    let Some(span) = error.span() else {
        return ScenarioError::Parse {
            file: path.to_owned(),
            line: 0,
            message,
        };
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let source = text.lines().nth(line - 1).unwrap_or_default();
    let key = source
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty());
    let message = match key {
        Some(key) if !message.contains("field `") => format!("field `{key}`: {message}"),
        _ => message,
    };
    ScenarioError::Parse {
        file: path.to_owned(),
        line,
        message,
    }
}

/// A party a fault names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Party {
    /// Every controller replica.
    Controller,
    /// One controller replica.
    Replica(u16),
    /// The replica leading when the fault starts.
    Leader,
    /// etcd.
    Etcd,
    /// The config center: every replica's (each replica serves one).
    ConfigCenter,
    /// Every user.
    Users,
    /// One user.
    User(u32),
    /// Every node of a cluster.
    Cluster(standby::types::Cluster),
    /// One node.
    Node(standby::types::NodeId),
}

impl Party {
    /// Parses `controller`, `controller/1`, `controller/leader`, `etcd`, `config-center`,
    /// `users`, `user/3`, `a`, `b`, `a/0`.
    pub fn parse(text: &str, scenario: &Scenario) -> Result<Party, String> {
        use standby::types::{Cluster, NodeId};
        let cluster = |c: &str| match c {
            "a" => Some(Cluster::A),
            "b" => Some(Cluster::B),
            _ => None,
        };
        match text {
            "controller" => return Ok(Party::Controller),
            "controller/leader" => return Ok(Party::Leader),
            "etcd" => return Ok(Party::Etcd),
            "config-center" => return Ok(Party::ConfigCenter),
            "users" => return Ok(Party::Users),
            _ => {}
        }
        if let Some(c) = cluster(text) {
            return Ok(Party::Cluster(c));
        }
        let (head, index) = text
            .split_once('/')
            .ok_or("expected controller, controller/N, controller/leader, etcd, config-center, users, user/N, a, b, a/N or b/N")?;
        let index: u32 = index
            .parse()
            .map_err(|_| format!("`{index}` is not a number"))?;
        if head == "controller" {
            let replicas = scenario.control_plane.replicas as u32;
            return match index < replicas {
                true => Ok(Party::Replica(index as u16)),
                false => Err(format!("there are only {replicas} controller replicas")),
            };
        }
        if head == "user" {
            return if index < scenario.topology.users {
                Ok(Party::User(index))
            } else {
                Err(format!("there are only {} users", scenario.topology.users))
            };
        }
        let c = cluster(head).ok_or(format!("unknown cluster `{head}`"))?;
        if index >= scenario.topology.nodes_per_cluster as u32 {
            return Err(format!(
                "there are only {} nodes per cluster",
                scenario.topology.nodes_per_cluster
            ));
        }
        Ok(Party::Node(NodeId::new(c, index as u16)))
    }
}
