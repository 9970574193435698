// The client library (`standby::client`) through a real failover of real Redis 7 servers.
// Compiled only WITHOUT `--cfg madsim`; needs `redis-server` (7.0+) on the PATH. Run it as:
//
//     RUSTFLAGS="" cargo test --release -p standby --target-dir target/real --test real_client
#![cfg(not(madsim))]
//! The story: a `Client` for user 0 (shard 0) writes every 5 ms. Two of a's three servers are
//! SIGKILLed. The client must move to b/0 by itself (the config center's push, or a rejection
//! and a retry), with no help from the test. Afterwards every write it acknowledged is on b/0
//! or in a/0's quarantine file (once a/0 is restarted and rejoins), and no write of epoch 1
//! was acknowledged after the controller was seen in epoch 2. Replication is cut before the
//! kill (as in real_redis), so some acknowledged writes must be in the quarantine.

mod common;

use common::*;
use standby::real::status::query;
use standby::types::{Cluster, Epoch, NodeId};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_follows_a_failover_and_keeps_every_acked_write() {
    let (dir, mut servers, config) = start_servers("real-client").await;
    let controller = RunningController::start(config.clone()).await;
    let (status_address, center) = (controller.status_address.clone(), controller.center.clone());
    let (a0, a1, b0) = (
        NodeId::new(Cluster::A, 0),
        NodeId::new(Cluster::A, 1),
        NodeId::new(Cluster::B, 0),
    );

    let FollowingWriter {
        client,
        log,
        stop,
        task: writing,
    } = start_following_writer(center).await;
    acked(&log, 1, a0, 20).await;

    // b/0 replicates a/0 before a is killed (else every epoch-1 write would be divergent).
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

    // Shard 0's replication breaks (a/0 refuses b/0's sync from now on, as in real_redis):
    // the writes a/0 acknowledges next never reach b/0 and must end in the quarantine.
    cut_replication(&servers.address(a0)).await;
    let before_cut = log
        .lock()
        .unwrap()
        .iter()
        .filter(|o| o.result.is_ok())
        .count();
    acked(&log, 1, a0, before_cut + 10).await;

    // a loses two of three servers. The first status showing epoch 2 bounds the promotion
    // from above: the client must have acknowledged no epoch-1 write after it.
    servers.kill(a0);
    servers.kill(a1);
    let deadline = Instant::now() + SETTLE;
    let promoted = loop {
        if let Ok((_, status)) = query(&status_address, Duration::from_secs(1)).await {
            if status.epoch >= 2 {
                assert_eq!(status.primary, "b", "{status:?}");
                break Instant::now();
            }
        }
        assert!(Instant::now() < deadline, "no failover to b");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };

    // The client moves to b/0 by itself and writes there.
    acked(&log, 2, b0, 20).await;
    let route = client.route().expect("a route");
    assert_eq!((route.epoch, route.node), (Epoch(2), b0), "{route:?}");

    // a comes back: a/0 exports its divergent writes (if any) and follows b/0.
    servers.start(a0);
    servers.start(a1);
    status_until(&status_address, "a rejoins as backup", |s| {
        s.epoch == 2 && s.phase == "normal" && cluster_role(s, "a") == "available backup"
    })
    .await;
    until_backup(&config, a0).await;
    stop.store(true, Ordering::Relaxed);
    writing.await.unwrap();
    let outcomes = log.lock().unwrap().clone();

    // No epoch-1 ack after the promotion.
    let late: Vec<&Outcome> = (outcomes.iter())
        .filter(|o| matches!(&o.result, Ok(a) if a.epoch == Epoch(1)) && o.done >= promoted)
        .collect();
    assert!(late.is_empty(), "epoch-1 acks after epoch 2: {late:?}");

    // Every ack is on b/0 or in a/0's quarantine (none when nothing diverged).
    let file = config.redis.quarantine_dir.join("a-0.epoch-2.jsonl");
    let in_quarantine = every_ack_kept(&outcomes, &servers.address(b0), &file).await;
    assert!(
        in_quarantine >= 10,
        "the acks after the cut are in the quarantine"
    );

    controller.stop().await;
    drop(client);
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}
