//! One controller replica: campaigns for the lead, and while it leads, restores the durable
//! state from etcd and drives the controller, until it loses the lead; then campaigns again.

use super::center::{follow, keep_acks, EtcdCenter};
use super::lead::campaign;
use super::reach::{self, Reach};
use super::store::{EtcdStore, Guarded};
use super::{connect, EtcdOptions, LeadError};
use crate::service::config_center::CenterService;
use crate::service::controller::{
    run_controller, ControllerObserver, ControllerOptions, Stopped, Store,
};
use crate::time::Clock;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a replica waits after a failed term (etcd unreachable, lead lost) before it
/// tries again.
const RETRY: Duration = Duration::from_millis(500);

/// Runs replica `name` until the task is dropped, or until `stop` says `true`: then a
/// leader stops acting and gives its lease back (its successor need not wait out the TTL),
/// and this returns. `options` makes the controller's options for each term it leads, given
/// that term's guarded writes; `center` is this replica's config center, fed through etcd
/// (see [`super::center`]).
pub async fn run_replica(
    name: String,
    etcd: EtcdOptions,
    options: impl Fn(&Guarded) -> ControllerOptions,
    clock: Clock,
    observer: Arc<dyn ControllerObserver>,
    center: Arc<CenterService>,
    stop: watch::Receiver<bool>,
) {
    let memory = Memory::default();
    let reach = Reach::new(clock.clone());
    observer.on_etcd_reach(clock.now(), None);
    let terms = async {
        loop {
            let term = Term {
                name: &name,
                etcd: &etcd,
                clock: &clock,
                center: &center,
                reach: &reach,
                memory: &memory,
            };
            let Some(why) = term.lead(&options, observer.clone(), &stop).await else {
                tracing::info!(replica = %name, "stopped");
                return;
            };
            tracing::info!(replica = %name, %why, "not leading");
            tokio::time::sleep(RETRY).await;
        }
    };
    tokio::select! {
        biased;
        () = terms => {}
        never = keep_acks(&name, &etcd, &center) => match never {},
        never = reach::watch(&reach, &etcd, observer.as_ref()) => match never {},
    }
}

/// Completes once `stop` says `true` (never, if its sender is gone without saying so).
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What one term of a replica needs.
struct Term<'a> {
    name: &'a str,
    etcd: &'a EtcdOptions,
    clock: &'a Clock,
    center: &'a Arc<CenterService>,
    reach: &'a Reach,
    #[cfg_attr(not(feature = "mutants"), allow(dead_code))]
    memory: &'a Memory,
}

impl Term<'_> {
    /// Connects, wins the election, and runs the controller from etcd's state until it stops
    /// (then why), or until `stop` (then `None`, its lease given back if it led).
    async fn lead(
        &self,
        options: &impl Fn(&Guarded) -> ControllerOptions,
        observer: Arc<dyn ControllerObserver>,
        stop: &watch::Receiver<bool>,
    ) -> Option<Stopped> {
        let client = match connect(self.etcd).await {
            Ok(client) => client,
            Err(why) => return Some(why.into()),
        };
        let campaign = campaign(&client, self.etcd, self.name, self.clock);
        // Standing by, it serves its users the configs the leader put in etcd.
        let lead = tokio::select! {
            biased;
            _ = stopped(stop.clone()) => return None,
            lead = campaign => lead,
            never = follow(&client, self.etcd, self.center, self.reach) => match never {},
        };
        let lead = match lead {
            Ok(lead) => lead,
            Err(why) => return Some(why.into()),
        };
        self.reach.leading(true);
        let store = Arc::new(EtcdStore::new(client, self.etcd.clone(), lead));
        let options = self.term_options(options, &store);
        let acting = self.store_for(&options, store.clone());
        let controller = run_controller(options, self.clock.clone(), acting, observer);
        let why = tokio::select! {
            biased;
            _ = stopped(stop.clone()) => None,
            why = controller => Some(why),
        };
        self.reach.leading(false);
        // Stopped, deposed or past its deadline, it acts no more; revoking its lease spares
        // the next leader the wait for the TTL (a deposed one has none left to give).
        if why != Some(LeadError::Deposed.into()) {
            if let Ok(store) = Arc::try_unwrap(store) {
                store.resign().await;
            }
        }
        why
    }

    /// This term's controller options: its guarded writes, and its publications through
    /// etcd into this replica's config center.
    fn term_options(
        &self,
        options: &impl Fn(&Guarded) -> ControllerOptions,
        store: &EtcdStore,
    ) -> ControllerOptions {
        let options = options(&store.guarded());
        let link = EtcdCenter::new(store.guarded(), self.center.clone());
        #[cfg(feature = "mutants")]
        let link = link.with_mutation(options.mutation());
        options.with_center_link(Arc::new(link))
    }

    #[cfg(not(feature = "mutants"))]
    fn store_for(&self, _options: &ControllerOptions, store: Arc<EtcdStore>) -> Arc<dyn Store> {
        store
    }

    /// The `acts-before-restore` mutant's store remembers what this replica last saved, and
    /// starts its next term from that instead of etcd's state.
    #[cfg(feature = "mutants")]
    fn store_for(&self, options: &ControllerOptions, store: Arc<EtcdStore>) -> Arc<dyn Store> {
        match options.mutation() {
            crate::controller::Mutation::ActsBeforeRestore => Arc::new(mutant::Remembering {
                inner: store,
                memory: self.memory.clone(),
            }),
            _ => store,
        }
    }
}

/// The state a replica last saved, kept across its terms (only a mutant reads it).
type Memory = Arc<std::sync::Mutex<Option<crate::controller::Durable>>>;

#[cfg(feature = "mutants")]
mod mutant {
    use super::{EtcdStore, Memory};
    use crate::controller::{Durable, Orders};
    use crate::service::controller::{Store, StoreFuture};
    use crate::time::Time;
    use std::sync::Arc;

    /// A store that loads from the replica's memory once it has one.
    pub(super) struct Remembering {
        pub(super) inner: Arc<EtcdStore>,
        pub(super) memory: Memory,
    }

    impl Store for Remembering {
        fn load(&self) -> StoreFuture<'_, Option<Durable>> {
            let remembered = self.memory.lock().expect("memory").clone();
            match remembered {
                Some(state) => Box::pin(async move { Ok(Some(state)) }),
                None => self.inner.load(),
            }
        }

        fn save<'a>(&'a self, state: &'a Durable) -> StoreFuture<'a, ()> {
            Box::pin(async move {
                self.inner.save(state).await?;
                *self.memory.lock().expect("memory") = Some(state.clone());
                Ok(())
            })
        }

        fn act_until(&self) -> Option<Time> {
            self.inner.act_until()
        }

        fn orders(&self) -> StoreFuture<'_, Orders> {
            self.inner.orders()
        }
    }
}
