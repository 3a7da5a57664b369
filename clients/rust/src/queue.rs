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
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Inner {
    events: VecDeque<Event>,
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

    pub(crate) fn push(&self, event: Event) {
        let mut q = self.lock();
        if q.closed {
            return;
        }
        let pending = match event.key() {
            Some(key) if q.events.len() >= self.capacity => {
                q.events.iter().rposition(|e| e.key() == Some(key))
            }
            _ => None,
        };
        match pending {
            Some(i) => {
                q.events[i] = event;
                q.skipped += 1;
            }
            None => q.events.push_back(event),
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

    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let mut q = self.lock();
        if let Some(event) = q.events.pop_front() {
            return Poll::Ready(Some(event));
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
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut got = Vec::new();
        while let Poll::Ready(Some(ev)) = q.poll_next(&mut cx) {
            got.push(ev);
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
            q.push(ev);
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
}
