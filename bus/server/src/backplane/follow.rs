//! The feed's changes into this server's mirror (docs/scaling.md §7):
//! every value and deletion goes to its key's actor as a [`Mirror`]
//! message; leases feed [`Owners`], whose verdicts are carried out by
//! [`reap`]. A replay (the feed's start) ends by forgetting the keys the
//! bucket no longer has ([`Follower::forget_missing`]).

use super::feed::{Change, Feed};
use super::lease::{reap, Owners};
use super::nats::NatsBackplane;
use ipcbus_actors::{Backplane, Mirror, Registry};
use ipcbus_protocol::KeyRev;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

/// Changes handed to key actors and not yet applied, at most: beyond it
/// the feed reads nothing more from NATS (whose flow control holds the
/// rest) until the actors catch up.
const IN_FLIGHT: usize = 1024;
/// How long the feed waits before it starts again after it ended.
const RESTART_PAUSE: Duration = Duration::from_secs(1);
/// How long a feed behind this server's own acknowledged writes may go
/// without delivering anything before it is started again. async-nats
/// recreates an ordered consumer by itself when it misses two heartbeats
/// (10 s), but may then retry for ever under a name NATS no longer
/// answers for (seen after a stream leader was killed mid-election); this
/// is past that recovery, and needs no traffic of its own: the lease is
/// written every `lease_ttl_ms / 4`.
const STALLED: Duration = Duration::from_secs(20);

/// Applies the feed to the mirror.
pub(crate) struct Follower {
    registry: Registry,
    backplane: NatsBackplane,
    owners: Owners,
    permits: Arc<Semaphore>,
    /// While a feed replays the bucket: the keys of this server's mirror
    /// it has brought. At most one entry per key the mirror holds.
    replayed: Option<HashSet<String>>,
}

impl Follower {
    pub(crate) fn new(registry: Registry, backplane: NatsBackplane) -> Follower {
        Follower {
            registry,
            backplane,
            owners: Owners::default(),
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
            replayed: None,
        }
    }

    /// Applies changes until the feed has delivered what the bucket held
    /// when it started, and the message at sequence `seen` at least (this
    /// server's first lease: every write NATS acknowledged before it is in
    /// the mirror, though the consumer may sit on a NATS replica a few
    /// messages behind the stream's leader), and waits until key actors
    /// have applied them; then deletes the keys of servers without a lease,
    /// and forgets keys the bucket no longer has (changes applied by an
    /// earlier try that failed).
    pub(crate) async fn catch_up(&mut self, feed: &mut Feed, seen: u64) -> anyhow::Result<()> {
        self.replayed = Some(HashSet::new());
        while !feed.caught_up() || feed.delivered() < seen {
            // What the replay brings is stored already: a feed that brings
            // nothing for this long has stalled (as in `run`).
            let Ok(next) = tokio::time::timeout(STALLED, feed.next()).await else {
                anyhow::bail!(
                    "the feed delivered nothing for {STALLED:?} while loading (at {}, of {seen} at least)",
                    feed.delivered()
                );
            };
            match next {
                Some(Ok(change)) => self.apply(change).await,
                Some(Err(e)) => return Err(e),
                None => anyhow::bail!("the connection to NATS closed"),
            }
        }
        // Answer no one before every change is applied, not just handed out.
        let all = u32::try_from(IN_FLIGHT).unwrap_or(u32::MAX);
        drop(self.permits.acquire_many(all).await);
        self.reap(self.owners.orphans());
        self.forget_missing(feed);
        Ok(())
    }

