//! The Rust client's `subscribe_with(pattern, SubscribeOptions { meta:
//! true, .. })`: each value event comes with the `Meta` of its write
//! (protocol.md §4), asked for again after a reconnect; a plain
//! subscription's events come with none. As clients/js/test/meta.test.js
//! and tests/tests/meta.rs (raw frames), against the real server.

use futures_util::StreamExt;
use ipcbus_client::{Client, Event, Meta, SetOptions, StateKind, SubscribeOptions, Subscription};
use ipcbus_tests::proxy::Proxy;
use ipcbus_tests::restart::Restartable;
use ipcbus_tests::{TestServer, WAIT};
use std::collections::BTreeMap;
use std::time::Duration;

/// The TTL the tests set: long enough never to expire during a test.
const TTL: Duration = Duration::from_secs(600);

fn with_meta() -> SubscribeOptions {
    SubscribeOptions {
        meta: true,
        ..SubscribeOptions::default()
    }
}

fn persist() -> SetOptions {
    SetOptions {
        persist: true,
        ..SetOptions::default()
    }
}

fn ephemeral() -> SetOptions {
    SetOptions {
        ephemeral: true,
        ..SetOptions::default()
    }
}

fn ttl(ttl: Duration) -> SetOptions {
    SetOptions {
        ttl: Some(ttl),
        ..SetOptions::default()
    }
}

async fn next(sub: &mut Subscription) -> (Event, Option<Meta>) {
    tokio::time::timeout(WAIT, sub.next_with_meta())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
}

/// The value events up to `Synced`, by key, with their meta.
async fn replay(sub: &mut Subscription) -> BTreeMap<String, Option<Meta>> {
    let mut vals = BTreeMap::new();
    loop {
        match next(sub).await {
            (Event::Synced, meta) => {
                assert_eq!(meta, None);
                return vals;
            }
            (Event::Value { key, .. }, meta) => {
                vals.insert(key, meta);
            }
            other => panic!("unexpected during the replay: {other:?}"),
        }
    }
}

/// The next value event of `key`, with its meta.
async fn value_of(sub: &mut Subscription, key: &str) -> Option<Meta> {
    loop {
        if let (Event::Value { key: k, .. }, meta) = next(sub).await {
            if k == key {
                return meta;
            }
        }
    }
}

/// `meta` of a write made during the test; the same with `age_ms: None`.
fn recent(meta: Option<Meta>) -> Meta {
    let meta = meta.expect("a meta");
    let age = meta.age_ms.unwrap_or_else(|| panic!("age_ms: {meta:?}"));
    assert!(age <= WAIT.as_millis() as u64, "{meta:?}");
    Meta {
        age_ms: None,
        ..meta
    }
}

/// What is left of a `ttl_ms` of `set`, checked.
fn ttl_left(meta: Meta, set: Duration) -> u64 {
    let left = meta.ttl_ms.unwrap_or_else(|| panic!("ttl_ms: {meta:?}"));
    assert!(left > 0 && left <= set.as_millis() as u64, "{meta:?}");
    left
}

/// Waits until `client` is in state `kind`.
async fn until(client: &Client, kind: StateKind) {
    let mut state = client.state();
    tokio::time::timeout(WAIT, state.wait_for(|s| s.kind == kind))
        .await
        .unwrap_or_else(|_| panic!("no {kind} state in time"))
        .expect("the client is alive");
}

