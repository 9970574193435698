// Pausing (SIGSTOP) two of the three primary servers past the failover, then resuming them,
// with a stale writer that never learns of the failover. Compiled only WITHOUT `--cfg madsim`;
// needs `redis-server` (7.0+) on the PATH. Run it as:
//
//     RUSTFLAGS="" cargo test --release -p standby --target-dir target/real --test real_pause
#![cfg(not(madsim))]
//! The story: a `Client` for user 0 (shard 0) writes every 5 ms and follows the failover. A
//! second, stale writer holds a plain connection to a/0 and sends `FCALL standby_write` with
//! epoch 1 every 5 ms (without waiting for replies) before, during and after the pause: its
//! writes queue up inside the stopped server and run when it resumes. a/0 and a/1 are
//! SIGSTOPped; once the controller shows epoch 2 with b primary (plus 1 s) they are SIGCONTed.
//!
//! Checked: the failover happened while they were stopped; no write of the stale writer was
//! acknowledged (reply within the lease it reports, the client library's rule) after epoch 2
//! was first seen; after the resume a/0 refuses epoch-1 writes and becomes a replica of b/0;
//! every acknowledged write of both writers is on b/0 or in a/0's quarantine.

mod common;

use common::*;
use redis::aio::MultiplexedConnection;
use standby::real::status::query;
use standby::types::{Cluster, Epoch, NodeId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The stale writer's wait for one reply: longer than the whole pause, so the replies of the
/// writes queued in the stopped server are seen (not given up as timeouts).
const STALE_REPLY: Duration = Duration::from_secs(20);

/// One `FCALL standby_write` of the stale writer (writer 2).
#[derive(Clone, Debug)]
struct Stale {
    key: String,
    value: String,
    sent: Instant,
    received: Instant,
    /// `[lsn, lease ms left]`, or the error: the server's (`FENCED 2`, ...) or the transport's.
    reply: Result<(u64, i64), String>,
}

impl Stale {
    /// A success whose reply came back within the lease it reports (the library's rule).
    fn acked(&self) -> bool {
        matches!(self.reply, Ok((_, left))
            if self.received - self.sent < Duration::from_millis(left.max(0) as u64))
    }

    /// The library's error code, or `transport` for an error without one.
    fn reason(&self) -> &str {
        match &self.reply {
            Ok(_) if self.acked() => "acked",
            Ok(_) => "unknown",
            Err(e) if e.starts_with("transport:") => "transport",
            Err(e) => e.split_whitespace().next().unwrap_or("error"),
        }
    }
}

/// `FCALL standby_write 1 key 1 value` on `con`, timed.
async fn stale_write(mut con: MultiplexedConnection, key: String, value: String) -> Stale {
    let sent = Instant::now();
    let reply: redis::RedisResult<(u64, i64)> = redis::cmd("FCALL")
        .arg("standby_write")
        .arg(1)
        .arg(&key)
        .arg(1)
        .arg(&value)
        .query_async(&mut con)
        .await;
    let received = Instant::now();
    let reply = reply.map_err(|e| match e.code() {
        Some(code) => format!("{code} {}", e.detail().unwrap_or_default())
            .trim()
            .to_string(),
        None => format!("transport: {e}"),
    });
    Stale {
        key,
        value,
        sent,
        received,
        reply,
    }
}

/// Sends `s<n>` = `<n>` with epoch 1 to `address` every 5 ms until `stop` is set, each write
/// in its own task (a stopped server does not slow the sending), then waits for every reply.
async fn write_stale(address: String, log: Arc<Mutex<Vec<Stale>>>, stop: Arc<AtomicBool>) {
    let mut con: Option<MultiplexedConnection> = None;
    let mut writes = JoinSet::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        while let Some(done) = writes.try_join_next() {
            let stale: Stale = done.unwrap();
            if stale.reason() == "transport" {
                con = None;
            }
            log.lock().unwrap().push(stale);
        }
        if con.is_none() {
            con = connect_with_timeout(&address, Some(WRITER), STALE_REPLY)
                .await
                .ok();
        }
        let Some(c) = &con else { continue };
        n += 1;
        writes.spawn(stale_write(c.clone(), format!("s{n}"), n.to_string()));
    }
    while let Some(done) = writes.join_next().await {
        log.lock().unwrap().push(done.unwrap());
    }
}

