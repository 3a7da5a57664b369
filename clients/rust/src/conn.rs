//! The connection's two background tasks: a writer that sends encoded
//! requests in batches, and a reader that routes replies to their callers
//! and events to their subscriptions. Reading never waits for writing, so
//! neither side of the socket can deadlock the other.

use crate::error::{Error, Result};
use crate::subscription::Event;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use ipcbus_protocol::{msgpack, Reply, ServerMsg};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A request on its way to the writer.
pub(crate) struct Command {
    pub(crate) frame: Bytes,
    pub(crate) id: Option<u64>,
    pub(crate) reply: Option<oneshot::Sender<Result<Reply<'static>>>>,
    /// For `sub`: where the subscription's events go, registered before the
    /// reply is delivered so that no event can arrive unrouted.
    pub(crate) events: Option<mpsc::Sender<Event>>,
}

struct Waiting {
    reply: oneshot::Sender<Result<Reply<'static>>>,
    events: Option<mpsc::Sender<Event>>,
}

#[derive(Default)]
struct Routes {
    waiting: HashMap<u64, Waiting>,
    subs: HashMap<u64, mpsc::Sender<Event>>,
    closed: bool,
}

type Shared = Arc<Mutex<Routes>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Routes> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts both tasks; requests go into the returned sender.
pub(crate) fn spawn(ws: Ws, capacity: usize) -> mpsc::Sender<Command> {
    let (tx, rx) = mpsc::channel(capacity);
    let shared = Shared::default();
    let (sink, stream) = ws.split();
    tokio::spawn(write_loop(sink, rx, shared.clone()));
    tokio::spawn(read_loop(stream, shared));
    tx
}

async fn write_loop(
    mut sink: SplitSink<Ws, Message>,
    mut rx: mpsc::Receiver<Command>,
    shared: Shared,
) {
    while let Some(cmd) = rx.recv().await {
        if !register(&shared, cmd.id, cmd.reply, cmd.events) {
            break;
        }
        if sink.feed(Message::Binary(cmd.frame)).await.is_err() {
            break;
        }
        // Send whatever else is queued in the same flush.
        while let Ok(cmd) = rx.try_recv() {
            if !register(&shared, cmd.id, cmd.reply, cmd.events)
                || sink.feed(Message::Binary(cmd.frame)).await.is_err()
            {
                return fail_all(&shared);
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
    fail_all(&shared);
}

/// Records who waits for a reply. False once the connection is gone.
fn register(
    shared: &Shared,
    id: Option<u64>,
    reply: Option<oneshot::Sender<Result<Reply<'static>>>>,
    events: Option<mpsc::Sender<Event>>,
) -> bool {
    let mut routes = lock(shared);
    if routes.closed {
        if let Some(reply) = reply {
            let _ = reply.send(Err(Error::Closed));
        }
        return false;
    }
    if let (Some(id), Some(reply)) = (id, reply) {
        routes.waiting.insert(id, Waiting { reply, events });
    }
    true
}

fn fail_all(shared: &Shared) {
    let mut routes = lock(shared);
    routes.closed = true;
    for (_, w) in routes.waiting.drain() {
        let _ = w.reply.send(Err(Error::Closed));
    }
    routes.subs.clear();
}

async fn read_loop(mut stream: SplitStream<Ws>, shared: Shared) {
    while let Some(msg) = stream.next().await {
        let frame = match msg {
            Ok(Message::Binary(frame)) => frame,
            Err(_) => break,
            // Keep reading after a close frame: that is what sends the reply.
            Ok(Message::Close(_)) => continue,
            Ok(_) => continue,
        };
        match msgpack::decode_server(&frame) {
            Ok(msg) => route(&shared, msg).await,
            Err(e) => tracing::warn!("ipcbus: undecodable message from server: {e}"),
        }
    }
    fail_all(&shared);
}

async fn route(shared: &Shared, msg: ServerMsg<'_>) {
    let (sub, event) = match msg {
        ServerMsg::Reply { id, result } => {
            let mut routes = lock(shared);
            let Some(w) = routes.waiting.remove(&id) else {
                return;
            };
            if let (Ok(reply), Some(events)) = (&result, w.events) {
                if let Some(sub) = reply.sub {
                    routes.subs.insert(sub, events);
                }
            }
            let _ = w.reply.send(result.map(owned).map_err(Error::Server));
            return;
        }
        ServerMsg::Error(e) => {
            tracing::warn!("ipcbus: server reported {e}");
            return;
        }
        ServerMsg::Hello { .. } => return,
        ServerMsg::Val {
            sub,
            key,
            value,
            rev,
        } => (
            sub,
            Event::Value {
                key: key.into_owned(),
                rev,
                value,
            },
        ),
        ServerMsg::Del { sub, key, rev } => (
            sub,
            Event::Deleted {
                key: key.into_owned(),
                rev,
            },
        ),
        ServerMsg::Synced { sub } => (sub, Event::Synced),
    };
    let Some(tx) = lock(shared).subs.get(&sub).cloned() else {
        return;
    };
    // A full subscription channel pauses reading: the server then holds
    // (and conflates) further events. See `Subscription`.
    if tx.send(event).await.is_err() {
        lock(shared).subs.remove(&sub);
    }
}

fn owned(r: Reply<'_>) -> Reply<'static> {
    Reply {
        rev: r.rev,
        value: r.value,
        sub: r.sub,
        keys: r.keys.map(|keys| {
            keys.into_iter()
                .map(|k| ipcbus_protocol::KeyRev {
                    key: k.key.into_owned().into(),
                    rev: k.rev,
                })
                .collect()
        }),
    }
}
