//! Writes the bridge's keys into the registry in-process, the way the HTTP
//! API does (a `Set` or `Del` to the key's actor, the outcome read from a
//! private outbox), and skips writes that would not change the value.

use bytes::Bytes;
use ipcbus_actors::{Del, Done, Out, Outbox, OutboxConfig, Registry, ReplyTo, Set};
use ipcbus_protocol::{ErrorBody, ErrorCode, Life};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The owner id of the bridge's writes. Sessions count up from 1 and the
/// HTTP API uses 0, so no session's end ever releases the bridge's keys.
const BRIDGE_OWNER: u64 = u64::MAX;
/// How long a write waits for its key actor; only a server fault exhausts it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The bridge's writer. One write at a time (each awaits its reply), so its
/// outbox holds at most one reply.
pub(crate) struct Publisher {
    registry: Registry,
    outbox: Arc<Outbox>,
    woken: Arc<Notify>,
    /// The id of the next write's reply.
    ids: std::sync::atomic::AtomicU64,
    /// What each key was last set to by us (`Some(None)`: deleted).
    last: std::collections::HashMap<&'static str, Option<Bytes>>,
}

impl Publisher {
    /// A writer into `registry`.
    pub(crate) fn new(registry: Registry) -> Publisher {
        let woken = Arc::new(Notify::new());
        let wake = woken.clone();
        let config = OutboxConfig {
            max_bytes: usize::MAX,
            max_inflight: 1,
        };
        let stats = registry.stats().clone();
        let outbox = Arc::new(Outbox::new(BRIDGE_OWNER, config, stats, move || {
            wake.notify_one();
        }));
        Publisher {
            registry,
            outbox,
            woken,
            ids: Default::default(),
            last: Default::default(),
        }
    }

    /// Forgets what was written, so that the next writes happen even if
    /// unchanged: after a reconnect the keys are written afresh, in case
    /// another client deleted or overwrote them meanwhile.
    pub(crate) fn forget(&mut self) {
        self.last.clear();
    }

    /// Sets `key` to `value` as a MessagePack map, unless it holds that already.
    pub(crate) async fn set(&mut self, key: &'static str, value: &impl Serialize) {
        let bytes = match rmp_serde::to_vec_named(value) {
            Ok(b) => Bytes::from(b),
            Err(e) => return tracing::warn!(key, "cannot encode: {e}"),
        };
        if self.last.get(key) == Some(&Some(bytes.clone())) {
            return;
        }
        // Ephemeral, so never persisted, even with `persist_all`.
        let life = Life {
            persist: false,
            ephemeral: true,
            ttl_ms: None,
        };
        let value = bytes.clone();
        let result = self
            .call(key, true, |reply| {
                Msg::Set(Set {
                    value,
                    if_rev: None,
                    life,
                    reply,
                })
            })
            .await;
        match result {
            Ok(()) => {
                self.last.insert(key, Some(bytes));
            }
            Err(e) => {
                self.last.remove(key);
                tracing::warn!(key, "cannot write: {}", e.msg);
            }
        }
    }

    /// Deletes `key`, unless we deleted it already.
    pub(crate) async fn del(&mut self, key: &'static str) {
        if self.last.get(key) == Some(&None) {
            return;
        }
        // `not_found` is as good as a deletion.
        let _ = self
            .call(key, false, |reply| {
                Msg::Del(Del {
                    if_rev: None,
                    reply,
                })
            })
            .await;
        self.last.insert(key, None);
    }

    async fn call(
        &self,
        key: &str,
        create: bool,
        make: impl FnOnce(ReplyTo) -> Msg,
    ) -> Result<(), ErrorBody> {
        // Each write has its own id, so a reply that came after its write
        // timed out is never taken for this one's.
        let id = self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.outbox.take(&mut VecDeque::new());
        self.outbox.begin();
        let reply = ReplyTo {
            outbox: self.outbox.clone(),
            id: Some(id),
        };
        let sent = match make(reply) {
            Msg::Set(m) => self.registry.send(key, create, m).map_err(|_| ()),
            Msg::Del(m) => self.registry.send(key, create, m).map_err(|_| ()),
        };
        if sent.is_err() {
            self.outbox.complete();
            return Err(ErrorBody::not_found());
        }
        let reply = async {
            let mut got = VecDeque::new();
            loop {
                self.outbox.take(&mut got);
                while let Some(out) = got.pop_front() {
                    if let Out::Reply {
                        id: Some(i),
                        result,
                    } = out
                    {
                        if i == id {
                            return result.map(|_: Done| ());
                        }
                    }
                }
                self.woken.notified().await;
            }
        };
        tokio::time::timeout(WRITE_TIMEOUT, reply)
            .await
            .unwrap_or_else(|_| {
                Err(ErrorBody::new(
                    ErrorCode::Internal,
                    "no reply from the key's actor",
                ))
            })
    }
}

enum Msg {
    Set(Set),
    Del(Del),
}
