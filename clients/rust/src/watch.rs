//! `Watch`: a local mirror of every key matching a pattern, kept current by
//! push. Reads are local: no round trip.

use crate::error::{Error, Result};
use crate::subscription::{Event, Subscription};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A value in a [`Watch`].
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The value, as MessagePack.
    pub value: Bytes,
    /// The rev of its write.
    pub rev: u64,
}

type Map = Arc<RwLock<HashMap<String, Entry>>>;

/// A live map of the keys matching a pattern. Dropping it unsubscribes.
/// After a reconnect it is correct again once the replay is in: keys
/// deleted meanwhile are removed, changed ones updated.
#[derive(Debug)]
pub struct Watch {
    map: Map,
    /// Counts applied events; `changed` waits on it.
    version: watch::Receiver<u64>,
    synced: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Watch {
    pub(crate) fn start(mut sub: Subscription) -> Watch {
        let map = Map::default();
        let (version_tx, version) = watch::channel(0u64);
        let (synced_tx, synced) = watch::channel(false);
        let mirror = map.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = sub.next().await {
                {
                    let mut m = mirror.write().unwrap_or_else(PoisonError::into_inner);
                    match event {
                        Event::Value { key, rev, value } => {
                            m.insert(key, Entry { value, rev });
                        }
                        Event::Deleted { key, .. } => {
                            m.remove(&key);
                        }
                        Event::Synced => {
                            let _ = synced_tx.send(true);
                        }
                    }
                }
                version_tx.send_modify(|v| *v += 1);
            }
        });
        Watch {
            map,
            version,
            synced,
            task,
        }
    }

    /// The value of `key`, decoded; `None` if the key is absent.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<Result<T>> {
        self.get_raw(key)
            .map(|e| rmp_serde::from_slice(&e.value).map_err(Into::into))
    }

    /// The raw entry of `key`.
    pub fn get_raw(&self, key: &str) -> Option<Entry> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// The keys currently present, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Resolves once the initial replay is complete (immediately after that).
    /// Fails with [`Error::Unavailable`] if the client was closed first.
    pub async fn synced(&self) -> Result<()> {
        let mut rx = self.synced.clone();
        rx.wait_for(|s| *s)
            .await
            .map(|_| ())
            .map_err(|_| Error::unavailable("closed before the watch was synced"))
    }

    /// A future that resolves once a change made after this call has been
    /// applied to the mirror. Take it before the action whose effect you
    /// wait for, so the change cannot slip past.
    pub fn changed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.version.clone();
        rx.mark_unchanged();
        async move {
            let _ = rx.changed().await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
