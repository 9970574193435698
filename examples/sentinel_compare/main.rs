//! standby beside Redis Sentinel, on the same six Redis servers and the same faults (issue 8,
//! part 5). Not part of `cargo test`: run it through `scripts/sentinel-compare.sh`, which
//! builds this example and the `standby` binary (a real build, not a simulation one) and
//! passes `--standby-bin`.
//!
//! Each run starts fresh processes in a fresh directory on fresh ports: six `redis-server`s
//! (shard i = a/i + b/i), then either `standby controller` (a separate process) or three
//! `redis-sentinel`s (quorum 2). Two writers write on shard 0 every 5 ms: one follows the tool
//! (standby's client library; a Sentinel-aware client), one keeps writing to the old
//! primary's address. The fault hits a/0 and a/1 (SIGKILL, or SIGSTOP for 5 s then SIGCONT).
//! Afterwards every acknowledged write is looked up on the new primary b/0 (and, for standby,
//! in the quarantine files). One JSON line per run goes to `--out`; the markdown tables are
//! printed at the end (and by `--report FILE` alone). The definitions are in `measure.rs`.
//!
//! Under `--cfg madsim` (a simulation build, which `cargo test` makes of the examples) there
//! is nothing to run: tokio is simulated and no real process or socket could be reached.
#![cfg_attr(madsim, allow(unused))]

#[cfg(not(madsim))]
mod campaign;
#[cfg(not(madsim))]
mod measure;
#[cfg(not(madsim))]
mod milestones;
#[cfg(not(madsim))]
mod procs;
#[cfg(not(madsim))]
mod redis_io;
#[cfg(not(madsim))]
mod report;
#[cfg(not(madsim))]
mod sentinel;
#[cfg(not(madsim))]
mod standby_tool;
#[cfg(not(madsim))]
mod writers;

#[cfg(madsim)]
fn main() {
    eprintln!(
        "sentinel_compare needs a real build: scripts/sentinel-compare.sh \
         (RUSTFLAGS=\"\" cargo build --release -p standby --target-dir target/real \
         --bin standby --example sentinel_compare)"
    );
    std::process::exit(2);
}

#[cfg(not(madsim))]
fn main() {
    campaign::main();
}