/// Waits until `count` writes in `log` satisfy `ok`.
async fn until_count<T>(what: &str, log: &Mutex<Vec<T>>, count: usize, ok: impl Fn(&T) -> bool) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let n = log.lock().unwrap().iter().filter(|o| ok(o)).count();
        if n >= count {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {n} of {count}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `/proc/<pid>/stat`'s state letter (`T`: stopped).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pausing_the_primary_past_the_failover_acks_no_stale_write_and_loses_no_ack() {
    let (dir, mut servers, config) = start_servers("real-pause").await;
    let controller = RunningController::start(config.clone()).await;
    let (status_address, center) = (controller.status_address.clone(), controller.center.clone());
    let (a0, a1, b0) = (
        NodeId::new(Cluster::A, 0),
        NodeId::new(Cluster::A, 1),
        NodeId::new(Cluster::B, 0),
    );

    // Writer 1: the client, following its route.
    let FollowingWriter {
        client,
        log,
        stop,
        task: writing,
    } = start_following_writer(center).await;
    // Writer 2: epoch 1 on a/0, forever.
    let stale_log = Arc::new(Mutex::new(Vec::new()));
    let stale_writing = tokio::spawn(write_stale(
        servers.address(a0),
        stale_log.clone(),
        stop.clone(),
    ));
    let is_a0_ack = |o: &Outcome| matches!(&o.result, Ok(a) if a.node == a0);
    until_count("client acks on a/0", &log, 20, is_a0_ack).await;
    until_count("stale acks on a/0", &stale_log, 20, Stale::acked).await;

    // b/0 replicates a/0 before the pause (else every epoch-1 write would be divergent).
    let mut b = connect(&servers.address(b0), Some(WRITER)).await.unwrap();
    let deadline = Instant::now() + SETTLE;
    loop {
        let key = (log.lock().unwrap().iter().rev())
            .find(|o| o.result.is_ok())
            .map(|o| o.key.clone())
            .unwrap();
        let value: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut b)
            .await
            .unwrap_or(None);
        if value.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "b/0 never got a/0's writes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Pause a/0 and a/1. The first status showing epoch 2 bounds the new epoch's start from
    // above: nothing of epoch 1 may be acknowledged after it.
    let paused_at = Instant::now();
    servers.pause(a0);
    servers.pause(a1);
    let deadline = Instant::now() + SETTLE;
    let promoted = loop {
        if let Ok((_, status)) = query(&status_address, Duration::from_secs(1)).await {
            if status.epoch >= 2 {
                assert_eq!(
                    (status.epoch, status.primary.as_str()),
                    (2, "b"),
                    "{status:?}"
                );
                break Instant::now();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no failover to b during the pause"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    // (1) The failover happened while both were stopped (and they still are).
    for node in [a0, a1] {
        let pid = servers.pid(node).unwrap();
        assert_eq!(
            process_state(pid),
            Some('T'),
            "{node} (pid {pid}) not stopped"
        );
    }
    let (_, status) = query(&status_address, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        (status.epoch, status.primary.as_str()),
        (2, "b"),
        "{status:?}"
    );
    let resumed = Instant::now();
    servers.resume(a0);
    servers.resume(a1);

    // (4) a/0 refuses epoch-1 writes sent after the resume, and becomes b/0's replica.
    until_count(
        "stale writes sent and answered after the resume",
        &stale_log,
        20,
        |s| s.sent >= resumed && s.reason() != "transport",
    )
    .await;
    let b0_port = servers.ports[&b0] as i64;
    let mut admin = connect(&servers.address(a0), Some(ADMIN)).await.unwrap();
    let deadline = Instant::now() + SETTLE;
    loop {
        let role: redis::RedisResult<redis::Value> =
            redis::cmd("ROLE").query_async(&mut admin).await;
        let replica = match &role {
            Ok(redis::Value::Array(items)) => {
                let text = |i: usize| match items.get(i) {
                    Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).to_string(),
                    Some(redis::Value::SimpleString(s)) => s.clone(),
                    _ => String::new(),
                };
                let port = match items.get(2) {
                    Some(redis::Value::Int(p)) => *p,
                    _ => -1,
                };
                text(0) == "slave" && port == b0_port && text(3) == "connected"
            }
            _ => false,
        };
        if replica {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a/0 is not a connected replica of b/0 (port {b0_port}): ROLE {role:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rejoined = Instant::now();
    status_until(&status_address, "a rejoins as backup", |s| {
        s.epoch == 2 && s.phase == "normal" && cluster_role(s, "a") == "available backup"
    })
    .await;
    until_backup(&config, a0).await;
    // Writer 1 writes on b/0 in epoch 2, also after a/0 rejoined.
    until_count("client acks on b/0 after a/0 rejoined", &log, 20, |o| {
        matches!(&o.result, Ok(a) if a.node == b0 && a.epoch == Epoch(2)) && o.done >= rejoined
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    writing.await.unwrap();
    stale_writing.await.unwrap();
    let outcomes = log.lock().unwrap().clone();
    let stale = stale_log.lock().unwrap().clone();

    // (4) continued: every reply to an epoch-1 write sent after the resume is a refusal:
    // the fence (FENCED, LEASE_EXPIRED, STALE_EPOCH) or, once a/0 is a replica, READONLY.
    let after_resume: Vec<&Stale> = stale.iter().filter(|s| s.sent >= resumed).collect();
    let fence_refused =
        |s: &Stale| ["FENCED", "LEASE_EXPIRED", "STALE_EPOCH"].contains(&s.reason());
    for s in &after_resume {
        let ok = fence_refused(s) || s.reason() == "transport" || s.reason() == "READONLY";
        assert!(
            ok,
            "an epoch-1 write after the resume was not refused: {s:?}"
        );
    }
    let first_answer = after_resume.iter().find(|s| s.reason() != "transport");
    assert!(
        first_answer.is_some_and(|s| fence_refused(s)),
        "the first answered epoch-1 write after the resume: {first_answer:?}"
    );

    // (2) No epoch-1 ack after epoch 2 was seen: none of the stale writer, none of the client.
    let late_acks: Vec<&Stale> = (stale.iter())
        .filter(|s| s.acked() && s.received >= promoted)
        .collect();
    assert!(
        late_acks.is_empty(),
        "stale epoch-1 acks after epoch 2: {late_acks:?}"
    );
    let late_unknown: Vec<&Stale> = (stale.iter())
        .filter(|s| s.reply.is_ok() && !s.acked() && s.received >= promoted)
        .collect();
    if !late_unknown.is_empty() {
        eprintln!(
            "stale successes received after epoch 2 but past their lease (unknown, allowed): \
             {late_unknown:?}"
        );
    }
    let client_late: Vec<&Outcome> = (outcomes.iter())
        .filter(|o| matches!(&o.result, Ok(a) if a.epoch == Epoch(1)) && o.done >= promoted)
        .collect();
    assert!(
        client_late.is_empty(),
        "client epoch-1 acks after epoch 2: {client_late:?}"
    );

    // (3) Every ack of both writers is on b/0 or in a quarantine file of a/0.
    let mut quarantined: Vec<serde_json::Value> = Vec::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&config.redis.quarantine_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("a-0.") && name.ends_with(".jsonl") {
            let text = std::fs::read_to_string(&path).unwrap();
            quarantined.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
            files.push(name);
        }
    }
    let in_quarantine = |lsn: u64, key: &str, value: &str| {
        quarantined
            .iter()
            .any(|e| e["lsn"] == lsn && e["key"] == key && e["value"] == value)
    };
    let mut b = connect(&servers.address(b0), Some(WRITER)).await.unwrap();
    let mut kept: BTreeMap<&str, usize> = BTreeMap::new();
    let acked: Vec<(u64, NodeId, &str, &str)> = (outcomes.iter())
        .filter_map(|o| {
            let ack = o.result.as_ref().ok()?;
            Some((ack.lsn.0, ack.node, o.key.as_str(), o.value.as_str()))
        })
        .chain(stale.iter().filter(|s| s.acked()).map(|s| {
            let lsn = s.reply.as_ref().unwrap().0;
            (lsn, a0, s.key.as_str(), s.value.as_str())
        }))
        .collect();
    for &(lsn, node, key, value) in &acked {
        let on_b: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut b)
            .await
            .unwrap();
        if on_b.as_deref() == Some(value) {
            *kept.entry("on b/0").or_default() += 1;
            continue;
        }
        assert!(
            node == a0 && in_quarantine(lsn, key, value),
            "acked write lost: {key}={value} (lsn {lsn} on {node}); b/0 has {on_b:?}; \
             quarantine files {files:?}"
        );
        *kept.entry("quarantined").or_default() += 1;
    }

    // (5) The summary.
    let mut stale_reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &stale {
        *stale_reasons.entry(s.reason()).or_default() += 1;
    }
    let mut client_reasons: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        let reason = match &o.result {
            Ok(_) => "acked".to_string(),
            Err(e) => e.reason().to_string(),
        };
        *client_reasons.entry(reason).or_default() += 1;
    }
    let client_errors: Vec<String> = (outcomes.iter())
        .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.key)))
        .take(3)
        .collect();
    eprintln!(
        "real_pause: failover seen {} ms after SIGSTOP, resumed after {} ms, a/0 a replica {} ms \
         after SIGCONT; stale writer: {} sent, {stale_reasons:?}, raw successes after epoch 2: {}; \
         client: {} writes, {client_reasons:?} (first errors {client_errors:?}); acks kept: {kept:?}; quarantine files {files:?}",
        (promoted - paused_at).as_millis(),
        (resumed - paused_at).as_millis(),
        (rejoined - resumed).as_millis(),
        stale.len(),
        late_unknown.len(),
        outcomes.len(),
    );

    controller.stop().await;
    drop(client);
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}
