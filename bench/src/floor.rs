//! The floor: the least a server can do to speak the benchmark's subset of
//! the ipcbus protocol (hello, `set`, exact-key `sub` with replay and
//! `synced`, `val` events), written plainly on tokio-tungstenite with one
//! lock around a map of topics and no actors, no limits and no
//! persistence. It is not a product; it shows how close ipcbus comes to
//! what the socket and the codec alone cost. Run as a child process of
//! `ipcbus-bench` (`ipcbus-bench __floor`), which prints its URL.
//!
//! Each connection has a writer task fed by a channel of [`QUEUE`] frames;
//! when it is full the frame is dropped. The benchmark's closed loop keeps
//! far fewer in flight, and its subscribers fail on any gap in sequence.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use ipcbus_protocol::msgpack::{decode_request, encode_server};
use ipcbus_protocol::{ErrorBody, ErrorCode, Op, Reply, ServerMsg, SUBPROTOCOL_MSGPACK};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// The first argument that makes `ipcbus-bench` run the floor server.
pub(crate) const AS_FLOOR: &str = "__floor";
/// Frames queued per connection before new ones are dropped.
const QUEUE: usize = 8192;

#[derive(Default)]
struct Topic {
    value: Option<Bytes>,
    rev: u64,
    subs: Vec<(u64, mpsc::Sender<Bytes>)>,
}

type Shared = Mutex<HashMap<String, Topic>>;

/// Runs the floor server if the first argument is [`AS_FLOOR`].
pub(crate) fn floor_main() -> Option<ExitCode> {
    if std::env::args().nth(1).as_deref() != Some(AS_FLOOR) {
        return None;
    }
    let runtime = tokio::runtime::Runtime::new().ok()?;
    Some(match runtime.block_on(serve()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e:#}");
            ExitCode::FAILURE
        }
    })
}

async fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("ws://{}/ws", listener.local_addr()?);
    let shared = Arc::new(Shared::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            // A client that goes without a closing handshake is no news.
            let _ = connection(stream, &shared).await;
        });
    }
}

async fn connection(stream: TcpStream, shared: &Shared) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let ws = tokio_tungstenite::accept_hdr_async(stream, subprotocol).await?;
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let mut sent = sink.feed(Message::Binary(frame)).await;
            while let (Ok(()), Ok(frame)) = (&sent, rx.try_recv()) {
                sent = sink.feed(Message::Binary(frame)).await;
            }
            if sent.is_err() || sink.flush().await.is_err() {
                break;
            }
        }
    });
    let mut buf = BytesMut::new();
    let hello = ServerMsg::Hello {
        proto: 1,
        server: "floor".into(),
        session: "0".into(),
        store: "0".into(),
        max_value_bytes: None,
        max_frame_bytes: None,
        subs: None,
    };
    send(&tx, &mut buf, &hello);
    let mut next_sub = 1;
    while let Some(msg) = source.next().await {
        let frame = match msg? {
            Message::Binary(frame) => frame,
            Message::Close(_) => break,
            _ => continue,
        };
        let req = match decode_request(&frame) {
            Ok(req) => req,
            Err(e) => {
                send(&tx, &mut buf, &ServerMsg::Error(e.error));
                continue;
            }
        };
        let reply = match req.op {
            Op::Set { key, value, .. } => {
                let mut topics = shared.lock().unwrap_or_else(|e| e.into_inner());
                let topic = topics.entry(key.to_string()).or_default();
                topic.rev += 1;
                topic.value = Some(value.clone());
                let rev = topic.rev;
                topic.subs.retain(|(sub, tx)| {
                    let val = ServerMsg::Val {
                        sub: *sub,
                        key: key.clone(),
                        value: value.clone(),
                        rev,
                        meta: None,
                    };
                    encode_server(&val, &mut buf);
                    !matches!(deliver(tx, buf.split().freeze()), Err(()))
                });
                Ok(Reply {
                    rev: Some(rev),
                    ..Reply::default()
                })
            }
            Op::Sub { pattern, .. } => match pattern.exact_key() {
                Some(key) => {
                    let sub = next_sub;
                    next_sub += 1;
                    let reply = ServerMsg::Reply {
                        id: req.id.unwrap_or(0),
                        result: Ok(Reply {
                            sub: Some(sub),
                            ..Reply::default()
                        }),
                    };
                    if req.id.is_some() {
                        send(&tx, &mut buf, &reply);
                    }
                    let mut topics = shared.lock().unwrap_or_else(|e| e.into_inner());
                    let topic = topics.entry(key.to_owned()).or_default();
                    if let Some(value) = topic.value.clone() {
                        let val = ServerMsg::Val {
                            sub,
                            key: key.into(),
                            value,
                            rev: topic.rev,
                            meta: None,
                        };
                        send(&tx, &mut buf, &val);
                    }
                    send(&tx, &mut buf, &ServerMsg::Synced { sub });
                    topic.subs.push((sub, tx.clone()));
                    continue;
                }
                None => Err(ErrorBody::new(
                    ErrorCode::BadPattern,
                    "the floor takes exact keys only",
                )),
            },
            _ => Err(ErrorBody::new(
                ErrorCode::UnknownOp,
                "the floor takes set and sub only",
            )),
        };
        match (req.id, reply) {
            (Some(id), result) => send(&tx, &mut buf, &ServerMsg::Reply { id, result }),
            (None, Err(e)) => send(&tx, &mut buf, &ServerMsg::Error(e)),
            (None, Ok(_)) => {}
        }
    }
    Ok(())
}

/// Accepts the MessagePack subprotocol, the only one the floor speaks.
// The signature is tungstenite's `Callback`, large error type included.
#[allow(clippy::result_large_err)]
fn subprotocol(_: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let proto = HeaderValue::from_static(SUBPROTOCOL_MSGPACK);
    resp.headers_mut().insert("Sec-WebSocket-Protocol", proto);
    Ok(resp)
}

fn send(tx: &mpsc::Sender<Bytes>, buf: &mut BytesMut, msg: &ServerMsg<'_>) {
    encode_server(msg, buf);
    let _ = deliver(tx, buf.split().freeze());
}

/// Queues a frame; `Err` when the connection is gone. A full queue drops
/// the frame.
fn deliver(tx: &mpsc::Sender<Bytes>, frame: Bytes) -> Result<(), ()> {
    match tx.try_send(frame) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    }
}
