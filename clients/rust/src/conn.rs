//! What one connection shares with the client: the commands it sends, the
//! table that routes replies to their callers and events to their
//! subscriptions, and the reader task. The reader never waits, neither for
//! the writer (`reconnect.rs`) nor for a slow subscription (see
//! `EventQueue`), so neither side of the socket can deadlock the other.

use crate::error::{Error, Result};
use crate::resync::SubShared;
use crate::subscription::Event;
use bytes::{Bytes, BytesMut};
use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use ipcbus_protocol::{msgpack, Op, Reply, Request, ServerMsg};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub(crate) type ReplyTx = oneshot::Sender<Result<Reply<'static>>>;

/// What a request is, for what happens to it when its connection is lost.
#[derive(Clone)]
pub(crate) enum Kind {
    /// `get`, `keys`: sent again on the next connection.
    Read,
    /// `set`, `del`: fails with `maybe_applied`, never sent twice.
    Write,
    /// A program's `sub`: sent again; its reply attaches the subscription.
    Sub(Arc<SubShared>),
    /// A `sub` the client makes again after a reconnect (nobody awaits it).
    Resub(Arc<SubShared>),
    /// The client's own request on a new connection (ephemeral keys).
    Internal,
    /// `unsub` without id, for the connection `epoch` only: the server's
    /// ids mean nothing on another connection.
    Unsub { epoch: u64 },
}

/// A request on its way to the connection.
pub(crate) struct Command {
    pub(crate) frame: Bytes,
    pub(crate) id: Option<u64>,
    pub(crate) kind: Kind,
    pub(crate) reply: Option<ReplyTx>,
    pub(crate) progress: Option<Arc<Progress>>,
}

/// One request as MessagePack.
pub(crate) fn encode(id: Option<u64>, op: Op<'_>) -> Bytes {
    let mut buf = BytesMut::new();
    msgpack::encode_request(&Request { id, op }, &mut buf);
    buf.freeze()
}

impl Command {
    pub(crate) fn unsub(sub: u64, epoch: u64) -> Command {
        Command {
            frame: encode(None, Op::Unsub { sub }),
            id: None,
            kind: Kind::Unsub { epoch },
            reply: None,
            progress: None,
        }
    }

    /// Fails the caller, if any still waits.
    pub(crate) fn fail(self, error: Error) {
        if let Some(reply) = self.reply {
            let _ = reply.send(Err(error));
        }
    }
}

/// Whether a request went out, settled once between the writer and a
/// caller that timed out, so that a write is reported `maybe_applied`
/// exactly when it may have been sent.
#[derive(Debug, Default)]
pub(crate) struct Progress(AtomicU8);

const QUEUED: u8 = 0;
const SENT: u8 = 1;
const ABANDONED: u8 = 2;

impl Progress {
    /// The writer is about to send it; false if the caller gave up first.
    pub(crate) fn send(&self) -> bool {
        self.0
            .compare_exchange(QUEUED, SENT, Ordering::AcqRel, Ordering::Acquire)
            .map_or_else(|now| now == SENT, |_| true)
    }

