//! The async services: the same code on real tokio (the `standby` binary) and inside madsim
//! (the simulator), which swaps in its own net, time and task under `--cfg madsim`.

pub mod config_center;
pub mod controller;
pub mod node;
pub mod rpc;
