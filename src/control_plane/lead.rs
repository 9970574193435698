//! Leadership: a replica campaigns in etcd's election under a lease of its own, and leads
//! while that lease is surely alive on its own clock.
//!
//! The lease is what makes a deposed leader harmless. etcd deletes a candidate's key when its
//! lease expires, and only then can the next candidate win; the leader, for its part, acts
//! only before its deadline: the send time of its last answered renewal, plus the TTL, less
//! what etcd may take off the TTL and what the two clocks may drift apart. A leader that is
//! paused, or cut from etcd, stops acting at that deadline, before any other replica can
//! lead (docs/control-plane.md, "Why two replicas never act at once").

use super::{call, EtcdOptions, LeadError};
use crate::service::Tasks;
use crate::time::{Clock, Time};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// This replica's etcd lease, renewed by a task of its own for as long as the session lives.
struct Session {
    lease: i64,
    /// Until when (this replica's clock) the lease is surely alive.
    until: Arc<Mutex<Time>>,
    _keeper: Tasks,
}

impl Session {
    async fn open(
        client: &Client,
        options: &EtcdOptions,
        clock: &Clock,
    ) -> Result<Session, LeadError> {
        let ttl = options.lease_ttl_s as i64;
        let sent = clock.now();
        let mut leases = client.lease_client();
        let granted = call(options, "lease grant", leases.grant(ttl, None)).await?;
        let until = Arc::new(Mutex::new(deadline(options, sent, granted.ttl())));
        let mut keeper = Tasks::default();
        keeper.spawn(keep_alive(
            client.clone(),
            options.clone(),
            clock.clone(),
            granted.id(),
            until.clone(),
        ));
        Ok(Session {
            lease: granted.id(),
            until,
            _keeper: keeper,
        })
    }

    fn until(&self) -> Time {
        *self.until.lock().expect("lease deadline")
    }
}

/// The last instant, on this replica's clock, at which a lease renewed with a request sent at
/// `sent` and answered with `ttl_s` seconds is surely still alive in etcd.
fn deadline(options: &EtcdOptions, sent: Time, ttl_s: i64) -> Time {
    let span = Duration::from_secs(ttl_s.max(0) as u64).saturating_sub(options.early_expiry);
    // Either clock may drift: count the span as the two could run apart at the bound.
    let drift = span.mul_f64(2.0 * options.max_clock_drift_ppm as f64 / 1e6);
    sent + span.saturating_sub(drift)
}

/// Renews `lease` six times a TTL, moving `until` on after every answered renewal (so that
/// an etcd outage shorter than the TTL, less a sixth and the margins, leaves the leader
/// acting throughout). A
/// renewal that fails or times out reopens the keep-alive stream at the next turn; a lease
/// etcd says has expired ends the task (the deadline then passes, and the replica with it).
async fn keep_alive(
    client: Client,
    options: EtcdOptions,
    clock: Clock,
    lease: i64,
    until: Arc<Mutex<Time>>,
) {
    let every = Duration::from_millis(options.lease_ttl_s * 1000 / 6);
    let mut stream = None;
    loop {
        tokio::time::sleep(every).await;
        if stream.is_none() {
            let mut leases = client.lease_client();
            stream = call(&options, "lease keep-alive", leases.keep_alive(lease))
                .await
                .ok();
        }
        let Some((keeper, answers)) = stream.as_mut() else {
            continue;
        };
        let sent = clock.now();
        let renewal = async {
            keeper.keep_alive().await?;
            answers.message().await
        };
        match call(&options, "lease keep-alive", renewal).await {
            Ok(Some(answer)) if answer.ttl() > 0 => {
                let mut until = until.lock().expect("lease deadline");
                *until = (*until).max(deadline(&options, sent, answer.ttl()));
            }
            Ok(Some(_)) => return,
            Ok(None) | Err(_) => stream = None,
        }
    }
}

/// This replica's leadership: its candidate key in the election, and its lease.
pub struct Lead {
    key: Vec<u8>,
    value: Vec<u8>,
    session: Session,
}

impl Lead {
    /// Until when (this replica's clock) it may act.
    pub fn until(&self) -> Time {
        self.session.until()
    }

    /// The compare every write of the leader carries: its own candidate key still holds its
    /// own value. Its key is the oldest candidate, so while it exists no other replica leads.
    pub fn guard(&self) -> Compare {
        Compare::value(self.key.clone(), CompareOp::Equal, self.value.clone())
    }

    /// Gives the lead up at once (best effort): revokes the lease, which deletes the key, so
    /// that the next candidate need not wait out the TTL.
    pub async fn resign(self, client: &Client, options: &EtcdOptions) {
        let mut leases = client.lease_client();
        let _ = call(options, "lease revoke", leases.revoke(self.session.lease)).await;
    }
}

/// Opens a session and campaigns as `replica` until this replica leads. Before campaigning
/// it deletes any candidate key of a session of its own that is gone (a crash leaves one for
/// a TTL): that session no longer acts, and its key would make this one wait behind itself.
pub async fn campaign(
    client: &Client,
    options: &EtcdOptions,
    replica: &str,
    clock: &Clock,
) -> Result<Lead, LeadError> {
    let session = Session::open(client, options, clock).await?;
    clear_stale_candidates(client, options, replica, session.lease).await?;
    // One campaign request for the whole session, never cancelled while the session lives:
    // a real etcd resigns a campaign whose request is cancelled (it deletes the candidate
    // key), and a second campaign on the same lease would share that key, so the late
    // resign of the first could delete the key the second then leads with.
    let mut election = client.election_client();
    let request = election.campaign(options.election(), replica, session.lease);
    let mut request = std::pin::pin!(request);
    let answer = loop {
        let left = session.until().saturating_since(clock.now());
        if left.is_zero() {
            return Err(LeadError::Expired);
        }
        // Wake at the deadline, which the keeper may have moved on meanwhile.
        if let Ok(answer) = tokio::time::timeout(left, &mut request).await {
            break answer;
        }
    };
    let answer = answer.map_err(|e| LeadError::Unreachable(format!("campaign: {e}")))?;
    let key = (answer.leader())
        .map(|leader| leader.key().to_vec())
        .ok_or_else(|| LeadError::Unreachable("campaign: no leader key".into()))?;
    Ok(Lead {
        key,
        value: replica.as_bytes().to_vec(),
        session,
    })
}

async fn clear_stale_candidates(
    client: &Client,
    options: &EtcdOptions,
    replica: &str,
    lease: i64,
) -> Result<(), LeadError> {
    let mut kv = client.kv_client();
    let list = kv.get(options.election(), Some(GetOptions::new().with_prefix()));
    let candidates = call(options, "list candidates", list).await?;
    for stale in (candidates.kvs().iter()).filter(|kv| kv.value() == replica.as_bytes()) {
        if stale.lease() == lease {
            continue;
        }
        let key = stale.key().to_vec();
        let txn = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, replica)])
            .and_then([TxnOp::delete(key, None)]);
        call(options, "delete a stale candidate", kv.txn(txn)).await?;
    }
    Ok(())
}
