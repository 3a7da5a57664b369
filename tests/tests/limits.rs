//! The configurable limits that issue 4 added: connections, keys and key
//! length; each refusal is a clear error and other clients go on. (Value,
//! frame, subscription and in-flight limits are tested in `ops.rs`,
//! `malformed.rs` and `slow.rs`.)

use futures_util::StreamExt;
use ipcbus::Config;
use ipcbus_protocol::Codec;
use ipcbus_tests::{test_config, TestServer, WAIT};
use serde_json::json;

#[tokio::test]
async fn max_connections_refuses_the_next_upgrade_with_503() {
    let config = Config {
        max_connections: 2,
        ..test_config()
    };
    let server = TestServer::with_config(config);
    let first = server.client().await;
    let second = server.raw(Codec::Json).await;
    assert_eq!(server.upgrade_status(&server.url(), &[]).await, 503);
    let (status, _) = server.http_get("/v1/keys").await;
    assert_eq!(status, 200, "the HTTP API is not a session");
    first
        .set("still.works", &1)
        .await
        .expect("existing session");
    let mut second = second;
    second.ws.close(None).await.expect("close");
    while second.ws.next().await.is_some() {}
    // The slot frees when the session actor stops, just after its close
    // frame: retry until then, within the usual wait.
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.upgrade_status(&server.url(), &[]).await != 101 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a closed session did not free its slot"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn max_keys_refuses_new_keys_but_not_overwrites() {
    let config = Config {
        max_keys: 3,
        ..test_config()
    };
    let server = TestServer::with_config(config);
    let mut raw = server.raw(Codec::Json).await;
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        let (r, _) = raw
            .call(json!({"id": i, "op": "set", "key": key, "value": i}))
            .await;
        assert_eq!(r["ok"], true, "{r}");
    }
    let (r, _) = raw
        .call(json!({"id": 10, "op": "set", "key": "d", "value": 1}))
        .await;
    assert_eq!(r["error"]["code"], "limit", "{r}");
    assert!(r["error"]["msg"]
        .as_str()
        .expect("msg")
        .contains("max_keys (3)"));
    let (r, _) = raw
        .call(json!({"id": 11, "op": "set", "key": "a", "value": 9}))
        .await;
    assert_eq!(r["ok"], true, "overwriting is not a new key: {r}");
    let (r, _) = raw.call(json!({"id": 12, "op": "del", "key": "b"})).await;
    assert_eq!(r["ok"], true);
    let (r, _) = raw
        .call(json!({"id": 13, "op": "set", "key": "d", "value": 1}))
        .await;
    assert_eq!(r["ok"], true, "a deletion frees a slot: {r}");
    let (status, body) = server.http_get("/health").await;
    assert!(status == 200 && body.contains("\"keys\":3"), "{body}");
}

#[tokio::test]
async fn max_key_bytes_applies_to_keys_and_patterns() {
    let config = Config {
        max_key_bytes: 8,
        ..test_config()
    };
    let server = TestServer::with_config(config);
    let mut raw = server.raw(Codec::MsgPack).await;
    let (r, _) = raw
        .call(json!({"id": 1, "op": "set", "key": "abcd.efg", "value": 1}))
        .await;
    assert_eq!(r["ok"], true, "8 bytes is allowed: {r}");
    let (r, _) = raw
        .call(json!({"id": 2, "op": "set", "key": "abcd.efgh", "value": 1}))
        .await;
    assert_eq!(r["error"]["code"], "bad_key", "{r}");
    assert!(r["error"]["msg"]
        .as_str()
        .expect("msg")
        .contains("max_key_bytes (8)"));
    let (r, _) = raw
        .call(json!({"id": 3, "op": "sub", "pattern": "abcd.efg.>"}))
        .await;
    assert_eq!(r["error"]["code"], "bad_pattern", "{r}");
    let put = format!(
        "PUT /v1/keys/abcd.efgh HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 1\r\nConnection: close\r\n\r\n1",
        server.addr(),
        server.token().expect("token")
    );
    let (status, body) = server.http(&put).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("max_key_bytes"), "{body}");
}
