//! The controller's durable state in etcd, every write guarded by the writer's leadership.

use super::lead::Lead;
use super::{call, EtcdOptions, LeadError};
use crate::controller::Durable;
use crate::service::controller::{Stopped, Store, StoreFuture};
use crate::time::Time;
use etcd_client::{Client, Txn, TxnOp};

/// A [`Store`] at one etcd key, written only while `lead` holds.
pub struct EtcdStore {
    client: Client,
    options: EtcdOptions,
    lead: Lead,
}

impl EtcdStore {
    /// The store of the replica that holds `lead`.
    pub fn new(client: Client, options: EtcdOptions, lead: Lead) -> EtcdStore {
        EtcdStore {
            client,
            options,
            lead,
        }
    }

    /// Gives the lead up (see [`Lead::resign`]).
    pub async fn resign(self) {
        self.lead.resign(&self.client, &self.options).await;
    }
}

impl Store for EtcdStore {
    fn load(&self) -> StoreFuture<'_, Option<Durable>> {
        Box::pin(async move {
            let key = self.options.state_key();
            let mut kv = self.client.kv_client();
            let found = call(&self.options, "read the state", kv.get(key.clone(), None)).await?;
            let Some(kv) = found.kvs().first() else {
                return Ok(None);
            };
            let state = serde_json::from_slice(kv.value()).map_err(|e| LeadError::Malformed {
                key,
                reason: e.to_string(),
            })?;
            Ok(Some(state))
        })
    }

    /// A transaction that puts the state only if this replica's candidate key still holds
    /// its value: a deposed leader's write changes nothing, and tells it so.
    fn save<'a>(&'a self, state: &'a Durable) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let value = serde_json::to_vec(state).map_err(|e| Stopped::Io(e.to_string()))?;
            let txn = Txn::new().when([self.lead.guard()]).and_then([TxnOp::put(
                self.options.state_key(),
                value,
                None,
            )]);
            let mut kv = self.client.kv_client();
            let done = call(&self.options, "persist", kv.txn(txn)).await?;
            match done.succeeded() {
                true => Ok(()),
                false => Err(LeadError::Deposed.into()),
            }
        })
    }

    fn act_until(&self) -> Option<Time> {
        Some(self.lead.until())
    }
}
