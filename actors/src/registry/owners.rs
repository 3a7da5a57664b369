//! Which keys each session owns through an ephemeral `set`: kept by the
//! key actors as ownership changes, so that a session's end finds exactly
//! the keys it still owns, and the index is bounded by the live keys
//! whatever a session set and deleted before.

use super::Registry;
use crate::messages::Release;
use crate::outbox::Outbox;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, MutexGuard};

impl Registry {
    /// The session of `outbox` has ended: deletes the keys it owns
    /// through an ephemeral `set` (unless they were written since).
    /// Close the outbox first, so that no key can be claimed for it after.
    pub fn release_owned(&self, outbox: &Outbox) {
        let owner = outbox.id();
        let keys = self.lock_owners().remove(&owner).unwrap_or_default();
        for key in keys {
            let _gone = self.send(&key, false, Release { owner });
        }
    }

    /// Records that `key` belongs to the session of `outbox`; false if that
    /// session has ended (its outbox is closed), which then owns nothing.
    pub(crate) fn claim(&self, key: &Arc<str>, outbox: &Outbox) -> bool {
        let mut owners = self.lock_owners();
        // Under the lock: `release_owned` closes first, then takes the set.
        if outbox.is_closed() {
            return false;
        }
        owners.entry(outbox.id()).or_default().insert(key.clone());
        true
    }

    /// Records again that `key` belongs to session `owner`, after a write
    /// that took it away was undone. If that session has ended since, its
    /// `Release` is on its way to the key and deletes it.
    pub(crate) fn reclaim(&self, key: &Arc<str>, owner: u64) {
        self.lock_owners()
            .entry(owner)
            .or_default()
            .insert(key.clone());
    }

    /// Forgets that `key` belongs to session `owner`.
    pub(crate) fn unclaim(&self, key: &str, owner: u64) {
        let mut owners = self.lock_owners();
        if let Some(keys) = owners.get_mut(&owner) {
            keys.remove(key);
            if keys.is_empty() {
                owners.remove(&owner);
            }
        }
    }

    /// Whether session `owner` still owns `key` (it has not ended).
    pub(crate) fn owns(&self, owner: u64, key: &str) -> bool {
        self.lock_owners()
            .get(&owner)
            .is_some_and(|keys| keys.contains(key))
    }

    /// Keys owned through ephemeral `set`s, over every session.
    pub fn owned_keys(&self) -> usize {
        self.lock_owners().values().map(HashSet::len).sum()
    }

    fn lock_owners(&self) -> MutexGuard<'_, HashMap<u64, HashSet<Arc<str>>>> {
        self.0.owners.lock().unwrap_or_else(|p| p.into_inner())
    }
}
