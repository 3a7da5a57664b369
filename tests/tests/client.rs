//! The Rust client against the real server.

use futures_util::StreamExt;
use ipcbus_client::{Client, Error, ErrorCode, Event};
use ipcbus_tests::{TestServer, WAIT};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::future::Future;
use tokio::time::timeout;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Weather {
    city: String,
    temp: f64,
    hours: Vec<u8>,
}

fn today() -> Weather {
    Weather {
        city: "Oslo".into(),
        temp: -3.5,
        hours: vec![6, 12, 18],
    }
}

#[tokio::test]
async fn typed_and_raw_values() {
    let server = TestServer::start();
    let client = server.client().await;
    assert!(!client.session().is_empty());
    let rev = client.set("w.oslo", &today()).await.expect("set");
    assert_eq!(client.get::<Weather>("w.oslo").await.expect("get"), today());
    let (raw, raw_rev) = client.get_raw("w.oslo").await.expect("get_raw");
    assert_eq!(raw_rev, rev);
    // Structs travel as maps, so other languages read them by field name.
    let json = ipcbus_protocol::transcode::msgpack_to_json_value(&raw).expect("json");
    assert_eq!(json["city"], "Oslo");
    let bytes = bytes::Bytes::from_static(&[0x92, 0x01, 0xa1, b'x']);
    client
        .set_raw("raw", bytes.clone(), None)
        .await
        .expect("set_raw");
    assert_eq!(
        client.get_raw("raw").await.expect("get").0,
        bytes,
        "bytes come back exactly"
    );
    let err = client.get::<u32>("w.oslo").await.expect_err("wrong type");
    assert!(matches!(err, Error::Decode(_)), "{err}");
}

/// A value whose serialization fails, as a user type's may.
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "Unencodable refuses to be encoded",
        ))
    }
}

#[tokio::test]
async fn a_value_that_cannot_be_encoded_is_an_encode_error_and_the_connection_stays_up() {
    let server = TestServer::start();
    let client = server.client().await;
    let err = client
        .set("enc.bad", &Unencodable)
        .await
        .expect_err("encode");
    assert!(
        matches!(err, Error::Encode(_)) && err.to_string().contains("refuses to be encoded"),
        "{err}"
    );
    let err = client
        .set_with(
            "enc.bad",
            &Unencodable,
            ipcbus_client::SetOptions::default(),
        )
        .await
        .expect_err("encode");
    assert!(matches!(err, Error::Encode(_)), "{err}");
    // Nothing was sent, and the same connection goes on.
    let err = client.get::<u8>("enc.bad").await.expect_err("absent");
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    client.set("enc.good", &1).await.expect("set");
}

#[tokio::test]
async fn errors_are_typed() {
    let server = TestServer::start();
    let client = server.client().await;
    let err = client.get::<u8>("absent").await.expect_err("absent");
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    let rev = client.set_if("cas", &1, 0).await.expect("create");
    let err = client.set_if("cas", &2, 0).await.expect_err("exists");
    assert_eq!(
        (err.code(), err.current_rev()),
        (Some(ErrorCode::RevMismatch), Some(rev))
    );
    let err = client.del_if("cas", rev + 100).await.expect_err("mismatch");
    assert_eq!(err.code(), Some(ErrorCode::RevMismatch));
    assert!(client.del_if("cas", rev).await.expect("del") > rev);
    let err = client.set("bad key", &1).await.expect_err("bad key");
    assert_eq!(err.code(), Some(ErrorCode::BadKey));
    let err = client.subscribe("a.>.b").await.expect_err("bad pattern");
    assert_eq!(err.code(), Some(ErrorCode::BadPattern));
    assert_eq!(
        err.to_string(),
        "server refused: bad_pattern: bad pattern: '>' may only be the last token"
    );
}

#[tokio::test]
async fn keys_and_deletes() {
    let server = TestServer::start();
    let client = server.client().await;
    for key in ["k.a", "k.b", "other"] {
        client.set(key, &key).await.expect("set");
    }
    let keys = client.keys(Some("k.*")).await.expect("keys");
    assert_eq!(keys, vec![("k.a".to_owned(), 1), ("k.b".to_owned(), 2)]);
    assert_eq!(client.del("k.a").await.expect("del"), 4);
    assert_eq!(client.keys(None).await.expect("keys").len(), 2);
}

#[tokio::test]
async fn subscription_stream_replays_then_follows() {
    let server = TestServer::start();
    let client = server.client().await;
    client.set("s.one", &1).await.expect("set");
    let mut sub = client.subscribe("s.*").await.expect("sub");
    let ev = next(&mut sub).await;
    assert_eq!(
        (ev.key(), ev.decode::<i32>().map(Result::unwrap)),
        (Some("s.one"), Some(1))
    );
    assert_eq!(next(&mut sub).await, Event::Synced);
    let other = server.client().await;
    let rev = other.set("s.two", &2).await.expect("set");
    assert!(
        matches!(next(&mut sub).await, Event::Value { key, rev: r, .. } if key == "s.two" && r == rev)
    );
    let rev = other.del("s.one").await.expect("del");
    assert_eq!(
        next(&mut sub).await,
        Event::Deleted {
            key: "s.one".into(),
            rev
        }
    );
}

