//! Subscriptions named in the upgrade request (`GET /ws?sub=<pattern>`,
//! protocol.md §5.1): ids 1..n after `hello`, their replay with no request,
//! and a refused upgrade (no session) for a bad list.

use ipcbus::Config;
use ipcbus_protocol::Codec;
use ipcbus_tests::{test_config, Raw, TestServer};
use serde_json::{json, Value};

const CODECS: [Codec; 2] = [Codec::MsgPack, Codec::Json];

/// `url` with `query` appended to its own query string.
fn with_query(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

/// The next `n` messages.
async fn take(raw: &mut Raw, n: usize) -> Vec<Value> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(raw.recv().await);
    }
    got
}

#[tokio::test]
async fn subscriptions_in_the_url_replay_after_hello_then_go_live() {
    for codec in CODECS {
        let server = TestServer::start();
        let mut writer = server.raw(codec).await;
        for (id, key, value) in [(1, "w.today", json!(21.5)), (2, "w.tomorrow", json!(3))] {
            let (r, _) = writer
                .call(json!({"id": id, "op": "set", "key": key, "value": value}))
                .await;
            assert_eq!(r["ok"], true, "{r}");
        }
        // `w.*` percent-encoded as a client would; `+` is not used.
        let url = with_query(&server.url(), "sub=w.today&sub=w.%2A");
        let mut raw = Raw::connect(&url, codec).await;
        let hello = raw.recv().await;
        assert_eq!((&hello["ev"], &hello["subs"]), (&json!("hello"), &json!(2)));
        let mut replay = take(&mut raw, 5).await;
        // Sub 1's events come in order, and so do sub 2's; the two may interleave.
        let one: Vec<Value> = replay.iter().filter(|m| m["sub"] == 1).cloned().collect();
        assert_eq!(
            one,
            [
                json!({"ev": "val", "sub": 1, "key": "w.today", "value": 21.5, "rev": 1}),
                json!({"ev": "synced", "sub": 1}),
            ]
        );
        replay.retain(|m| m["sub"] == 2);
        assert_eq!(replay.last(), Some(&json!({"ev": "synced", "sub": 2})));
        let mut keys: Vec<&str> = replay[..2]
            .iter()
            .map(|m| m["key"].as_str().expect("a val"))
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["w.today", "w.tomorrow"]);

        // Live changes, and the next subscription of this session is 3.
        let (r, _) = writer
            .call(json!({"id": 3, "op": "set", "key": "w.tomorrow", "value": 4}))
            .await;
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(
            raw.recv().await,
            json!({"ev": "val", "sub": 2, "key": "w.tomorrow", "value": 4, "rev": 3})
        );
        let (r, events) = raw
            .call(json!({"id": 1, "op": "sub", "pattern": "x"}))
            .await;
        assert_eq!((&r["sub"], events.len()), (&json!(3), 0), "{r}");
        assert_eq!(raw.recv().await, json!({"ev": "synced", "sub": 3}));
        // A URL subscription ends like any other.
        let (r, _) = raw.call(json!({"id": 2, "op": "unsub", "sub": 2})).await;
        assert_eq!(r["ok"], true, "{r}");
        let (r, _) = writer
            .call(json!({"id": 4, "op": "set", "key": "w.today", "value": 0}))
            .await;
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(
            raw.recv().await,
            json!({"ev": "val", "sub": 1, "key": "w.today", "value": 0, "rev": 4})
        );
    }
}

#[tokio::test]
async fn hello_has_no_subs_without_them() {
    let server = TestServer::start();
    let mut raw = server.raw_with_hello(Codec::Json).await;
    let hello = raw.recv().await;
    assert_eq!(hello["ev"], "hello");
    assert!(hello.get("subs").is_none(), "{hello}");
}

/// A refused upgrade: (status, body), over a plain socket.
async fn refused(server: &TestServer, query: &str) -> (u16, Value) {
    let auth = server
        .token()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let (status, body) = server
        .http(&format!(
            "GET /ws?{query} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            server.addr()
        ))
        .await;
    let body = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, body)
}

#[tokio::test]
async fn bad_subscriptions_refuse_the_upgrade_and_open_no_session() {
    let server = TestServer::with_config(Config {
        max_subs: 2,
        ..test_config()
    });
    for (query, status, code) in [
        ("sub=a..b", 400, "bad_pattern"),
        ("sub=", 400, "bad_pattern"),
        ("sub=a&sub=b%20c", 400, "bad_pattern"),
        ("sub=a&sub=b&sub=c", 429, "limit"),
        ("sub=%FF", 400, "bad_request"),
        ("sub=a.%C3", 400, "bad_request"),
    ] {
        let (got, body) = refused(&server, query).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{query}: {body}"
        );
    }
    let (status, health) = server.http_get("/health").await;
    let health: Value = serde_json::from_str(&health).expect("health");
    assert_eq!((status, &health["sessions"]), (200, &json!(0)), "{health}");
    // `max_subs` counts the URL's subscriptions and the requests' together.
    let mut raw = Raw::connect(&with_query(&server.url(), "sub=a&sub=b"), Codec::Json).await;
    assert_eq!(raw.recv().await["subs"], 2);
    let (r, _) = raw
        .call(json!({"id": 1, "op": "sub", "pattern": "c"}))
        .await;
    assert_eq!(r["error"]["code"], "limit", "{r}");
}

#[tokio::test]
async fn patterns_are_form_decoded() {
    let server = TestServer::start();
    let mut writer = server.raw(Codec::Json).await;
    let keys = ["p.a+b", "p.%41", "p.é€"];
    for (id, key) in (1..).zip(keys) {
        let (r, _) = writer
            .call(json!({"id": id, "op": "set", "key": key, "value": id}))
            .await;
        assert_eq!(r["ok"], true, "{r}");
    }
    // `+` would be a space (refused in a pattern): a client sends %2B.
    let query = "sub=p.a%2Bb&sub=p.%2541&sub=p.%C3%A9%E2%82%AC";
    let mut raw = Raw::connect(&with_query(&server.url(), query), Codec::Json).await;
    assert_eq!(raw.recv().await["subs"], 3);
    let mut got = Vec::new();
    for msg in take(&mut raw, 6).await {
        if msg["ev"] == "val" {
            got.push((msg["sub"].as_u64(), msg["key"].as_str().map(str::to_owned)));
        }
    }
    got.sort();
    let want: Vec<_> = (1..)
        .zip(keys)
        .map(|(sub, key)| (Some(sub), Some(key.to_owned())))
        .collect();
    assert_eq!(got, want);
}
