//! The walks of wildcard subscriptions over the ordered key index: the
//! replay of a new subscription and the detach of ended ones.
//!
//! A walk visits only the keys that start with its pattern's literal
//! prefix (`a.b.>` walks `a.b.…`, `*.x` walks every key), [`CHUNK`] keys
//! per turn under the registry's read lock, and yields between turns, so
//! neither a `>` over the whole store nor hundreds of subscriptions that
//! match nothing hold the lock or the thread for long. A session's walks
//! take turns (`Outbox::walk_turn`), so one session runs one walk at a
//! time however many it asks for; each counts as a request in flight of
//! the session until it is over, so their number is bounded by
//! `max_inflight`.
//!
//! Between turns, keys may start or stop having an actor. The pattern is
//! in the index before the walk starts, so an actor started for a key the
//! walk has not reached yet takes the subscriber and replays the key's
//! value itself ([`Replay::owes`]); when the walk then reaches it, its
//! `Attach` finds the subscriber there and replays nothing (`walked`).

use super::{Entry, Registry};
use crate::messages::{Attach, Detach, Subscriber, SyncCountdown};
use crate::outbox::{Out, Outbox};
use ipcbus_protocol::{KeyRev, Pattern, PatternIndex};
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Keys a walk visits per turn, matching or not.
pub(crate) const CHUNK: usize = 1024;
/// Keys a replay delivers per turn at most: with the outbox's budget, this
/// bounds how far a replay can take an outbox past it (two turns' worth,
/// since a turn's `Attach`es land after it), well under `max_events`.
pub(crate) const MATCHES: usize = 64;

/// How far a wildcard subscription's replay has got.
#[derive(Debug)]
pub(crate) struct Replay {
    /// Replay only keys whose rev is greater.
    since: Option<u64>,
    progress: Mutex<Progress>,
}

#[derive(Debug)]
enum Progress {
    /// Every key up to and including this one has been visited (none yet if `None`).
    Running(Option<Arc<str>>),
    /// Every key has been visited, or the subscription has ended.
    Over,
}

impl Replay {
    pub(crate) fn new(since: Option<u64>) -> Replay {
        Replay {
            since,
            progress: Mutex::new(Progress::Running(None)),
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the subscriber is still owed `key`'s value at `rev`: the walk
    /// has not reached the key, and the rev is newer than `since`.
    pub(crate) fn owes(&self, key: &str, rev: u64) -> bool {
        let unvisited = match &*self.progress() {
            Progress::Running(None) => true,
            Progress::Running(Some(last)) => key > &**last,
            Progress::Over => false,
        };
        unvisited && self.since.is_none_or(|s| rev > s)
    }

    /// Marks the walk over: it visited every key, or (called from outside)
    /// the subscription ended and the walk stops at its next turn.
    pub(crate) fn end(&self) {
        *self.progress() = Progress::Over;
    }

    fn is_over(&self) -> bool {
        matches!(*self.progress(), Progress::Over)
    }
}

/// Starts a walk on this thread's arbiter; false if there is none (the
/// system is stopping and its actors with it: nothing is left to walk for).
/// Unlike `actix::spawn`, never panics, since a session's end starts a walk
/// from its `Drop`, which may run while the system is torn down.
pub(super) fn spawn(walk: impl std::future::Future<Output = ()> + Send + 'static) -> bool {
    actix::Arbiter::try_current().is_some_and(|arbiter| arbiter.spawn(walk))
}

/// The keys of `order` after `after` (or from `prefix` on) that start with `prefix`.
pub(super) fn range_after<'a>(
    order: &'a BTreeSet<Arc<str>>,
    prefix: &'a str,
    after: Option<&'a str>,
) -> impl Iterator<Item = &'a Arc<str>> + 'a {
    let lower = match after {
        Some(key) => Bound::Excluded(key),
        None => Bound::Included(prefix),
    };
    order
        .range::<str, _>((lower, Bound::Unbounded))
        .take_while(move |k| k.starts_with(prefix))
}

/// Replays every key matching `pattern` to `subscriber`, then queues
/// `synced` once every key actor it sent an `Attach` has replayed.
pub(super) async fn replay(
    registry: Registry,
    pattern: Pattern,
    subscriber: Subscriber,
    replay: Arc<Replay>,
) {
    let turn = subscriber.outbox.walk_turn().await;
    // The walk's own count ends last, so `synced` follows every replay.
    let sync = SyncCountdown::new(1, subscriber.clone());
    let mut after = None;
    loop {
        // At the pace the client reads: the last turn's replays have landed
        // and the outbox is back within its budget.
        sync.settled().await;
        subscriber.outbox.under_budget().await;
        if !registry.replay_turn(&pattern, &subscriber, &replay, &sync, &mut after) {
            break;
        }
        tokio::task::yield_now().await;
    }
    sync.done();
    drop(turn);
    subscriber.outbox.complete();
}

/// Sends `Detach` to every key with an actor that matches one of `subs`
/// (the wildcard subscriptions of `outbox` just taken out of the index).
pub(super) async fn detach(registry: Registry, outbox: Arc<Outbox>, subs: Vec<(Pattern, u64)>) {
    let turn = outbox.walk_turn().await;
    let mut index = PatternIndex::default();
    for (pattern, sub) in &subs {
        index.insert(pattern, *sub);
    }
    for prefix in prefixes(&subs) {
        let mut after = None;
        while registry.detach_turn(&index, &outbox, &prefix, &mut after) {
            tokio::task::yield_now().await;
        }
    }
    drop(turn);
    outbox.complete();
}

/// The literal prefixes of `subs` that no other one contains, in order.
fn prefixes(subs: &[(Pattern, u64)]) -> Vec<String> {
    let all: BTreeSet<&str> = subs.iter().map(|(p, _)| p.literal_prefix()).collect();
    let mut kept: Vec<String> = Vec::new();
    for prefix in all {
        if !kept.last().is_some_and(|k| prefix.starts_with(k.as_str())) {
            kept.push(prefix.to_owned());
        }
    }
    kept
}

impl Registry {
    /// One turn of a replay; false once it is over.
    fn replay_turn(
        &self,
        pattern: &Pattern,
        subscriber: &Subscriber,
        replay: &Replay,
        sync: &Arc<SyncCountdown>,
        after: &mut Option<Arc<str>>,
    ) -> bool {
        let state = self.read();
        if replay.is_over() || subscriber.outbox.is_closed() {
            return false;
        }
        let prefix = pattern.literal_prefix();
        let (mut visited, mut matched) = (0, 0);
        let from = after.take();
        for key in range_after(&state.order, prefix, from.as_deref()) {
            let hit = pattern.matches(key);
            if hit {
                matched += 1;
                match state.keys.get(key) {
                    Some(Entry::Active(handle)) => {
                        subscriber.outbox.begin();
                        sync.add();
                        handle.send(Attach {
                            subscriber: subscriber.clone(),
                            since: replay.since,
                            sync: Some(sync.clone()),
                            walked: true,
                        });
                    }
                    // A key at rest replays here and stays at rest: an
                    // actor started for it later takes the subscriber from
                    // the pattern index.
                    Some(Entry::Passive(rest)) if replay.owes(key, rest.rev()) => {
                        subscriber.outbox.push(Out::Event {
                            sub: subscriber.sub,
                            update: rest.update.clone(),
                        });
                    }
                    _ => {}
                }
            }
            visited += 1;
            let full = hit && subscriber.outbox.is_over_budget();
            if visited == CHUNK || matched == MATCHES || full {
                *replay.progress() = Progress::Running(Some(key.clone()));
                *after = Some(key.clone());
                return true;
            }
        }
        replay.end();
        false
    }

