//! The config center on etcd. Every user's config lives at `<prefix>/configs` (the newest
//! publication, written by the leader under its leadership guard, as its state is), and each
//! replica serves users from a config center of its own: the leader's is fed as it publishes,
//! after etcd has the publication; a replica standing by follows the key, reading it every
//! [`FOLLOW_INTERVAL`] (the simulated etcd has no watch, and one read per interval costs a
//! real etcd nothing). A user subscribed to every replica's center therefore still learns
//! each new epoch when the leader's center is gone, within an interval and a read. Each
//! replica keeps the acknowledgements its own center took at `<prefix>/acks/<name>`.

use super::reach::Reach;
use super::store::{get_json, Guarded};
use super::{call, EtcdOptions, LeadError};
use crate::protocol::{Publish, PublishReply};
use crate::service::config_center::CenterService;
use crate::service::controller::CenterLink;
use crate::types::{Epoch, UserId};
use etcd_client::Client;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How often a replica standing by reads the publication in etcd, and how often each replica
/// checks whether its center took new acknowledgements.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// The leader's link to the config center: etcd first, then its own replica's center.
pub struct EtcdCenter {
    guarded: Guarded,
    local: Arc<CenterService>,
    /// Held while a publication is on its way: the controller re-sends one that is not
    /// answered, and two in flight could reach etcd out of order.
    busy: tokio::sync::Mutex<()>,
    /// The `publish-skips-etcd` mutant.
    #[cfg(feature = "mutants")]
    skips_etcd: bool,
}

impl EtcdCenter {
    /// Publishes with `guarded` (this term's leadership) into etcd, then into `local`.
    pub fn new(guarded: Guarded, local: Arc<CenterService>) -> EtcdCenter {
        EtcdCenter {
            guarded,
            local,
            busy: tokio::sync::Mutex::new(()),
            #[cfg(feature = "mutants")]
            skips_etcd: false,
        }
    }

    /// Breaks it on purpose (simulator builds only).
    #[cfg(feature = "mutants")]
    pub fn with_mutation(mut self, mutation: crate::controller::Mutation) -> EtcdCenter {
        self.skips_etcd = mutation == crate::controller::Mutation::PublishSkipsEtcd;
        self
    }

    #[cfg(feature = "mutants")]
    fn skips_etcd(&self) -> bool {
        self.skips_etcd
    }

    #[cfg(not(feature = "mutants"))]
    fn skips_etcd(&self) -> bool {
        false
    }

    /// Stores `publish` in etcd unless etcd holds a newer one, then in the local center.
    /// `None`: etcd did not take it (unreachable, or this replica no longer leads).
    async fn store(&self, publish: Publish) -> Option<PublishReply> {
        let _one = self.busy.try_lock().ok()?;
        if self.skips_etcd() {
            return Some(self.local.publish(publish));
        }
        let key = self.guarded.options().configs_key();
        let held = self.guarded.get(key.clone()).await.ok()?;
        if let Some(held) = held.and_then(|value| parse(&key, &value)) {
            if held.epoch > publish.epoch {
                return Some(PublishReply {
                    epoch: held.epoch,
                    stored: false,
                });
            }
        }
        let value = serde_json::to_vec(&publish).ok()?;
        if let Err(e) = self.guarded.put(key, value).await {
            tracing::warn!(epoch = %publish.epoch, %e, "publication not stored in etcd");
            return None;
        }
        Some(self.local.publish(publish))
    }
}

impl CenterLink for EtcdCenter {
    /// Bounded by the etcd calls' own timeouts rather than `_timeout` (a heartbeat's), which
    /// two calls may exceed on a slow network: the controller re-sends meanwhile, and the
    /// re-sent publication finds this one busy and is dropped.
    fn publish(
        &self,
        publish: Publish,
        _timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Option<PublishReply>> + Send + '_>> {
        Box::pin(self.store(publish))
    }
}

/// A publication read from `key`, or `None` (logged) if it is not one.
fn parse(key: &str, value: &[u8]) -> Option<Publish> {
    match serde_json::from_slice(value) {
        Ok(publish) => Some(publish),
        Err(e) => {
            tracing::error!(%key, %e, "the configs in etcd are malformed; ignored");
            None
        }
    }
}

/// The publication held in etcd, if any.
pub async fn read(client: &Client, options: &EtcdOptions) -> Result<Option<Publish>, LeadError> {
    match get_json(client, options, "read configs", options.configs_key()).await {
        Err(LeadError::Malformed { key, reason }) => {
            tracing::error!(%key, %reason, "the configs in etcd are malformed; ignored");
            Ok(None)
        }
        read => read,
    }
}

/// Feeds `center` every publication newer than it holds, as etcd gets them, and tells
/// `reach` of every answer; never returns (it is dropped when the replica takes the lead,
/// or stops).
pub async fn follow(
    client: &Client,
    options: &EtcdOptions,
    center: &CenterService,
    reach: &Reach,
) -> Infallible {
    loop {
        let read = read(client, options).await;
        if read.is_ok() {
            reach.answered();
        }
        match read {
            Ok(Some(publish)) if publish.epoch > center.epoch() => {
                center.publish(publish);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%e, "configs not read"),
        }
        tokio::time::sleep(FOLLOW_INTERVAL).await;
    }
}

/// Writes the acknowledgements `center` took to `<prefix>/acks/<name>` whenever they change;
/// never returns. Each replica writes its own key only, so no two writers race.
pub async fn keep_acks(name: &str, options: &EtcdOptions, center: &CenterService) -> Infallible {
    let key = options.acks_key(name);
    let mut written: BTreeMap<UserId, Epoch> = BTreeMap::new();
    let mut client: Option<Client> = None;
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        let acks = center.acks();
        if acks == written {
            continue;
        }
        if client.is_none() {
            client = super::connect(options).await.ok();
        }
        let Some(connected) = &client else { continue };
        let Ok(value) = serde_json::to_vec(&acks) else {
            continue;
        };
        let mut kv = connected.kv_client();
        match call(options, "write acks", kv.put(key.clone(), value, None)).await {
            Ok(_) => written = acks,
            Err(e) => {
                tracing::debug!(%e, "acknowledgements not written");
                client = None;
            }
        }
    }
}

/// The newest epoch each user acknowledged at any replica's center, from etcd.
pub async fn read_acks(
    client: &Client,
    options: &EtcdOptions,
) -> Result<BTreeMap<UserId, Epoch>, LeadError> {
    let prefix = options.acks_prefix();
    let mut kv = client.kv_client();
    let found = call(
        options,
        "read acks",
        kv.get(prefix, Some(etcd_client::GetOptions::new().with_prefix())),
    )
    .await?;
    let mut acks: BTreeMap<UserId, Epoch> = BTreeMap::new();
    for kv in found.kvs() {
        let Ok(one) = serde_json::from_slice::<BTreeMap<UserId, Epoch>>(kv.value()) else {
            continue;
        };
        for (user, epoch) in one {
            let held = acks.entry(user).or_default();
            *held = (*held).max(epoch);
        }
    }
    Ok(acks)
}
