//! The Rust client across bus restarts and network cuts (the reconnect
//! contract, docs/clients.md): real servers restarted on the same port and
//! data directory, and a TCP proxy whose connections the tests cut.

use futures_util::{FutureExt, StreamExt};
use ipcbus_client::{
    Client, ClientOptions, Error, ErrorCode, Event, SetOptions, State, StateKind, Subscription,
};
use ipcbus_tests::proxy::Proxy;
use ipcbus_tests::restart::Restartable;
use ipcbus_tests::{test_config, WAIT};
use std::time::Duration;
use tokio::sync::watch;

/// Waits until the state is `kind`; returns the kinds seen on the way
/// (each run of one kind once), the current one first.
async fn until(state: &mut watch::Receiver<State>, kind: StateKind) -> Vec<StateKind> {
    let mut seen = vec![state.borrow_and_update().kind];
    tokio::time::timeout(WAIT, async {
        while *seen.last().expect("one") != kind {
            state.changed().await.expect("state sender alive");
            let now = state.borrow_and_update().kind;
            if seen.last() != Some(&now) {
                seen.push(now);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} state in time; seen {seen:?}"));
    seen
}

async fn next(sub: &mut Subscription) -> Event {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
}

fn persist() -> SetOptions {
    SetOptions {
        persist: true,
        ..SetOptions::default()
    }
}

/// A server with small limits: values to 1000 bytes, messages to 2000.
fn limited() -> ipcbus::Config {
    ipcbus::Config {
        max_value_bytes: 1000,
        max_frame_bytes: 2000,
        ..test_config()
    }
}

async fn connect(url: &str, options: ClientOptions) -> Client {
    Client::connect_with(url, options).await.expect("connect")
}

/// A server, a proxy in front of it, a client through the proxy and one
/// straight to the server.
async fn behind_proxy() -> (Restartable, Proxy, Client, Client) {
    let server = Restartable::start();
    let proxy = Proxy::start(server.addr()).await;
    let client = connect(&proxy.url(server.token()), ClientOptions::default()).await;
    let direct = connect(&server.url(), ClientOptions::default()).await;
    (server, proxy, client, direct)
}

#[tokio::test]
async fn states_follow_a_restart_in_order() {
    let mut server = Restartable::start();
    let client = connect(&server.url(), ClientOptions::default()).await;
    let mut state = client.state();
    assert_eq!(state.borrow_and_update().kind, StateKind::Open);
    server.stop().await;
    until(&mut state, StateKind::Reconnecting).await;
    assert!(state.borrow().reason.contains("connection lost"));
    server.start_again();
    assert_eq!(
        until(&mut state, StateKind::Open).await,
        [StateKind::Reconnecting, StateKind::Open]
    );
    client.close();
    until(&mut state, StateKind::Closed).await;
    assert_eq!(state.borrow().reason, "closed by the client");
    let err = client.get::<i32>("k").await.expect_err("closed");
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
}

/// Through a restart and an outage the subscriber saw nothing of: the
/// stream goes on with each key's final state, a deletion (rev 0) for the
/// key that went, and nothing for the key that did not change.
#[tokio::test]
async fn a_subscriber_sees_every_final_state_and_only_that() {
    let mut server = Restartable::start();
    let proxy = Proxy::start(server.addr()).await;
    let writer = connect(&server.url(), ClientOptions::default()).await;
    writer.set_with("s.same", &1, persist()).await.expect("set");
    writer
        .set_with("s.changed", &1, persist())
        .await
        .expect("set");
    writer.set("s.gone", &1).await.expect("set"); // not persisted: the restart loses it
    let client = connect(&proxy.url(server.token()), ClientOptions::default()).await;
    let mut state = client.state();
    let mut sub = client.subscribe("s.*").await.expect("subscribe");
    let mut replay = Vec::new();
    while let Some(key) = next(&mut sub).await.key().map(str::to_owned) {
        replay.push(key);
    }
    replay.sort();
    assert_eq!(replay, ["s.changed", "s.gone", "s.same"]);

    proxy.block(true);
    until(&mut state, StateKind::Reconnecting).await;
    server.stop().await;
    server.start_again();
    let writer = connect(&server.url(), ClientOptions::default()).await;
    let rev = writer.set("s.changed", &2).await.expect("set");
    proxy.block(false);

    let mut after = vec![next(&mut sub).await, next(&mut sub).await];
    after.sort_by_key(|e| e.key().map(str::to_owned));
    assert!(
        matches!(&after[0], Event::Value { key, rev: r, .. } if key == "s.changed" && *r == rev),
        "{after:?}"
    );
    assert_eq!(
        after[1],
        Event::Deleted {
            key: "s.gone".into(),
            rev: 0
        }
    );
    // Nothing else came before this live change: no `synced`, no `s.same`.
    let rev = writer.set("s.new", &3).await.expect("set");
    assert!(
        matches!(next(&mut sub).await, Event::Value { key, rev: r, .. } if key == "s.new" && r == rev)
    );
}

/// A publisher that keeps setting through a restart keeps running: its
/// calls wait for the bus, and a call that cannot finish is `Unavailable`.
#[tokio::test]
async fn a_publisher_loop_keeps_running() {
    let mut server = Restartable::start();
    let client = connect(&server.url(), ClientOptions::default()).await;
    let publisher = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        for n in 0u64.. {
            pace.tick().await;
            match client.set("p.n", &n).await {
                Ok(_) | Err(Error::Unavailable { .. }) => {}
                Err(e) => return e,
            }
        }
        unreachable!()
    });
    let watcher = connect(&server.url(), ClientOptions::default()).await;
    let mut sub = watcher.subscribe("p.n").await.expect("subscribe");
    while !matches!(next(&mut sub).await, Event::Value { .. }) {}
    server.stop().await;
    server.start_again();
    // The watcher is back too; a value from the new server proves the loop runs.
    let store = loop {
        if let Event::Value { .. } = next(&mut sub).await {
            let store = watcher.store();
            if watcher.get_raw("p.n").await.is_ok() {
                break store;
            }
        }
    };
    assert!(!store.is_empty());
    assert!(!publisher.is_finished(), "the publisher loop ended");
    publisher.abort();
}

#[tokio::test]
async fn a_call_during_an_outage_waits_within_its_timeout() {
    let mut server = Restartable::start();
    let client = connect(&server.url(), ClientOptions::default()).await;
    let short = ClientOptions {
        timeout: Duration::from_millis(200),
        ..ClientOptions::default()
    };
    let impatient = connect(&server.url(), short).await;
    client.set_with("c.k", &7, persist()).await.expect("set");
    let mut state = client.state();
    let mut impatient_state = impatient.state();
    server.stop().await;
    until(&mut state, StateKind::Reconnecting).await;
    until(&mut impatient_state, StateKind::Reconnecting).await;

    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.get::<i32>("c.k").await }
    });
    for err in [
        impatient.get::<i32>("c.k").await.expect_err("no bus"),
        impatient.set("c.k", &8).await.expect_err("no bus"),
    ] {
        match err {
            Error::Unavailable {
                reason,
                maybe_applied: false,
            } => assert!(reason.contains("not connected within"), "{reason}"),
            other => panic!("expected Unavailable, got {other}"),
        }
    }
    server.start_again();
    assert_eq!(waiting.await.expect("task").expect("get after restart"), 7);
    assert_eq!(impatient.get::<i32>("c.k").await.expect("get"), 7);
}

