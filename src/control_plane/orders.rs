//! The operators' orders in etcd (issue 15, item 2): one key per approved promotion-held
//! alarm, `<prefix>/orders/approved/<id>`, written by `standby promote` under the operator's
//! own etcd login, read by the leading replica while a failover waits for it. One key per
//! approval: two operators approving at once cannot overwrite each other's.

use super::store::read_state;
use super::{call, EtcdOptions, LeadError};
use crate::controller::Orders;
use etcd_client::{Client, GetOptions};

impl EtcdOptions {
    /// The prefix of the approved promotion-held alarms' keys.
    pub fn approved_prefix(&self) -> String {
        format!("{}/orders/approved/", self.prefix)
    }
}

/// The orders in etcd. A key under the prefix that does not end in an alarm id is skipped
/// with a warning: nobody's order, and no reason to stop the controller.
pub async fn read_orders(client: &Client, options: &EtcdOptions) -> Result<Orders, LeadError> {
    let mut kv = client.kv_client();
    let prefix = options.approved_prefix();
    let get = kv.get(prefix.clone(), Some(GetOptions::new().with_prefix()));
    let found = call(options, "read the orders", get).await?;
    let mut orders = Orders::default();
    for kv in found.kvs() {
        let key = String::from_utf8_lossy(kv.key());
        match key.strip_prefix(&prefix).and_then(|id| id.parse().ok()) {
            Some(id) => {
                orders.approved.insert(id);
            }
            None => tracing::warn!(%key, "not an approval (no alarm id): skipped"),
        }
    }
    Ok(orders)
}

/// Approves the open promotion-held alarms (only alarm `only`, if given) in the state in
/// etcd; returns their ids. `Ok(Err(why))`: nothing to approve.
pub async fn approve(
    client: &Client,
    options: &EtcdOptions,
    only: Option<u64>,
) -> Result<Result<Vec<u64>, String>, LeadError> {
    let Some(durable) = read_state(client, options).await? else {
        return Ok(Err("no controller state in etcd yet".to_owned()));
    };
    let ids = match Orders::default().approve(&durable, only) {
        Ok(ids) => ids,
        Err(why) => return Ok(Err(why)),
    };
    let mut kv = client.kv_client();
    for id in &ids {
        let key = format!("{}{id}", options.approved_prefix());
        call(options, "write an approval", kv.put(key, Vec::new(), None)).await?;
    }
    Ok(Ok(ids))
}
