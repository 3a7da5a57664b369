//! `EventQueue`: the buffer between the connection's reader and one
//! `Subscription`. The reader never waits on it, so a slow consumer cannot
//! hold up replies or other subscriptions on the same connection.
//!
//! Bound and policy when full: it holds `capacity` events. Past that, an
//! event for a key that already has an event waiting replaces it (the
//! newest state wins, as on the server); an event for another key, or
//! `Synced`, is still queued, so the consumer always ends with the latest
//! state of every key. Past the bound the queue holds at most one event per key.

use crate::subscription::Event;
use ipcbus_protocol::ValMeta;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// An event and, for a value event of a subscription made with `meta`,
/// what the server said of its write.
pub(crate) type Item = (Event, Option<ValMeta>);

#[derive(Default)]
struct Inner {
    events: VecDeque<Item>,
    waker: Option<Waker>,
    closed: bool,
    skipped: u64,
}

pub(crate) struct EventQueue {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> EventQueue {
        EventQueue {
            inner: Mutex::default(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn push(&self, event: Event, meta: Option<ValMeta>) {
        let mut q = self.lock();
        if q.closed {
            return;
        }
        let pending = match event.key() {
            Some(key) if q.events.len() >= self.capacity => {
                q.events.iter().rposition(|(e, _)| e.key() == Some(key))
            }
            _ => None,
        };
        match pending {
            Some(i) => {
                q.events[i] = (event, meta);
                q.skipped += 1;
            }
            None => q.events.push_back((event, meta)),
        }
        if let Some(waker) = q.waker.take() {
            waker.wake();
        }
    }

    /// No more events will come; the consumer sees the end after the rest.
    pub(crate) fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        if let Some(waker) = q.waker.take() {
            waker.wake();
        }
    }

    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let mut q = self.lock();
        if let Some(item) = q.events.pop_front() {
            return Poll::Ready(Some(item));
        }
        if q.closed {
            return Poll::Ready(None);
        }
        q.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// True once `close` was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Events replaced by newer ones because the consumer fell behind.
    pub(crate) fn skipped(&self) -> u64 {
        self.lock().skipped
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;

    /// A value event with an empty value.
    pub(crate) fn val(key: &str, rev: u64) -> Event {
        Event::Value {
            key: key.into(),
            rev,
            value: Bytes::new(),
        }
    }

    /// Every event ready now.
    pub(crate) fn drain(q: &EventQueue) -> Vec<Event> {
        drain_meta(q).into_iter().map(|(ev, _)| ev).collect()
    }

    /// Every event ready now, with its meta.
    pub(crate) fn drain_meta(q: &EventQueue) -> Vec<Item> {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut got = Vec::new();
        while let Poll::Ready(Some(item)) = q.poll_next(&mut cx) {
            got.push(item);
        }
        got
    }

    #[test]
    fn conflates_per_key_past_capacity() {
        let q = EventQueue::new(2);
        for ev in [
            val("a", 1),
            val("b", 2),
            val("a", 3),
            val("c", 4),
            Event::Synced,
            val("b", 5),
        ] {
            q.push(ev, None);
        }
        assert_eq!(
            drain(&q),
            vec![val("a", 3), val("b", 5), val("c", 4), Event::Synced]
        );
        assert_eq!(q.skipped(), 2);
        q.close();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(q.poll_next(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn an_event_that_replaces_another_brings_its_own_meta() {
        let q = EventQueue::new(1);
        let old = ValMeta {
            persist: true,
            ..ValMeta::default()
        };
        let new = ValMeta {
            ttl_ms: Some(5),
            ..ValMeta::default()
        };
        q.push(val("a", 1), Some(old));
        q.push(val("a", 2), Some(new));
        q.push(Event::Synced, None);
        assert_eq!(
            drain_meta(&q),
            vec![(val("a", 2), Some(new)), (Event::Synced, None)]
        );
    }
}
