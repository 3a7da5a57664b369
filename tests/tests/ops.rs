//! Every op and every error code, over raw frames, in both codecs.

use ipcbus::Config;
use ipcbus_protocol::Codec;
use ipcbus_tests::{test_config, Raw, TestServer};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const CODECS: [Codec; 2] = [Codec::MsgPack, Codec::Json];

fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["ok"], false, "expected an error: {reply}");
    reply["error"]["code"].as_str().expect("code")
}

async fn ok(raw: &mut Raw, req: Value) -> Value {
    let (reply, _) = raw.call(req).await;
    assert_eq!(reply["ok"], true, "expected success: {reply}");
    reply
}

#[tokio::test]
async fn set_get_del_keys_in_both_codecs() {
    for codec in CODECS {
        let server = TestServer::start();
        let mut raw = server.raw(codec).await;
        let value = json!({"temp": 21.5, "tags": ["a", "b"], "n": null});
        let r = ok(
            &mut raw,
            json!({"id": 1, "op": "set", "key": "w.today", "value": value}),
        )
        .await;
        assert_eq!(r["rev"], 1, "first write gets rev 1");
        let r = ok(&mut raw, json!({"id": 2, "op": "get", "key": "w.today"})).await;
        assert_eq!((&r["value"], &r["rev"]), (&value, &json!(1)));
        ok(
            &mut raw,
            json!({"id": 3, "op": "set", "key": "w.tomorrow", "value": 3}),
        )
        .await;
        ok(
            &mut raw,
            json!({"id": 4, "op": "set", "key": "x", "value": "y"}),
        )
        .await;
        let r = ok(&mut raw, json!({"id": 5, "op": "keys", "pattern": "w.*"})).await;
        assert_eq!(
            r["keys"],
            json!([{"key": "w.today", "rev": 1}, {"key": "w.tomorrow", "rev": 2}])
        );
        let r = ok(&mut raw, json!({"id": 6, "op": "keys"})).await;
        assert_eq!(r["keys"].as_array().map(Vec::len), Some(3));
        let r = ok(&mut raw, json!({"id": 7, "op": "del", "key": "w.today"})).await;
        assert_eq!(r["rev"], 4, "a deletion takes the next rev");
        let (r, _) = raw
            .call(json!({"id": 8, "op": "get", "key": "w.today"}))
            .await;
        assert_eq!(error_code(&r), "not_found");
        let (r, _) = raw
            .call(json!({"id": 9, "op": "del", "key": "w.today"}))
            .await;
        assert_eq!(error_code(&r), "not_found");
        let r = ok(
            &mut raw,
            json!({"id": 10, "op": "set", "key": "w.today", "value": 1}),
        )
        .await;
        assert_eq!(
            r["rev"], 5,
            "revs never go back across delete and re-create"
        );
    }
}

#[tokio::test]
async fn if_rev_is_compare_and_set() {
    for codec in CODECS {
        let server = TestServer::start();
        let mut raw = server.raw(codec).await;
        let r = ok(
            &mut raw,
            json!({"id": 1, "op": "set", "key": "k", "value": 1, "if_rev": 0}),
        )
        .await;
        assert_eq!(r["rev"], 1);
        let (r, _) = raw
            .call(json!({"id": 2, "op": "set", "key": "k", "value": 2, "if_rev": 0}))
            .await;
        assert_eq!(
            (error_code(&r), &r["error"]["rev"]),
            ("rev_mismatch", &json!(1))
        );
        let (r, _) = raw
            .call(json!({"id": 3, "op": "del", "key": "k", "if_rev": 7}))
            .await;
        assert_eq!(
            (error_code(&r), &r["error"]["rev"]),
            ("rev_mismatch", &json!(1))
        );
        ok(
            &mut raw,
            json!({"id": 4, "op": "set", "key": "k", "value": 2, "if_rev": 1}),
        )
        .await;
        let r = ok(&mut raw, json!({"id": 5, "op": "get", "key": "k"})).await;
        assert_eq!((&r["value"], &r["rev"]), (&json!(2), &json!(2)));
        let (r, _) = raw
            .call(json!({"id": 6, "op": "set", "key": "absent", "value": 1, "if_rev": 3}))
            .await;
        assert_eq!(
            (error_code(&r), &r["error"]["rev"]),
            ("rev_mismatch", &json!(0))
        );
    }
}

#[tokio::test]
async fn sub_unsub_and_requests_without_id() {
    for codec in CODECS {
        let server = TestServer::start();
        let mut raw = server.raw(codec).await;
        raw.send(json!({"op": "set", "key": "a.b", "value": "v1"}))
            .await;
        let (r, before) = raw
            .call(json!({"id": 1, "op": "sub", "pattern": "a.b"}))
            .await;
        assert!(
            before.is_empty(),
            "a successful request without id gets no reply: {before:?}"
        );
        let sub = r["sub"].clone();
        assert_eq!(
            raw.recv().await,
            json!({"ev": "val", "sub": sub, "key": "a.b", "value": "v1", "rev": 1})
        );
        assert_eq!(raw.recv().await, json!({"ev": "synced", "sub": sub}));
        raw.send(json!({"op": "del", "key": "a.b"})).await;
        assert_eq!(
            raw.recv().await,
            json!({"ev": "del", "sub": sub, "key": "a.b", "rev": 2})
        );
        let r = ok(&mut raw, json!({"id": 2, "op": "unsub", "sub": sub})).await;
        assert_eq!(r, json!({"id": 2, "ok": true}));
        let (r, before) = raw
            .call(json!({"id": 3, "op": "set", "key": "a.b", "value": 1}))
            .await;
        assert_eq!(
            (r["ok"].clone(), before),
            (json!(true), vec![]),
            "no event after unsub"
        );
        let (r, _) = raw.call(json!({"id": 4, "op": "unsub", "sub": sub})).await;
        assert_eq!(error_code(&r), "not_found");
        // A failing request without id is reported as an error event.
        raw.send(json!({"op": "get", "key": "nope"})).await;
        let e = raw.recv().await;
        assert_eq!(
            (&e["ev"], &e["error"]["code"]),
            (&json!("error"), &json!("not_found"))
        );
    }
}

