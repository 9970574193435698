//! Packet loss as TCP shows it to an application, for the simulator. madsim's own loss model
//! resends a lost packet a millisecond later, so loss there changes almost nothing. Real TCP
//! resends after its retransmission timeout (at least 200 ms on Linux; 1 s for a lost SYN),
//! doubling on each further loss, and every later byte on the connection waits behind it.
//! The simulator installs a hook on its thread (madsim runs a world on one thread) that draws
//! that delay for each frame and each connection attempt; the services wait it out before
//! sending. Outside madsim builds there is no hook and [`delay`] costs nothing.

use std::time::Duration;

/// What is about to cross the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transmission {
    /// One frame on an open connection.
    Frame,
    /// A connection attempt (the SYN).
    Connect,
}

#[cfg(madsim)]
type Hook = Box<dyn Fn(Transmission) -> Duration>;

#[cfg(madsim)]
thread_local! {
    static HOOK: std::cell::RefCell<Option<Hook>> = const { std::cell::RefCell::new(None) };
}

/// Installs (or with `None`, removes) this thread's hook.
#[cfg(madsim)]
pub fn set_hook(hook: Option<Hook>) {
    HOOK.with(|h| *h.borrow_mut() = hook);
}

/// Waits as long as this thread's hook says a `transmission` is held up by lost packets.
pub async fn delay(transmission: Transmission) {
    #[cfg(madsim)]
    {
        let wait = HOOK.with(|h| h.borrow().as_ref().map(|hook| hook(transmission)));
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(wait).await;
        }
    }
    #[cfg(not(madsim))]
    let _ = transmission;
}

/// The retransmission delay for one transmission: each attempt is lost with probability
/// `loss` (drawn by `lost`), and each loss costs the current timeout, which doubles.
pub fn retransmission_delay(first_timeout: Duration, mut lost: impl FnMut() -> bool) -> Duration {
    let (mut total, mut timeout) = (Duration::ZERO, first_timeout);
    // Bounded: a link losing everything would otherwise never deliver. Six losses in a row
    // already cost 63 timeouts, longer than any heartbeat timeout.
    for _ in 0..6 {
        if !lost() {
            break;
        }
        total += timeout;
        timeout *= 2;
    }
    total
}