/// A `set` whose reply is lost in a cut may have been applied: it fails
/// with `maybe_applied` and is not sent again; a `get` in flight is.
#[tokio::test]
async fn a_write_in_flight_during_a_cut_is_maybe_applied() {
    let (_server, proxy, client, watcher) = behind_proxy().await;
    let mut sub = watcher.subscribe("m.k").await.expect("subscribe");
    assert_eq!(next(&mut sub).await, Event::Synced);

    proxy.hold(true);
    let set = tokio::spawn({
        let client = client.clone();
        async move { client.set("m.k", &1).await }
    });
    let rev = match next(&mut sub).await {
        Event::Value { rev, .. } => rev, // applied; its reply is held in the proxy
        other => panic!("{other:?}"),
    };
    let get = tokio::spawn({
        let client = client.clone();
        async move { client.get_raw("m.k").await }
    });
    // Whether the get went out before the cut or waits for the new
    // connection, it is answered there.
    let mut state = client.state();
    proxy.cut();
    until(&mut state, StateKind::Reconnecting).await;
    proxy.hold(false);
    let err = set.await.expect("task").expect_err("reply lost");
    assert!(err.maybe_applied(), "{err}");
    assert_eq!(get.await.expect("task").expect("get resent").1, rev);
    assert_eq!(
        watcher.get_raw("m.k").await.expect("get").1,
        rev,
        "not sent twice"
    );
}