    /// One turn of a listing; false once it is done.
    pub(super) fn list_turn(
        &self,
        pattern: Option<&Pattern>,
        after: &mut Option<Arc<str>>,
        keys: &mut Vec<KeyRev<'static>>,
    ) -> bool {
        let state = self.read();
        let prefix = pattern.map_or("", Pattern::literal_prefix);
        let from = after.take();
        for (visited, key) in (1..).zip(range_after(&state.order, prefix, from.as_deref())) {
            if pattern.is_none_or(|p| p.matches(key)) {
                let rev = match state.keys.get(key) {
                    Some(Entry::Active(h)) => h.state.live_rev.load(Ordering::Acquire),
                    Some(Entry::Passive(rest)) => rest.rev(),
                    None => 0,
                };
                if rev != 0 {
                    keys.push(KeyRev {
                        key: key.to_string().into(),
                        rev,
                    });
                }
            }
            if visited == CHUNK {
                *after = Some(key.clone());
                return true;
            }
        }
        false
    }

    /// One turn of a detach walk over the keys starting with `prefix`;
    /// false once the range is done.
    fn detach_turn(
        &self,
        index: &PatternIndex<u64>,
        outbox: &Arc<Outbox>,
        prefix: &str,
        after: &mut Option<Arc<str>>,
    ) -> bool {
        let state = self.read();
        let mut visited = 0;
        let from = after.take();
        for key in range_after(&state.order, prefix, from.as_deref()) {
            if let Some(Entry::Active(handle)) = state.keys.get(key) {
                let mut first = None;
                index.for_each_match(key, |&sub| {
                    first.get_or_insert(sub);
                });
                // One `Detach` per key: it also takes every subscriber of
                // a closed outbox, and a live session ends one at a time.
                if let Some(sub) = first {
                    outbox.begin();
                    handle.send(Detach {
                        outbox: outbox.clone(),
                        sub,
                    });
                }
            }
            visited += 1;
            if visited == CHUNK {
                *after = Some(key.clone());
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_keep_the_widest_of_each_range() {
        let p = |s: &str| (Pattern::parse(s).expect(s), 1);
        let subs = [p("a.b.>"), p("a.>"), p("b.*.c"), p("b.x.>"), p("c.*")];
        assert_eq!(prefixes(&subs), ["a.", "b.", "c."]);
        let subs = [p("a.b.>"), p("*.x")];
        assert_eq!(prefixes(&subs), [""]);
    }
}
