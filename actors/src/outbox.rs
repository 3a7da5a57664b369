//! A session's output queue: bounded, conflating, shared with key actors.
//!
//! Key actors push into it directly, so a delivery costs no actor message.
//! The session drains it in batches when woken (see [`Outbox::take`]).
//!
//! # Bound and policy when full
//! The queue has a byte budget ([`OutboxConfig::max_bytes`], 1 MiB by
//! default). While under budget, every event is queued. Once over it, an
//! event for a (subscription, key) that already has an event pending
//! *replaces* that event in place: intermediate revs are skipped (and
//! counted), the newest state is kept, and a `del` is never lost to an older
//! `val`. An event with nothing pending to replace is still queued, because
//! the latest state of every key must arrive. So past the budget the queue
//! holds at most one event per (subscription, key), and its memory is bounded
//! by the number of matching keys; values themselves are shared with the key
//! actors, not copied. Replies are never dropped; their number is bounded by
//! [`OutboxConfig::max_inflight`].
//!
//! The number of pending (subscription, key) events is bounded too, by
//! [`OutboxConfig::max_events`]: a session that falls that far behind (it
//! stopped reading while many distinct keys changed) **overflows**: its
//! queue is dropped and the outbox closes, so it pins nothing more, and the
//! session then closes its connection (1008) so that the client reconnects
//! and gets the current state from a fresh replay. A replay walk waits for
//! the outbox to be under budget before each turn ([`Outbox::under_budget`]),
//! so replays alone never overflow an outbox.

use crate::registry::Stats;
use crate::update::Update;
use ipcbus_protocol::{ErrorBody, KeyRev};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// Limits of one outbox.
#[derive(Debug, Clone, Copy)]
pub struct OutboxConfig {
    /// Byte budget before events are conflated.
    pub max_bytes: usize,
    /// Requests a session may have in flight before it stops reading its socket.
    pub max_inflight: usize,
    /// Items queued at most; an event beyond it overflows the outbox.
    pub max_events: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_bytes: 1 << 20,
            max_inflight: 1024,
            max_events: 32 * 1024,
        }
    }
}

/// What a successful request produced.
#[derive(Debug, Clone)]
pub enum Done {
    /// `set` and `del`: the rev of the write.
    Rev(u64),
    /// `get`: the current value and its rev.
    Value(Arc<Update>),
    /// `sub`: the new subscription's id.
    Sub(u64),
    /// `keys`: the matching keys.
    Keys(Vec<KeyRev<'static>>),
    /// `unsub`: nothing to add.
    Empty,
}

/// One item for the session to write.
#[derive(Debug)]
pub enum Out {
    /// A value or deletion for a subscription.
    Event {
        /// Subscription id, local to the session.
        sub: u64,
        /// The write.
        update: Arc<Update>,
    },
    /// Replay of a subscription is complete.
    Synced {
        /// Subscription id.
        sub: u64,
    },
    /// The outcome of a request handled by a key actor.
    Reply {
        /// The request id; `None` means report failures only, as an `error` event.
        id: Option<u64>,
        /// The outcome.
        result: Result<Done, ErrorBody>,
    },
}

impl Out {
    fn cost(&self) -> usize {
        match self {
            Out::Event { update, .. } => update.cost(),
            Out::Synced { .. } => 16,
            Out::Reply {
                result: Ok(Done::Value(update)),
                ..
            } => update.cost(),
            Out::Reply {
                result: Ok(Done::Keys(keys)),
                ..
            } => 64 + keys.iter().map(|k| 32 + k.key.len()).sum::<usize>(),
            Out::Reply { .. } => 64,
        }
    }
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Out>,
    bytes: usize,
    /// Absolute position of `queue[0]` in the stream of pushed items.
    head: u64,
    /// Over budget only: position of the pending event of each (sub, key).
    index: Option<HashMap<(u64, Arc<str>), u64>>,
    /// A wake-up is on its way to the session.
    scheduled: bool,
    /// What `bytes` was when last added to `Stats::outbox_bytes`.
    reported: usize,
}

/// An outbox adds its bytes to `Stats::outbox_bytes` when they have moved
/// this far from what it last reported, and when it empties: a session that
/// keeps up (small batches, emptied each turn) never touches the shared
/// counter, and one that falls behind shows within this many bytes.
const REPORT_STEP_BYTES: usize = 16 * 1024;

impl Inner {
    /// Brings `Stats::outbox_bytes` up to date with this outbox.
    fn report(&mut self, stats: &Stats) {
        if self.bytes > self.reported {
            let more = self.bytes - self.reported;
            stats.outbox_bytes.fetch_add(more, Ordering::Relaxed);
        } else if self.bytes < self.reported {
            let less = self.reported - self.bytes;
            stats.outbox_bytes.fetch_sub(less, Ordering::Relaxed);
        }
        self.reported = self.bytes;
    }
}

/// A session's output queue. See the module docs for its bound.
pub struct Outbox {
    id: u64,
    config: OutboxConfig,
    inner: Mutex<Inner>,
    wake: Box<dyn Fn() + Send + Sync>,
    closed: AtomicBool,
    overflowed: AtomicBool,
    inflight: AtomicUsize,
    room: Notify,
    idle: Notify,
    /// Rung when items arrive in an empty outbox, and when it overflows;
    /// only while someone waits (`ready_waiters`), so fan-out pays nothing.
    ready: Notify,
    ready_waiters: AtomicUsize,
    /// Rung when a take brings the outbox under its byte budget, and when it closes.
    drained: Notify,
    /// One walk of the key index at a time per session (registry `walk`).
    walks: Semaphore,
    stats: Arc<Stats>,
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // What is still queued is no longer waiting for anyone.
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        inner.bytes = 0;
        inner.report(&self.stats);
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("id", &self.id).finish()
    }
}

