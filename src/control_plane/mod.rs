//! The control plane on etcd: which controller replica leads, until when it may act, and the
//! durable state it keeps there, every write guarded by its leadership.
//!
//! One code path for both worlds: outside the simulator `etcd_client` is the real
//! `etcd-client` crate, and under `--cfg madsim` it is madsim's simulated etcd with the same
//! API (`madsim-etcd-client`). It uses only what both have alike: leases with keep-alive, the
//! election service, single-key get and put, and transactions whose compare is a value equal
//! to one this replica wrote (true only while that key exists, in both). It never relies on
//! revisions (the simulated ones are not unique), watches (the simulator has none) or a
//! request deadline of etcd's own (every call here carries its own timeout).

pub mod center;
#[cfg(madsim)]
pub mod hold;
pub mod lead;
pub mod orders;
pub mod reach;
pub mod replica;
pub mod store;

use std::time::Duration;

/// How replicas reach etcd, and the keys they share there.
#[derive(Clone)]
pub struct EtcdOptions {
    /// etcd's client endpoints, `host:port` (the simulated client uses the first).
    pub endpoints: Vec<String>,
    /// Every key of this control plane starts with it (`standby`): two pairs of clusters
    /// can share one etcd under two prefixes.
    pub prefix: String,
    /// The TTL of each replica's etcd lease, in seconds. A leader that cannot renew its lease
    /// stops acting before it can have expired; a dead leader is replaced about this long
    /// after its last renewal.
    pub lease_ttl_s: u64,
    /// The longest any one etcd call may take before it counts as failed.
    pub call_timeout: Duration,
    /// How much earlier than its TTL says etcd may end a lease: zero for a real etcd, which
    /// keeps a lease at least its TTL after the last renewal it received; a second for the
    /// simulated one, which expires leases on a one-second tick.
    pub early_expiry: Duration,
    /// The bound on the rate at which this replica's clock and etcd's may drift apart, in
    /// parts per million (the controller's `max_clock_drift_ppm`).
    pub max_clock_drift_ppm: u32,
    /// The etcd user and password to log in as, if etcd has authentication on (the simulated
    /// etcd has none).
    pub credentials: Option<(String, String)>,
    /// The deliberate bug of a mutant of the replica's own code (simulator builds only).
    #[cfg(feature = "mutants")]
    pub mutation: crate::controller::Mutation,
    /// Holds this replica's guarded writes in the network, to deliver them late (simulator
    /// builds only: see [`hold`]).
    #[cfg(madsim)]
    pub hold: hold::Hold,
}

impl std::fmt::Debug for EtcdOptions {
    /// Never prints the password (options end up in logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("lease_ttl_s", &self.lease_ttl_s)
            .field("call_timeout", &self.call_timeout)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl EtcdOptions {
    /// The election's name. etcd's election takes every key under this raw byte prefix as a
    /// candidate, so no other key may start with it.
    pub fn election(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    /// The key of the controller's durable state.
    pub fn state_key(&self) -> String {
        format!("{}/state", self.prefix)
    }

    /// The key of what one node keeps across restarts when the controller drives it directly
    /// (a Redis server, in real mode): every replica must find it when it takes the lead.
    pub fn node_key(&self, node: crate::types::NodeId) -> String {
        format!("{}/nodes/{}-{}", self.prefix, node.cluster, node.index)
    }

    /// The key of the newest publication: every user's config.
    pub fn configs_key(&self) -> String {
        format!("{}/configs", self.prefix)
    }

    /// The prefix of the acknowledgements each replica's config center took.
    pub fn acks_prefix(&self) -> String {
        format!("{}/acks/", self.prefix)
    }

    /// The key of the acknowledgements replica `name`'s config center took.
    pub fn acks_key(&self, name: &str) -> String {
        format!("{}{name}", self.acks_prefix())
    }

    /// The prefix under which each running replica says what it does (real mode).
    pub fn replicas_prefix(&self) -> String {
        format!("{}/replicas/", self.prefix)
    }
}

/// Connects to etcd (logging in when the options carry credentials), within the call timeout.
pub async fn connect(options: &EtcdOptions) -> Result<etcd_client::Client, LeadError> {
    let login = (options.credentials.as_ref())
        .map(|(user, password)| etcd_client::ConnectOptions::new().with_user(user, password));
    let connect = etcd_client::Client::connect(options.endpoints.clone(), login);
    call(options, "connect", connect).await
}

/// Why a replica stopped leading, or could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeadError {
    /// etcd did not answer in time, or refused the connection.
    #[error("etcd unreachable: {0}")]
    Unreachable(String),
    /// A write guarded by this replica's leadership found it gone: another replica leads.
    #[error("lost the lead: a guarded write found another leader")]
    Deposed,
    /// This replica's etcd lease may have expired: it stopped acting at its deadline.
    #[error("lost the lead: its etcd lease may have expired")]
    Expired,
    /// The state in etcd cannot be read as a controller state.
    #[error("the state at {key} is malformed: {reason}")]
    Malformed {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// Runs an etcd call with the options' timeout; any failure is [`LeadError::Unreachable`].
pub(crate) async fn call<T, E: std::fmt::Display>(
    options: &EtcdOptions,
    what: &str,
    request: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, LeadError> {
    match tokio::time::timeout(options.call_timeout, request).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(LeadError::Unreachable(format!("{what}: {e}"))),
        Err(_) => Err(LeadError::Unreachable(format!(
            "{what}: no answer within {:?}",
            options.call_timeout
        ))),
    }
}
