//! Pattern subscriptions (`*`, `>`): replay, keys created later, unsub, since.

use ipcbus_protocol::Codec;
use ipcbus_tests::{Next, Raw, TestServer};
use serde_json::{json, Value};
use std::collections::BTreeSet;

async fn sub(raw: &mut Raw, id: u64, pattern: &str, since: Option<u64>) -> (u64, BTreeSet<String>) {
    let mut req = json!({"id": id, "op": "sub", "pattern": pattern});
    if let Some(since) = since {
        req["since"] = json!(since);
    }
    let (reply, before) = raw.call(req).await;
    assert!(before.is_empty(), "events before the sub reply: {before:?}");
    let sub = reply["sub"].as_u64().expect("sub id");
    let mut replayed = BTreeSet::new();
    loop {
        let ev = raw.recv().await;
        assert_eq!(ev["sub"], sub, "{ev}");
        if ev["ev"] == "synced" {
            return (sub, replayed);
        }
        assert_eq!(ev["ev"], "val");
        assert!(
            replayed.insert(ev["key"].as_str().expect("key").to_owned()),
            "duplicate {ev}"
        );
    }
}

fn set(key: &str, id: u64) -> Value {
    json!({"id": id, "op": "set", "key": key, "value": key})
}

#[tokio::test]
async fn wildcards_match_tokens() {
    let server = TestServer::start();
    let mut w = server.raw(Codec::Json).await;
    let keys = ["a", "a.b", "a.c", "a.b.c", "x.b", "x.b.c", "a.b.c.d"];
    for (i, key) in keys.iter().enumerate() {
        w.call(set(key, i as u64)).await;
    }
    let mut s = server.raw(Codec::MsgPack).await;
    let cases: [(&str, &[&str]); 7] = [
        ("a.*", &["a.b", "a.c"]),
        ("a.>", &["a.b", "a.b.c", "a.b.c.d", "a.c"]),
        ("*.b", &["a.b", "x.b"]),
        ("*.b.>", &["a.b.c", "a.b.c.d", "x.b.c"]),
        ("*", &["a"]),
        (">", &keys),
        ("a.b", &["a.b"]),
    ];
    for (i, (pattern, want)) in cases.iter().enumerate() {
        let (_, got) = sub(&mut s, 100 + i as u64, pattern, None).await;
        let want: BTreeSet<String> = want.iter().map(|k| k.to_string()).collect();
        assert_eq!(got, want, "{pattern}");
    }
}

#[tokio::test]
async fn keys_created_later_reach_wildcard_subscribers_until_unsub() {
    let server = TestServer::start();
    let mut s = server.raw(Codec::MsgPack).await;
    let (id, replayed) = sub(&mut s, 1, "dev.*.temp", None).await;
    assert!(replayed.is_empty());
    let mut w = server.raw(Codec::MsgPack).await;
    w.call(set("dev.kitchen.temp", 1)).await;
    w.call(set("dev.kitchen.humidity", 2)).await;
    w.call(set("dev.hall.temp", 3)).await;
    for key in ["dev.kitchen.temp", "dev.hall.temp"] {
        let ev = s.recv().await;
        assert_eq!(
            (&ev["ev"], &ev["key"], &ev["sub"]),
            (&json!("val"), &json!(key), &json!(id))
        );
    }
    w.call(json!({"id": 4, "op": "del", "key": "dev.hall.temp"}))
        .await;
    let ev = s.recv().await;
    assert_eq!(
        (&ev["ev"], &ev["key"]),
        (&json!("del"), &json!("dev.hall.temp"))
    );
    let (reply, before) = s.call(json!({"id": 2, "op": "unsub", "sub": id})).await;
    assert_eq!((reply["ok"].clone(), before.len()), (json!(true), 0));
    w.call(set("dev.attic.temp", 5)).await;
    let (_, before) = s.call(json!({"id": 3, "op": "keys"})).await;
    assert!(before.is_empty(), "event after unsub: {before:?}");
}

#[tokio::test]
async fn since_replays_only_newer_writes_and_known_deletions() {
    let server = TestServer::start();
    let mut s = server.raw(Codec::Json).await;
    let mut w = server.raw(Codec::Json).await;
    // A subscriber keeps the tombstone of s.gone alive.
    let (_, _) = sub(&mut s, 1, "s.gone", None).await;
    for (i, key) in ["s.old", "s.gone", "s.new"].iter().enumerate() {
        w.call(set(key, i as u64)).await; // revs 1, 2, 3
    }
    w.call(json!({"id": 9, "op": "del", "key": "s.gone"})).await; // rev 4
    let mut r = server.raw(Codec::Json).await;
    let (reply, _) = r
        .call(json!({"id": 1, "op": "sub", "pattern": "s.*", "since": 1}))
        .await;
    let sub_id = reply["sub"].clone();
    let mut got = Vec::new();
    loop {
        let ev = r.recv().await;
        if ev["ev"] == "synced" {
            break;
        }
        got.push((ev["ev"].clone(), ev["key"].clone(), ev["rev"].clone()));
        assert_eq!(ev["sub"], sub_id);
    }
    got.sort_by_key(|(_, k, _)| k.as_str().map(str::to_owned));
    assert_eq!(
        got,
        vec![
            (json!("del"), json!("s.gone"), json!(4)),
            (json!("val"), json!("s.new"), json!(3))
        ]
    );
    // A fresh subscription (no since) replays values only.
    let (_, replayed) = sub(&mut r, 2, "s.*", None).await;
    assert_eq!(
        replayed,
        ["s.new", "s.old"].iter().map(|k| k.to_string()).collect()
    );
    assert!(matches!(s.next().await, Next::Msg(ev) if ev["ev"] == "val"));
}
