//! The ordering guarantees of docs/protocol.md, under concurrent writers.

use futures_util::StreamExt;
use ipcbus_client::{Client, ErrorCode, Event};
use ipcbus_protocol::Codec;
use ipcbus_tests::{TestServer, WAIT};
use serde_json::json;
use std::collections::HashMap;
use tokio::sync::watch;

const PUBLISHERS: u64 = 4;
const WRITES_EACH: u64 = 2500;
const KEYS: u64 = 16;

/// Several publishers, several subscribers joining while writes are under
/// way: every subscriber sees strictly increasing revs per key, replay then
/// live with no gap or duplicate, and ends with the latest value of every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_then_live_has_no_gap_or_duplicate() {
    let server = TestServer::start();
    let (progress_tx, progress) = watch::channel(0u64);
    let (final_tx, finals) = watch::channel(None::<HashMap<String, u64>>);

    let mut subscribers = Vec::new();
    for join_at in [0, 1000, 4000, 8000] {
        let mut progress = progress.clone();
        let mut finals = finals.clone();
        let client = server.client().await;
        subscribers.push(tokio::spawn(async move {
            let _ = progress.wait_for(|n| *n >= join_at).await;
            let mut sub = client.subscribe("ord.>").await.expect("subscribe");
            let mut last: HashMap<String, (u64, u64)> = HashMap::new();
            let mut synced = false;
            loop {
                let done = finals.borrow().as_ref().is_some_and(|f| {
                    f.iter()
                        .all(|(k, rev)| last.get(k).is_some_and(|(r, _)| r == rev))
                });
                if done {
                    assert!(synced, "never synced");
                    return last;
                }
                let event = tokio::select! {
                    e = sub.next() => e.expect("subscription ended"),
                    _ = finals.changed() => continue,
                };
                match event {
                    Event::Value { key, rev, value } => {
                        let v: u64 = rmp_decode(&value);
                        let prev = last.insert(key.clone(), (rev, v));
                        if let Some((prev_rev, _)) = prev {
                            assert!(rev > prev_rev, "{key}: rev {rev} after {prev_rev}");
                        }
                    }
                    Event::Synced => {
                        assert!(!synced, "synced twice");
                        synced = true;
                    }
                    Event::Deleted { key, .. } => panic!("unexpected deletion of {key}"),
                }
            }
        }));
    }

    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let client = server.client().await;
        let progress_tx = progress_tx.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..WRITES_EACH {
                let key = format!("ord.k{}", (i * 7 + p) % KEYS);
                client.set(&key, &(p * WRITES_EACH + i)).await.expect("set");
                progress_tx.send_modify(|n| *n += 1);
            }
        }));
    }
    for p in publishers {
        p.await.expect("publisher");
    }
    let reader = server.client().await;
    let finals_map: HashMap<String, u64> = reader
        .keys(Some("ord.>"))
        .await
        .expect("keys")
        .into_iter()
        .collect();
    assert_eq!(finals_map.len() as u64, KEYS);
    final_tx.send_replace(Some(finals_map.clone()));
    for s in subscribers {
        let last = tokio::time::timeout(WAIT, s)
            .await
            .expect("subscriber finished")
            .expect("join");
        for (key, rev) in &finals_map {
            let value: u64 = reader.get(key).await.expect("get");
            assert_eq!(last[key], (*rev, value), "{key}");
        }
    }
}

fn rmp_decode(bytes: &[u8]) -> u64 {
    let v = ipcbus_protocol::transcode::msgpack_to_json_value(bytes).expect("value");
    v.as_u64().expect("u64 value")
}

/// A get pipelined right behind a set on the same connection sees that set,
/// for existing keys and for keys the set creates.
#[tokio::test]
async fn read_your_writes_on_one_connection() {
    let server = TestServer::start();
    for codec in [Codec::MsgPack, Codec::Json] {
        let mut raw = server.raw(codec).await;
        for i in 0..200u64 {
            let key = format!("ryw.{codec:?}.{}", i % 20);
            raw.send(json!({"op": "set", "key": key, "value": i})).await;
            let (reply, _) = raw.call(json!({"id": i, "op": "get", "key": key})).await;
            assert_eq!(reply["value"], i, "{reply}");
            // `keys` too reflects the session's own writes, new keys included.
            let fresh = format!("ryw.{codec:?}.fresh.{i}");
            raw.send(json!({"op": "set", "key": fresh, "value": i}))
                .await;
            let (reply, _) = raw
                .call(json!({"id": 1000 + i, "op": "keys", "pattern": fresh}))
                .await;
            assert_eq!(reply["keys"][0]["key"], json!(fresh), "{reply}");
        }
    }
}

/// Concurrent increments with `set_if` never lose an update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_rev_increments_are_atomic() {
    const CLIENTS: u64 = 4;
    const EACH: u64 = 100;
    let server = TestServer::start();
    let first = server.client().await;
    first.set("cas.counter", &0u64).await.expect("init");
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client: Client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..EACH {
                loop {
                    let (bytes, rev) = client.get_raw("cas.counter").await.expect("get");
                    let n = rmp_decode(&bytes);
                    match client.set_if("cas.counter", &(n + 1), rev).await {
                        Ok(_) => break,
                        Err(e) if e.code() == Some(ErrorCode::RevMismatch) => {
                            assert!(e.current_rev().is_some_and(|r| r > rev));
                            conflicts += 1;
                        }
                        Err(e) => panic!("set_if: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let total: u64 = first.get("cas.counter").await.expect("get");
    assert_eq!(total, CLIENTS * EACH);
}
