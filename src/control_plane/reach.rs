//! Whether this replica reaches etcd, and the alarm when it has not for longer than its lease
//! TTL.
//!
//! A replica that cannot reach etcd may not lead: it could not show that it alone does. While
//! no replica can, nobody heartbeats the nodes, the primary's write leases run out, and its
//! writes are refused until etcd returns. That is the conservative choice (there is no
//! failsafe mode, see docs/control-plane.md); this alarm makes it explicit to the operator.
//! One replica alone cut from etcd raises it too: the control plane has lost a replica.

use super::center::FOLLOW_INTERVAL;
use super::EtcdOptions;
use crate::service::controller::ControllerObserver;
use crate::time::{Clock, Time};
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

/// What a replica last knew of its reach to etcd.
#[derive(Clone, Copy, Debug)]
enum Contact {
    /// It leads: its lease is renewed, or it stops.
    Leading,
    /// etcd last answered it at this time.
    Answered(Time),
}

/// A replica's reach to etcd, told by what it does there.
pub struct Reach {
    clock: Clock,
    contact: Mutex<Contact>,
}

impl Reach {
    /// A replica just started: as if etcd had answered it now.
    pub fn new(clock: Clock) -> Reach {
        let now = clock.now();
        Reach {
            clock,
            contact: Mutex::new(Contact::Answered(now)),
        }
    }

    /// etcd answered a call.
    pub fn answered(&self) {
        *self.contact.lock().expect("reach lock") = Contact::Answered(self.clock.now());
    }

    /// It won the lead (`true`), or stopped leading (`false`: as if answered then, since its
    /// lease was renewed until shortly before; a pause, not etcd, may have stopped it).
    pub fn leading(&self, leading: bool) {
        let contact = match leading {
            true => Contact::Leading,
            false => Contact::Answered(self.clock.now()),
        };
        *self.contact.lock().expect("reach lock") = contact;
    }

    /// Since when etcd has not answered, if for longer than `ttl`.
    fn lost_since(&self, now: Time, ttl: Duration) -> Option<Time> {
        match *self.contact.lock().expect("reach lock") {
            Contact::Leading => None,
            Contact::Answered(at) => (now.saturating_since(at) > ttl).then_some(at),
        }
    }
}

/// Tells `observer` when `reach` has been without etcd for longer than `ttl` (raising the
/// alarm), and when it has etcd again (clearing it); checks every [`FOLLOW_INTERVAL`]. Never
/// returns.
pub async fn watch(
    reach: &Reach,
    etcd: &EtcdOptions,
    observer: &dyn ControllerObserver,
) -> Infallible {
    let ttl = Duration::from_secs(etcd.lease_ttl_s);
    let mut alarmed = false;
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        let now = reach.clock.now();
        let lost = reach.lost_since(now, ttl);
        #[cfg(feature = "mutants")]
        let lost = lost.filter(|_| etcd.mutation != crate::controller::Mutation::NoEtcdAlarm);
        if lost.is_some() != alarmed {
            alarmed = lost.is_some();
            observer.on_etcd_reach(now, lost);
        }
    }
}
