//! The Rust client's subscriptions named in the upgrade request
//! (`Client::connect_subscribed`, protocol.md §5.1), against the real
//! server: replay and live events on each, that they really were in the
//! URL (no `sub` request), the fallback to `sub` requests on an older
//! server, a refused list, and a restart.

use futures_util::StreamExt;
use ipcbus_client::{Client, ClientOptions, Error, ErrorCode, Event, SetOptions, Subscription};
use ipcbus_tests::proxy::Proxy;
use ipcbus_tests::restart::Restartable;
use ipcbus_tests::{test_config, TestServer, WAIT};
use std::time::{Duration, Instant};

async fn next(sub: &mut Subscription) -> Event {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
}

/// A value event's key and value (an i64).
fn val(event: &Event) -> (String, i64) {
    match event {
        Event::Value { key, .. } => {
            let value = event.decode().expect("a value").expect("an i64");
            (key.clone(), value)
        }
        other => panic!("not a value: {other:?}"),
    }
}

/// The replay up to `Synced`, sorted by key.
async fn replay(sub: &mut Subscription) -> Vec<(String, i64)> {
    let mut got = Vec::new();
    loop {
        match next(sub).await {
            Event::Synced => break,
            event => got.push(val(&event)),
        }
    }
    got.sort();
    got
}

