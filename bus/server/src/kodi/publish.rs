//! Writes the bridge's keys into the registry in-process through a
//! [`Requester`], as the HTTP API does, and skips writes that would not
//! change the value.

use crate::request::{KeyMsg, Requester};
use bytes::Bytes;
use ipcbus_actors::{Del, Registry, Set};
use ipcbus_protocol::Life;
use serde::Serialize;
use std::time::Duration;

/// The owner id of the bridge's writes. Sessions count up from 1 and the
/// HTTP API uses 0, so no session's end ever releases the bridge's keys.
const BRIDGE_OWNER: u64 = u64::MAX;
/// How long a write waits for its key actor; only a server fault exhausts it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The bridge's writer. One write at a time (each awaits its reply).
pub(crate) struct Publisher {
    requests: Requester,
    /// What each key was last set to by us (`Some(None)`: deleted).
    last: std::collections::HashMap<&'static str, Option<Bytes>>,
}

impl Publisher {
    /// A writer into `registry`.
    pub(crate) fn new(registry: Registry) -> Publisher {
        Publisher {
            requests: Requester::new(registry, BRIDGE_OWNER, WRITE_TIMEOUT),
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
            .requests
            .call(key, true, |reply| {
                KeyMsg::Set(Set {
                    value,
                    if_rev: None,
                    life,
                    reply,
                })
            })
            .await;
        match result {
            Ok(_) => {
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
            .requests
            .call(key, false, |reply| {
                KeyMsg::Del(Del {
                    if_rev: None,
                    reply,
                })
            })
            .await;
        self.last.insert(key, None);
    }
}
