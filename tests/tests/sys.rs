//! The server's own keys: `ipcbus.sys.stats` is published only while
//! someone watches it, its figures move with the bus, clients cannot write
//! `ipcbus.sys.*`, and `POST /v1/selftest` runs the self-test.

use futures_util::StreamExt;
use ipcbus_client::Event;
use ipcbus_protocol::Codec;
use ipcbus_tests::{test_config, Raw, TestServer, WAIT};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const STATS: &str = "ipcbus.sys.stats";

/// Waits for `n` pings from the server: time that the test can count
/// without sleeping, each at least a heartbeat apart.
async fn pings(raw: &mut Raw, n: usize) {
    let mut seen = 0;
    while seen < n {
        let msg = tokio::time::timeout(WAIT, raw.ws.next())
            .await
            .expect("a ping within WAIT")
            .expect("socket open")
            .expect("no error");
        match msg {
            Message::Ping(_) => seen += 1,
            other => panic!("nothing but pings expected, got {other:?}"),
        }
    }
}

/// The next `val`/`del` event of `raw` within [`WAIT`] (pings, which
/// keep coming, do not extend it).
async fn event(raw: &mut Raw) -> Value {
    let next = async {
        loop {
            let msg = raw.recv().await;
            if msg["ev"] == "val" || msg["ev"] == "del" {
                return msg;
            }
        }
    };
    tokio::time::timeout(WAIT, next)
        .await
        .expect("an event within WAIT")
}

/// Waits, skipping `val` events, for the `del` of [`STATS`] that follows
/// the last watcher's leaving: its TTL runs out with nothing to renew it.
async fn stats_deleted(raw: &mut Raw) {
    loop {
        let ev = event(raw).await;
        if ev["ev"] == "del" {
            assert_eq!(ev["key"], STATS, "{ev}");
            return;
        }
    }
}

/// A server whose pings come every 500 ms, so a test can let a few
/// publication ticks (1 s) pass by counting them.
fn server() -> TestServer {
    TestServer::with_config(ipcbus::Config {
        heartbeat_ms: 500,
        ..test_config()
    })
}

#[tokio::test]
async fn the_figures_are_published_only_while_watched() {
    let server = server();
    // Follows every key, but does not switch the publication on; nor does
    // a pattern that does not start with the literal `ipcbus`.
    let mut all = server.raw(Codec::Json).await;
    all.send(json!({"op":"sub","id":1,"pattern":">"})).await;
    all.send(json!({"op":"sub","id":2,"pattern":"*.sys.stats"}))
        .await;
    // Two replies and two `synced` (there are no keys yet), in any order.
    for _ in 0..4 {
        let msg = all.recv().await;
        assert!(msg["ok"] == true || msg["ev"] == "synced", "{msg}");
    }
    // Four heartbeats: two ticks of the publisher at least.
    pings(&mut all, 4).await;
    let client = server.client().await;
    assert!(client
        .keys(Some("ipcbus.>"))
        .await
        .expect("keys")
        .is_empty());
    // A marker write, then a watcher: had anything been published in the
    // meantime, `all` would see it before the marker.
    let marker = client.set("marker", &1).await.expect("set");
    let mut watch = client.subscribe("ipcbus.sys.>").await.expect("subscribe");
    let first = event(&mut all).await;
    assert_eq!(
        (&first["key"], &first["rev"]),
        (&json!("marker"), &json!(marker))
    );
    let stats = event(&mut all).await;
    assert_eq!(stats["key"], STATS, "{stats}");
    assert!(stats["rev"].as_u64() > Some(marker), "{stats}");
    // The watcher gets it too.
    let got = next_stats(&mut watch).await;
    assert!(got["connections"].as_u64() >= Some(2), "{got}");
    // Unwatched, the figures stop: their TTL runs out with nothing to
    // renew it, and the key is deleted.
    drop(watch);
    stats_deleted(&mut all).await;
    assert!(client
        .keys(Some("ipcbus.>"))
        .await
        .expect("keys")
        .is_empty());
}

