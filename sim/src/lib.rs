//! standby-sim: the deterministic simulation testbed for standby. The real controller, node,
//! and config-center services run as madsim nodes over a simulated network; a fault injector
//! follows a scenario's schedule under a seed; checkers judge what happened.

#![warn(missing_docs)]

// A build without `--cfg madsim` would run the "simulation" on the real network and clock,
// or compile the tests to nothing. This happens when RUSTFLAGS is set in the environment,
// which replaces the flags in .cargo/config.toml. Refuse loudly instead.
#[cfg(not(madsim))]
compile_error!(
    "standby-sim must be built with `--cfg madsim`. A RUSTFLAGS variable in the environment \
     replaces the setting in .cargo/config.toml: unset it, or add `--cfg madsim` to it \
     (e.g. RUSTFLAGS=\"--cfg madsim -Dwarnings\")."
);

pub mod availability;
pub mod bare;
pub mod bench;
pub mod campaign;
pub mod check;
pub mod control_plane;
pub mod effects;
pub mod html;
mod rng;
pub mod scenario;
pub mod shrink;
pub mod swarm;
pub mod trace;
pub mod user;
pub mod world;