#[tokio::test]
async fn a_meta_subscription_sees_each_write_s_options_and_a_plain_one_none() {
    let server = TestServer::start();
    let writer = server.client().await;
    let reader = server.client().await;
    writer.set("m.plain", &1).await.expect("set");
    writer
        .set_with("m.persisted", &2, persist())
        .await
        .expect("set");
    writer
        .set_with("m.ephemeral", &3, ephemeral())
        .await
        .expect("set");
    writer.set_with("m.ttl", &4, ttl(TTL)).await.expect("set");

    let mut sub = reader
        .subscribe_with("m.>", with_meta())
        .await
        .expect("sub");
    let mut plain = reader.subscribe("m.>").await.expect("sub");
    let vals = replay(&mut sub).await;
    assert_eq!(vals.len(), 4, "{vals:?}");
    assert_eq!(recent(vals["m.plain"]), Meta::default());
    let m = recent(vals["m.persisted"]);
    assert!(m.persist && !m.ephemeral && m.ttl_ms.is_none(), "{m:?}");
    let m = recent(vals["m.ephemeral"]);
    assert!(m.ephemeral && !m.persist && m.ttl_ms.is_none(), "{m:?}");
    let m = recent(vals["m.ttl"]);
    assert!(!m.persist && !m.ephemeral, "{m:?}");
    ttl_left(m, TTL);
    let vals = replay(&mut plain).await;
    assert_eq!(vals.len(), 4, "{vals:?}");
    assert!(
        vals.values().all(Option::is_none),
        "no meta without asking: {vals:?}"
    );

    // Live: a new set's options replace the old ones; a deletion has none.
    let short = Duration::from_secs(5);
    writer
        .set_with("m.persisted", &5, ttl(short))
        .await
        .expect("set");
    let m = recent(value_of(&mut sub, "m.persisted").await);
    assert!(!m.persist, "{m:?}");
    ttl_left(m, short);
    assert_eq!(value_of(&mut plain, "m.persisted").await, None);
    writer.del("m.plain").await.expect("del");
    assert!(matches!(
        next(&mut sub).await,
        (Event::Deleted { .. }, None)
    ));
    // The Stream of Events goes on from the same queue.
    writer.set("m.plain", &6).await.expect("set");
    let ev = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("in time")
        .expect("an event");
    assert_eq!(ev.decode::<i32>().expect("a value").expect("an i32"), 6);
}

#[tokio::test]
async fn meta_is_asked_for_again_after_a_cut_connection() {
    let server = Restartable::start();
    let proxy = Proxy::start(server.addr()).await;
    let client = Client::connect(&proxy.url(server.token()))
        .await
        .expect("connect");
    let direct = Client::connect(&server.url()).await.expect("connect");
    let mut sub = client
        .subscribe_with("c.>", with_meta())
        .await
        .expect("sub");
    let mut plain = client.subscribe("c.>").await.expect("sub");
    replay(&mut sub).await;
    replay(&mut plain).await;
    // Nothing reaches the client while it is cut off: what follows comes
    // from the subscriptions made again on the next connection.
    proxy.block(true);
    until(&client, StateKind::Reconnecting).await;
    direct
        .set_with("c.after", &1, ephemeral())
        .await
        .expect("set");
    proxy.block(false);
    let m = recent(value_of(&mut sub, "c.after").await);
    assert!(m.ephemeral && !m.persist && m.ttl_ms.is_none(), "{m:?}");
    assert_eq!(value_of(&mut plain, "c.after").await, None);
    // And on the new connection's live events.
    direct.set_with("c.after", &2, ttl(TTL)).await.expect("set");
    ttl_left(recent(value_of(&mut sub, "c.after").await), TTL);
    assert_eq!(value_of(&mut plain, "c.after").await, None);
}

#[tokio::test]
async fn meta_after_a_restart_and_the_data_file_keeps_no_age() {
    let mut server = Restartable::start();
    let client = Client::connect(&server.url()).await.expect("connect");
    client.set_with("r.kept", &1, persist()).await.expect("set");
    let mut sub = client
        .subscribe_with("r.>", with_meta())
        .await
        .expect("sub");
    assert!(recent(replay(&mut sub).await["r.kept"]).persist);
    server.stop().await;
    until(&client, StateKind::Reconnecting).await;
    server.start_again();
    client.set_with("r.after", &2, ttl(TTL)).await.expect("set");
    let m = recent(value_of(&mut sub, "r.after").await);
    assert!(!m.persist, "{m:?}");
    ttl_left(m, TTL);
    // A new subscription sees the restored value: persisted, of unknown age.
    let mut fresh = client
        .subscribe_with("r.kept", with_meta())
        .await
        .expect("sub");
    let restored = Meta {
        persist: true,
        ..Meta::default()
    };
    assert_eq!(replay(&mut fresh).await["r.kept"], Some(restored));
}