    /// Follows the feed until `stop` flips; starts it again if it ends,
    /// or if it has stalled: NATS acknowledged a write of this server's
    /// that the feed has not delivered, and the feed has delivered nothing
    /// for [`STALLED`]; or when this server's lease ran out (`lost`
    /// moves: the server was cut off from NATS for longer than its lease,
    /// maybe for longer than deletions stay in the bucket). A feed started
    /// again replays the bucket; once it has caught up, the keys of servers
    /// whose leases ran out meanwhile are deleted, and the keys the bucket
    /// no longer has are forgotten, as at startup.
    pub(crate) async fn run(
        mut self,
        mut feed: Feed,
        mut stop: watch::Receiver<bool>,
        mut lost: watch::Receiver<u64>,
    ) {
        let mut acked = self.backplane.acked();
        let mut failing = false;
        // A feed started again: the sequence its replay must reach before
        // the leases it rebuilt say which keys are orphans.
        let mut replaying: Option<u64> = None;
        // When the feed last delivered a change, started, or fell behind
        // what NATS acknowledged (an idle feed is not a stalled one). Its
        // errors are no progress: a consumer may fail again and again.
        let mut progress = Instant::now();
        let mut behind = false;
        // The lease ran out and the feed has not started again yet: tried
        // until it does (NATS may be electing leaders just then).
        let mut wanted = false;
        loop {
            if replaying.is_some_and(|seen| feed.caught_up() && feed.delivered() >= seen) {
                replaying = None;
                self.reap(self.owners.orphans());
                self.forget_missing(&feed);
            }
            let was_behind = std::mem::replace(&mut behind, *acked.borrow() > feed.delivered());
            if behind && !was_behind {
                progress = Instant::now();
            }
            let stalled = async {
                if behind {
                    tokio::time::sleep_until((progress + STALLED).into()).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let next = tokio::select! {
                _ = stop.changed() => return,
                _ = acked.changed() => continue,
                Ok(()) = lost.changed() => {
                    tracing::warn!(
                        "backplane: this server's lease had run out; starting the feed again, \
                         so that the mirror loses what the bucket lost meanwhile"
                    );
                    wanted = true;
                    continue;
                }
                () = std::future::ready(()), if wanted => {
                    wanted = !self.restart(&mut feed, &mut replaying).await;
                    progress = Instant::now();
                    continue;
                }
                () = stalled => {
                    tracing::warn!(
                        "backplane: the feed has delivered nothing for {STALLED:?}, though NATS \
                         acknowledged rev {} and the feed is at {}; starting it again",
                        *acked.borrow(),
                        feed.delivered()
                    );
                    self.restart(&mut feed, &mut replaying).await;
                    progress = Instant::now();
                    continue;
                }
                next = feed.next() => next,
            };
            match next {
                Some(Ok(change)) => {
                    progress = Instant::now();
                    failing = false;
                    self.apply(change).await;
                }
                Some(Err(e)) => {
                    if !failing {
                        tracing::warn!(
                            "backplane: the feed failed: {e}; it starts again by itself"
                        );
                    }
                    failing = true;
                }
                None => {
                    tracing::warn!("backplane: the feed ended; starting it again");
                    self.restart(&mut feed, &mut replaying).await;
                    progress = Instant::now();
                }
            }
        }
    }

    /// Starts a new feed in place of `feed`, after [`RESTART_PAUSE`]; a
    /// feed that cannot start is logged, and `feed` kept (false). `replaying`
    /// is then the sequence the new feed's replay must reach: the last this
    /// server wrote (as at startup, [`Self::catch_up`]).
    async fn restart(&mut self, feed: &mut Feed, replaying: &mut Option<u64>) -> bool {
        tokio::time::sleep(RESTART_PAUSE).await;
        match Feed::start(&self.backplane).await {
            Ok(new) => {
                *feed = new;
                *replaying = Some(*self.backplane.acked().borrow());
                self.replayed = Some(HashSet::new());
                // Rebuilt by the replay: a lease that ran out meanwhile is
                // then no longer alive.
                self.owners = Owners::default();
                true
            }
            Err(e) => {
                tracing::warn!("backplane: cannot start the feed: {e}");
                false
            }
        }
    }

    async fn apply(&mut self, change: Change) {
        let doomed = self.owners.apply(&change);
        self.reap(doomed);
        let (key, rev, value, at_ms, expires_at_ms, owner) = match change {
            Change::Value {
                key,
                rev,
                value,
                owner,
                expires_at_ms,
                at_ms,
            } => (key, rev, Some(value), at_ms, expires_at_ms, owner),
            Change::Deleted { key, rev } => (key, rev, None, 0, None, None),
            Change::Lease { .. } => return,
        };
        if !self.backplane.shares(&key) {
            return;
        }
        // Never closed: acquiring cannot fail.
        let permit = self.permits.clone().acquire_owned().await.ok();
        let msg = Mirror {
            rev,
            value,
            at_ms,
            expires_at_ms,
            ephemeral: owner.is_some(),
            own: owner.as_deref() == Some(self.backplane.node()),
            permit,
        };
        let known = self.registry.mirror(&key, msg);
        // Only the mirror's keys are compared: a deletion of a key it does
        // not have leaves nothing to note.
        if let (Some(replayed), true) = (&mut self.replayed, known) {
            replayed.insert(key);
        }
    }

    /// Ends a replay that has caught up with the bucket: deletes from the
    /// mirror each key with a rev at or below the feed's
    /// [`Feed::caught_at`] that the replay did not bring. The bucket has no
    /// message for such a key, not even the marker of its deletion: the
    /// marker left the bucket (after an hour or two, docs/scaling.md §7)
    /// while this server was not following it. A key written after
    /// `caught_at` is left alone: its deletion's marker, if any, would still
    /// be in the bucket, and the message that wrote it may not be delivered
    /// (replaced by a newer one on its way). The deletion takes the rev the
    /// feed has delivered up to: the marker's own is gone, and a later
    /// write of the key has a higher rev. (With nothing to deliver when it
    /// started, not even this server's lease, the feed caught up at 0, and
    /// nothing is forgotten.)
    fn forget_missing(&mut self, feed: &Feed) {
        let Some(replayed) = self.replayed.take() else {
            return;
        };
        let (upto, at) = (feed.caught_at(), feed.delivered());
        let gone: Vec<KeyRev<'static>> = self
            .registry
            .live_keys()
            .into_iter()
            .filter(|k| {
                k.rev <= upto && self.backplane.shares(&k.key) && !replayed.contains(&*k.key)
            })
            .collect();
        if gone.is_empty() {
            return;
        }
        tracing::warn!(
            keys = gone.len(),
            at,
            "backplane: forgetting keys the bucket no longer has (deleted while this server's \
             feed was away, their deletions since gone from the bucket)"
        );
        for KeyRev { key, .. } in gone {
            let msg = Mirror {
                rev: at,
                value: None,
                at_ms: 0,
                expires_at_ms: None,
                ephemeral: false,
                own: false,
                permit: None,
            };
            self.registry.mirror(&key, msg);
        }
    }

    fn reap(&self, keys: Vec<(String, u64)>) {
        if keys.is_empty() {
            return;
        }
        tracing::info!(
            keys = keys.len(),
            "backplane: deleting the ephemeral keys of a gone server"
        );
        let backplane = self.backplane.clone();
        tokio::spawn(async move { reap(&backplane, keys).await });
    }
}