fn pairs(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

async fn writer(url: &str) -> Client {
    Client::connect(url).await.expect("writer connects")
}

/// Writes w.today = 21, w.tomorrow = 3 and x.a = 1.
async fn write_some(writer: &Client) {
    for (key, value) in [("w.today", 21), ("w.tomorrow", 3), ("x.a", 1)] {
        writer.set(key, &value).await.expect("set");
    }
}

/// A writer that made [`write_some`], and a client connected to `url`
/// (`server` or a proxy in front of it) subscribed to `w.today` and `x.*`.
async fn subscribed(server: &TestServer, url: &str) -> (Client, Client, Vec<Subscription>) {
    let writer = writer(&server.url()).await;
    write_some(&writer).await;
    let patterns = ["w.today", "x.*"];
    let (client, subs) = Client::connect_subscribed(url, ClientOptions::default(), &patterns)
        .await
        .expect("connect");
    (writer, client, subs)
}

/// Checks the replays of subscriptions to `w.today` and `x.*` after
/// [`write_some`], then that both get live changes.
async fn replay_then_live(writer: &Client, subs: &mut [Subscription]) {
    let [today, x] = subs else {
        panic!("two subscriptions, got {}", subs.len())
    };
    assert_eq!(replay(today).await, pairs(&[("w.today", 21)]));
    assert_eq!(replay(x).await, pairs(&[("x.a", 1)]));
    writer.set("x.b", &2).await.expect("set");
    writer.set("w.today", &22).await.expect("set");
    writer.set("w.tomorrow", &4).await.expect("set"); // neither's
    assert_eq!(val(&next(x).await), ("x.b".into(), 2));
    assert_eq!(val(&next(today).await), ("w.today".into(), 22));
}

#[tokio::test]
async fn subscriptions_from_the_connect_replay_then_go_live() {
    let server = TestServer::start();
    let (writer, client, mut subs) = subscribed(&server, &server.url()).await;
    // The server made them, as the upgrade request's ids 1 and 2.
    let ids: Vec<u64> = subs.iter().map(Subscription::id).collect();
    assert_eq!(ids, [1, 2]);
    replay_then_live(&writer, &mut subs).await;

    // The client goes on as any: a later subscription is the session's 3rd.
    let mut later = client.subscribe("w.tomorrow").await.expect("subscribe");
    assert_eq!(later.id(), 3);
    assert_eq!(replay(&mut later).await, pairs(&[("w.tomorrow", 4)]));
    // Dropping one unsubscribes it; the other carries on.
    let [today, x] = <[Subscription; 2]>::try_from(subs).expect("two");
    drop(today);
    let mut x = x;
    writer.set("w.today", &23).await.expect("set");
    writer.set("x.c", &5).await.expect("set");
    assert_eq!(val(&next(&mut x).await), ("x.c".into(), 5));
}

#[tokio::test]
async fn watches_from_the_connect_hold_the_state() {
    let server = TestServer::start();
    let writer = writer(&server.url()).await;
    write_some(&writer).await;
    let (_client, watches) =
        Client::connect_watching(&server.url(), ClientOptions::default(), &["w.*", "x.a"])
            .await
            .expect("connect");
    let [w, x] = &watches[..] else {
        panic!("two watches")
    };
    for watch in &watches {
        tokio::time::timeout(WAIT, watch.synced())
            .await
            .expect("synced in time")
            .expect("synced");
    }
    assert_eq!(w.keys(), ["w.today", "w.tomorrow"]);
    assert_eq!(x.get::<i64>("x.a").map(Result::ok), Some(Some(1)));
    let changed = x.changed();
    writer.set("x.a", &9).await.expect("set");
    tokio::time::timeout(WAIT, changed).await.expect("changed");
    assert_eq!(x.get::<i64>("x.a").map(Result::ok), Some(Some(9)));
}

/// The subscriptions go in the upgrade request, percent-encoded after the
/// URL's own query, and the client sends no `sub` request for them.
#[tokio::test]
async fn the_subscriptions_are_in_the_upgrade_request_not_requests() {
    let server = TestServer::start();
    let proxy = Proxy::framed(server.addr()).await;
    let (writer, client, mut subs) = subscribed(&server, &proxy.url(server.token())).await;
    replay_then_live(&writer, &mut subs).await;
    let upgrades = proxy.upgrades();
    assert_eq!(upgrades.len(), 1, "{upgrades:?}");
    let (path, query) = upgrades[0].sent.split_once('?').expect("a query");
    assert_eq!(path, "/ws");
    let params: Vec<&str> = query.split('&').collect();
    let token = server.token().map(|t| format!("token={t}"));
    let want: Vec<&str> = token
        .iter()
        .map(String::as_str)
        .chain(["sub=w.today", "sub=x.%2A"])
        .collect();
    assert_eq!(params, want);
    // A request of its own goes through the proxy, so the log is current.
    client.get::<i64>("w.today").await.expect("get");
    assert_eq!(proxy.requests(), ["get w.today"]);
}

/// Behind a server from before the feature (it ignores the `sub`
/// parameters, its `hello` has no `subs`), the same subscriptions are made
/// with `sub` requests.
#[tokio::test]
async fn an_older_server_gets_sub_requests_instead() {
    let server = TestServer::start();
    let proxy = Proxy::older(server.addr()).await;
    let (writer, client, mut subs) = subscribed(&server, &proxy.url(server.token())).await;
    let upgrades = proxy.upgrades();
    assert_eq!(upgrades.len(), 1, "{upgrades:?}");
    assert!(upgrades[0].sent.contains("sub=w.today"), "{upgrades:?}");
    // The server never saw them (the token, if any, still goes through).
    assert!(!upgrades[0].forwarded.contains("sub="), "{upgrades:?}");
    if let Some(token) = server.token() {
        assert!(upgrades[0].forwarded.ends_with(&format!("?token={token}")));
    }
    replay_then_live(&writer, &mut subs).await;
    let ids: Vec<u64> = subs.iter().map(Subscription::id).collect();
    assert_eq!(ids, [1, 2], "made by the session's first two sub requests");
    assert_eq!(client.subscribe("q").await.expect("subscribe").id(), 3);
}

/// A list the client or the server refuses fails the connect at once,
/// with the server's code, after one attempt at most.
#[tokio::test]
async fn a_refused_list_fails_at_once() {
    let server = TestServer::with_config(ipcbus::Config {
        max_subs: 2,
        max_key_bytes: 16,
        ..test_config()
    });
    let proxy = Proxy::start(server.addr()).await;
    let url = proxy.url(server.token());
    // Patient: a refusal taken for a bus not up yet would be retried for long.
    let patient = ClientOptions {
        connect_timeout: Some(Duration::from_secs(600)),
        ..ClientOptions::default()
    };
    let accepted = proxy.accepted();
    let cases: [(&[&str], ErrorCode, u64, &str); 4] = [
        // Refused by the client: nothing sent.
        (&["a.b", "a..b"], ErrorCode::BadPattern, 0, ""),
        (&["a.*x"], ErrorCode::BadPattern, 0, ""),
        // Refused by the server (its limits): one attempt.
        (
            &["a.b", "a.bcdefghijklmnopq"],
            ErrorCode::BadPattern,
            1,
            "(400)",
        ),
        (&["a", "b", "c"], ErrorCode::Limit, 1, "(429)"),
    ];
    for (patterns, code, attempts, says) in cases {
        let before = *accepted.borrow();
        let started = Instant::now();
        let connect = Client::connect_subscribed(&url, patient.clone(), patterns);
        let err = tokio::time::timeout(WAIT, connect)
            .await
            .unwrap_or_else(|_| panic!("{patterns:?}: retried instead of failing"))
            .expect_err("refused");
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        assert!(matches!(err, Error::Server(_)), "{patterns:?}: {err:?}");
        assert_eq!(err.code(), Some(code), "{patterns:?}: {err}");
        assert!(err.to_string().contains(says), "{err}");
        assert_eq!(*accepted.borrow() - before, attempts, "{patterns:?}: {err}");
    }
    // Within the limits, the same server takes them.
    let (_client, subs) = Client::connect_subscribed(&url, patient, &["a.b", "a.bcdefghijklmno"])
        .await
        .expect("connect");
    assert_eq!(subs.len(), 2);
}

/// After the server restarts, the subscriptions are made again with `sub`
/// requests (not in the URL again) and keep delivering.
#[tokio::test]
async fn subscriptions_from_the_connect_carry_on_after_a_restart() {
    let mut server = Restartable::start();
    let proxy = Proxy::framed(server.addr()).await;
    let writer = writer(&server.url()).await;
    let persist = SetOptions {
        persist: true,
        ..SetOptions::default()
    };
    writer.set_with("p.a", &1, persist).await.expect("set");
    let url = proxy.url(server.token());
    let (client, mut subs) =
        Client::connect_subscribed(&url, ClientOptions::default(), &["p.a", "p.*"])
            .await
            .expect("connect");
    let [a, all] = &mut subs[..] else {
        panic!("two subscriptions")
    };
    assert_eq!(replay(a).await, pairs(&[("p.a", 1)]));
    assert_eq!(replay(all).await, pairs(&[("p.a", 1)]));
    drop(writer);

    let mut state = client.state();
    server.stop().await;
    state
        .wait_for(|s| s.kind != ipcbus_client::StateKind::Open)
        .await
        .expect("state");
    server.start_again();
    tokio::time::timeout(
        WAIT,
        state.wait_for(|s| s.kind == ipcbus_client::StateKind::Open),
    )
    .await
    .expect("open again in time")
    .expect("state");
    let writer = Client::connect(&server.url()).await.expect("writer again");
    writer.set("p.a", &2).await.expect("set");
    writer.set("p.b", &3).await.expect("set");
    assert_eq!(val(&next(a).await), ("p.a".into(), 2));
    assert_eq!(val(&next(all).await), ("p.a".into(), 2));
    assert_eq!(val(&next(all).await), ("p.b".into(), 3));

    let upgrades = proxy.upgrades();
    assert_eq!(upgrades.len(), 2, "{upgrades:?}");
    assert!(
        upgrades[0].sent.contains("sub=p.a&sub=p.%2A"),
        "{upgrades:?}"
    );
    assert!(!upgrades[1].sent.contains("sub="), "{upgrades:?}");
    let mut subs_sent: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("sub "))
        .collect();
    subs_sent.sort();
    assert_eq!(
        subs_sent,
        ["sub p.*", "sub p.a"],
        "made again after the restart"
    );
}

/// A `hello` that counts other subscriptions than the client asked for
/// (here a proxy adds one to the upgrade request): the client ends them
/// all and makes its own with requests.
#[tokio::test]
async fn subscriptions_not_as_asked_are_ended_and_made_with_requests() {
    let server = TestServer::start();
    let proxy = Proxy::framed_adding_sub(server.addr(), "w.*").await;
    let (writer, client, mut subs) = subscribed(&server, &proxy.url(server.token())).await;
    replay_then_live(&writer, &mut subs).await;
    let ids: Vec<u64> = subs.iter().map(Subscription::id).collect();
    assert_eq!(ids, [4, 5], "after the server's 3");
    client.get::<i64>("w.today").await.expect("get");
    assert_eq!(
        proxy.requests(),
        [
            "unsub 1",
            "unsub 2",
            "unsub 3",
            "sub w.today",
            "sub x.*",
            "get w.today"
        ]
    );
}
