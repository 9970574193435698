//! Child processes that never outlive their run: each is a [`Proc`] guard that SIGKILLs and
//! reaps its process when dropped (on success, on an error and on a panic; SIGCONT first if it
//! was SIGSTOPped). Every pid started is registered, so that the campaign can check at the end
//! that none is left. Also the six Redis servers of a run, with their config files.

use standby::types::{Cluster, NodeId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// Every process started by this campaign: pid and what it was.
static STARTED: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

/// A child process, killed and reaped when dropped.
pub struct Proc {
    name: String,
    child: Option<Child>,
    paused: bool,
}

impl Proc {
    /// Starts `command` as `name` (for messages).
    pub fn spawn(name: &str, mut command: Command) -> Result<Proc, String> {
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", command.get_program()))?;
        STARTED
            .lock()
            .expect("pid registry")
            .push((child.id(), name.to_string()));
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            paused: false,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(why)` if the process has exited (it should not have).
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited: {status}", self.name)),
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", self.name)),
        }
    }

    /// SIGKILLs (SIGCONT first if paused) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused {
                let _ = Command::new("kill")
                    .args(["-s", "CONT", &child.id().to_string()])
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `signal` (`KILL`, `STOP`, `CONT`) to every process in `procs` with one `kill` call,
/// so that they are hit within a millisecond of each other. Killed processes are reaped.
pub fn signal(procs: &mut [&mut Proc], signal: &str) -> Result<(), String> {
    let pids: Vec<String> = procs
        .iter()
        .filter_map(|p| p.pid())
        .map(|p| p.to_string())
        .collect();
    let status = Command::new("kill")
        .args(["-s", signal])
        .args(&pids)
        .status()
        .map_err(|e| format!("kill -s {signal}: {e}"))?;
    if !status.success() {
        return Err(format!("kill -s {signal} {pids:?}: {status}"));
    }
    for p in procs.iter_mut() {
        match signal {
            "STOP" => p.paused = true,
            "CONT" => p.paused = false,
            "KILL" => {
                p.paused = false;
                if let Some(mut child) = p.child.take() {
                    let _ = child.wait();
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The processes this campaign started that still exist (none should).
pub fn leftovers() -> Vec<String> {
    let started = STARTED.lock().expect("pid registry").clone();
    started
        .into_iter()
        .filter_map(|(pid, name)| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // A pid reused by an unrelated process is not ours.
            let ours = ["redis", "standby"].iter().any(|w| cmdline.contains(w));
            ours.then(|| format!("pid {pid} ({name}): {}", cmdline.trim()))
        })
        .collect()
}

/// How many processes were started.
pub fn started_count() -> usize {
    STARTED.lock().expect("pid registry").len()
}

/// `n` distinct free loopback ports (all bound at once, then released).
pub fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("no free port: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

pub fn a(i: u16) -> NodeId {
    NodeId::new(Cluster::A, i)
}

pub fn b(i: u16) -> NodeId {
    NodeId::new(Cluster::B, i)
}

/// The six nodes, a/0..a/2 then b/0..b/2.
pub fn nodes() -> Vec<NodeId> {
    (0..3).map(a).chain((0..3).map(b)).collect()
}

/// The six Redis servers of a run: one config file and data directory each, kept across
/// restarts. Dropping it kills every server still running.
pub struct Servers {
    pub ports: BTreeMap<NodeId, u16>,
    confs: BTreeMap<NodeId, PathBuf>,
    procs: BTreeMap<NodeId, Proc>,
}

impl Servers {
    /// Writes each node's `redis.conf` under `dir/redis-<c>-<i>/`: the settings both tools
    /// share, then `extra(node)`'s lines.
    pub fn new(
        dir: &Path,
        ports: BTreeMap<NodeId, u16>,
        extra: impl Fn(NodeId) -> Vec<String>,
    ) -> Result<Servers, String> {
        let mut confs = BTreeMap::new();
        for (&node, &port) in &ports {
            let data = dir.join(format!("redis-{}-{}", node.cluster, node.index));
            std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\nsave \"\"\n\
                 repl-diskless-sync-delay 0\ndir {data}\nlogfile {data}/redis.log\n",
                data = data.display()
            );
            for line in extra(node) {
                text.push_str(&line);
                text.push('\n');
            }
            let conf = data.join("redis.conf");
            std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
            confs.insert(node, conf);
        }
        Ok(Servers {
            ports,
            confs,
            procs: BTreeMap::new(),
        })
    }

    /// Starts (or restarts) `node`'s server with its config file and data.
    pub fn start(&mut self, node: NodeId) -> Result<(), String> {
        let conf = &self.confs[&node];
        let mut command = Command::new("redis-server");
        command
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let proc = Proc::spawn(&format!("redis-server {node}"), command)?;
        self.procs.insert(node, proc);
        Ok(())
    }

    pub fn address(&self, node: NodeId) -> String {
        format!("127.0.0.1:{}", self.ports[&node])
    }

    /// Sends `sig` to the servers of `nodes` at once (see [`signal`]).
    pub fn signal(&mut self, nodes: &[NodeId], sig: &str) -> Result<(), String> {
        let mut procs: Vec<&mut Proc> = self
            .procs
            .iter_mut()
            .filter(|(node, _)| nodes.contains(node))
            .map(|(_, p)| p)
            .collect();
        if procs.len() != nodes.len() {
            return Err(format!("not every one of {nodes:?} is running"));
        }
        signal(&mut procs, sig)?;
        if sig == "KILL" {
            for node in nodes {
                self.procs.remove(node);
            }
        }
        Ok(())
    }

    /// An error naming every server that exited by itself.
    pub fn check_running(&mut self) -> Result<(), String> {
        let exited: Vec<String> = self.procs.values_mut().filter_map(Proc::exited).collect();
        if exited.is_empty() {
            Ok(())
        } else {
            Err(exited.join("; "))
        }
    }
}
