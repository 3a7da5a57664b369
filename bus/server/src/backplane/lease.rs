//! Leases: ephemeral keys go away when the server that holds their session
//! dies (docs/scaling.md §6). Each server keeps its lease, the bucket entry
//! `n.<server id>` with a TTL, written again four times per TTL; [`Owners`]
//! follows from the feed which server owns which ephemeral key and which
//! leases live, and names the keys to delete when a lease runs out.

use super::feed::Change;
use super::nats::{Bucket, NatsBackplane};
use ipcbus_actors::backplane::WriteError;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long the bucket must be missing before the server stops: NATS
/// answers "not found" only for a stream it does not have, but a cluster
/// between leaders is given time all the same.
const GONE_FOR: Duration = Duration::from_secs(30);

/// Writes this server's lease every `ttl / 4` until the task is aborted.
/// `last` is the sequence of the lease written at startup. A write that
/// fails is logged and tried again at the next turn: the lease outlives
/// three failed writes in a row. If it ran out all the same (the server
/// was cut off from NATS for longer), the other servers have deleted this
/// server's ephemeral keys: `lost` moves, once the lease is written again,
/// and the sessions close so that their clients set their ephemeral keys
/// again.
///
/// After each write it also checks that the bucket is the one this server
/// mirrors, and returns (the server then stops with the error) when it was
/// made again, whose revs start over, or has been gone for [`GONE_FOR`];
/// from then on the backplane takes no more writes.
pub async fn keep_lease(
    backplane: NatsBackplane,
    ttl: Duration,
    mut last: u64,
    lost: watch::Sender<u64>,
) -> anyhow::Error {
    let mut ticks = tokio::time::interval(ttl / 4);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut ran_out = false;
    let mut gone_since = None;
    loop {
        ticks.tick().await;
        match backplane.write_lease(ttl, last, &mut ran_out).await {
            Ok(seq) => {
                last = seq;
                if failing {
                    tracing::info!("backplane: lease written again");
                    failing = false;
                }
                if std::mem::take(&mut ran_out) {
                    tracing::warn!(
                        "backplane: this server's lease had run out (cut off from NATS for \
                         longer than lease_ttl_ms), so the other servers deleted its sessions' \
                         ephemeral keys; closing the sessions, whose clients set them again"
                    );
                    lost.send_modify(|n| *n += 1);
                }
            }
            Err(e) if !failing => {
                tracing::warn!("backplane: cannot write this server's lease: {e}");
                failing = true;
            }
            Err(_) => {}
        }
        let bucket = backplane.check_bucket().await;
        match bucket {
            Some(Bucket::Replaced) => {
                backplane.fence();
                return anyhow::anyhow!(
                    "backplane: the bucket {:?} was deleted and made again under this server, \
                     whose mirror is of the old one: stopping (start it again to follow the \
                     new one; docs/scaling.md §8)",
                    backplane.bucket()
                );
            }
            Some(Bucket::Gone) if gone_since.is_some_and(|t: Instant| t.elapsed() >= GONE_FOR) => {
                backplane.fence();
                return anyhow::anyhow!(
                    "backplane: the bucket {:?} was deleted under this server: stopping (it is \
                     made again when a server starts; docs/scaling.md §8)",
                    backplane.bucket()
                );
            }
            Some(Bucket::Gone) => {
                gone_since.get_or_insert_with(Instant::now);
            }
            _ => gone_since = None,
        }
    }
}

/// Deletes `keys` (each at the rev its owner wrote): a key written since,
/// or deleted already (another server reaped it first), is left alone.
pub async fn reap(backplane: &NatsBackplane, keys: Vec<(String, u64)>) {
    for (key, rev) in keys {
        match backplane.delete(&key, Some(rev), rev).await {
            Ok(_) | Err(WriteError::Conflict { .. } | WriteError::NotFound) => {}
            Err(e) => tracing::warn!("backplane: cannot delete {key} of a gone server: {e}"),
        }
    }
}

