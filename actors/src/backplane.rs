//! The backplane as key actors see it (docs/scaling.md): a store shared
//! with other servers that takes every write and numbers it. With one, a
//! key actor does not apply a `set` or `del` itself: it hands the write to
//! the [`Backplane`], waits for its rev, applies it to its key (the mirror)
//! and answers. Writes of other servers reach the mirror as [`Mirror`]
//! messages. Without one (`None`, the single-machine path) nothing here
//! runs.

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a write expects of the key first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing: write whatever the key holds.
    Any,
    /// The key's value is at this rev (`if_rev: N`).
    Rev(u64),
    /// The key has no value (`if_rev: 0`).
    Absent,
}

/// A write the backplane did not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The key is not at the expected rev; `current` is its rev (0: no value).
    #[error("the key is at rev {current}")]
    Conflict {
        /// The key's current rev, 0 if it has no value.
        current: u64,
    },
    /// A `del` of a key that has no value.
    #[error("the key has no value")]
    NotFound,
    /// The shared store answered that it did not store the write (it is
    /// full, or the value is over its limit): nothing was applied.
    #[error("the shared store refused the write ({0}); it was not applied")]
    Refused(String),
    /// No answer in time, or none possible (no quorum, no connection): the
    /// write may or may not have been applied.
    #[error("the backplane did not confirm the write ({0}); it may or may not have been applied")]
    Unavailable(String),
}

/// A value to write.
#[derive(Debug, Clone)]
pub struct Put {
    /// The MessagePack value.
    pub value: Bytes,
    /// What the key must hold first.
    pub expect: Expect,
    /// Delete the key after this long.
    pub ttl_ms: Option<u64>,
    /// Tie the key to this server's lease (an ephemeral `set`).
    pub ephemeral: bool,
}

/// A write on its way: resolves to the write's rev.
pub type Pending = Pin<Box<dyn Future<Output = Result<u64, WriteError>> + Send>>;

/// A store shared with other servers.
pub trait Backplane: Send + Sync + 'static {
    /// Writes `put` to `key`. `live` is the rev of the key's value in the
    /// mirror (0: none): it may save a round trip, and may be stale.
    fn put(&self, key: Arc<str>, put: Put, live: u64) -> Pending;

    /// Deletes the value of `key`, with `if_rev` only at that rev. `live`
    /// as for [`Backplane::put`].
    fn delete(&self, key: Arc<str>, if_rev: Option<u64>, live: u64) -> Pending;

    /// Whether `key` goes through the backplane: the server's own keys
    /// (`ipcbus.sys.*`) stay on each server.
    fn shares(&self, key: &str) -> bool {
        !key.starts_with("ipcbus.sys.")
    }
}

/// A write of another server (or of this one, seen again), from the
/// backplane's feed, for the key's mirror: applied if its rev is newer
/// than the key's.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct Mirror {
    /// The write's rev.
    pub rev: u64,
    /// The value; `None` for a deletion.
    pub value: Option<Bytes>,
    /// When the value was written, in ms since the Unix epoch.
    pub at_ms: u64,
    /// When the value expires, in ms since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// The value is tied to a server's lease.
    pub ephemeral: bool,
    /// The value is tied to this server's lease. Such a write that the key
    /// did not apply on its acknowledgement (its `set` was not confirmed
    /// in time) belongs to no session, and is deleted.
    pub own: bool,
    /// Held until the message is handled: the feed hands out a bounded
    /// number of them, so it waits while key actors are behind.
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
}
