//! Real mode: `standby controller` runs the controller and config-center services on real
//! tokio, with node addresses, parameters and users from a TOML file ([`config`]), its
//! durable state in a file ([`store`]), and a status listener for `standby status`
//! ([`status`]). Each node is a Redis 7 server driven directly over RESP ([`redis_node`],
//! prepared with [`redis_setup`]). Compiled only without `--cfg madsim`: under it tokio's net, time and
//! processes are simulated, and nothing here could reach a real node.
//!
//! [`client`] is the other side: a user's route and its fenced writes.

pub mod client;
pub mod config;
pub mod observer;
pub mod redis_node;
pub mod redis_setup;
pub mod replica;
pub mod run;
pub mod status;
pub mod store;
