//! `sub` with `meta: true` (protocol.md §3, §4): every `val` of the
//! subscription says how old the write is and whether it is persisted,
//! ephemeral or has a TTL; a subscription without it gets the same events
//! as ever. Over raw frames, in both codecs, and across a restart.

use ipcbus::Config;
use ipcbus_protocol::Codec;
use ipcbus_tests::{test_config, Raw, TestServer, WAIT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

const CODECS: [Codec; 2] = [Codec::MsgPack, Codec::Json];
/// The TTL the tests set: long enough never to expire during a test.
const TTL_MS: u64 = 600_000;

async fn ok(raw: &mut Raw, req: Value) {
    let (reply, _) = raw.call(req).await;
    assert_eq!(reply["ok"], true, "expected success: {reply}");
}

/// Subscribes to `pattern` (with `meta` when asked) and returns the
/// replay's `val` events by key, up to `synced`.
async fn replay(raw: &mut Raw, pattern: &str, meta: bool) -> BTreeMap<String, Value> {
    let mut req = json!({"id": 100, "op": "sub", "pattern": pattern});
    if meta {
        req["meta"] = json!(true);
    }
    ok(raw, req).await;
    let mut vals = BTreeMap::new();
    loop {
        let ev = raw.recv().await;
        match ev["ev"].as_str() {
            Some("synced") => return vals,
            Some("val") => {
                let key = ev["key"].as_str().expect("key").to_owned();
                vals.insert(key, ev);
            }
            _ => panic!("unexpected during the replay: {ev}"),
        }
    }
}

/// The `age_ms` of a `meta` map, checked to be a recent write's.
fn recent(meta: &Value) -> u64 {
    let age = meta["age_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("age_ms: {meta}"));
    assert!(
        age <= WAIT.as_millis() as u64,
        "written during the test: {meta}"
    );
    age
}

/// The `ttl_ms` of a `meta` map, checked to be what is left of `set`.
fn ttl_left(meta: &Value, set: u64) -> u64 {
    let left = meta["ttl_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("ttl_ms: {meta}"));
    assert!(left > 0 && left <= set, "{left} of {set}: {meta}");
    left
}

/// The names of the fields of a `meta` map.
fn fields(meta: &Value) -> Vec<&str> {
    let map = meta.as_object().unwrap_or_else(|| panic!("a map: {meta}"));
    let mut names: Vec<&str> = map.keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn a_meta_subscription_sees_each_value_s_options_and_age() {
    for codec in CODECS {
        let server = TestServer::start();
        let mut writer = server.raw(codec).await;
        let sets = [
            json!({"id": 1, "op": "set", "key": "m.plain", "value": 1}),
            json!({"id": 2, "op": "set", "key": "m.persisted", "value": 2, "persist": true}),
            json!({"id": 3, "op": "set", "key": "m.ephemeral", "value": 3, "ephemeral": true}),
            json!({"id": 4, "op": "set", "key": "m.ttl", "value": 4, "ttl_ms": TTL_MS}),
            json!({"id": 5, "op": "set", "key": "m.both", "value": 5, "persist": true, "ttl_ms": TTL_MS}),
        ];
        for set in sets {
            ok(&mut writer, set).await;
        }
        let mut plain = server.raw(codec).await;
        let vals = replay(&mut plain, "m.>", false).await;
        assert_eq!(vals.len(), 5, "{vals:?}");
        for ev in vals.values() {
            assert!(ev.get("meta").is_none(), "no meta without asking: {ev}");
        }

        let mut watcher = server.raw(codec).await;
        let vals = replay(&mut watcher, "m.>", true).await;
        let meta = |key: &str| vals[key]["meta"].clone();
        let m = meta("m.plain");
        assert_eq!(fields(&m), ["age_ms"], "{codec:?}");
        recent(&m);
        let m = meta("m.persisted");
        assert_eq!(fields(&m), ["age_ms", "persist"]);
        assert_eq!(m["persist"], true);
        let m = meta("m.ephemeral");
        assert_eq!(fields(&m), ["age_ms", "ephemeral"]);
        assert_eq!(m["ephemeral"], true);
        let m = meta("m.ttl");
        assert_eq!(fields(&m), ["age_ms", "ttl_ms"]);
        ttl_left(&m, TTL_MS);
        let m = meta("m.both");
        assert_eq!(fields(&m), ["age_ms", "persist", "ttl_ms"]);
        ttl_left(&m, TTL_MS);

        // Live events carry it too; a new set replaces the options.
        ok(
            &mut writer,
            json!({"id": 6, "op": "set", "key": "m.persisted", "value": 6, "ttl_ms": 5000}),
        )
        .await;
        let ev = watcher.recv().await;
        assert_eq!(
            (&ev["ev"], &ev["key"]),
            (&json!("val"), &json!("m.persisted"))
        );
        assert_eq!(fields(&ev["meta"]), ["age_ms", "ttl_ms"], "{ev}");
        recent(&ev["meta"]);
        ttl_left(&ev["meta"], 5000);
        let ev = plain.recv().await;
        assert_eq!(ev["value"], 6);
        assert!(ev.get("meta").is_none(), "{ev}");
        // A deletion carries none.
        ok(&mut writer, json!({"id": 7, "op": "del", "key": "m.plain"})).await;
        let ev = watcher.recv().await;
        assert_eq!((&ev["ev"], &ev["key"]), (&json!("del"), &json!("m.plain")));
        assert!(ev.get("meta").is_none(), "{ev}");
    }
}

#[tokio::test]
async fn meta_must_be_a_boolean() {
    for codec in CODECS {
        let server = TestServer::start();
        let mut raw = server.raw(codec).await;
        let (reply, _) = raw
            .call(json!({"id": 1, "op": "sub", "pattern": "a", "meta": "yes"}))
            .await;
        assert_eq!(reply["ok"], false, "{reply}");
        assert_eq!(reply["error"]["code"], "bad_request");
    }
}

fn on_disk(dir: &Path, persist_all: bool) -> Config {
    Config {
        data_dir: Some(dir.to_owned()),
        persist_all,
        ..test_config()
    }
}

#[tokio::test]
async fn a_value_restored_after_a_restart_is_persisted_with_no_age() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let server = TestServer::with_config(on_disk(dir.path(), false));
        let mut raw = server.raw(Codec::MsgPack).await;
        let sets = [
            json!({"id": 1, "op": "set", "key": "r.kept", "value": 1, "persist": true}),
            json!({"id": 2, "op": "set", "key": "r.ttl", "value": 2, "persist": true, "ttl_ms": TTL_MS}),
        ];
        for set in sets {
            ok(&mut raw, set).await;
        }
    }
    let server = TestServer::with_config(on_disk(dir.path(), true));
    for codec in CODECS {
        let mut raw = server.raw(codec).await;
        let vals = replay(&mut raw, "r.>", true).await;
        let kept = &vals["r.kept"]["meta"];
        assert_eq!(
            fields(kept),
            ["persist"],
            "the data file keeps no write time"
        );
        let ttl = &vals["r.ttl"]["meta"];
        assert_eq!(fields(ttl), ["persist", "ttl_ms"]);
        ttl_left(ttl, TTL_MS);
    }
    // With persist_all, a plain set is persisted too, and has an age.
    let mut raw = server.raw(Codec::Json).await;
    ok(
        &mut raw,
        json!({"id": 1, "op": "set", "key": "r.new", "value": 3}),
    )
    .await;
    let vals = replay(&mut raw, "r.new", true).await;
    let meta = &vals["r.new"]["meta"];
    assert_eq!(fields(meta), ["age_ms", "persist"]);
    recent(meta);
}