impl Outbox {
    /// A new outbox. `wake` is called when the outbox goes from idle to
    /// having items; the session must then call [`Outbox::take`].
    pub fn new(
        id: u64,
        config: OutboxConfig,
        stats: Arc<Stats>,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Outbox {
        Outbox {
            id,
            config,
            inner: Mutex::default(),
            wake: Box::new(wake),
            closed: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            room: Notify::new(),
            idle: Notify::new(),
            ready: Notify::new(),
            ready_waiters: AtomicUsize::new(0),
            drained: Notify::new(),
            walks: Semaphore::new(1),
            stats,
        }
    }

    /// Identifies the owning session among subscribers.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave `Inner` inconsistent
        // in a way that matters more than losing the session, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an item, conflating events when over budget.
    pub fn push(&self, out: Out) {
        if self.is_closed() {
            return;
        }
        let cost = out.cost();
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.bytes + cost > self.config.max_bytes {
            if let Out::Event { sub, update } = &out {
                let index = inner
                    .index
                    .get_or_insert_with(|| build_index(&inner.queue, inner.head));
                let slot_key = (*sub, update.key.clone());
                // A position before `head` was taken already.
                if let Some(&pos) = index.get(&slot_key).filter(|&&pos| pos >= inner.head) {
                    let slot = &mut inner.queue[(pos - inner.head) as usize];
                    inner.bytes = inner.bytes - slot.cost() + cost;
                    *slot = out;
                    self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if inner.queue.len() >= self.config.max_events {
                    drop(g);
                    return self.overflow();
                }
                index.insert(slot_key, inner.head + inner.queue.len() as u64);
            }
        } else if let (Some(index), Out::Event { sub, update }) = (&mut inner.index, &out) {
            index.insert(
                (*sub, update.key.clone()),
                inner.head + inner.queue.len() as u64,
            );
        }
        inner.queue.push_back(out);
        inner.bytes += cost;
        if inner.bytes.abs_diff(inner.reported) >= REPORT_STEP_BYTES {
            inner.report(&self.stats);
        }
        let wake = !inner.scheduled;
        inner.scheduled = true;
        drop(g);
        if wake {
            if self.ready_waiters.load(Ordering::SeqCst) != 0 {
                self.ready.notify_waiters();
            }
            (self.wake)();
        }
    }

    /// The session fell `max_events` behind: drops everything queued and
    /// closes, so key actors drop its subscribers; the session is woken to
    /// close its connection.
    fn overflow(&self) {
        if self.overflowed.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(
            session = self.id,
            max_events = self.config.max_events,
            "a session fell too far behind its subscriptions; closing it"
        );
        self.stats.overflows.fetch_add(1, Ordering::Relaxed);
        self.close();
        self.ready.notify_waiters();
        (self.wake)();
    }

    /// Bytes of events and replies waiting here now (exact, unlike the
    /// stepped `Stats::outbox_bytes`); takes the outbox's lock.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Whether the outbox overflowed (and closed): the session must end.
    pub fn is_overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Resolves once the outbox holds items (or has overflowed).
    pub async fn ready(&self) {
        /// Counts a waiter for as long as it waits (dropped with the future).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.ready_waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.ready_waiters);
        loop {
            let notified = self.ready.notified();
            if !self.lock().queue.is_empty() || self.is_overflowed() {
                return;
            }
            notified.await;
        }
    }

    /// Whether the outbox holds more than its byte budget.
    pub fn is_over_budget(&self) -> bool {
        self.lock().bytes > self.config.max_bytes
    }

    /// Resolves once the outbox is within its byte budget (or closed):
    /// what a replay waits for before each turn, so that it goes at the
    /// pace the client reads.
    pub async fn under_budget(&self) {
        loop {
            let notified = self.drained.notified();
            if self.lock().bytes <= self.config.max_bytes || self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Queues the outcome of a request: always with an id, and without one
    /// only on failure (the protocol reports those as `error` events).
    pub fn reply(&self, id: Option<u64>, result: Result<Done, ErrorBody>) {
        if id.is_some() || result.is_err() {
            self.push(Out::Reply { id, result });
        }
    }

    /// Moves queued items into `into` (which should be empty; its
    /// allocation is reused): at least one, and more while their cost stays
    /// within `max_bytes`. Returns whether items remain; the caller must
    /// then take again, since no wake-up comes for them. Otherwise the
    /// wake-up is re-armed.
    pub fn take(&self, into: &mut VecDeque<Out>, max_bytes: usize) -> bool {
        let mut g = self.lock();
        let inner = &mut *g;
        let was_over = inner.bytes > self.config.max_bytes;
        if inner.bytes <= max_bytes {
            // Everything fits: the common case, one swap.
            std::mem::swap(&mut inner.queue, into);
            inner.head += into.len() as u64;
        } else {
            let mut taken = 0;
            while let Some(out) = inner.queue.pop_front() {
                let cost = out.cost();
                taken += cost;
                inner.bytes = inner.bytes.saturating_sub(cost);
                inner.head += 1;
                into.push_back(out);
                if taken >= max_bytes {
                    break;
                }
            }
        }
        let more = !inner.queue.is_empty();
        if !more {
            // Every position in the index is taken: start afresh.
            inner.bytes = 0;
            inner.index = None;
            inner.scheduled = false;
        }
        // A replay waits only while the outbox is over budget.
        let drained = was_over && inner.bytes <= self.config.max_bytes;
        if !more || inner.bytes.abs_diff(inner.reported) >= REPORT_STEP_BYTES {
            inner.report(&self.stats);
        }
        drop(g);
        if drained {
            self.drained.notify_waiters();
        }
        more
    }

    /// Moves every queued item into `into` and re-arms the wake-up.
    pub fn take_all(&self, into: &mut VecDeque<Out>) {
        self.take(into, usize::MAX);
    }

    /// Counts a request handed to a key actor.
    pub fn begin(&self) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
    }

    /// Marks a request finished (its reply, if any, is already pushed).
    pub fn complete(&self) {
        let before = self.inflight.fetch_sub(1, Ordering::AcqRel);
        if before <= self.config.max_inflight {
            self.room.notify_one();
        }
        if before == 1 {
            self.idle.notify_one();
        }
    }

    /// Resolves once every request handed to key actors has finished.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.inflight.load(Ordering::Acquire) == 0 || self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Waits for this session's turn to walk the key index; the turn lasts
    /// as long as the permit.
    pub(crate) async fn walk_turn(&self) -> Option<SemaphorePermit<'_>> {
        self.walks.acquire().await.ok()
    }

    /// Whether the session must stop reading requests for now.
    pub fn is_saturated(&self) -> bool {
        self.inflight.load(Ordering::Acquire) >= self.config.max_inflight
    }

    /// Resolves once fewer than `max_inflight` requests are in flight.
    pub async fn room(&self) {
        loop {
            let notified = self.room.notified();
            if !self.is_saturated() || self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Stops accepting items; key actors drop subscribers whose outbox is closed.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_one();
        self.idle.notify_one();
        let mut g = self.lock();
        g.queue.clear();
        g.index = None;
        g.bytes = 0;
        g.report(&self.stats);
        drop(g);
        self.drained.notify_waiters();
    }

    /// Whether the session has gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

fn build_index(queue: &VecDeque<Out>, head: u64) -> HashMap<(u64, Arc<str>), u64> {
    let mut index = HashMap::with_capacity(queue.len());
    for (i, out) in queue.iter().enumerate() {
        if let Out::Event { sub, update } = out {
            index.insert((*sub, update.key.clone()), head + i as u64);
        }
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::Written;
    use bytes::Bytes;
    use std::sync::atomic::AtomicUsize;

    fn event(sub: u64, key: &str, rev: u64, value: Option<&'static [u8]>) -> Out {
        let update = Update::new(
            key.into(),
            rev,
            value.map(Bytes::from_static),
            Written::default(),
        );
        Out::Event {
            sub,
            update: Arc::new(update),
        }
    }

    fn revs(queue: &VecDeque<Out>) -> Vec<(String, u64, bool)> {
        queue
            .iter()
            .filter_map(|o| match o {
                Out::Event { update, .. } => {
                    Some((update.key.to_string(), update.rev, update.value.is_some()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_outbox_too_far_behind_overflows_and_holds_nothing() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        let config = OutboxConfig {
            max_bytes: 70,
            max_inflight: 8,
            max_events: 10,
        };
        let outbox = Outbox::new(1, config, Arc::default(), move || {
            w.fetch_add(1, Ordering::Relaxed);
        });
        // Ten distinct keys fit; a new event of an eleventh does not.
        for i in 0..10 {
            outbox.push(event(1, &format!("k{i}"), i + 1, Some(b"1")));
        }
        // Replacing a pending event never overflows.
        outbox.push(event(1, "k3", 20, Some(b"2")));
        assert!(!outbox.is_overflowed());
        outbox.push(event(1, "k10", 21, Some(b"1")));
        assert!(outbox.is_overflowed() && outbox.is_closed());
        assert_eq!(outbox.stats.overflows.load(Ordering::Relaxed), 1);
        assert_eq!(
            wakes.load(Ordering::Relaxed),
            2,
            "the session is woken to close"
        );
        let mut got = VecDeque::new();
        assert!(!outbox.take(&mut got, usize::MAX));
        assert!(got.is_empty(), "an overflowed outbox holds nothing");
        outbox.push(event(1, "k11", 22, Some(b"1")));
        assert!(!outbox.take(&mut got, usize::MAX) && got.is_empty());
    }

    #[test]
    fn wakes_once_per_batch_and_conflates_when_full() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        let config = OutboxConfig {
            max_bytes: 3 * 70,
            max_inflight: 8,
            max_events: 100,
        };
        let outbox = Outbox::new(1, config, Arc::default(), move || {
            w.fetch_add(1, Ordering::Relaxed);
        });
        for rev in 1..=3 {
            outbox.push(event(1, "a", rev, Some(b"1")));
        }
        assert_eq!(wakes.load(Ordering::Relaxed), 1);
        // Over budget now: "a" is replaced in place, "b" is still queued.
        outbox.push(event(1, "b", 4, Some(b"1")));
        outbox.push(event(1, "a", 5, None));
        outbox.push(event(1, "b", 6, Some(b"2")));
        outbox.push(event(2, "a", 7, Some(b"1")));
        let mut got = VecDeque::new();
        assert!(!outbox.take(&mut got, usize::MAX));
        let expect = [
            ("a", 1, true),
            ("a", 2, true),
            ("a", 5, false),
            ("b", 6, true),
            ("a", 7, true),
        ];
        let expect: Vec<_> = expect
            .iter()
            .map(|(k, r, v)| (k.to_string(), *r, *v))
            .collect();
        assert_eq!(revs(&got), expect);
        assert_eq!(outbox.stats.skipped.load(Ordering::Relaxed), 2);
        // Drained: the next push wakes again and nothing is conflated.
        outbox.push(event(1, "a", 8, Some(b"1")));
        assert_eq!(wakes.load(Ordering::Relaxed), 2);
    }
}