/// The publisher sleeps with no timer while nobody watches (issue 17): a
/// watcher that comes after the last one left, and the key expired, wakes
/// it again, and so does each later first watcher.
#[tokio::test]
async fn the_figures_come_back_when_watched_again_after_an_idle_spell() {
    let server = server();
    let mut all = server.raw(Codec::Json).await;
    all.send(json!({"op":"sub","id":1,"pattern":">"})).await;
    for _ in 0..2 {
        let msg = all.recv().await;
        assert!(msg["ok"] == true || msg["ev"] == "synced", "{msg}");
    }
    let client = server.client().await;
    for round in 0..3 {
        let mut watch = client.subscribe("ipcbus.sys.stats").await.expect("sub");
        let got = next_stats(&mut watch).await;
        assert!(
            got["connections"].as_u64() >= Some(2),
            "round {round}: {got}"
        );
        // A second watcher that leaves does not stop the figures.
        let second = client.subscribe("ipcbus.>").await.expect("sub");
        drop(second);
        next_stats(&mut watch).await;
        drop(watch);
        // Unwatched, the key expires and the publisher goes to sleep.
        stats_deleted(&mut all).await;
        // Two heartbeats (two ticks, had the timer still run) with nothing
        // published.
        pings(&mut all, 2).await;
    }
}

/// The next value of `ipcbus.sys.stats`, decoded.
async fn next_stats(watch: &mut ipcbus_client::Subscription) -> Value {
    loop {
        let ev = tokio::time::timeout(WAIT, watch.next())
            .await
            .expect("stats within WAIT")
            .expect("subscription open");
        if let Event::Value { key, .. } = &ev {
            assert_eq!(key, STATS);
            return ev.decode().expect("a value").expect("decodes");
        }
    }
}

