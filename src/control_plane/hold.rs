//! Requests held in the network, delivered late (simulator builds only).
//!
//! A real link that stops carrying packets does not lose a request already written to the
//! socket: TCP retransmits it, and when the link comes back etcd receives it, however long
//! ago the caller gave up on its answer. A deposed leader can write into etcd this way after
//! its successor took over, and only its leadership guard makes that write harmless. madsim
//! refuses a connection over a clogged link, and the simulated etcd client opens one per
//! request, so the simulator would never deliver such a request; a [`Hold`] does: while it
//! holds, a request handed to [`Hold::send`] is set aside on the replica's node and sent when
//! the hold ends, and its caller never hears an answer (its own timeout ends the call).
//!
//! The simulator holds a replica's guarded writes only: they are what a late delivery can
//! change in etcd. Its other requests fail as in a plain partition.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One replica's side: whether its requests are held now, and whom to tell when a held one
/// is delivered (the simulator's trace), with how long it was held.
#[derive(Clone)]
pub struct Hold {
    held: watch::Receiver<bool>,
    delivered: Arc<dyn Fn(Duration) + Send + Sync>,
}

/// The simulator's side: holds and releases one replica's requests.
pub struct HoldSwitch {
    held: watch::Sender<bool>,
}

/// A hold, released, and the switch that sets it; `delivered` is told of each held request
/// as it is sent.
pub fn hold(delivered: impl Fn(Duration) + Send + Sync + 'static) -> (HoldSwitch, Hold) {
    let (held, receiver) = watch::channel(false);
    let hold = Hold {
        held: receiver,
        delivered: Arc::new(delivered),
    };
    (HoldSwitch { held }, hold)
}

impl HoldSwitch {
    /// Holds requests from now on (`true`), or sends every held one (`false`).
    pub fn set(&self, held: bool) {
        self.held.send_replace(held);
    }
}

impl Hold {
    /// `request`, unless requests are held now: then it is sent when the hold ends, on a task
    /// of the replica's node (it dies with the node), and what this returns never completes.
    pub fn send<T: Send + 'static>(
        &self,
        request: impl Future<Output = T> + Send + 'static,
    ) -> Pin<Box<dyn Future<Output = T> + Send>> {
        if !*self.held.borrow() {
            return Box::pin(request);
        }
        let (mut held, delivered) = (self.held.clone(), self.delivered.clone());
        let since = tokio::time::Instant::now();
        tokio::spawn(async move {
            // A switch dropped (the run is over) releases nothing.
            if held.wait_for(|held| !held).await.is_ok() {
                delivered(since.elapsed());
                let _late = request.await;
            }
        });
        Box::pin(std::future::pending())
    }
}
