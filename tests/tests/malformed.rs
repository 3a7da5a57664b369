//! Bad input: an error reply, the connection stays open, nobody else notices.

use ipcbus::Config;
use ipcbus_protocol::Codec;
use ipcbus_tests::{test_config, Next, Raw, TestServer};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

async fn still_alive(raw: &mut Raw, id: u64) {
    let (reply, _) = raw.call(json!({"id": id, "op": "keys"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
}

async fn expect_error(raw: &mut Raw, code: &str) {
    let ev = raw.recv().await;
    assert_eq!(
        (&ev["ev"], &ev["error"]["code"]),
        (&json!("error"), &json!(code)),
        "{ev}"
    );
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn junk(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn garbage_msgpack_frames_get_errors_and_the_session_survives() {
    let server = TestServer::start();
    let mut raw = server.raw(Codec::MsgPack).await;
    let mut frames: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xc1],
        vec![0x81],
        vec![0x93, 1, 2],
        vec![0xdf, 0xff, 0xff, 0xff, 0xff],
        vec![0x81, 0xa2, b'o', b'p', 0xa3, b's', b'e', b't', 0x00],
        b"{\"op\":\"get\"}".to_vec(),
    ];
    let mut deep = vec![
        0x82, 0xa2, b'o', b'p', 0xa3, b's', b'e', b't', 0xa5, b'v', b'a', b'l', b'u', b'e',
    ];
    deep.extend(std::iter::repeat_n(0x91, 100_000));
    frames.push(deep);
    frames.extend((0..200).map(|seed| junk(seed, 1 + (seed as usize * 37) % 300)));
    // An id above 2^53 - 1 is refused and not echoed.
    let mut big_id = vec![0x82, 0xa2, b'i', b'd', 0xcf];
    big_id.extend_from_slice(&u64::MAX.to_be_bytes());
    big_id.extend_from_slice(&[0xa2, b'o', b'p', 0xa4, b'k', b'e', b'y', b's']);
    frames.push(big_id);
    for (i, frame) in frames.into_iter().enumerate() {
        raw.send_frame(Message::binary(frame)).await;
        let ev = raw.recv().await;
        assert_eq!(
            ev["ev"], "error",
            "frame {i}: errors without a usable id are events: {ev}"
        );
        let code = ev["error"]["code"].as_str().unwrap_or_default();
        assert!(
            ["bad_request", "unknown_op", "bad_key"].contains(&code),
            "frame {i}: {ev}"
        );
        if i % 50 == 0 {
            still_alive(&mut raw, i as u64).await;
        }
    }
    still_alive(&mut raw, 9999).await;
}

#[tokio::test]
async fn wrong_frame_type_and_bad_json_are_errors() {
    let server = TestServer::start();
    let mut mp = server.raw(Codec::MsgPack).await;
    mp.send_frame(Message::text("{\"op\":\"keys\"}")).await;
    expect_error(&mut mp, "bad_request").await;
    still_alive(&mut mp, 1).await;
    let mut js = server.raw(Codec::Json).await;
    js.send_frame(Message::binary(vec![0x80])).await;
    expect_error(&mut js, "bad_request").await;
    for text in [
        "",
        "nope",
        "[1,2]",
        "{\"op\":",
        "{\"op\":\"set\",\"key\":\"k\",\"value\":}",
        "\"str\"",
    ] {
        js.send_frame(Message::text(text)).await;
        expect_error(&mut js, "bad_request").await;
    }
    still_alive(&mut js, 2).await;
}

#[tokio::test]
async fn oversized_message_closes_with_1009_and_spares_others() {
    let config = Config {
        max_value_bytes: 1000,
        max_frame_bytes: 4096,
        ..test_config()
    };
    let server = TestServer::with_config(config);
    let mut bystander = server.raw(Codec::MsgPack).await;
    let mut big = server.raw(Codec::MsgPack).await;
    big.send_frame(Message::binary(vec![0u8; 10_000])).await;
    assert!(matches!(
        big.next().await,
        Next::Closed(Some(CloseCode::Size))
    ));
    // Fragments that add up to too much are refused the same way.
    let mut frag = server.raw(Codec::MsgPack).await;
    frag.send_frame(Message::Frame(Frame::message(
        vec![0u8; 3000],
        OpCode::Data(Data::Binary),
        false,
    )))
    .await;
    frag.send_frame(Message::Frame(Frame::message(
        vec![0u8; 3000],
        OpCode::Data(Data::Continue),
        true,
    )))
    .await;
    assert!(matches!(
        frag.next().await,
        Next::Closed(Some(CloseCode::Size))
    ));
    still_alive(&mut bystander, 1).await;
}

#[tokio::test]
async fn fragmented_messages_are_reassembled() {
    let server = TestServer::start();
    let mut raw = server.raw(Codec::Json).await;
    let text = br#"{"id":7,"op":"set","key":"frag","value":"joined"}"#;
    let (a, b) = text.split_at(20);
    raw.send_frame(Message::Frame(Frame::message(
        a.to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await;
    raw.send_frame(Message::Frame(Frame::message(
        b.to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await;
    assert_eq!(raw.recv().await["ok"], true);
    let (reply, _) = raw.call(json!({"id": 8, "op": "get", "key": "frag"})).await;
    assert_eq!(reply["value"], "joined");
}

#[tokio::test]
async fn unknown_subprotocol_is_refused_with_400() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = TestServer::start();
    let mut req = server.url().into_client_request().expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().expect("header"));
    let err = tokio_tungstenite::connect_async(req)
        .await
        .expect_err("refused");
    let tokio_tungstenite::tungstenite::Error::Http(resp) = err else {
        panic!("expected an HTTP error, got {err}");
    };
    assert_eq!(resp.status(), 400);
    let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
    assert!(body.contains("ipcbus.v1.msgpack"), "{body}");
}

#[tokio::test]
async fn shutdown_sends_close_1001() {
    let server = TestServer::start();
    let mut raw = server.raw(Codec::MsgPack).await;
    let stopping = tokio::task::spawn_blocking(move || drop(server));
    assert!(matches!(
        raw.next().await,
        Next::Closed(Some(CloseCode::Away))
    ));
    drop(raw);
    stopping.await.expect("server stopped");
}
