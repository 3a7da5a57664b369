//! How long values live: ephemeral keys end with their session, `persist`
//! and `persist_all` survive a restart (with their revs and the store id),
//! and `ttl_ms` deletes a key on time, end to end. (TTL timing itself is
//! tested on a paused clock in `actors/tests/ttl.rs`; `kill -9` in
//! `bus/server/tests/durability.rs`.)

use futures_util::StreamExt;
use ipcbus::Config;
use ipcbus_client::{Client, ErrorCode, Event, SetOptions, Subscription};
use ipcbus_tests::{test_config, TestServer, WAIT};
use std::path::Path;
use std::time::Duration;

const EPHEMERAL: SetOptions = SetOptions {
    if_rev: None,
    persist: false,
    ephemeral: true,
    ttl: None,
};

const PERSIST: SetOptions = SetOptions {
    if_rev: None,
    persist: true,
    ephemeral: false,
    ttl: None,
};

async fn next(sub: &mut Subscription) -> Event {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("an event in time")
        .expect("subscription open")
}

/// Waits until /health counts `n` sessions: a closed session has then run
/// its cleanup, including the release of its ephemeral keys.
async fn wait_sessions(server: &TestServer, n: usize) {
    let want = format!("\"sessions\":{n},");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = server.http_get("/health").await;
        if body.contains(&want) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn on_disk(dir: &Path) -> Config {
    Config {
        data_dir: Some(dir.to_owned()),
        ..test_config()
    }
}

#[tokio::test]
async fn an_ephemeral_key_is_deleted_when_its_session_ends() {
    let server = TestServer::start();
    let watcher = server.client().await;
    let mut sub = watcher.subscribe("svc.>").await.expect("sub");
    assert!(matches!(next(&mut sub).await, Event::Synced));
    let service = server.client().await;
    let rev = service
        .set_with("svc.weather.online", &true, EPHEMERAL)
        .await
        .expect("set");
    assert!(matches!(next(&mut sub).await, Event::Value { rev: r, .. } if r == rev));
    drop(service);
    match next(&mut sub).await {
        Event::Deleted { key, rev: r } => {
            assert_eq!((key.as_str(), r), ("svc.weather.online", rev + 1));
        }
        other => panic!("expected the deletion, got {other:?}"),
    }
    assert!(watcher.keys(None).await.expect("keys").is_empty());
}

#[tokio::test]
async fn only_the_last_writer_s_session_ends_an_ephemeral_key() {
    let server = TestServer::start();
    let watcher = server.client().await;
    let a = server.client().await;
    let b = server.client().await;
    a.set_with("x", &1, EPHEMERAL).await.expect("a sets x");
    b.set("x", &2).await.expect("b overwrites x, not ephemeral");
    a.set_with("y", &1, EPHEMERAL).await.expect("a sets y");
    b.set_with("y", &2, EPHEMERAL)
        .await
        .expect("b takes over y");
    drop(a);
    wait_sessions(&server, 2).await;
    assert_eq!(watcher.get::<i32>("x").await.expect("x stays"), 2);
    assert_eq!(watcher.get::<i32>("y").await.expect("y stays"), 2);
    drop(b);
    wait_sessions(&server, 1).await;
    assert_eq!(watcher.get::<i32>("x").await.expect("x stays"), 2);
    let gone = watcher.get::<i32>("y").await.expect_err("y ends with b");
    assert_eq!(gone.code(), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn persisted_keys_survive_a_restart_and_others_do_not() {
    let dir = tempfile::tempdir().expect("dir");
    let (store, p1_rev, last_rev) = {
        let server = TestServer::with_config(on_disk(dir.path()));
        let c = server.client().await;
        let p1_rev = c.set_with("p1", &"kept", PERSIST).await.expect("p1");
        let with_ttl = SetOptions {
            ttl: Some(Duration::from_secs(3600)),
            ..PERSIST
        };
        c.set_with("p2", &2, with_ttl).await.expect("p2");
        c.set("n1", &"memory only").await.expect("n1");
        c.set_with("p3", &3, PERSIST).await.expect("p3");
        c.set("p3", &"no longer persisted").await.expect("p3 again");
        c.set_with("p4", &4, PERSIST).await.expect("p4");
        let last_rev = c.del("p4").await.expect("del p4");
        (c.store(), p1_rev, last_rev)
    };
    let server = TestServer::with_config(on_disk(dir.path()));
    let c = server.client().await;
    assert_eq!(c.store(), store, "a clean restart keeps the store id");
    let keys: Vec<String> = c
        .keys(None)
        .await
        .expect("keys")
        .into_iter()
        .map(|k| k.0)
        .collect();
    assert_eq!(keys, ["p1", "p2"]);
    let (value, rev) = c.get_raw("p1").await.expect("p1");
    assert_eq!(
        (rmp_serde::from_slice::<String>(&value).expect("str"), rev),
        ("kept".into(), p1_rev)
    );
    let mut sub = c
        .subscribe_since("p1", Some(p1_rev - 1))
        .await
        .expect("sub");
    assert!(matches!(next(&mut sub).await, Event::Value { rev, .. } if rev == p1_rev));
    let next_rev = c.set("n2", &1).await.expect("write");
    assert!(
        next_rev > last_rev,
        "revs go on from {last_rev}, got {next_rev}"
    );
}

#[tokio::test]
async fn persist_all_persists_everything_but_ephemeral_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let config = || Config {
        persist_all: true,
        ..on_disk(dir.path())
    };
    {
        let server = TestServer::with_config(config());
        let c = server.client().await;
        c.set("plain", &1).await.expect("plain");
        c.set_with("session", &1, EPHEMERAL)
            .await
            .expect("ephemeral");
    }
    let server = TestServer::with_config(config());
    let c = server.client().await;
    assert_eq!(c.get::<i32>("plain").await.expect("plain survives"), 1);
    assert!(c.get::<i32>("session").await.is_err());
}

#[tokio::test]
async fn a_ttl_deletes_the_key_and_subscribers_hear_it() {
    let server = TestServer::start();
    let c: Client = server.client().await;
    let mut sub = c.subscribe("t").await.expect("sub");
    assert!(matches!(next(&mut sub).await, Event::Synced));
    let ttl = SetOptions {
        ttl: Some(Duration::from_millis(50)),
        ..SetOptions::default()
    };
    let rev = c.set_with("t", &1, ttl).await.expect("set");
    assert!(matches!(next(&mut sub).await, Event::Value { .. }));
    assert!(matches!(next(&mut sub).await, Event::Deleted { rev: r, .. } if r == rev + 1));
}

#[tokio::test]
async fn a_silent_client_times_out_and_loses_its_ephemeral_keys() {
    let config = Config {
        heartbeat_ms: 50,
        client_timeout_ms: 200,
        ..test_config()
    };
    let server = TestServer::with_config(config);
    let watcher = server.client().await;
    let mut sub = watcher.subscribe("svc.online").await.expect("sub");
    assert!(matches!(next(&mut sub).await, Event::Synced));
    // A raw peer answers pings only while it reads; this one sets its key,
    // then never reads again (a hung process with its socket still open).
    let mut silent = server.raw(ipcbus_protocol::Codec::Json).await;
    let (reply, _) = silent
        .call(serde_json::json!({"id": 1, "op": "set", "key": "svc.online", "value": true, "ephemeral": true}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(matches!(next(&mut sub).await, Event::Value { .. }));
    assert!(
        matches!(next(&mut sub).await, Event::Deleted { .. }),
        "deleted after client_timeout_ms"
    );
    drop(silent);
}
