//! `Registry`: finds and creates key actors, keeps the wildcard pattern
//! index, and owns the store-wide rev counter.
//!
//! Messages to key actors are sent while holding the registry lock (read for
//! existing keys, write for new ones). That is what makes creation,
//! subscription and retirement race-free: a key actor leaves the map only
//! under the write lock and only when no message for it is queued, so no
//! message is ever sent to a stopped actor, and a new key is created with
//! every matching wildcard subscription already attached.

use crate::key_actor::KeyActor;
use crate::messages::{Attach, Detach, Release, Subscriber, SyncCountdown};
use crate::outbox::{Out, Outbox};
use crate::store::{Record, Store};
use crate::update::Update;
use actix::prelude::*;
use ipcbus_protocol::{KeyRev, Pattern};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Counters for health and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events dropped for slow subscribers (newer events of the same key replaced them).
    pub skipped: AtomicU64,
    /// Open sessions.
    pub sessions: AtomicUsize,
    /// Keys that currently have a value.
    pub live_keys: AtomicUsize,
}

impl Stats {
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
        M: Message<Result = ()> + Send + 'static,
        KeyActor: Handler<M>,
    {
        self.state.queued.fetch_add(1, Ordering::AcqRel);
        // Unbounded by actix, but bounded by the sessions' in-flight limit:
        // each queued message is a request some session is waiting on.
        self.addr.do_send(msg);
    }
}

#[derive(Default)]
struct State {
    keys: HashMap<Arc<str>, KeyHandle>,
    /// Subscriptions with a wildcard; exact ones live only in their key actor.
    patterns: Vec<(Pattern, Subscriber)>,
}

