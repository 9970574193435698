//! The real controller's observer: logs every action, keeps the status snapshot, and hands
//! every alarm event to the operator's `alarm_command`.

use crate::controller::{Action, AlarmEvent, Controller};
use crate::real::status::{Snapshot, Status};
use crate::service::controller::{ControllerObserver, LogControllerObserver};
use crate::time::Time;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::mpsc;

/// The longest an alarm command may run before it is killed: a hung pager must not hold back
/// the alarms after it for ever.
const ALARM_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The observer of the `standby controller` process.
pub struct RealObserver {
    snapshot: Snapshot,
    /// The wall-clock time this process raised each open alarm at.
    raised: Mutex<BTreeMap<u64, SystemTime>>,
    /// Alarm events for the command runner, in the order they happened, as JSON.
    alarms: Option<mpsc::UnboundedSender<String>>,
    /// Whether this replica's etcd alarm is raised.
    etcd_lost: Mutex<bool>,
}

/// The alarm a controller replica raises when it has not reached etcd for longer than its
/// lease TTL, and clears when it does again; handed to `alarm_command` like the others.
#[derive(Debug, serde::Serialize)]
enum EtcdAlarm {
    /// `{"EtcdUnreachable":{"since_unix_ms":...}}`: it cannot lead, and while no replica can,
    /// the primary's writes are refused once its leases run out (there is no failsafe mode).
    EtcdUnreachable {
        /// When etcd last answered it (wall clock, ms since the Unix epoch).
        since_unix_ms: u64,
    },
    /// `{"EtcdReachable":{}}`: etcd answers it again.
    EtcdReachable {},
}

impl RealObserver {
    /// An observer writing to `snapshot`, running `alarm_command` (program, then arguments)
    /// per alarm event. Must be called on a tokio runtime: it starts the command runner.
    pub fn new(snapshot: Snapshot, alarm_command: Option<Vec<String>>) -> RealObserver {
        let alarms = alarm_command.map(|command| {
            let (send, receive) = mpsc::unbounded_channel();
            tokio::spawn(run_alarm_commands(command, receive));
            send
        });
        RealObserver {
            snapshot,
            raised: Mutex::new(BTreeMap::new()),
            alarms,
            etcd_lost: Mutex::new(false),
        }
    }

    fn send(&self, json: String) {
        if let Some(alarms) = &self.alarms {
            // The runner ends only with the runtime.
            let _ = alarms.send(json);
        }
    }

    fn on_alarm(&self, event: &AlarmEvent) {
        let mut raised = self.raised.lock().expect("observer lock");
        match event {
            AlarmEvent::Raised(alarm) => raised.insert(alarm.id, SystemTime::now()),
            AlarmEvent::Cleared { id, .. } => raised.remove(id),
        };
        self.send(serde_json::to_string(event).expect("an alarm serialises"));
    }
}

impl ControllerObserver for RealObserver {
    fn on_action(&self, now: Time, action: &Action) {
        LogControllerObserver.on_action(now, action);
        if let Action::Alarm(event) = action {
            self.on_alarm(event);
        }
    }

    /// The controller stopped (a replica that lost the lead): nothing it saw holds now.
    fn on_stopped(&self, _now: Time, why: &crate::service::controller::Stopped) {
        tracing::warn!(%why, "the controller stopped");
        *self.snapshot.lock().expect("status lock") = None;
    }

    fn on_etcd_reach(&self, now: Time, lost: Option<Time>) {
        let mut alarmed = self.etcd_lost.lock().expect("observer lock");
        if *alarmed == lost.is_some() {
            return;
        }
        *alarmed = lost.is_some();
        let alarm = match lost {
            Some(since) => {
                let ago = now.saturating_since(since);
                let since = SystemTime::now() - ago;
                tracing::error!(?ago, "ALARM: etcd has not answered this replica: it cannot lead, and while no replica can, the primary's writes are refused once its leases run out");
                EtcdAlarm::EtcdUnreachable {
                    since_unix_ms: crate::real::status::unix_ms(since),
                }
            }
            None => {
                tracing::warn!("etcd answers this replica again");
                EtcdAlarm::EtcdReachable {}
            }
        };
        self.send(serde_json::to_string(&alarm).expect("an alarm serialises"));
    }

    fn on_state(&self, _now: Time, controller: &Controller) {
        let status = Status::of(controller, &self.raised.lock().expect("observer lock"));
        *self.snapshot.lock().expect("status lock") = Some(status);
    }
}

/// Runs `command` once per event, one at a time so that a clear never overtakes its raise.
/// Runs on a task of its own: the controller's loop never waits for it.
async fn run_alarm_commands(command: Vec<String>, mut events: mpsc::UnboundedReceiver<String>) {
    while let Some(json) = events.recv().await {
        if let Err(reason) = run_once(&command, json.clone()).await {
            tracing::error!(command = ?command, %reason, event = %json, "alarm command failed");
        }
    }
}

/// One run of `command` with `json` and a newline on its stdin.
async fn run_once(command: &[String], json: String) -> Result<(), String> {
    let (program, args) = command.split_first().expect("validated: not empty");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A command that does not read its stdin may have exited already: not an error in itself.
    let _ = stdin.write_all(format!("{json}\n").as_bytes()).await;
    drop(stdin);
    let output = tokio::time::timeout(ALARM_COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("still running after {ALARM_COMMAND_TIMEOUT:?}; killed"))?
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!("{}: {}", output.status, stderr.trim()))
}
