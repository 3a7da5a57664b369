//! The connection's two background tasks: a writer that sends encoded
//! requests in batches, and a reader that routes replies to their callers
//! and events to their subscriptions. The reader never waits, neither for
//! the writer nor for a slow subscription (see `EventQueue`), so neither side
//! of the socket can deadlock the other.

use crate::error::{Error, Result};
use crate::queue::EventQueue;
use crate::subscription::Event;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use ipcbus_protocol::{msgpack, Op, Reply, Request, ServerMsg};
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
    pub(crate) events: Option<Arc<EventQueue>>,
}

impl Command {
    /// `unsub` without id: the reply to it would go nowhere.
    pub(crate) fn unsub(sub: u64) -> Command {
        let mut buf = BytesMut::new();
        msgpack::encode_request(
            &Request {
                id: None,
                op: Op::Unsub { sub },
            },
            &mut buf,
        );
        Command {
            frame: buf.freeze(),
            id: None,
            reply: None,
            events: None,
        }
    }
}

struct Waiting {
    reply: oneshot::Sender<Result<Reply<'static>>>,
    events: Option<Arc<EventQueue>>,
}

#[derive(Default)]
struct Routes {
    waiting: HashMap<u64, Waiting>,
    subs: HashMap<u64, Arc<EventQueue>>,
    closed: bool,
}

/// The routing table both tasks and the client share.
#[derive(Clone, Default)]
pub(crate) struct Shared(Arc<Mutex<Routes>>);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops routing a subscription's events (its `unsub` is sent separately).
    pub(crate) fn forget(&self, sub: u64) {
        if let Some(queue) = self.lock().subs.remove(&sub) {
            queue.close();
        }
    }
}

/// Starts both tasks; requests go into the returned sender.
pub(crate) fn spawn(ws: Ws, capacity: usize) -> (mpsc::Sender<Command>, Shared) {
    let (tx, rx) = mpsc::channel(capacity);
    let shared = Shared::default();
    let (sink, stream) = ws.split();
    tokio::spawn(write_loop(sink, rx, shared.clone()));
    // Weak, so that dropping every `Client` still ends the writer.
    tokio::spawn(read_loop(stream, shared.clone(), tx.downgrade()));
    (tx, shared)
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
    events: Option<Arc<EventQueue>>,
) -> bool {
    let mut routes = shared.lock();
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
    let mut routes = shared.lock();
    routes.closed = true;
    for (_, w) in routes.waiting.drain() {
        let _ = w.reply.send(Err(Error::Closed));
    }
    for (_, queue) in routes.subs.drain() {
        queue.close();
    }
}

async fn read_loop(mut stream: SplitStream<Ws>, shared: Shared, tx: mpsc::WeakSender<Command>) {
    while let Some(msg) = stream.next().await {
        let frame = match msg {
            Ok(Message::Binary(frame)) => frame,
            Err(_) => break,
            // Keep reading after a close frame: that is what sends the reply.
            Ok(Message::Close(_)) => continue,
            Ok(_) => continue,
        };
        match msgpack::decode_server(&frame) {
            Ok(msg) => route(&shared, &tx, msg),
            Err(e) => tracing::warn!("ipcbus: undecodable message from server: {e}"),
        }
    }
    fail_all(&shared);
}

fn route(shared: &Shared, tx: &mpsc::WeakSender<Command>, msg: ServerMsg<'_>) {
    let (sub, event) = match msg {
        ServerMsg::Reply { id, result } => {
            let mut routes = shared.lock();
            let Some(w) = routes.waiting.remove(&id) else {
                return;
            };
            let sub = match (&result, w.events) {
                (Ok(Reply { sub: Some(sub), .. }), Some(events)) => {
                    routes.subs.insert(*sub, events);
                    Some(*sub)
                }
                _ => None,
            };
            drop(routes);
            if w.reply
                .send(result.map(owned).map_err(Error::Server))
                .is_err()
            {
                // The caller gave up (a cancelled `subscribe`): nobody will
                // ever unsubscribe, so do it now.
                if let Some(sub) = sub {
                    shared.forget(sub);
                    if let Some(tx) = tx.upgrade() {
                        let _ = tx.try_send(Command::unsub(sub));
                    }
                }
            }
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
    if let Some(queue) = shared.lock().subs.get(&sub) {
        queue.push(event);
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
