//! One controller replica: campaigns for the lead, and while it leads, restores the durable
//! state from etcd and drives the controller, until it loses the lead; then campaigns again.

use super::lead::campaign;
use super::store::EtcdStore;
use super::{call, EtcdOptions, LeadError};
use crate::service::controller::{run_controller, ControllerObserver, ControllerOptions};
use crate::time::Clock;
use etcd_client::Client;
use std::sync::Arc;
use std::time::Duration;

/// How long a replica waits after a failed term (etcd unreachable, lead lost) before it
/// tries again.
const RETRY: Duration = Duration::from_millis(500);

/// Runs replica `name` until the task is dropped. `options` makes the controller's options
/// for each term it leads.
pub async fn run_replica(
    name: String,
    etcd: EtcdOptions,
    options: impl Fn() -> ControllerOptions,
    clock: Clock,
    observer: Arc<dyn ControllerObserver>,
) {
    loop {
        let why = lead_once(&name, &etcd, options(), &clock, observer.clone()).await;
        tracing::info!(replica = %name, %why, "not leading");
        tokio::time::sleep(RETRY).await;
    }
}

/// One term: connect, win the election, run the controller from etcd's state until it stops.
async fn lead_once(
    name: &str,
    etcd: &EtcdOptions,
    options: ControllerOptions,
    clock: &Clock,
    observer: Arc<dyn ControllerObserver>,
) -> crate::service::controller::Stopped {
    let connect = Client::connect(etcd.endpoints.clone(), None);
    let client = match call(etcd, "connect", connect).await {
        Ok(client) => client,
        Err(why) => return why.into(),
    };
    let lead = match campaign(&client, etcd, name, clock).await {
        Ok(lead) => lead,
        Err(why) => return why.into(),
    };
    let store = Arc::new(EtcdStore::new(client, etcd.clone(), lead));
    let why = run_controller(options, clock.clone(), store.clone(), observer).await;
    // Deposed or past its deadline, it acts no more; revoking its lease only spares the next
    // leader the wait for the TTL.
    if why != LeadError::Deposed.into() {
        if let Ok(store) = Arc::try_unwrap(store) {
            store.resign().await;
        }
    }
    why
}