struct Inner {
    state: RwLock<State>,
    rev: Arc<AtomicU64>,
    stats: Arc<Stats>,
    store: Option<Store>,
    options: RegistryOptions,
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
        Registry(Arc::new(Inner {
            state: RwLock::default(),
            rev: Arc::default(),
            stats: Arc::default(),
            store: None,
            options: RegistryOptions::default(),
        }))
    }

    /// A store backed by `store`, which also supplies the rev counter.
    /// Call [`Registry::restore`] with what the store held.
    pub fn with_store(store: Store, options: RegistryOptions) -> Registry {
        Registry(Arc::new(Inner {
            state: RwLock::default(),
            rev: store.rev_counter(),
            stats: Arc::default(),
            store: Some(store),
            options,
        }))
    }

    /// Starts a key actor for each persisted key. Call once, before
    /// serving, inside the actix system.
    pub fn restore(&self, keys: Vec<(String, Record)>) {
        let mut state = self.write();
        for (key, record) in keys {
            let key: Arc<str> = key.into();
            let rev = record.rev;
            let update = Update::new(key.clone(), rev, Some(record.value));
            let key_state = Arc::new(KeyState::default());
            key_state.live_rev.store(rev, Ordering::Release);
            let mut actor = KeyActor::new(key.clone(), key_state.clone(), self.clone(), Vec::new());
            actor.current = Some(Arc::new(update));
            actor.persisted = true;
            actor.expires_at_ms = record.expires_at_ms;
            self.0.stats.live_keys.fetch_add(1, Ordering::Relaxed);
            let handle = KeyHandle {
                addr: actor.start(),
                state: key_state,
            };
            state.keys.insert(key, handle);
        }
    }

    pub(crate) fn store(&self) -> Option<&Store> {
        self.0.store.as_ref()
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

    pub(crate) fn remove_live_key(&self) {
        self.0.stats.live_keys.fetch_sub(1, Ordering::AcqRel);
    }

    /// Tells `key` that the session with outbox id `owner` has ended.
    pub fn release(&self, key: &str, owner: u64) {
        let _gone = self.send(key, false, Release { owner });
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Nothing panics while holding the lock; recover from poison anyway.
        self.0.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.0.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `msg` to the actor of `key`. If the key has no actor, one is
    /// started on the current arbiter when `create` is set; otherwise `msg`
    /// is handed back.
    pub fn send<M>(&self, key: &str, create: bool, msg: M) -> Result<(), M>
    where
        M: Message<Result = ()> + Send + 'static,
        KeyActor: Handler<M>,
    {
        if let Some(handle) = self.read().keys.get(key) {
            handle.send(msg);
            return Ok(());
        }
        if !create {
            return Err(msg);
        }
        let mut state = self.write();
        if let Some(handle) = state.keys.get(key) {
            handle.send(msg);
            return Ok(());
        }
        let handle = self.start(key, &state.patterns);
        handle.send(msg);
        state.keys.insert(key.into(), handle);
        Ok(())
    }

    fn start(&self, key: &str, patterns: &[(Pattern, Subscriber)]) -> KeyHandle {
        let state = Arc::new(KeyState::default());
        let key: Arc<str> = key.into();
        let subscribers = patterns
            .iter()
            .filter(|(p, s)| p.matches(&key) && !s.outbox.is_closed())
            .map(|(_, s)| s.clone())
            .collect();
        let actor = KeyActor::new(key, state.clone(), self.clone(), subscribers);
        KeyHandle {
            addr: actor.start(),
            state,
        }
    }

    /// Subscribes to a key or pattern. Every matching key replays to the
    /// subscriber, then `synced` is queued; later writes follow. The caller
    /// must have queued the `sub` reply first. Each message to a key actor
    /// counts as a request in flight of the subscriber's session.
    pub fn subscribe(&self, pattern: &Pattern, subscriber: &Subscriber, since: Option<u64>) {
        let attach = |sync| {
            subscriber.outbox.begin();
            Attach {
                subscriber: subscriber.clone(),
                since,
                sync: Some(sync),
            }
        };
        let countdown = |n| {
            Arc::new(SyncCountdown {
                remaining: AtomicUsize::new(n),
                subscriber: subscriber.clone(),
            })
        };
        if let Some(key) = pattern.exact_key() {
            let msg = attach(countdown(1));
            let _created = self.send(key, true, msg);
            return;
        }
        let mut state = self.write();
        state.patterns.push((pattern.clone(), subscriber.clone()));
        let matching: Vec<&KeyHandle> = state
            .keys
            .iter()
            .filter(|(k, _)| pattern.matches(k))
            .map(|(_, h)| h)
            .collect();
        if matching.is_empty() {
            subscriber.outbox.push(Out::Synced {
                sub: subscriber.sub,
            });
            return;
        }
        let sync = countdown(matching.len());
        for handle in matching {
            handle.send(attach(sync.clone()));
        }
    }

    /// Ends a subscription made with [`Registry::subscribe`].
    pub fn unsubscribe(&self, pattern: &Pattern, outbox: &Arc<Outbox>, sub: u64) {
        let detach = || {
            outbox.begin();
            Detach {
                outbox: outbox.clone(),
                sub,
            }
        };
        if let Some(key) = pattern.exact_key() {
            if let Err(unsent) = self.send(key, false, detach()) {
                unsent.outbox.complete();
            }
            return;
        }
        let id = outbox.id();
        let mut state = self.write();
        state
            .patterns
            .retain(|(_, s)| !(s.sub == sub && s.outbox.id() == id));
        for (key, handle) in &state.keys {
            if pattern.matches(key) {
                handle.send(detach());
            }
        }
    }

    /// Keys that have a value, with their revs, sorted; all or those matching.
    pub fn keys(&self, pattern: Option<&Pattern>) -> Vec<KeyRev<'static>> {
        let state = self.read();
        let mut keys: Vec<KeyRev<'static>> = state
            .keys
            .iter()
            .filter(|(k, _)| pattern.is_none_or(|p| p.matches(k)))
            .filter_map(|(k, h)| {
                let rev = h.state.live_rev.load(Ordering::Acquire);
                (rev != 0).then(|| KeyRev {
                    key: k.to_string().into(),
                    rev,
                })
            })
            .collect();
        keys.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        keys
    }

    /// Removes an idle key actor, unless a message for it is still queued.
    /// Called by the actor itself, which stops when this returns true.
    pub(crate) fn retire(&self, key: &str, state: &Arc<KeyState>) -> bool {
        let mut map = self.write();
        if state.queued.load(Ordering::Acquire) != 0 {
            return false;
        }
        match map.keys.get(key) {
            Some(h) if Arc::ptr_eq(&h.state, state) => {
                map.keys.remove(key);
                true
            }
            _ => false,
        }
    }
}