#[tokio::test]
async fn the_first_connect_waits_for_the_bus_unless_told_not_to() {
    let mut server = Restartable::not_started();
    let proxy = Proxy::start(server.addr()).await;
    let url = proxy.url(server.token());
    let fast = ClientOptions {
        fail_fast: true,
        ..ClientOptions::default()
    };
    let err = Client::connect_with(&url, fast).await.expect_err("no bus");
    assert!(!matches!(err, Error::Unavailable { .. }), "as it is: {err}");

    let mut accepted = proxy.accepted();
    let connecting = tokio::spawn({
        let url = url.clone();
        let patient = ClientOptions {
            connect_timeout: Some(WAIT),
            ..ClientOptions::default()
        };
        async move { Client::connect_with(&url, patient).await }
    });
    // A second attempt reached the proxy: the first one failed and was retried.
    let first = *accepted.borrow_and_update();
    tokio::time::timeout(WAIT, accepted.wait_for(|n| *n >= first + 2))
        .await
        .expect("retried in time")
        .expect("proxy alive");
    server.start_again();
    let client = connecting.await.expect("task").expect("connected once up");
    assert_eq!(client.state().borrow().kind, StateKind::Open);

    // A wrong token is final at once, not retried until the timeout.
    let wrong = ClientOptions {
        token: Some("wrong".into()),
        connect_timeout: Some(Duration::from_secs(600)),
        ..ClientOptions::default()
    };
    let err = Client::connect_with(&server.url().replace("token=", "x="), wrong)
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::Refused { status: 401, .. }), "{err}");
}

#[tokio::test]
async fn a_value_over_the_announced_limit_is_too_large_before_sending() {
    let server = Restartable::with_config(limited());
    let client = connect(&server.url(), ClientOptions::default()).await;
    let session = client.session();
    let big = vec![7u8; 1500];
    let err = client.set("l.big", &big).await.expect_err("too large");
    assert_eq!(err.code(), Some(ErrorCode::TooLarge), "{err}");
    let long_key = "l.".to_owned() + &"k".repeat(2500);
    let err = client.get::<i32>(&long_key).await.expect_err("too large");
    assert_eq!(err.code(), Some(ErrorCode::TooLarge), "{err}");
    client.set("l.small", &vec![7u8; 500]).await.expect("set");
    assert_eq!(client.session(), session, "the same connection");
}

/// A server that did not announce its limits closes with 1009 under a
/// frame too big: the request fails as too large, and the client reconnects.
#[tokio::test]
async fn a_1009_close_is_too_large_and_the_client_reconnects() {
    let server = Restartable::with_config(limited());
    let proxy = Proxy::older(server.addr()).await;
    let client = connect(&proxy.url(server.token()), ClientOptions::default()).await;
    let mut state = client.state();
    let err = client
        .set("l.big", &vec![7u8; 1500])
        .await
        .expect_err("too large");
    assert!(
        matches!(err, Error::Server(_)),
        "the server's own reply: {err}"
    );
    let err = client
        .set("l.big", &vec![7u8; 3000])
        .await
        .expect_err("too large");
    assert_eq!(err.code(), Some(ErrorCode::TooLarge), "{err}");
    assert!(err.to_string().contains("frame too big"), "{err}");
    let seen = until(&mut state, StateKind::Open).await;
    assert!(seen.contains(&StateKind::Reconnecting), "{seen:?}");
    client
        .set("l.small", &1)
        .await
        .expect("set after the reconnect");
}

