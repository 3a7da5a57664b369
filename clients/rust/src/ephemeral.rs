//! The ephemeral keys a client set, so that it can set them again after a
//! reconnect: the server deletes a connection's ephemeral keys when that
//! connection ends, but to the program that set them, nothing ended (as
//! the Python client's `_ephemeral.py`).
//!
//! The write after a reconnect is conditional: it happens only if the key
//! has no value (the server deleted it, or restarted), or still holds this
//! client's own last write (the server has not yet noticed that the old
//! connection is gone; the new write takes the key over). If another
//! client wrote the key meanwhile, it is left alone and forgotten. Bounded
//! by the keys the program sets ephemeral: one entry each.

use crate::conn::Progress;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One ephemeral write: what to write again, and what the server said.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    /// Tells this claim from a later one of the same key.
    generation: u64,
    pub(crate) value: Bytes,
    /// The rev of the write once acknowledged.
    pub(crate) rev: Option<u64>,
    /// When a `ttl` runs out.
    deadline: Option<Instant>,
    /// The set's request: while it waits to be sent, a reconnect leaves the
    /// key to it.
    progress: Arc<Progress>,
}

/// A claim to write again, with what is left of its `ttl`.
pub(crate) struct Again {
    pub(crate) key: String,
    pub(crate) claim: Claim,
    pub(crate) ttl: Option<Duration>,
}

#[derive(Debug, Default)]
pub(crate) struct Ephemeral {
    inner: Mutex<(u64, HashMap<String, Claim>)>,
}

impl Ephemeral {
    fn lock(&self) -> MutexGuard<'_, (u64, HashMap<String, Claim>)> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an ephemeral set about to be sent; returns its generation
    /// and the claim it replaces (to put back if the write is refused).
    pub(crate) fn begin(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        progress: Arc<Progress>,
    ) -> (u64, Option<Claim>) {
        let mut g = self.lock();
        g.0 += 1;
        let claim = Claim {
            generation: g.0,
            value,
            rev: None,
            // As sent (`ttl_ms`); a ttl past the clock's range is none.
            deadline: ttl.and_then(|t| {
                Instant::now().checked_add(Duration::from_millis(crate::client::ttl_ms(t)))
            }),
            progress,
        };
        (g.0, g.1.insert(key.to_owned(), claim))
    }

    /// The server acknowledged the claim `generation` of `key` as `rev`.
    pub(crate) fn acked(&self, key: &str, generation: u64, rev: u64) {
        if let Some(c) = self.lock().1.get_mut(key) {
            if c.generation == generation {
                c.rev = Some(rev);
            }
        }
    }

    /// The write was not applied: the key is as it was.
    pub(crate) fn refused(&self, key: &str, generation: u64, previous: Option<Claim>) {
        let mut g = self.lock();
        if g.1.get(key).is_some_and(|c| c.generation == generation) {
            match previous {
                Some(previous) => g.1.insert(key.to_owned(), previous),
                None => g.1.remove(key),
            };
        }
    }

    /// This client deleted the key or set it non-ephemeral (or, with a
    /// `generation`, that claim cannot be restored).
    pub(crate) fn forget(&self, key: &str, generation: Option<u64>) {
        let mut g = self.lock();
        if generation.is_none_or(|n| g.1.get(key).is_some_and(|c| c.generation == n)) {
            g.1.remove(key);
        }
    }

    /// Every claim to write again now; those whose `ttl` ran out are
    /// forgotten, as the server would have deleted them anyway. A claim
    /// whose set has not been sent yet is left out: that set is still to
    /// come, on the new connection.
    pub(crate) fn again(&self) -> Vec<Again> {
        let now = Instant::now();
        let mut g = self.lock();
        g.1.retain(|_, c| c.deadline.is_none_or(|d| d > now));
        g.1.iter()
            .filter(|(_, claim)| !claim.progress.is_queued())
            .map(|(key, claim)| Again {
                key: key.clone(),
                claim: claim.clone(),
                ttl: claim.deadline.map(|d| d - now),
            })
            .collect()
    }

    /// The outcome of writing `again` on a new connection.
    pub(crate) fn settle(&self, again: &Again, result: Result<u64, String>) {
        match result {
            Ok(rev) => self.acked(&again.key, again.claim.generation, rev),
            Err(why) => {
                tracing::warn!(
                    "ipcbus: ephemeral key {} not set again after reconnecting ({why}); forgetting it",
                    again.key
                );
                self.forget(&again.key, Some(again.claim.generation));
            }
        }
    }
}
