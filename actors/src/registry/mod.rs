//! `Registry`: finds and creates key actors, keeps the wildcard pattern
//! index and the ordered key index, and owns the store-wide rev counter.
//!
//! Messages to key actors are sent while holding the registry lock (read for
//! running actors, write for new ones). That is what makes creation,
//! subscription, passivation and retirement race-free: a key actor leaves
//! the map (or hands its value back as a [`Passive`] entry) only under the
//! write lock and only when no message for it is queued, so no message is
//! ever sent to a stopped actor, and an actor is started with every
//! matching wildcard subscription already attached.
//!
//! Wildcard subscriptions replay, and unsubscriptions detach, by walking
//! the ordered key index in chunks (`walk`), so no lock is held for more
//! than one chunk and other sessions run between chunks. `owners` keeps
//! the keys each session owns through an ephemeral `set`.

mod owners;
mod walk;

pub(crate) use walk::Replay;

use crate::backplane::{Backplane, Mirror};
use crate::key_actor::KeyActor;
use crate::messages::{Attach, Detach, Subscriber, SyncCountdown};
use crate::outbox::{Out, Outbox};
use crate::passive::{KeyMessage, Passive};
use crate::store::{Record, Store};
use crate::update::{Update, Written};
use actix::prelude::*;
use ipcbus_protocol::{KeyRev, Pattern, PatternIndex};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Counters for health and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events dropped for slow subscribers (newer events of the same key replaced them).
    pub skipped: AtomicU64,
    /// Open sessions.
    pub sessions: AtomicUsize,
    /// Keys that currently have a value.
    pub live_keys: AtomicUsize,
    /// Sessions closed because they fell `max_events` behind.
    pub overflows: AtomicU64,
    /// Values removed: a `del`, an expired TTL, or the end of an ephemeral key's session.
    pub deletes: AtomicU64,
    /// Events written to subscribers' sockets (counted by the sessions, per batch).
    pub deliveries: AtomicU64,
    /// Open subscriptions, over every session.
    pub subscriptions: AtomicUsize,
    /// Bytes waiting in outboxes; each outbox reports in steps (`outbox`).
    pub outbox_bytes: AtomicUsize,
}

impl Stats {
    /// Values written (each `set` applied, by any client or the Kodi
    /// bridge) since `first_rev`: every write and delete takes one rev, so
    /// this needs no counter of its own on the write path.
    pub fn writes(&self, first_rev: u64, last_rev: u64) -> u64 {
        last_rev
            .saturating_sub(first_rev)
            .saturating_sub(self.deletes.load(Ordering::Relaxed))
    }

    /// Counts a new session unless `max` are open already.
    pub fn try_open_session(&self, max: usize) -> bool {
        self.sessions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }
}

/// What the registry and a key actor share.
#[derive(Debug, Default)]
pub(crate) struct KeyState {
    /// Messages sent to the actor and not yet handled.
    pub(crate) queued: AtomicUsize,
    /// Rev of the live value; 0 when the key has none.
    pub(crate) live_rev: AtomicU64,
}

#[derive(Clone)]
struct KeyHandle {
    addr: Addr<KeyActor>,
    state: Arc<KeyState>,
}

impl KeyHandle {
    fn send<M>(&self, msg: M)
    where
        M: KeyMessage,
        KeyActor: Handler<M>,
    {
        self.state.queued.fetch_add(1, Ordering::AcqRel);
        // Unbounded by actix, but bounded by the sessions' in-flight limit:
        // each queued message is a request some session is waiting on.
        self.addr.do_send(msg);
    }
}

/// A key the registry knows: with its actor, or at rest without one. The
/// handle is boxed so that the entry, and each of the many keys at rest,
/// is as small as a `Passive`.
enum Entry {
    Active(Box<KeyHandle>),
    Passive(Passive),
}

#[derive(Default)]
struct State {
    keys: HashMap<Arc<str>, Entry>,
    /// The keys of `keys`, in order: a wildcard's walk visits only those
    /// that start with the pattern's literal prefix.
    order: BTreeSet<Arc<str>>,
    /// Subscriptions with a wildcard; exact ones live only in their key actor.
    patterns: PatternIndex<Wild>,
}