    /// The writer could not send it after all: it is queued again.
    pub(crate) fn unsend(&self) {
        let _ = self
            .0
            .compare_exchange(SENT, QUEUED, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Neither sent nor given up yet: it is waiting for a connection.
    pub(crate) fn is_queued(&self) -> bool {
        self.0.load(Ordering::Acquire) == QUEUED
    }

    /// The caller gives up; true if the request was sent already.
    pub(crate) fn abandon(&self) -> bool {
        self.0
            .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_err_and(|now| now == SENT)
    }
}

#[derive(Default)]
pub(crate) struct Routes {
    /// Requests sent on the current connection, by id.
    pub(crate) waiting: HashMap<u64, Command>,
    /// The server's subscription id → subscription, on the current connection.
    pub(crate) live: HashMap<u64, Arc<SubShared>>,
    /// Every subscription the program holds, by its local id.
    pub(crate) subs: HashMap<u64, Arc<SubShared>>,
    /// Counts connections; see [`Kind::Unsub`].
    pub(crate) epoch: u64,
}

/// The routing table the connection tasks and the clients share.
#[derive(Clone, Default)]
pub(crate) struct Shared(Arc<Mutex<Routes>>);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends a subscription: no more routing, its stream ends; returns the
    /// `unsub` to send, if it is on a connection.
    pub(crate) fn forget(&self, sub: &SubShared) -> Option<Command> {
        let mut routes = self.lock();
        routes.subs.remove(&sub.local);
        sub.queue.close();
        let (id, epoch) = sub.attached()?;
        if routes.live.get(&id).is_some_and(|s| s.local == sub.local) {
            routes.live.remove(&id);
        }
        Some(Command::unsub(id, epoch))
    }
}

/// Why a connection ended.
pub(crate) struct Lost {
    pub(crate) reason: String,
    /// The server closed it with 1009: a message of ours was too big.
    pub(crate) too_large: bool,
}

/// Reads the connection `epoch` until it ends; `tx` (weak: dropping every
/// `Client` still ends the client) takes the `unsub` of a late `sub` reply.
pub(crate) async fn read_loop(
    mut stream: SplitStream<Ws>,
    shared: Shared,
    tx: mpsc::WeakSender<Command>,
    epoch: u64,
    idle_timeout: Duration,
) -> Lost {
    let mut closed_with = None;
    loop {
        let msg = match tokio::time::timeout(idle_timeout, stream.next()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => break,
            Err(_) => {
                return Lost {
                    reason: format!(
                        "nothing from the server for {idle_timeout:?}: the connection is taken for dead"
                    ),
                    too_large: false,
                }
            }
        };
        let frame = match msg {
            Ok(Message::Binary(frame)) => frame,
            Err(e) => {
                return Lost {
                    reason: e.to_string(),
                    too_large: false,
                }
            }
            // Keep reading after a close frame: that is what sends the reply.
            Ok(Message::Close(frame)) => {
                closed_with = frame;
                continue;
            }
            Ok(_) => continue,
        };
        match msgpack::decode_server(&frame) {
            Ok(msg) => route(&shared, &tx, msg, epoch),
            Err(e) => tracing::warn!("ipcbus: undecodable message from server: {e}"),
        }
    }
    match closed_with {
        Some(f) if f.code == CloseCode::Size => Lost {
            reason: format!("frame too big: {}", f.reason),
            too_large: true,
        },
        Some(f) => Lost {
            reason: format!("closed by the server ({}): {}", u16::from(f.code), f.reason),
            too_large: false,
        },
        None => Lost {
            reason: "the connection ended".into(),
            too_large: false,
        },
    }
}

fn route(shared: &Shared, tx: &mpsc::WeakSender<Command>, msg: ServerMsg<'_>, epoch: u64) {
    let (sub, event, meta) = match msg {
        ServerMsg::Reply { id, result } => return reply(shared, tx, id, result, epoch),
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
            meta,
        } => (
            sub,
            Event::Value {
                key: key.into_owned(),
                rev,
                value,
            },
            meta,
        ),
        ServerMsg::Del { sub, key, rev } => (
            sub,
            Event::Deleted {
                key: key.into_owned(),
                rev,
            },
            None,
        ),
        ServerMsg::Synced { sub } => (sub, Event::Synced, None),
    };
    if let Some(sub) = shared.lock().live.get(&sub) {
        sub.deliver(event, meta);
    }
}

fn reply(
    shared: &Shared,
    tx: &mpsc::WeakSender<Command>,
    id: u64,
    result: Result<Reply<'_>, ipcbus_protocol::ErrorBody>,
    epoch: u64,
) {
    let mut routes = shared.lock();
    let Some(cmd) = routes.waiting.remove(&id) else {
        return;
    };
    let sub = match (&cmd.kind, &result) {
        (Kind::Sub(sub) | Kind::Resub(sub), Ok(Reply { sub: Some(sid), .. })) => {
            // Registered before the reply is delivered, so that no event
            // can arrive unrouted.
            sub.attach(*sid, epoch);
            routes.live.insert(*sid, sub.clone());
            routes.subs.insert(sub.local, sub.clone());
            Some(sub.clone())
        }
        (Kind::Resub(sub), Err(e)) => {
            tracing::warn!(
                "ipcbus: subscription {} not made again after reconnecting: {e}",
                sub.local
            );
            None
        }
        _ => None,
    };
    drop(routes);
    let unwanted = match cmd.reply {
        Some(reply) => reply
            .send(result.map(owned).map_err(Error::Server))
            .is_err(),
        None => false,
    };
    if let Some(sub) = sub {
        // The caller gave up (a cancelled or timed-out `subscribe`), or the
        // program dropped it while it was being made again: nobody will
        // ever unsubscribe, so do it now.
        if unwanted || sub.queue.is_closed() {
            if let (Some(cmd), Some(tx)) = (shared.forget(&sub), tx.upgrade()) {
                let _ = tx.try_send(cmd);
            }
        }
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