async fn next(sub: &mut ipcbus_client::Subscription) -> Event {
    timeout(WAIT, sub.next())
        .await
        .expect("event in time")
        .expect("open")
}

#[tokio::test]
async fn watch_is_a_local_mirror() {
    let server = TestServer::start();
    let publisher = server.client().await;
    publisher.set("m.today", &today()).await.expect("set");
    let client = server.client().await;
    let watch = client.watch("m.>").await.expect("watch");
    timeout(WAIT, watch.synced())
        .await
        .expect("in time")
        .expect("synced");
    assert_eq!(
        watch.get::<Weather>("m.today").map(Result::unwrap),
        Some(today())
    );
    assert_eq!(watch.keys(), vec!["m.today".to_owned()]);
    let changed = watch.changed();
    publisher.set("m.tomorrow", &7).await.expect("set");
    timeout(WAIT, changed).await.expect("changed");
    assert_eq!(watch.get::<i32>("m.tomorrow").map(Result::unwrap), Some(7));
    let changed = watch.changed();
    publisher.del("m.today").await.expect("del");
    timeout(WAIT, changed).await.expect("changed");
    assert!(watch.get_raw("m.today").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_pipelined() {
    let server = TestServer::start();
    let client = server.client().await;
    let keys: Vec<(String, usize)> = (0..2000).map(|i| (format!("p.{}", i % 50), i)).collect();
    let sets = keys.iter().map(|(k, i)| client.set(k, i));
    let revs: Vec<u64> = futures_util::future::join_all(sets)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("all sets");
    let distinct: HashSet<u64> = revs.iter().copied().collect();
    assert_eq!(distinct.len(), revs.len(), "every write has its own rev");
    assert_eq!(*distinct.iter().max().expect("max"), 2000);
}

/// With reconnect off, a lost connection closes the client: calls fail
/// with `Unavailable` at once (reconnects are tested in reconnect.rs).
#[tokio::test]
async fn without_reconnect_requests_fail_when_the_server_goes() {
    let server = TestServer::start();
    let options = ipcbus_client::ClientOptions {
        reconnect: false,
        ..Default::default()
    };
    let client = Client::connect_with(&server.url(), options)
        .await
        .expect("connect");
    client.set("x", &1).await.expect("set");
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .expect("stopped");
    let err = client.get::<i32>("x").await.expect_err("closed");
    assert!(
        matches!(
            err,
            Error::Unavailable {
                maybe_applied: false,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        client.state().borrow().kind,
        ipcbus_client::StateKind::Closed
    );
}

#[tokio::test]
async fn a_cancelled_subscribe_does_not_leak_on_the_server() {
    let config = ipcbus::Config {
        max_subs: 2,
        ..ipcbus_tests::test_config()
    };
    let server = TestServer::with_config(config);
    let client = server.client().await;
    for _ in 0..5 {
        // Polled once (the request goes out), then dropped.
        let mut fut = std::pin::pin!(client.subscribe("c.*"));
        let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
    }
    // One round trip: the cancelled subscriptions' replies are in, and
    // their `unsub`s are queued ahead of what follows.
    client.keys(None).await.expect("keys");
    let a = client
        .subscribe("c.a")
        .await
        .expect("room for two subscriptions");
    let b = client
        .subscribe("c.b")
        .await
        .expect("room for two subscriptions");
    let err = client.subscribe("c.c").await.expect_err("third");
    assert_eq!(err.code(), Some(ErrorCode::Limit));
    drop((a, b));
}

#[tokio::test]
async fn a_slow_subscription_never_blocks_replies() {
    let server = TestServer::start();
    let publisher = server.client().await;
    for i in 0..20 {
        publisher.set(&format!("hol.{i}"), &i).await.expect("set");
    }
    let options = ipcbus_client::ClientOptions {
        subscription_capacity: 4,
        ..Default::default()
    };
    let client = Client::connect_with(&server.url(), options)
        .await
        .expect("connect");
    let mut sub = client.subscribe("hol.*").await.expect("sub");
    let mut seen = HashSet::new();
    loop {
        match next(&mut sub).await {
            Event::Synced => break,
            Event::Value { key, .. } => {
                // A request inside the loop, while the replay overflows the queue.
                let v: i32 = timeout(WAIT, client.get(&key))
                    .await
                    .expect("reply in time")
                    .expect("get");
                assert_eq!(format!("hol.{v}"), key);
                seen.insert(key);
            }
            Event::Deleted { .. } => panic!("no deletions"),
        }
    }
    assert_eq!(seen.len(), 20, "every key arrives, each at its latest rev");
    // Past capacity, repeated writes of one key are conflated for it.
    for i in 0..100 {
        publisher.set("hol.0", &i).await.expect("set");
    }
    publisher.set("hol.done", &0).await.expect("set");
    let mut last = None;
    loop {
        match next(&mut sub).await {
            Event::Value { key, .. } if key == "hol.done" => break,
            ev => last = ev.decode::<i32>().map(Result::unwrap).or(last),
        }
    }
    assert_eq!(last, Some(99), "the newest value of hol.0 arrived");
}