#[tokio::test]
async fn the_figures_move_with_writes() {
    let server = server();
    let client = server.client().await;
    let mut watch = client.subscribe("ipcbus.sys.stats").await.expect("sub");
    let before = next_stats(&mut watch).await;
    for field in [
        "connections",
        "subscriptions",
        "keys",
        "rev",
        "writes",
        "deliveries",
        "writes_per_s",
        "deliveries_per_s",
        "conflation_skips",
        "outbox_overflows",
        "outbox_bytes",
        "slowest",
        "persistence",
        "selftest",
        "kodi",
        "backplane",
    ] {
        assert!(before.get(field).is_some(), "{field} missing in {before}");
    }
    assert_eq!(before["persistence"]["status"], "ok");
    assert_eq!(before["selftest"], "disabled");
    assert_eq!(before["kodi"], Value::Null);
    assert_eq!(before["backplane"], Value::Null);
    assert_eq!(before["subscriptions"], 1);
    assert!(before["slowest"].is_array(), "{before}");
    let writes = before["writes"].as_u64().expect("writes");
    for i in 0..20 {
        client.set(&format!("m.{i}"), &i).await.expect("set");
    }
    // The figures of a later second count every write (and not their own).
    loop {
        let now = next_stats(&mut watch).await;
        if now["writes"].as_u64() >= Some(writes + 20) {
            assert_eq!(now["writes"].as_u64(), Some(writes + 20), "{now}");
            assert!(now["keys"].as_u64() >= Some(20), "{now}");
            assert!(now["deliveries"].as_u64() > before["deliveries"].as_u64());
            break;
        }
    }
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_listed_among_the_slowest() {
    let server = server();
    // Subscribes to everything, then reads nothing more.
    let mut stuck = server.raw(Codec::MsgPack).await;
    let (reply, _) = stuck
        .call(json!({"op":"sub","id":1,"pattern":"big.>"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let client = server.client().await;
    let mut watch = client.subscribe("ipcbus.sys.stats").await.expect("sub");
    let value = "x".repeat(16 << 10);
    // Enough to fill the socket's buffers and then its outbox (64 keys of
    // 16 KiB, conflated beyond that), round after round until it shows.
    let listed = async {
        loop {
            for i in 0..64 {
                client.set(&format!("big.{i}"), &value).await.expect("set");
            }
            let stats = next_stats(&mut watch).await;
            if let Some(first) = stats["slowest"].as_array().and_then(|s| s.first()) {
                return (first.clone(), stats);
            }
        }
    };
    let (first, stats) = tokio::time::timeout(WAIT * 3, listed)
        .await
        .expect("the stuck session is listed");
    assert!(first["bytes"].as_u64() > Some(16 << 10), "{stats}");
    assert!(first["session"].is_u64(), "{stats}");
    assert!(stats["outbox_bytes"].as_u64() > Some(0), "{stats}");
    drop(stuck);
}

#[tokio::test]
async fn clients_cannot_write_the_servers_keys() {
    let server = server();
    for codec in [Codec::Json, Codec::MsgPack] {
        let mut raw = server.raw(codec).await;
        for req in [
            json!({"op":"set","id":1,"key":STATS,"value":1}),
            json!({"op":"del","id":2,"key":STATS}),
            json!({"op":"set","id":3,"key":"ipcbus.sys.other.x","value":1}),
        ] {
            let (reply, _) = raw.call(req.clone()).await;
            assert_eq!(reply["error"]["code"], "bad_key", "{req} -> {reply}");
            let msg = reply["error"]["msg"].as_str().expect("msg");
            assert!(msg.contains("server's"), "{msg}");
        }
    }
    let token = server.token().expect("token").to_owned();
    let addr = server.addr();
    for method in ["PUT", "DELETE"] {
        let (status, body) = server
            .http(&format!(
                "{method} /v1/keys/{STATS} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1"
            ))
            .await;
        assert_eq!(status, 400, "{method}: {body}");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["error"]["code"], "bad_key", "{body}");
    }
    // `ipcbus.sys` itself and other `ipcbus.` keys are not in the namespace.
    let client = server.client().await;
    client.set("ipcbus.sysx", &1).await.expect("set");
    assert!(client
        .keys(Some("ipcbus.sys.>"))
        .await
        .expect("keys")
        .is_empty());
}

#[tokio::test]
async fn post_selftest_runs_it_and_answers_the_outcome() {
    let server = server();
    let token = server.token().expect("token").to_owned();
    let addr = server.addr();
    let post = |auth: String| {
        format!(
            "POST /v1/selftest HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let (status, _) = server.http(&post(String::new())).await;
    assert_eq!(status, 401);
    let (status, body) = server
        .http(&post(format!("Authorization: Bearer {token}\r\n")))
        .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["selftest"], "passed", "{body}");
    assert!(body["ms"].is_number(), "{body}");
    let (_, health) = server.http_get("/health").await;
    let health: Value = serde_json::from_str(&health).expect("JSON");
    assert_eq!(health["selftest"], "passed", "{health}");
    assert_eq!(health["keys"], 0, "the self-test leaves nothing: {health}");
}

#[tokio::test]
async fn requests_that_come_during_a_run_share_its_outcome() {
    let server = server();
    let token = server.token().expect("token").to_owned();
    let addr = server.addr();
    let post = format!(
        "POST /v1/selftest HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let client = server.client().await;
    // Nothing else writes: each run takes two revs (its set and its del).
    let before = client.set("marker", &1).await.expect("set");
    const N: u64 = 16;
    let answers = futures_util::future::join_all((0..N).map(|_| server.http(&post))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        let body: Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(body["selftest"], "passed", "{body}");
    }
    let after = client.set("marker", &2).await.expect("set");
    let runs = (after - before - 1) / 2;
    assert_eq!((after - before - 1) % 2, 0, "each run takes two revs");
    // Sent at once, the requests cannot each have found the previous run
    // over: one after another (as before) would be exactly N runs.
    assert!(
        (1..N).contains(&runs),
        "{runs} runs for {N} requests at once"
    );
}
