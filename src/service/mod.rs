//! The async services: the same code on real tokio (the `standby` binary) and inside madsim
//! (the simulator), which swaps in its own net, time and task under `--cfg madsim`.

pub mod config_center;
pub mod controller;
pub mod loss;
pub mod node;
pub mod persist;
pub mod rpc;

/// The tasks a service spawned, aborted together when the service's own future is dropped:
/// stopping a service stops everything it started (its connections, its replicator), as a
/// killed process would.
#[derive(Debug, Default)]
pub struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Tasks {
    /// Spawns `task` as part of the group, forgetting the ones already finished.
    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.0.retain(|handle| !handle.is_finished());
        self.0.push(tokio::spawn(task));
    }

    /// Whether every task of the group has finished.
    pub fn all_finished(&self) -> bool {
        self.0.iter().all(|handle| handle.is_finished())
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}
