//! The controller's durable state in etcd, every write guarded by the writer's leadership.

use super::lead::Lead;
use super::orders::read_orders;
use super::{call, EtcdOptions, LeadError};
use crate::controller::{Durable, Orders};
use crate::service::controller::{Stopped, Store, StoreFuture};
use crate::time::Time;
use etcd_client::{Client, Compare, Txn, TxnOp};

/// Reads and writes of one term's leader: every write is a transaction guarded by its
/// leadership. Cloned into whatever keeps state beside the controller's (in real mode, what
/// each Redis node would keep on its own disk).
#[derive(Clone)]
pub struct Guarded {
    client: Client,
    options: EtcdOptions,
    guard: Compare,
}

impl Guarded {
    /// The options it was made with (its keys).
    pub fn options(&self) -> &EtcdOptions {
        &self.options
    }

    /// The value at `key`, if any.
    pub async fn get(&self, key: String) -> Result<Option<Vec<u8>>, LeadError> {
        let mut kv = self.client.kv_client();
        let found = call(&self.options, "read", kv.get(key, None)).await?;
        Ok(found.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Puts `value` at `key` only if this replica still leads: a deposed leader's write
    /// changes nothing, and tells it so ([`LeadError::Deposed`]).
    pub async fn put(&self, key: String, value: Vec<u8>) -> Result<(), LeadError> {
        let txn = Txn::new()
            .when(self.guards())
            .and_then([TxnOp::put(key, value, None)]);
        let mut kv = self.client.kv_client();
        let request = async move { kv.txn(txn).await };
        #[cfg(madsim)]
        let request = self.options.hold.send(request);
        let done = call(&self.options, "guarded put", request).await?;
        match done.succeeded() {
            true => Ok(()),
            false => Err(LeadError::Deposed),
        }
    }
}

impl Guarded {
    /// The compares a write carries: this replica's leadership (none, for the
    /// `persists-unguarded` mutant).
    fn guards(&self) -> Vec<Compare> {
        #[cfg(feature = "mutants")]
        if self.options.mutation == crate::controller::Mutation::PersistsUnguarded {
            return Vec::new();
        }
        vec![self.guard.clone()]
    }
}

/// The controller's durable state in etcd, if any.
pub async fn read_state(
    client: &Client,
    options: &EtcdOptions,
) -> Result<Option<Durable>, LeadError> {
    get_json(client, options, "read the state", options.state_key()).await
}

/// The JSON value at `key`, if any; [`LeadError::Malformed`] if it is not a `T`.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    client: &Client,
    options: &EtcdOptions,
    what: &str,
    key: String,
) -> Result<Option<T>, LeadError> {
    let mut kv = client.kv_client();
    let found = call(options, what, kv.get(key.clone(), None)).await?;
    let Some(kv) = found.kvs().first() else {
        return Ok(None);
    };
    let value = serde_json::from_slice(kv.value()).map_err(|e| LeadError::Malformed {
        key,
        reason: e.to_string(),
    })?;
    Ok(Some(value))
}

/// A [`Store`] at one etcd key, written only while `lead` holds.
pub struct EtcdStore {
    guarded: Guarded,
    lead: Lead,
}

impl EtcdStore {
    /// The store of the replica that holds `lead`.
    pub fn new(client: Client, options: EtcdOptions, lead: Lead) -> EtcdStore {
        let guard = lead.guard();
        EtcdStore {
            guarded: Guarded {
                client,
                options,
                guard,
            },
            lead,
        }
    }

    /// Guarded reads and writes of this term, for other keys.
    pub fn guarded(&self) -> Guarded {
        self.guarded.clone()
    }

    /// Gives the lead up (see [`Lead::resign`]).
    pub async fn resign(self) {
        let Guarded {
            client, options, ..
        } = self.guarded;
        self.lead.resign(&client, &options).await;
    }
}

impl Store for EtcdStore {
    fn load(&self) -> StoreFuture<'_, Option<Durable>> {
        let guarded = &self.guarded;
        Box::pin(async move { Ok(read_state(&guarded.client, &guarded.options).await?) })
    }

    /// A transaction that puts the state only if this replica's candidate key still holds
    /// its value: a deposed leader's write changes nothing, and tells it so.
    fn save<'a>(&'a self, state: &'a Durable) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let value = serde_json::to_vec(state).map_err(|e| Stopped::Io(e.to_string()))?;
            let key = self.guarded.options.state_key();
            Ok(self.guarded.put(key, value).await?)
        })
    }

    fn act_until(&self) -> Option<Time> {
        Some(self.lead.until())
    }

    fn orders(&self) -> StoreFuture<'_, Orders> {
        let guarded = &self.guarded;
        Box::pin(async move { Ok(read_orders(&guarded.client, &guarded.options).await?) })
    }
}
