//! `Feed`: one ordered consumer on the bucket's stream, which delivers the
//! last message of every subject, then every new one, in stream order,
//! with its headers (docs/scaling.md §7). async-nats's `kv::Watch` is not
//! used: it hides headers, and `watch_all` skips current values.

use super::nats::{is_marker, NatsBackplane, OWNER};
use super::subject::subject_key;
use async_nats::header::NATS_MESSAGE_TTL;
use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use bytes::Bytes;
use futures_util::StreamExt;
use ipcbus_protocol::msgpack::check_value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

/// The subject prefix of server leases (docs/scaling.md §6).
pub(crate) const LEASES: &str = "n.";
/// Numbers each consumer a server starts, so that a feed started again
/// never shares its deliver subject with a consumer left from before.
static STARTS: AtomicU64 = AtomicU64::new(0);
/// Subjects the feed warns about at most, so a foreign writer cannot fill
/// the log (or memory) with them.
const MAX_WARNED: usize = 64;

/// One change of the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key has this value since `rev`.
    Value {
        /// The key.
        key: String,
        /// The message's stream sequence.
        rev: u64,
        /// The MessagePack value.
        value: Bytes,
        /// The server whose lease the key is tied to (an ephemeral `set`).
        owner: Option<String>,
        /// When the value expires (its `Nats-TTL`), in ms since the epoch.
        expires_at_ms: Option<u64>,
        /// When NATS stored the value, in ms since the epoch.
        at_ms: u64,
    },
    /// The key has no value since `rev`: a `del`, or its TTL ran out.
    Deleted {
        /// The key.
        key: String,
        /// The marker's stream sequence.
        rev: u64,
    },
    /// A server's lease: written (`alive`), or run out (the server is gone).
    Lease {
        /// The server's id.
        node: String,
        /// False once the lease has run out or was removed.
        alive: bool,
        /// The message's stream sequence.
        rev: u64,
    },
}

impl Change {
    /// The change's stream sequence.
    pub fn rev(&self) -> u64 {
        match self {
            Change::Value { rev, .. } | Change::Deleted { rev, .. } | Change::Lease { rev, .. } => {
                *rev
            }
        }
    }
}

/// The changes of the bucket, in stream order.
pub struct Feed {
    messages: push::Ordered,
    prefix: String,
    caught_up: bool,
    /// `delivered` when the feed caught up.
    caught_at: u64,
    delivered: u64,
    warned: HashSet<String>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("caught_up", &self.caught_up)
            .field("caught_at", &self.caught_at)
            .field("delivered", &self.delivered)
            .finish()
    }
}

impl Feed {
    /// Starts the consumer at the last message of every subject.
    pub async fn start(backplane: &NatsBackplane) -> anyhow::Result<Feed> {
        let stream = backplane.stream();
        let start = STARTS.fetch_add(1, Ordering::Relaxed);
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: format!("_INBOX.ipcbus.feed.{}.{start}", backplane.node()),
                description: Some(format!("ipcbus feed of {}", backplane.node())),
                filter_subject: format!("{}>", backplane.prefix()),
                deliver_policy: DeliverPolicy::LastPerSubject,
                replay_policy: ReplayPolicy::Instant,
                ..Default::default()
            })
            .await?;
        let caught_up = consumer.cached_info().num_pending == 0;
        Ok(Feed {
            messages: consumer.messages().await?,
            prefix: backplane.prefix().to_owned(),
            caught_up,
            caught_at: 0,
            delivered: 0,
            warned: HashSet::new(),
        })
    }

    /// Whether every message the bucket held when the feed started has been
    /// delivered (at once, for an empty bucket).
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// The stream sequence of the message with which the feed caught up:
    /// every subject's last message up to it has been delivered, or one
    /// that replaced it. 0 before it caught up, and for a feed that had
    /// nothing to deliver when it started (an empty bucket).
    pub fn caught_at(&self) -> u64 {
        self.caught_at
    }

    /// The stream sequence of the last message delivered, a change or not
    /// (0: none yet).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The next change; `None` when the consumer has ended (the connection
    /// is closed for good). Messages that are no change of ours (a subject
    /// that is no key, a payload that is no MessagePack value) are skipped.
    pub async fn next(&mut self) -> Option<anyhow::Result<Change>> {
        loop {
            let message = match self.messages.next().await? {
                Ok(message) => message,
                Err(e) => return Some(Err(e.into())),
            };
            let info = match message.info() {
                Ok(info) => info,
                Err(e) => return Some(Err(anyhow::anyhow!("a message without metadata: {e}"))),
            };
            let rev = info.stream_sequence;
            self.delivered = self.delivered.max(rev);
            if info.pending == 0 && !self.caught_up {
                self.caught_up = true;
                self.caught_at = self.delivered;
            }
            let published_ms =
                u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).ok();
            let Some(subject) = message.subject.strip_prefix(self.prefix.as_str()) else {
                continue;
            };
            let headers = message.headers.clone().unwrap_or_default();
            let deleted = is_marker(&headers);
            if let Some(node) = subject.strip_prefix(LEASES) {
                let node = node.to_owned();
                return Some(Ok(Change::Lease {
                    node,
                    alive: !deleted,
                    rev,
                }));
            }
            let Some(key) = subject_key(subject) else {
                self.warn(subject, "its subject is no ipcbus key (docs/scaling.md §4)");
                continue;
            };
            if deleted {
                return Some(Ok(Change::Deleted { key, rev }));
            }
            if let Err(e) = check_value(&message.payload) {
                self.warn(
                    subject,
                    &format!("its payload is no MessagePack value ({})", e.error.msg),
                );
                continue;
            }
            let owner = headers.get(OWNER).map(|v| v.as_str().to_owned());
            let ttl = headers
                .get(NATS_MESSAGE_TTL)
                .and_then(|v| ttl_ms(v.as_str()));
            let expires_at_ms = ttl.zip(published_ms).map(|(t, at)| at.saturating_add(t));
            let value = message.payload.clone();
            return Some(Ok(Change::Value {
                key,
                rev,
                value,
                owner,
                expires_at_ms,
                at_ms: published_ms.unwrap_or(0),
            }));
        }
    }

    fn warn(&mut self, subject: &str, why: &str) {
        if self.warned.len() < MAX_WARNED && self.warned.insert(subject.to_owned()) {
            tracing::warn!("backplane: skipping {subject}: {why}");
        }
    }
}

/// A `Nats-TTL` as milliseconds: `1500ms`, `2s`, or whole seconds (`2`).
fn ttl_ms(text: &str) -> Option<u64> {
    if let Some(ms) = text.strip_suffix("ms") {
        ms.parse().ok()
    } else if let Some(s) = text.strip_suffix('s') {
        s.parse::<u64>().ok()?.checked_mul(1000)
    } else {
        text.parse::<u64>().ok()?.checked_mul(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::ttl_ms;

    #[test]
    fn ttl_headers_in_the_forms_nats_takes() {
        assert_eq!(ttl_ms("1500ms"), Some(1500));
        assert_eq!(ttl_ms("2s"), Some(2000));
        assert_eq!(ttl_ms("3"), Some(3000));
        assert_eq!(ttl_ms("never"), None);
        assert_eq!(ttl_ms("1h"), None);
    }
}
