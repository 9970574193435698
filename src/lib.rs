//! standby: a fenced disaster-recovery controller for a primary/backup pair of storage
//! clusters, after patent CN112527567A (claims 1-7), with the fencing, epochs, accounted loss
//! and quarantine that the claims leave out.
//!
//! - [`controller`]: the sans-IO controller state machine.
//! - [`node`]: the node side of the protocol (epochs, leases, log, quarantine).
//! - [`config_center`]: per-user routing configs and their acknowledgements.
//! - [`protocol`] and [`wire`]: the messages and their framing.
//! - [`service`]: the async services that drive all of the above over TCP, on real tokio or
//!   inside madsim.

#![warn(missing_docs)]

pub mod config_center;
pub mod controller;
pub mod node;
pub mod params;
pub mod protocol;
pub mod service;
pub mod time;
pub mod types;
pub mod wire;
