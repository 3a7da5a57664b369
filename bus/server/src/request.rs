//! `Requester`: hands requests to key actors from outside a WebSocket
//! session (the HTTP API, the Kodi bridge) and waits for each outcome,
//! through an outbox of its own: the same path a session's requests take.

use ipcbus_actors::{Del, Done, Get, Out, Outbox, OutboxConfig, Registry, ReplyTo, Set};
use ipcbus_protocol::{ErrorBody, ErrorCode};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A request for a key actor.
pub(crate) enum KeyMsg {
    /// A `set`.
    Set(Set),
    /// A `get`.
    Get(Get),
    /// A `del`.
    Del(Del),
}

/// One request at a time (each call awaits its reply), so the outbox holds
/// at most one reply, plus any that came after their call timed out.
pub(crate) struct Requester {
    registry: Registry,
    outbox: Arc<Outbox>,
    woken: Arc<Notify>,
    /// The id of the next request: a late reply to a call that timed out
    /// is never taken for a later call's.
    ids: AtomicU64,
    timeout: Duration,
}

impl Requester {
    /// A requester into `registry` whose writes are owned by `owner` (the
    /// outbox id ephemeral keys are tied to); a call gives up after `timeout`.
    pub(crate) fn new(registry: Registry, owner: u64, timeout: Duration) -> Requester {
        let woken = Arc::new(Notify::new());
        let wake = woken.clone();
        let config = OutboxConfig {
            max_bytes: usize::MAX,
            max_inflight: 1,
            max_events: usize::MAX,
        };
        let stats = registry.stats().clone();
        let outbox = Arc::new(Outbox::new(owner, config, stats, move || {
            wake.notify_one();
        }));
        Requester {
            registry,
            outbox,
            woken,
            ids: AtomicU64::new(0),
            timeout,
        }
    }

    /// Sends the request `make` builds to `key`'s actor (starting one if
    /// `create`) and waits for its outcome: `not_found` if the key has no
    /// actor, `internal` if none comes within the timeout.
    pub(crate) async fn call(
        &self,
        key: &str,
        create: bool,
        make: impl FnOnce(ReplyTo) -> KeyMsg,
    ) -> Result<Done, ErrorBody> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        self.outbox.take_all(&mut VecDeque::new());
        self.outbox.begin();
        let reply = ReplyTo {
            outbox: self.outbox.clone(),
            id: Some(id),
        };
        let sent = match make(reply) {
            KeyMsg::Set(m) => self.registry.send(key, create, m).map_err(|_| ()),
            KeyMsg::Get(m) => self.registry.send(key, create, m).map_err(|_| ()),
            KeyMsg::Del(m) => self.registry.send(key, create, m).map_err(|_| ()),
        };
        if sent.is_err() {
            self.outbox.complete();
            return Err(ErrorBody::not_found());
        }
        let reply = async {
            let mut got = VecDeque::new();
            loop {
                self.outbox.take_all(&mut got);
                while let Some(out) = got.pop_front() {
                    if let Out::Reply {
                        id: Some(i),
                        result,
                    } = out
                    {
                        if i == id {
                            return result;
                        }
                    }
                }
                self.woken.notified().await;
            }
        };
        tokio::time::timeout(self.timeout, reply)
            .await
            .unwrap_or_else(|_| {
                Err(ErrorBody::new(
                    ErrorCode::Internal,
                    "no reply from the key's actor",
                ))
            })
    }
}
