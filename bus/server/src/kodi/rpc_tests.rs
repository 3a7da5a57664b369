//! `rpc` against a local WebSocket peer: the pending bound, timeouts that
//! free their slot, and a full notification queue that sets `lost`.

use super::*;
use tokio::net::TcpListener;

/// A peer that answers only `Reply.Me` (with `true`), after sending
/// `before` notifications, and never anything else.
async fn peer(before: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("ws");
        while let Some(Ok(Message::Text(text))) = ws.next().await {
            let req: Value = serde_json::from_str(text.as_str()).expect("json");
            if req["method"] != "Reply.Me" {
                continue;
            }
            for i in 0..before {
                let n = serde_json::json!({"jsonrpc": "2.0", "method": "Player.OnPause", "params": {"i": i}});
                ws.send(Message::text(n.to_string())).await.expect("send");
            }
            let reply = serde_json::json!({"jsonrpc": "2.0", "id": req["id"], "result": true});
            ws.send(Message::text(reply.to_string()))
                .await
                .expect("send");
        }
    });
    format!("ws://{addr}/jsonrpc")
}

#[tokio::test]
async fn pending_requests_are_bounded_and_freed() {
    let (rpc, reader, _notes) = connect(&peer(0).await).await.expect("connect");
    let reading = tokio::spawn(reader.run());
    let silent: Vec<_> = (0..MAX_PENDING)
        .map(|_| rpc.call("Never.Answered", Value::Null))
        .collect();
    let mut waiting = futures_util::future::join_all(silent);
    // Biased: the silent calls take every slot before the next one asks.
    tokio::select! {
        biased;
        _ = &mut waiting => panic!("a silent call returned"),
        r = rpc.call("Reply.Me", Value::Null) => assert!(matches!(r, Err(RpcError::Busy))),
    }
    for result in waiting.await {
        assert!(matches!(result, Err(RpcError::Timeout("Never.Answered"))));
    }
    assert_eq!(
        rpc.call("Reply.Me", Value::Null).await.expect("reply"),
        Value::Bool(true)
    );
    reading.abort();
}

#[tokio::test]
async fn a_full_notification_queue_drops_and_flags() {
    let (rpc, reader, mut notes) = connect(&peer(NOTIFICATION_QUEUE + 10).await)
        .await
        .expect("connect");
    let reading = tokio::spawn(reader.run());
    // The reply comes after the notifications, so all were read by then.
    assert_eq!(
        rpc.call("Reply.Me", Value::Null).await.expect("reply"),
        Value::Bool(true)
    );
    assert!(rpc.take_lost());
    assert!(!rpc.take_lost());
    let mut queued = 0;
    while notes.try_recv().is_ok() {
        queued += 1;
    }
    assert_eq!(queued, NOTIFICATION_QUEUE);
    reading.abort();
}
