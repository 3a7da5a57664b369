//! JSON-RPC 2.0 over a WebSocket, as Kodi speaks it: numbered requests with
//! a bounded map of pending replies and a per-request timeout, and the
//! notifications Kodi pushes on the same socket.
//!
//! [`connect`] returns three parts: the [`Rpc`] handle that sends requests,
//! the [`Reader`] future that must be polled for replies to arrive, and the
//! receiver of notifications. Nothing is spawned: the caller runs the reader
//! next to its own work (`tokio::select!`), so dropping both ends everything.

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a request waits for its reply; a slower Kodi counts as gone for
/// that request (the caller decides whether the connection is).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening the WebSocket (TCP and handshake) may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests in flight at once; more fail with [`RpcError::Busy`]. The bridge
/// sends at most four at a time, so this is only a guard.
pub(crate) const MAX_PENDING: usize = 32;
/// Notifications waiting for the bridge. When full, newer ones are dropped
/// and the bridge is told to re-read the player state instead.
pub(crate) const NOTIFICATION_QUEUE: usize = 64;
/// Largest message or frame accepted from Kodi; a larger one ends the
/// connection (tungstenite cannot skip it), and the bridge reconnects.
pub(crate) const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Malformed messages warned about per connection; later ones log at debug.
const MALFORMED_WARNINGS: u32 = 5;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Reply = Result<Value, RpcError>;

/// Why a request or the connection failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum RpcError {
    /// The WebSocket could not be opened or failed.
    #[error("websocket: {0}")]
    Ws(String),
    /// Kodi closed the connection, or it was lost.
    #[error("connection closed")]
    Closed,
    /// No reply within [`REQUEST_TIMEOUT`].
    #[error("no reply to {0} within {REQUEST_TIMEOUT:?}")]
    Timeout(&'static str),
    /// [`MAX_PENDING`] requests are already waiting.
    #[error("{MAX_PENDING} requests already waiting for Kodi")]
    Busy,
    /// Kodi answered with an error object.
    #[error("Kodi error {code}: {message}")]
    Remote {
        /// JSON-RPC error code.
        code: i64,
        /// Kodi's message.
        message: String,
    },
}

/// A message Kodi sent without an id.
#[derive(Debug, Clone)]
pub(crate) struct Notification {
    /// E.g. `Player.OnAVStart`.
    pub(crate) method: String,
    /// `params`, `Null` when absent.
    pub(crate) params: Value,
}

#[derive(Default)]
struct Pending {
    next_id: u64,
    waiting: HashMap<u64, oneshot::Sender<Reply>>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Set when a notification was dropped because the queue was full.
    lost: AtomicBool,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sends requests; cheap to share by reference among concurrent calls.
pub(crate) struct Rpc {
    sink: tokio::sync::Mutex<SplitSink<Ws, Message>>,
    shared: Arc<Shared>,
}

/// Reads the socket: routes replies to their callers and queues notifications.
pub(crate) struct Reader {
    stream: SplitStream<Ws>,
    shared: Arc<Shared>,
    notifications: mpsc::Sender<Notification>,
    malformed: u32,
}

/// Opens the WebSocket to `url`.
pub(crate) async fn connect(
    url: &str,
) -> Result<(Rpc, Reader, mpsc::Receiver<Notification>), RpcError> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let connecting = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| RpcError::Ws(format!("no connection within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| RpcError::Ws(e.to_string()))?;
    let (sink, stream) = ws.split();
    let shared = Arc::new(Shared {
        pending: Mutex::default(),
        lost: AtomicBool::new(false),
    });
    let (tx, rx) = mpsc::channel(NOTIFICATION_QUEUE);
    let rpc = Rpc {
        sink: tokio::sync::Mutex::new(sink),
        shared: shared.clone(),
    };
    let reader = Reader {
        stream,
        shared,
        notifications: tx,
        malformed: 0,
    };
    Ok((rpc, reader, rx))
}

impl Rpc {
    /// Calls `method` and waits up to [`REQUEST_TIMEOUT`] for its `result`.
    pub(crate) async fn call(&self, method: &'static str, params: Value) -> Reply {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut p = self.shared.pending();
            if p.waiting.len() >= MAX_PENDING {
                return Err(RpcError::Busy);
            }
            p.next_id += 1;
            let id = p.next_id;
            p.waiting.insert(id, tx);
            id
        };
        let request =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let exchange = async {
            let text = Message::text(request.to_string());
            self.sink
                .lock()
                .await
                .send(text)
                .await
                .map_err(|e| RpcError::Ws(e.to_string()))?;
            rx.await.unwrap_or(Err(RpcError::Closed))
        };
        let result = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or(Err(RpcError::Timeout(method)));
        // Gone already if the reply came; otherwise the slot must not leak.
        self.shared.pending().waiting.remove(&id);
        result
    }

    /// Whether notifications were dropped since the last call (and clears it).
    pub(crate) fn take_lost(&self) -> bool {
        self.shared.lost.swap(false, Ordering::AcqRel)
    }
}

impl Reader {
    /// Reads until the connection ends; returns why. Waiting callers then
    /// get [`RpcError::Closed`].
    pub(crate) async fn run(mut self) -> RpcError {
        let why = loop {
            match self.stream.next().await {
                Some(Ok(Message::Text(text))) => self.text(text.as_str()),
                Some(Ok(Message::Binary(b))) => {
                    self.malformed(&format!("a binary frame of {} bytes", b.len()));
                }
                Some(Ok(Message::Close(_))) | None => break RpcError::Closed,
                Some(Ok(_)) => {} // ping, pong: tungstenite answers pings itself
                Some(Err(e)) => break RpcError::Ws(e.to_string()),
            }
        };
        self.shared.pending().waiting.clear();
        why
    }

    fn text(&mut self, text: &str) {
        let Ok(Value::Object(mut msg)) = serde_json::from_str::<Value>(text) else {
            return self.malformed("a message that is not a JSON object");
        };
        if let Some(id) = msg.get("id").filter(|id| !id.is_null()) {
            let Some(id) = id.as_u64() else {
                return self.malformed("a reply whose id is not ours");
            };
            let reply = match (msg.remove("result"), msg.remove("error")) {
                (Some(result), None) => Ok(result),
                (None, Some(error)) => Err(RpcError::Remote {
                    code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                    message: error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("(no message)")
                        .to_owned(),
                }),
                _ => return self.malformed("a reply without exactly one of result and error"),
            };
            match self.shared.pending().waiting.remove(&id) {
                Some(tx) => {
                    let _ = tx.send(reply);
                }
                None => tracing::debug!(id, "late reply from Kodi (timed out), dropped"),
            }
            return;
        }
        let Some(Value::String(method)) = msg.remove("method") else {
            return self.malformed("a message with neither an id nor a method");
        };
        let params = msg.remove("params").unwrap_or(Value::Null);
        let note = Notification { method, params };
        if let Err(mpsc::error::TrySendError::Full(n)) = self.notifications.try_send(note) {
            if !self.shared.lost.swap(true, Ordering::AcqRel) {
                tracing::warn!(method = %n.method, "Kodi notifications queue full; dropping, will re-read the player");
            }
        }
    }

    fn malformed(&mut self, what: &str) {
        self.malformed += 1;
        if self.malformed <= MALFORMED_WARNINGS {
            tracing::warn!("skipped {what} from Kodi");
        } else {
            tracing::debug!("skipped {what} from Kodi");
        }
    }
}

#[cfg(test)]
#[path = "rpc_tests.rs"]
mod tests;