/// Which server owns which ephemeral key, and which servers have a lease,
/// as the feed tells. Holds one entry per ephemeral key and per server.
#[derive(Debug, Default)]
pub struct Owners {
    /// Key → (owner, rev of the owner's write).
    by_key: HashMap<String, (String, u64)>,
    /// Owner → its keys.
    by_node: HashMap<String, HashSet<String>>,
    /// Servers whose lease was seen and has not run out.
    alive: HashSet<String>,
}

impl Owners {
    /// Takes in one change of the feed; returns the keys to delete because
    /// their owner's lease ran out.
    pub fn apply(&mut self, change: &Change) -> Vec<(String, u64)> {
        match change {
            Change::Value {
                key,
                rev,
                owner: Some(owner),
                ..
            } => {
                self.forget(key);
                self.by_key.insert(key.clone(), (owner.clone(), *rev));
                self.by_node
                    .entry(owner.clone())
                    .or_default()
                    .insert(key.clone());
                Vec::new()
            }
            Change::Value { key, .. } | Change::Deleted { key, .. } => {
                self.forget(key);
                Vec::new()
            }
            Change::Lease {
                node, alive: true, ..
            } => {
                self.alive.insert(node.clone());
                Vec::new()
            }
            Change::Lease {
                node, alive: false, ..
            } => {
                self.alive.remove(node);
                self.keys_of(node)
            }
        }
    }

    /// Once the feed has caught up: the keys whose owner has no lease (it
    /// ran out while no server watched, or before this one started).
    pub fn orphans(&self) -> Vec<(String, u64)> {
        self.by_node
            .keys()
            .filter(|node| !self.alive.contains(*node))
            .flat_map(|node| self.keys_of(node))
            .collect()
    }

    fn keys_of(&self, node: &str) -> Vec<(String, u64)> {
        let Some(keys) = self.by_node.get(node) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| self.by_key.get(k).map(|(_, rev)| (k.clone(), *rev)))
            .collect()
    }

    fn forget(&mut self, key: &str) {
        if let Some((owner, _)) = self.by_key.remove(key) {
            if let Some(keys) = self.by_node.get_mut(&owner) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_node.remove(&owner);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn value(key: &str, rev: u64, owner: Option<&str>) -> Change {
        Change::Value {
            key: key.into(),
            rev,
            value: Bytes::from_static(b"\x01"),
            owner: owner.map(Into::into),
            expires_at_ms: None,
            at_ms: 0,
        }
    }

    fn lease(node: &str, alive: bool) -> Change {
        Change::Lease {
            node: node.into(),
            alive,
            rev: 0,
        }
    }

    #[test]
    fn a_lease_that_runs_out_names_its_servers_keys_at_their_revs() {
        let mut o = Owners::default();
        assert!(o.apply(&lease("a", true)).is_empty());
        assert!(o.apply(&lease("b", true)).is_empty());
        o.apply(&value("x", 1, Some("a")));
        o.apply(&value("y", 2, Some("a")));
        o.apply(&value("z", 3, Some("b")));
        // Taken over by a plain write, or deleted: no longer a's.
        o.apply(&value("y", 4, None));
        o.apply(&value("w", 5, Some("a")));
        o.apply(&Change::Deleted {
            key: "w".into(),
            rev: 6,
        });
        // Handed to b.
        o.apply(&value("v", 7, Some("a")));
        o.apply(&value("v", 8, Some("b")));
        assert_eq!(o.apply(&lease("a", false)), [("x".to_owned(), 1)]);
        let mut b = o.apply(&lease("b", false));
        b.sort();
        assert_eq!(b, [("v".to_owned(), 8), ("z".to_owned(), 3)]);
    }

    #[test]
    fn keys_of_servers_without_a_lease_are_orphans() {
        let mut o = Owners::default();
        o.apply(&lease("a", true));
        o.apply(&value("x", 1, Some("a")));
        o.apply(&value("y", 2, Some("gone")));
        assert_eq!(o.orphans(), [("y".to_owned(), 2)]);
    }
}
