//! One controller replica in real mode, beside the election: it says in etcd what it does,
//! and reads there who leads, what the other replicas do and the durable state, for
//! `standby status`. Nothing here decides anything: leadership is the election's
//! (`crate::control_plane`), and this only reports it.

use crate::control_plane::store::read_state;
use crate::control_plane::{call, center, connect, EtcdOptions, LeadError};
use crate::real::status::{
    unix_ms, ConfigsStatus, ControlPlaneStatus, PlaneSnapshot, ReplicaStatus, Snapshot, Status,
};
use etcd_client::{Client, GetOptions, PutOptions};
use std::time::{Duration, SystemTime};

/// How often a replica reads etcd for its status, and renews its entry there.
const EVERY: Duration = Duration::from_secs(1);

/// A replica's report of itself, kept up in etcd.
pub struct Reporter {
    /// This replica's name.
    pub name: String,
    /// Its status listener's address.
    pub status_address: String,
    /// How to reach etcd.
    pub options: EtcdOptions,
    /// The controller's snapshot: present while this replica leads.
    pub snapshot: Snapshot,
    /// Where the control plane's view goes.
    pub plane: PlaneSnapshot,
}

/// The connection and lease kept across rounds (dropped after a failure, made anew).
#[derive(Default)]
struct Session {
    client: Option<Client>,
    lease: Option<i64>,
}

impl Reporter {
    /// Runs until dropped: every second, one round of [`Reporter::round`].
    pub async fn run(self) {
        let mut session = Session::default();
        let mut last_read = None;
        loop {
            match self.round(&mut session).await {
                Ok((plane, durable)) => {
                    last_read = plane.etcd_read_unix_ms;
                    *self.plane.lock().expect("status lock") = Some((plane, durable));
                }
                Err(e) => {
                    tracing::warn!(replica = %self.name, error = %e, "cannot read the control plane in etcd");
                    session = Session::default();
                    self.failed(e, last_read);
                }
            }
            tokio::time::sleep(EVERY).await;
        }
    }

    /// Keeps what was last read, and says why it is old.
    fn failed(&self, error: LeadError, last_read: Option<u64>) {
        let mut plane = self.plane.lock().expect("status lock");
        let (mut status, durable) = plane.take().unwrap_or_else(|| (self.empty(), None));
        status.etcd_error = Some(error.to_string());
        status.etcd_read_unix_ms = last_read;
        *plane = Some((status, durable));
    }

    fn empty(&self) -> ControlPlaneStatus {
        ControlPlaneStatus {
            replica: self.name.clone(),
            leading: false,
            leader: None,
            replicas: Vec::new(),
            configs: None,
            etcd_error: None,
            etcd_read_unix_ms: None,
        }
    }

    /// Renews this replica's entry, then reads the leader, every entry and the state.
    async fn round(
        &self,
        session: &mut Session,
    ) -> Result<(ControlPlaneStatus, Option<Status>), LeadError> {
        let options = &self.options;
        if session.client.is_none() {
            session.client = Some(connect(options).await?);
        }
        let client = session.client.clone().expect("connected");
        let lease = self.renew(&client, session).await?;
        let leading = self.snapshot.lock().expect("status lock").is_some();
        // What a replica says about itself in etcd, at `<prefix>/replicas/<name>`, under a
        // lease of its own: the entry of a replica that dies goes with its lease.
        let entry = ReplicaStatus {
            name: self.name.clone(),
            state: if leading { "leading" } else { "standing by" }.into(),
            status: self.status_address.clone(),
        };
        let key = format!("{}{}", options.replicas_prefix(), self.name);
        let value = serde_json::to_vec(&entry).expect("an entry serialises");
        let put = PutOptions::new().with_lease(lease);
        call(
            options,
            "register",
            client.kv_client().put(key, value, Some(put)),
        )
        .await?;
        let mut plane = self.empty();
        plane.leading = leading;
        plane.leader = leader(&client, options).await?;
        plane.replicas = replicas(&client, options).await?;
        plane.configs = configs(&client, options).await?;
        plane.etcd_read_unix_ms = Some(unix_ms(SystemTime::now()));
        let durable = read_state(&client, options).await?;
        Ok((plane, durable.as_ref().map(Status::of_durable)))
    }

    /// The lease of this replica's entry, granted when there is none and renewed once.
    async fn renew(&self, client: &Client, session: &mut Session) -> Result<i64, LeadError> {
        let options = &self.options;
        let mut leases = client.lease_client();
        if let Some(lease) = session.lease {
            let renewal = async {
                let (mut keeper, mut answers) = leases.keep_alive(lease).await?;
                keeper.keep_alive().await?;
                answers.message().await
            };
            // A lease that expired (the process was paused, or cut off) is granted anew.
            let renewed = call(options, "renew the replica's entry", renewal).await;
            if let Ok(Some(answer)) = renewed {
                if answer.ttl() > 0 {
                    return Ok(lease);
                }
            }
            session.lease = None;
        }
        let ttl = options.lease_ttl_s as i64;
        let granted = call(
            options,
            "lease for the replica's entry",
            leases.grant(ttl, None),
        )
        .await?;
        session.lease = Some(granted.id());
        Ok(granted.id())
    }
}

/// The leader's name, as the election says; `None` while there is none.
async fn leader(client: &Client, options: &EtcdOptions) -> Result<Option<String>, LeadError> {
    let mut election = client.election_client();
    // etcd answers an election without a leader with an error ("election: no leader").
    match call(options, "leader", election.leader(options.election())).await {
        Ok(answer) => Ok(answer
            .kv()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
        Err(LeadError::Unreachable(why)) if why.contains("no leader") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every replica's entry, by name.
async fn replicas(client: &Client, options: &EtcdOptions) -> Result<Vec<ReplicaStatus>, LeadError> {
    let prefix = options.replicas_prefix();
    let mut kv = client.kv_client();
    let get = kv.get(prefix, Some(GetOptions::new().with_prefix()));
    let found = call(options, "replicas", get).await?;
    let mut replicas: Vec<ReplicaStatus> = (found.kvs().iter())
        .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
        .collect();
    replicas.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(replicas)
}

/// The configs in etcd, and how many users acknowledged them at any replica's center.
async fn configs(
    client: &Client,
    options: &EtcdOptions,
) -> Result<Option<ConfigsStatus>, LeadError> {
    let Some(publish) = center::read(client, options).await? else {
        return Ok(None);
    };
    let acks = center::read_acks(client, options).await?;
    let acknowledged = (publish.configs.iter())
        .filter(|c| acks.get(&c.user).is_some_and(|&e| e >= publish.epoch))
        .count();
    Ok(Some(ConfigsStatus {
        epoch: publish.epoch.0,
        users: publish.configs.len(),
        acknowledged,
    }))
}