/// A connection that goes quiet (a network that went away without closing
/// anything) is taken for dead after `idle_timeout`, and replaced.
#[tokio::test]
async fn a_silent_connection_is_replaced() {
    let server = Restartable::start();
    let proxy = Proxy::start(server.addr()).await;
    let options = ClientOptions {
        idle_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let client = connect(&proxy.url(server.token()), options).await;
    let mut state = client.state();
    proxy.hold(true); // nothing from the server reaches the client now
    until(&mut state, StateKind::Reconnecting).await;
    assert!(
        state.borrow().reason.contains("taken for dead"),
        "{}",
        state.borrow().reason
    );
    proxy.hold(false);
    until(&mut state, StateKind::Open).await;
    client
        .set("q.k", &1)
        .await
        .expect("set on the new connection");
}

/// An ephemeral key is set again after a cut; a `del` ends that.
#[tokio::test]
async fn an_ephemeral_key_is_set_again_after_a_cut() {
    let (_server, proxy, client, other) = behind_proxy().await;
    let mut state = client.state();
    let ephemeral = SetOptions {
        ephemeral: true,
        ..SetOptions::default()
    };
    client
        .set_with("e.online", &true, ephemeral)
        .await
        .expect("set");
    let mut sub = other.subscribe("e.online").await.expect("subscribe");
    while next(&mut sub).await != Event::Synced {}
    proxy.cut();
    until(&mut state, StateKind::Reconnecting).await;
    until(&mut state, StateKind::Open).await;
    assert!(other.get::<bool>("e.online").await.expect("set again"));

    client.del("e.online").await.expect("del");
    proxy.cut();
    until(&mut state, StateKind::Reconnecting).await;
    until(&mut state, StateKind::Open).await;
    let err = other
        .get::<bool>("e.online")
        .await
        .expect_err("not set again");
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
}

/// An ephemeral set made while the bus is away is written once, by
/// itself, not also by the reconnect that lets it through.
#[tokio::test]
async fn an_ephemeral_set_made_while_away_is_written_once() {
    let (_server, proxy, client, other) = behind_proxy().await;
    let mut state = client.state();
    let mut sub = other.subscribe("e.>").await.expect("subscribe");
    while next(&mut sub).await != Event::Synced {}
    proxy.block(true);
    until(&mut state, StateKind::Reconnecting).await;
    let ephemeral = SetOptions {
        ephemeral: true,
        ..SetOptions::default()
    };
    let set = client.set_with("e.once", &1, ephemeral);
    tokio::pin!(set);
    // Polled once: the set is queued, waiting for the connection.
    assert!(set.as_mut().now_or_never().is_none());
    proxy.block(false);
    let rev = tokio::time::timeout(WAIT, set)
        .await
        .expect("in time")
        .expect("set");
    other.set("e.z", &0).await.expect("set"); // comes after every e.once write
    let mut writes = Vec::new();
    loop {
        match next(&mut sub).await {
            Event::Value { key, .. } if key == "e.z" => break,
            Event::Value { key, rev, .. } => writes.push((key, rev)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        writes,
        [("e.once".to_owned(), rev)],
        "one write, the set's own"
    );
}

#[tokio::test]
async fn a_watch_is_right_again_after_a_reconnect() {
    let (_server, proxy, client, writer) = behind_proxy().await;
    writer.set("w.a", &1).await.expect("set");
    writer.set("w.b", &1).await.expect("set");
    let watch = client.watch("w.*").await.expect("watch");
    watch.synced().await.expect("synced");
    let mut state = client.state();
    proxy.block(true);
    until(&mut state, StateKind::Reconnecting).await;
    writer.set("w.a", &2).await.expect("set");
    writer.del("w.b").await.expect("del");
    writer.set("w.c", &3).await.expect("set");
    proxy.block(false);
    tokio::time::timeout(WAIT, async {
        loop {
            let changed = watch.changed();
            let a = watch.get::<i32>("w.a").and_then(Result::ok);
            if watch.keys() == ["w.a", "w.c"] && a == Some(2) {
                break;
            }
            changed.await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("watch not right in time: {:?}", watch.keys()));
}

/// A connection lost in the middle of the first replay, before `synced`:
/// the replay is made again, and the subscription still gets its one
/// `Synced` (a watch its `synced()`), after the values it already had.
#[tokio::test]
async fn a_replay_cut_before_synced_still_ends_in_synced() {
    let server = Restartable::start();
    let proxy = Proxy::framed(server.addr()).await;
    let client = connect(&proxy.url(server.token()), ClientOptions::default()).await;
    let writer = connect(&server.url(), ClientOptions::default()).await;
    let a = writer.set("r.a", &1).await.expect("set");
    let b = writer.set("r.b", &2).await.expect("set");
    proxy.cut_at_synced();
    let mut sub = client.subscribe("r.*").await.expect("subscribe");
    let mut got = Vec::new();
    loop {
        let event = next(&mut sub).await;
        let synced = event == Event::Synced;
        got.push(event);
        if synced {
            break;
        }
    }
    let revs: Vec<_> = got
        .iter()
        .map(|e| match e {
            Event::Value { key, rev, .. } => (key.as_str(), *rev),
            Event::Deleted { key, rev } => (key.as_str(), *rev),
            Event::Synced => ("synced", 0),
        })
        .collect();
    assert_eq!(revs, [("r.a", a), ("r.b", b), ("synced", 0)]);

    proxy.cut_at_synced();
    let watch = client.watch("r.*").await.expect("watch");
    tokio::time::timeout(WAIT, watch.synced())
        .await
        .expect("the watch synced in time")
        .expect("synced");
    assert_eq!(watch.keys(), ["r.a", "r.b"]);
}

/// The server closed the connection (its close frame came) but the TCP
/// connection has not ended yet: a `set` made now cannot be written on it,
/// so it was not sent, and it is sent on the next connection instead of
/// failing as maybe applied.
#[tokio::test]
async fn a_write_after_the_close_frame_waits_for_the_next_connection() {
    let server = Restartable::start();
    let proxy = Proxy::framed(server.addr()).await;
    let client = connect(&proxy.url(server.token()), ClientOptions::default()).await;
    let direct = connect(&server.url(), ClientOptions::default()).await;
    let mut closes = proxy.client_closes();
    proxy.close_and_hang();
    tokio::time::timeout(WAIT, closes.wait_for(|n| *n > 0))
        .await
        .expect("the client answered the close in time")
        .expect("proxy alive");
    let rev = client
        .set("h.k", &1)
        .await
        .expect("set on the next connection");
    assert_eq!(direct.get_raw("h.k").await.expect("get").1, rev);
}

/// Durations too long for the clock (a call timeout or connect timeout of
/// "forever", an ephemeral key's ttl) do not panic, across a reconnect too.
#[tokio::test]
async fn durations_too_long_for_the_clock_do_not_panic() {
    let server = Restartable::start();
    let proxy = Proxy::start(server.addr()).await;
    let options = ClientOptions {
        timeout: Duration::MAX,
        connect_timeout: Some(Duration::MAX),
        ..ClientOptions::default()
    };
    let client = connect(&proxy.url(server.token()), options).await;
    let forever = SetOptions {
        ephemeral: true,
        ttl: Some(Duration::MAX),
        ..SetOptions::default()
    };
    client.set_with("f.k", &1, forever).await.expect("set");
    let mut state = client.state();
    proxy.cut();
    until(&mut state, StateKind::Reconnecting).await;
    until(&mut state, StateKind::Open).await;
    assert_eq!(client.get::<i32>("f.k").await.expect("get"), 1);
}

/// A call that times out on an open connection, its reply still on the
/// way, leaves nothing half-matched: the late reply is dropped (the next
/// call gets its own), a write that timed out is `maybe_applied`, and a
/// `sub` acknowledged too late is undone on the server (with `max_subs` 1
/// there is room for a subscription again).
#[tokio::test]
async fn a_reply_after_its_call_timed_out_is_dropped_and_a_late_sub_undone() {
    let server = Restartable::with_config(ipcbus::Config {
        max_subs: 1,
        ..test_config()
    });
    let proxy = Proxy::start(server.addr()).await;
    let short = ClientOptions {
        timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let client = connect(&proxy.url(server.token()), short).await;
    let direct = connect(&server.url(), ClientOptions::default()).await;
    direct.set("t.a", &1).await.expect("set");
    let rev = direct.set("t.b", &2).await.expect("set");
    let session = client.session();

    proxy.hold(true); // the replies reach the proxy, not the client
    let err = client
        .get::<i32>("t.a")
        .await
        .expect_err("no reply in time");
    assert!(
        matches!(&err, Error::Unavailable { reason, maybe_applied: false } if reason.contains("no reply within")),
        "{err}"
    );
    // The same value again: applied, its reply late; it may have been applied.
    let err = client
        .set_if("t.b", &2, rev)
        .await
        .expect_err("no reply in time");
    assert!(err.maybe_applied(), "{err}");
    let err = client.subscribe("t.*").await.expect_err("no reply in time");
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    proxy.hold(false); // the late replies come first, then the next call's

    assert_eq!(client.get::<i32>("t.b").await.expect("get"), 2);
    assert_eq!(client.session(), session, "the same connection");
    let mut sub = client
        .subscribe("t.*")
        .await
        .expect("the late sub was undone: room for this one");
    let mut keys = Vec::new();
    loop {
        match next(&mut sub).await {
            Event::Value { key, .. } => keys.push(key),
            Event::Synced => break,
            other => panic!("{other:?}"),
        }
    }
    keys.sort();
    assert_eq!(keys, ["t.a", "t.b"], "one replay, the new subscription's");
    let rev = direct.set("t.c", &3).await.expect("set");
    assert!(
        matches!(next(&mut sub).await, Event::Value { key, rev: r, .. } if key == "t.c" && r == rev),
        "each change once"
    );
}