#[tokio::test]
async fn request_errors_carry_their_codes() {
    let config = Config {
        max_value_bytes: 1000,
        max_frame_bytes: 64 << 10,
        max_subs: 2,
        ..test_config()
    };
    for codec in CODECS {
        let server = TestServer::with_config(config.clone());
        let mut raw = server.raw(codec).await;
        let cases = [
            (json!({"id": 1, "op": "frobnicate"}), "unknown_op"),
            (json!({"id": 2, "op": "get"}), "bad_request"),
            (json!({"id": 3, "op": "get", "key": 5}), "bad_request"),
            (json!({"id": 4, "key": "a"}), "bad_request"),
            (json!({"id": 5, "op": "set", "key": "a"}), "bad_request"),
            (json!({"id": 6, "op": "get", "key": "a..b"}), "bad_key"),
            (
                json!({"id": 7, "op": "set", "key": "a*", "value": 1}),
                "bad_key",
            ),
            (
                json!({"id": 8, "op": "get", "key": "x".repeat(257)}),
                "bad_key",
            ),
            (
                json!({"id": 9, "op": "sub", "pattern": "a.>.b"}),
                "bad_pattern",
            ),
            (
                json!({"id": 10, "op": "keys", "pattern": "a*"}),
                "bad_pattern",
            ),
            (
                json!({"id": 11, "op": "set", "key": "big", "value": "x".repeat(2000)}),
                "too_large",
            ),
            (json!({"id": 12, "op": "unsub"}), "bad_request"),
        ];
        for (req, code) in cases {
            let (r, _) = raw.call(req.clone()).await;
            assert_eq!(error_code(&r), code, "{codec:?} {req}: {r}");
            assert!(r["error"]["msg"].as_str().is_some_and(|m| !m.is_empty()));
        }
        for id in [20, 21] {
            ok(&mut raw, json!({"id": id, "op": "sub", "pattern": "s.*"})).await;
        }
        let (r, _) = raw
            .call(json!({"id": 22, "op": "sub", "pattern": "s.*"}))
            .await;
        assert_eq!(error_code(&r), "limit");
        // The session survived all of that.
        let r = ok(
            &mut raw,
            json!({"id": 23, "op": "set", "key": "alive", "value": true}),
        )
        .await;
        assert!(r["rev"].is_u64());
    }
}

#[tokio::test]
async fn value_json_cannot_show_is_internal_for_json_sessions_only() {
    let server = TestServer::start();
    let mut mp = server.raw(Codec::MsgPack).await;
    let mut deep = vec![0x91u8; 1000];
    deep.push(0xc0);
    let mut frame = vec![0x84];
    for (k, v) in [
        ("id", &[0x01][..]),
        ("op", &[0xa3, b's', b'e', b't']),
        ("key", &[0xa1, b'd']),
    ] {
        frame.push(0xa0 | k.len() as u8);
        frame.extend_from_slice(k.as_bytes());
        frame.extend_from_slice(v);
    }
    frame.extend_from_slice(b"\xa5value");
    frame.extend_from_slice(&deep);
    mp.send_frame(Message::binary(frame)).await;
    assert_eq!(
        mp.recv().await["ok"],
        true,
        "MessagePack keeps any well-formed value"
    );
    let mut js = server.raw(Codec::Json).await;
    let (r, _) = js.call(json!({"id": 1, "op": "get", "key": "d"})).await;
    assert_eq!(error_code(&r), "internal");
}

#[tokio::test]
async fn hello_names_protocol_server_session_store_and_limits() {
    let server = TestServer::start();
    let mut hellos = Vec::new();
    for codec in CODECS {
        let mut raw = server.raw_with_hello(codec).await;
        hellos.push(raw.recv().await);
    }
    for h in &hellos {
        assert_eq!(
            (&h["ev"], &h["proto"], &h["server"]),
            (&json!("hello"), &json!(1), &json!(ipcbus::SERVER_NAME))
        );
        assert_eq!(h["session"].as_str().map(str::len), Some(36), "a UUID: {h}");
    }
    assert_ne!(hellos[0]["session"], hellos[1]["session"]);
    assert_eq!(
        hellos[0]["store"], hellos[1]["store"],
        "one store per server"
    );
    let limited = TestServer::with_config(Config {
        max_value_bytes: 1000,
        max_frame_bytes: 2000,
        ..test_config()
    });
    for codec in CODECS {
        let h = limited.raw_with_hello(codec).await.recv().await;
        assert_eq!(
            (&h["max_value_bytes"], &h["max_frame_bytes"]),
            (&json!(1000), &json!(2000)),
            "hello announces the limits: {h}"
        );
    }
    let other = TestServer::start();
    let mut raw = other.raw_with_hello(Codec::MsgPack).await;
    assert_ne!(
        raw.recv().await["store"],
        hellos[0]["store"],
        "a restarted server is another store"
    );
}