/// A wildcard subscription, as the pattern index files it.
struct Wild {
    subscriber: Subscriber,
    /// How far its replay has got.
    replay: Arc<Replay>,
}

impl State {
    /// The live subscribers whose pattern matches `key`. Those whose replay
    /// has not reached `key` yet get `current` (the value the key had at
    /// rest) now, as the replay would have given it.
    fn subscribers_of(&self, key: &Arc<str>, current: Option<&Arc<Update>>) -> Vec<Subscriber> {
        let mut subscribers = Vec::new();
        self.patterns.for_each_match(key, |wild| {
            let s = &wild.subscriber;
            if s.outbox.is_closed() {
                return;
            }
            if let Some(update) = current.filter(|u| wild.replay.owes(key, u.rev)) {
                s.outbox.push(Out::Event {
                    sub: s.sub,
                    update: update.clone(),
                });
            }
            subscribers.push(s.clone());
        });
        subscribers
    }

    fn insert(&mut self, key: Arc<str>, entry: Entry) {
        if self.keys.insert(key.clone(), entry).is_none() {
            self.order.insert(key);
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.keys.remove(key)?;
        self.order.remove(key);
        Some(entry)
    }
}

struct Inner {
    state: RwLock<State>,
    /// The keys each session (outbox id) owns through an ephemeral `set`,
    /// kept by the key actors: bounded by the live keys, whatever a session
    /// set and deleted before.
    owners: Mutex<HashMap<u64, HashSet<Arc<str>>>>,
    rev: Arc<AtomicU64>,
    stats: Arc<Stats>,
    store: Option<Store>,
    options: RegistryOptions,
    /// The store shared with other servers, if any (docs/scaling.md).
    backplane: Option<Arc<dyn Backplane>>,
    /// With a backplane: what this server deleted ahead of its feed.
    ahead: Mutex<Ahead>,
}

/// Keys this server deleted (at that rev) before its feed brought their
/// earlier writes; see [`Registry::mirror`]. An entry is made only while
/// the feed has not reached the deletion, and goes when it does: there are
/// at most as many as deletions the feed has still to bring.
#[derive(Default)]
struct Ahead {
    keys: HashMap<Arc<str>, u64>,
    /// The highest rev the feed has brought.
    seen: u64,
}

/// Store-wide settings.
#[derive(Debug, Clone, Copy)]
pub struct RegistryOptions {
    /// Keys with a value; a `set` that would create one more fails with `limit`.
    pub max_keys: usize,
    /// Persist every non-ephemeral write.
    pub persist_all: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            max_keys: usize::MAX,
            persist_all: false,
        }
    }
}

