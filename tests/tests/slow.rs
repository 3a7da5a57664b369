//! A subscriber that stops reading: server memory stays bounded, the others
//! keep going, and when it reads again it gets the latest state of every key.

use futures_util::StreamExt;
use ipcbus_client::Event;
use ipcbus_protocol::Codec;
use ipcbus_tests::TestServer;
use serde_json::json;
use std::collections::HashMap;

const KEYS: usize = 64;
const ROUNDS: usize = 400;
const VALUE_BYTES: usize = 16 << 10;
/// If the server kept what it could not deliver, it would hold about
/// KEYS * ROUNDS * VALUE_BYTES = 400 MiB; bounded, it holds a few MiB.
const RSS_LIMIT: u64 = 150 << 20;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("rss");
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_subscriber_is_conflated_and_bounded() {
    let server = TestServer::start();
    let mut stuck = server.raw(Codec::MsgPack).await;
    let (reply, _) = stuck
        .call(json!({"id": 1, "op": "sub", "pattern": "slow.>"}))
        .await;
    assert_eq!(reply["ok"], true);
    // From here on `stuck` does not read.

    let healthy = server.client().await;
    let mut events = healthy.subscribe("slow.>").await.expect("subscribe");
    let (seen_tx, mut seen_rx) = tokio::sync::watch::channel(0usize);
    let consumer = tokio::spawn(async move {
        let mut last: HashMap<String, u64> = HashMap::new();
        let mut seen = 0usize;
        while seen < KEYS * ROUNDS {
            match events.next().await.expect("healthy subscription ended") {
                Event::Value { key, rev, .. } => {
                    let prev = last.insert(key, rev);
                    assert!(prev.is_none_or(|p| p < rev));
                    seen += 1;
                    seen_tx.send_replace(seen);
                }
                Event::Synced => {}
                Event::Deleted { .. } => panic!("no deletions here"),
            }
        }
        last
    });

    let rss_before = rss_bytes();
    let publisher = server.client().await;
    let filler = "x".repeat(VALUE_BYTES);
    for round in 0..ROUNDS {
        let keys: Vec<String> = (0..KEYS).map(|k| format!("slow.k{k}")).collect();
        let value = (round, &filler);
        let sets = keys.iter().map(|key| publisher.set(key, &value));
        for rev in futures_util::future::join_all(sets).await {
            rev.expect("set");
        }
        // The healthy subscriber keeps up (it never falls a whole outbox
        // behind), so it must see every single write, while the stuck one
        // is conflated.
        let want = (round + 1) * KEYS;
        let caught_up = tokio::time::timeout(ipcbus_tests::WAIT, seen_rx.wait_for(|n| *n >= want));
        caught_up
            .await
            .expect("healthy subscriber stalled")
            .expect("consumer alive");
    }
    let grown = rss_bytes().saturating_sub(rss_before);
    eprintln!(
        "RSS grew by {} MiB while {} MiB were published",
        grown >> 20,
        (KEYS * ROUNDS * VALUE_BYTES) >> 20
    );
    assert!(
        grown < RSS_LIMIT,
        "RSS grew by {grown} bytes: the stuck subscriber's events were kept"
    );
    // Every write reached the healthy subscriber.
    let healthy_last = consumer.await.expect("consumer");
    assert_eq!(healthy_last.len(), KEYS);

    let (_, body) = server.http_get("/health").await;
    let health: serde_json::Value = serde_json::from_str(&body).expect("health json");
    assert!(
        health["skipped"].as_u64().is_some_and(|n| n > 0),
        "nothing was conflated: {health}"
    );

    // The stuck subscriber reads again: per key, revs increase, and it ends
    // with the newest rev of every key.
    let mut last: HashMap<String, u64> = HashMap::new();
    while last.len() < KEYS || last.iter().any(|(k, r)| healthy_last[k] != *r) {
        let ev = stuck.recv().await;
        if ev["ev"] != "val" {
            continue;
        }
        let (key, rev) = (
            ev["key"].as_str().expect("key").to_owned(),
            ev["rev"].as_u64().expect("rev"),
        );
        let prev = last.insert(key.clone(), rev);
        assert!(prev.is_none_or(|p| p < rev), "{key}: {rev} after {prev:?}");
    }
}

/// A client that stops reading for good is dropped by the kernel after
/// `stall_timeout_ms` (TCP_USER_TIMEOUT covers a zero receive window), so
/// it does not hold its connection and subscriptions forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_after_the_stall_timeout() {
    let config = ipcbus::Config {
        stall_timeout_ms: 500,
        ..ipcbus_tests::test_config()
    };
    let server = TestServer::with_config(config);
    let mut stuck = server.raw(Codec::MsgPack).await;
    let (reply, _) = stuck
        .call(json!({"id": 1, "op": "sub", "pattern": "drop.>"}))
        .await;
    assert_eq!(reply["ok"], true);
    let publisher = server.client().await;
    let filler = "x".repeat(64 << 10);
    let keys: Vec<String> = (0..16).map(|k| format!("drop.k{k}")).collect();
    let dropped = async {
        for round in 0u64.. {
            let value = (round, &filler);
            let sets = keys.iter().map(|key| publisher.set(key, &value));
            for rev in futures_util::future::join_all(sets).await {
                rev.expect("set");
            }
            let (_, body) = server.http_get("/health").await;
            let health: serde_json::Value = serde_json::from_str(&body).expect("health");
            if health["sessions"] == 1 {
                return round;
            }
        }
        unreachable!()
    };
    let rounds = tokio::time::timeout(std::time::Duration::from_secs(60), dropped)
        .await
        .expect("the stuck session was dropped");
    eprintln!("stuck session dropped after {rounds} rounds of 1 MiB");
    // Its socket is dead: whatever was buffered, the stream ends in an error.
    loop {
        match stuck.next().await {
            ipcbus_tests::Next::Msg(_) => continue,
            ipcbus_tests::Next::Timeout => panic!("the stuck socket is still open"),
            _ => break,
        }
    }
}
