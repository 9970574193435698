//! standby: a fenced disaster-recovery controller for a primary/backup pair of storage
//! clusters, after patent CN112527567A (claims 1-7), with the fencing, epochs, accounted loss
//! and quarantine that the claims leave out.
//!
//! - [`controller`]: the sans-IO controller state machine.
//! - [`node`]: the node side of the protocol (epochs, leases, log, quarantine).
//! - [`config_center`]: per-user routing configs and their acknowledgements.
//! - [`control_plane`]: controller replicas on etcd: election, leases, the durable state.
//! - [`protocol`] and [`wire`]: the messages and their framing.
//! - [`service`]: the async services that drive all of the above over TCP, on real tokio or
//!   inside madsim.
//! - `real` (non-simulated builds only): the `standby controller` process, its config file,
//!   state file and status listener, and [`client`](real::client), a user's fenced writes.

#![warn(missing_docs)]

/// Whether `$owner` (anything with a `mutation` field) runs the mutant `$variant`. Always
/// false, with no trace of the mutant in the code, without the `mutants` feature.
#[macro_export]
#[doc(hidden)]
macro_rules! mutated {
    ($owner:expr, $variant:ident) => {{
        #[cfg(feature = "mutants")]
        let mutated = $owner.mutation == $crate::mutation::Mutation::$variant;
        #[cfg(not(feature = "mutants"))]
        let mutated = false;
        mutated
    }};
}

pub mod config_center;
pub mod control_plane;
pub mod controller;
#[cfg(feature = "mutants")]
pub mod mutation;
pub mod node;
pub mod params;
pub mod protocol;
#[cfg(not(madsim))]
pub mod real;
#[cfg(not(madsim))]
pub use real::client;
pub mod service;
pub mod time;
pub mod types;
pub mod wire;