/// The key map. Cheap to clone; every session holds one.
#[derive(Clone)]
pub struct Registry(Arc<Inner>);

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// An empty in-memory store; the first write gets rev 1 and `persist`
    /// is ignored.
    pub fn new() -> Registry {
        Registry::build(Arc::default(), None, RegistryOptions::default(), None)
    }

    /// A mirror of a store shared with other servers: writes go through
    /// `backplane`, which hands out the revs; its feed brings every write
    /// in with [`Registry::mirror`]. No data file.
    pub fn with_backplane(backplane: Arc<dyn Backplane>, options: RegistryOptions) -> Registry {
        Registry::build(Arc::default(), None, options, Some(backplane))
    }

    /// A store backed by `store`, which also supplies the rev counter.
    /// Call [`Registry::restore`] with what the store held.
    pub fn with_store(store: Store, options: RegistryOptions) -> Registry {
        Registry::build(store.rev_counter(), Some(store), options, None)
    }

    fn build(
        rev: Arc<AtomicU64>,
        store: Option<Store>,
        options: RegistryOptions,
        backplane: Option<Arc<dyn Backplane>>,
    ) -> Registry {
        Registry(Arc::new(Inner {
            state: RwLock::default(),
            owners: Mutex::default(),
            rev,
            stats: Arc::default(),
            store,
            options,
            backplane,
            ahead: Mutex::default(),
        }))
    }

    /// Takes in the persisted keys: at rest, or with an actor when an
    /// expiry must run. Call once, before serving, inside the actix system.
    pub fn restore(&self, keys: Vec<(String, Record)>) {
        let mut state = self.write();
        for (key, record) in keys {
            let key: Arc<str> = key.into();
            self.0.stats.live_keys.fetch_add(1, Ordering::Relaxed);
            // The data file keeps no write time: the age is not known.
            let written = Written::new(0, record.expires_at_ms, true, false);
            let update = Update::new(key.clone(), record.rev, Some(record.value), written);
            let rest = Passive {
                update: Arc::new(update),
                owner: None,
                persisted: true,
            };
            let entry = match record.expires_at_ms {
                None => Entry::Passive(rest),
                Some(at) => {
                    let mut actor = self.actor(&key, rest, &state);
                    actor.expires_at_ms = Some(at);
                    Entry::Active(self.run(actor))
                }
            };
            state.insert(key, entry);
        }
    }

    pub(crate) fn store(&self) -> Option<&Store> {
        self.0.store.as_ref()
    }

    /// The backplane `key` goes through, if any.
    pub(crate) fn backplane(&self, key: &str) -> Option<&Arc<dyn Backplane>> {
        self.0.backplane.as_ref().filter(|b| b.shares(key))
    }

    /// Whether `key` goes through a backplane: a `del` of it must reach
    /// its actor even when this server has no value (another server may
    /// have written one a moment ago).
    pub fn is_shared(&self, key: &str) -> bool {
        self.backplane(key).is_some()
    }

    /// A write the backplane's feed brings, for the key's mirror: a value
    /// starts the key's actor if needed; a deletion of a key this server
    /// does not have is nothing to forget. Returns whether the write went
    /// to a key the mirror has (false: such a deletion, or an earlier
    /// write of a key this server has deleted since).
    pub fn mirror(&self, key: &str, msg: Mirror) -> bool {
        {
            let mut ahead = self.0.ahead.lock().unwrap_or_else(|p| p.into_inner());
            ahead.seen = ahead.seen.max(msg.rev);
            if let Some(&deleted) = ahead.keys.get(key) {
                if msg.rev < deleted {
                    // An earlier write of a key this server has deleted since.
                    return false;
                }
                ahead.keys.remove(key);
            }
        }
        let create = msg.value.is_some();
        self.send(key, create, msg).is_ok()
    }

    /// Notes that this server deleted `key` at `rev`, ahead of its feed.
    pub(crate) fn deleted_ahead(&self, key: &Arc<str>, rev: u64) {
        let mut ahead = self.0.ahead.lock().unwrap_or_else(|p| p.into_inner());
        if rev > ahead.seen {
            ahead.keys.insert(key.clone(), rev);
        }
    }

    /// Moves the rev counter up to `rev`, a rev the backplane handed out.
    pub(crate) fn saw_rev(&self, rev: u64) {
        self.0.rev.fetch_max(rev, Ordering::AcqRel);
    }

    /// Whether `max_keys` keys have a value.
    pub(crate) fn is_full(&self) -> bool {
        self.0.stats.live_keys.load(Ordering::Acquire) >= self.0.options.max_keys
    }

    pub(crate) fn persist_all(&self) -> bool {
        self.0.options.persist_all
    }

    pub(crate) fn max_keys(&self) -> usize {
        self.0.options.max_keys
    }

    /// The shared counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.0.stats
    }

    /// The rev of the last write.
    pub fn last_rev(&self) -> u64 {
        self.0.rev.load(Ordering::Acquire)
    }

    pub(crate) fn next_rev(&self) -> u64 {
        self.0.rev.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Counts one more key with a value, unless `max_keys` are live.
    pub(crate) fn add_live_key(&self) -> bool {
        let max = self.0.options.max_keys;
        self.0
            .stats
            .live_keys
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Counts again a key whose deletion the data file refused (over
    /// `max_keys` if it must: the key was there).
    pub(crate) fn restore_live_key(&self) {
        self.0.stats.live_keys.fetch_add(1, Ordering::AcqRel);
    }

    /// Why the data file cannot be written at the moment, if it cannot.
    pub fn storage_trouble(&self) -> Option<Arc<str>> {
        self.0.store.as_ref()?.trouble()
    }

    pub(crate) fn remove_live_key(&self) {
        self.0.stats.live_keys.fetch_sub(1, Ordering::AcqRel);
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Nothing panics while holding the lock; recover from poison anyway.
        self.0.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.0.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `msg` to the actor of `key`. A key at rest answers what it
    /// can itself ([`KeyMessage::at_rest`]) and otherwise gets its actor
    /// back. An unknown key gets a new actor on the current arbiter when
    /// `create` is set; otherwise `msg` is handed back.
    pub fn send<M>(&self, key: &str, create: bool, msg: M) -> Result<(), M>
    where
        M: KeyMessage,
        KeyActor: Handler<M>,
    {
        let msg = match self.read().keys.get_key_value(key) {
            Some((_, Entry::Active(handle))) => {
                handle.send(msg);
                return Ok(());
            }
            Some((key, Entry::Passive(rest))) => match msg.at_rest(key, rest) {
                Ok(()) => return Ok(()),
                Err(msg) => msg,
            },
            None if !create => return Err(msg),
            None => msg,
        };
        let mut guard = self.write();
        let state = &mut *guard;
        let key: Arc<str> = match state.keys.get_key_value(key) {
            Some((_, Entry::Active(handle))) => {
                handle.send(msg);
                return Ok(());
            }
            Some((key, Entry::Passive(_))) => key.clone(),
            // Retired between the two locks.
            None if !create => return Err(msg),
            None => key.into(),
        };
        let (handle, new) = match state.keys.remove(&key) {
            Some(Entry::Active(handle)) => (handle, false),
            Some(Entry::Passive(rest)) => (self.run(self.actor(&key, rest, state)), false),
            None => {
                let subscribers = state.subscribers_of(&key, None);
                let actor = KeyActor::new(key.clone(), self.clone(), subscribers);
                (self.run(actor), true)
            }
        };
        handle.send(msg);
        if new {
            state.insert(key, Entry::Active(handle));
        } else {
            // Already in the ordered index.
            state.keys.insert(key, Entry::Active(handle));
        }
        Ok(())
    }

    /// An actor for a key at rest, with the wildcard subscribers that match it.
    fn actor(&self, key: &Arc<str>, rest: Passive, state: &State) -> KeyActor {
        let subscribers = state.subscribers_of(key, Some(&rest.update));
        let mut actor = KeyActor::new(key.clone(), self.clone(), subscribers);
        actor.owner = rest.owner;
        actor.persisted = rest.persisted;
        actor.state.live_rev.store(rest.rev(), Ordering::Release);
        actor.current = Some(rest.update);
        actor
    }

    /// Starts `actor` on the current arbiter.
    fn run(&self, actor: KeyActor) -> Box<KeyHandle> {
        let state = actor.state.clone();
        Box::new(KeyHandle {
            addr: actor.start(),
            state,
        })
    }

    /// Subscribes to a key or pattern. Every matching key replays to the
    /// subscriber, then `synced` is queued; later writes follow. The caller
    /// must have queued the `sub` reply first. Each message to a key actor
    /// counts as a request in flight of the subscriber's session, and so
    /// does a wildcard's walk of the key index until it has finished.
    pub fn subscribe(&self, pattern: &Pattern, subscriber: &Subscriber, since: Option<u64>) {
        if let Some(key) = pattern.exact_key() {
            subscriber.outbox.begin();
            let msg = Attach {
                subscriber: subscriber.clone(),
                since,
                sync: Some(SyncCountdown::new(1, subscriber.clone())),
                walked: false,
            };
            let _created = self.send(key, true, msg);
            return;
        }
        let replay = Arc::new(Replay::new(since));
        let wild = Wild {
            subscriber: subscriber.clone(),
            replay: replay.clone(),
        };
        // From here every key actor that starts takes the subscriber.
        self.write().patterns.insert(pattern, wild);
        subscriber.outbox.begin();
        let walk = walk::replay(self.clone(), pattern.clone(), subscriber.clone(), replay);
        if !walk::spawn(walk) {
            subscriber.outbox.complete();
        }
    }

    /// Ends a subscription made with [`Registry::subscribe`].
    pub fn unsubscribe(&self, pattern: &Pattern, outbox: &Arc<Outbox>, sub: u64) {
        self.unsubscribe_all(outbox, &[(pattern.clone(), sub)]);
    }

    /// Ends subscriptions of one session, with one walk of the key index
    /// for all of its wildcards (a session that ends may have thousands).
    pub fn unsubscribe_all(&self, outbox: &Arc<Outbox>, subs: &[(Pattern, u64)]) {
        let mut wild = Vec::new();
        for (pattern, sub) in subs {
            let Some(key) = pattern.exact_key() else {
                wild.push((pattern.clone(), *sub));
                continue;
            };
            outbox.begin();
            let msg = Detach {
                outbox: outbox.clone(),
                sub: *sub,
            };
            if let Err(unsent) = self.send(key, false, msg) {
                unsent.outbox.complete();
            }
        }
        if wild.is_empty() {
            return;
        }
        let id = outbox.id();
        let mut state = self.write();
        for (pattern, sub) in &wild {
            let mine = |w: &Wild| w.subscriber.sub == *sub && w.subscriber.outbox.id() == id;
            if let Some(w) = state.patterns.remove(pattern, mine) {
                w.replay.end();
            }
        }
        drop(state);
        outbox.begin();
        if !walk::spawn(walk::detach(self.clone(), outbox.clone(), wild)) {
            outbox.complete();
        }
    }

    /// Keys that have a value, with their revs, sorted; all or those
    /// matching. Listed in turns of the ordered key index, other work
    /// running between them, so that listing a big store holds the lock
    /// for one turn at a time; a key written meanwhile is listed at its
    /// state when its turn came.
    pub async fn list(&self, pattern: Option<&Pattern>) -> Vec<KeyRev<'static>> {
        let mut keys = Vec::new();
        let mut after = None;
        while self.list_turn(pattern, &mut after, &mut keys) {
            tokio::task::yield_now().await;
        }
        keys
    }

    /// Removes an idle key actor, unless a message for it is still queued:
    /// the key stays at rest with what `rest` gives, or leaves the map if
    /// it gives nothing (no live value). Called by the actor itself, which
    /// stops when this returns true.
    pub(crate) fn retire(
        &self,
        key: &str,
        state: &Arc<KeyState>,
        rest: impl FnOnce() -> Option<Passive>,
    ) -> bool {
        let mut map = self.write();
        if state.queued.load(Ordering::Acquire) != 0 {
            return false;
        }
        match map.keys.get_mut(key) {
            Some(entry @ Entry::Active(_)) if entry.is_actor(state) => {
                match rest() {
                    Some(rest) => *entry = Entry::Passive(rest),
                    None => {
                        map.remove(key);
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// Every key that has a value, with the value's rev: what a backplane
    /// replay compares the bucket with. Walked as a `list` is, a chunk of
    /// keys under the read lock at a time.
    pub fn live_keys(&self) -> Vec<KeyRev<'static>> {
        let (mut after, mut keys) = (None, Vec::new());
        while self.list_turn(None, &mut after, &mut keys) {}
        keys
    }

    /// Whether `key` has a running actor (`Some(false)`: at rest; `None`:
    /// unknown). For tests of passivation.
    #[doc(hidden)]
    pub fn has_actor(&self, key: &str) -> Option<bool> {
        self.read()
            .keys
            .get(key)
            .map(|e| matches!(e, Entry::Active(_)))
    }
}

impl Entry {
    fn is_actor(&self, state: &Arc<KeyState>) -> bool {
        matches!(self, Entry::Active(h) if Arc::ptr_eq(&h.state, state))
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::*;

    #[test]
    fn a_key_at_rest_stays_small() {
        // Each key at rest holds one map entry and one `Update`
        // (docs/architecture.md §14); these sizes are what keeps it near
        // 250 bytes beyond its key and value.
        assert_eq!(std::mem::size_of::<Entry>(), 32);
        // 80 since `Written` (16 bytes): the `Arc` allocation is 96.
        assert!(std::mem::size_of::<Update>() <= 80);
    }
}
