//! `SubShared`: one subscription as the connection sees it, across
//! reconnects: its queue, the server's id for it on the current
//! connection, and what its consumer was last told of each key, so that
//! the full replay after a reconnect is reduced to what changed meanwhile
//! (as the Python client's `Subscription._deliver` does).

use crate::queue::EventQueue;
use crate::subscription::Event;
use bytes::Bytes;
use ipcbus_protocol::{Op, Pattern};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A rev no value has: "deliver this key again whatever its rev".
const ANY_REV: u64 = 0;

pub(crate) struct SubShared {
    /// The client's own id for it (that of its first `sub` request).
    pub(crate) local: u64,
    pattern: Pattern,
    pub(crate) queue: EventQueue,
    state: Mutex<Filter>,
}

#[derive(Default)]
struct Filter {
    /// key → rev of the value last passed on. Bounded by the keys this
    /// subscription matches: one entry per key present, removed on delete.
    known: HashMap<String, u64>,
    /// During a replay after a reconnect: the keys it has mentioned.
    resync: Option<HashSet<String>>,
    /// The `since` of the `sub`; dropped once the store changes.
    since: Option<u64>,
    /// The server's id of the subscription, and the connection it is on.
    server: Option<(u64, u64)>,
    /// True once `Synced` was passed on: a replay made again after that
    /// does not repeat it, one made again before it (the connection was
    /// lost during the first replay) still ends in it.
    synced: bool,
}

impl SubShared {
    pub(crate) fn new(
        local: u64,
        pattern: Pattern,
        since: Option<u64>,
        capacity: usize,
    ) -> SubShared {
        SubShared {
            local,
            pattern,
            queue: EventQueue::new(capacity),
            state: Mutex::new(Filter {
                since,
                ..Filter::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Filter> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `sub` request that (re)makes this subscription.
    pub(crate) fn frame(&self, id: u64) -> Bytes {
        let op = Op::Sub {
            pattern: self.pattern.clone(),
            since: self.lock().since,
            meta: false,
        };
        crate::conn::encode(Some(id), op)
    }

    /// The server acknowledged the `sub` on connection `epoch` as `id`.
    pub(crate) fn attach(&self, id: u64, epoch: u64) {
        self.lock().server = Some((id, epoch));
    }

    /// The server's id and connection, if the subscription is on one.
    pub(crate) fn attached(&self) -> Option<(u64, u64)> {
        self.lock().server
    }

    /// A replay is about to start on a new connection. If the server's
    /// store changed, its revs say nothing: every value is passed on again.
    pub(crate) fn start_resync(&self, store_changed: bool) {
        let mut f = self.lock();
        if store_changed {
            f.known.values_mut().for_each(|rev| *rev = ANY_REV);
            f.since = None;
        }
        f.resync = Some(HashSet::new());
        f.server = None;
    }

    /// Passes `event` on, unless the consumer already knows it.
    pub(crate) fn deliver(&self, event: Event) {
        let mut f = self.lock();
        let f = &mut *f;
        if let Some(seen) = &mut f.resync {
            match &event {
                Event::Value { key, rev, .. } => {
                    seen.insert(key.clone());
                    if f.known.get(key) == Some(rev) {
                        return; // passed on before the connection was lost
                    }
                }
                Event::Deleted { key, .. } if !f.known.contains_key(key) => return,
                Event::Deleted { .. } => {}
                Event::Synced => {
                    // Keys the replay left out were deleted meanwhile.
                    f.known.retain(|key, _| {
                        let kept = seen.contains(key);
                        if !kept {
                            self.queue.push(Event::Deleted {
                                key: key.clone(),
                                rev: 0,
                            });
                        }
                        kept
                    });
                    f.resync = None;
                    if f.synced {
                        return; // the consumer saw `Synced` once already
                    }
                }
            }
        }
        match &event {
            Event::Value { key, rev, .. } => {
                f.known.insert(key.clone(), *rev);
            }
            Event::Deleted { key, .. } => {
                f.known.remove(key);
            }
            Event::Synced => f.synced = true,
        }
        self.queue.push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::tests::{drain, val};

    fn del(key: &str, rev: u64) -> Event {
        Event::Deleted {
            key: key.into(),
            rev,
        }
    }

    fn sub() -> SubShared {
        let sub = SubShared::new(1, Pattern::parse("a.*").expect("pattern"), None, 100);
        for ev in [val("a.1", 1), val("a.2", 2), val("a.3", 3), Event::Synced] {
            sub.deliver(ev);
        }
        drain(&sub.queue);
        sub
    }

    #[test]
    fn a_replay_passes_on_only_what_changed() {
        let sub = sub();
        sub.start_resync(false);
        for ev in [val("a.1", 1), val("a.3", 7), val("a.4", 8), Event::Synced] {
            sub.deliver(ev);
        }
        sub.deliver(val("a.1", 9)); // live again
        assert_eq!(
            drain(&sub.queue),
            [val("a.3", 7), val("a.4", 8), del("a.2", 0), val("a.1", 9)]
        );
    }

    #[test]
    fn a_replay_made_again_before_synced_ends_in_synced() {
        let sub = SubShared::new(1, Pattern::parse("a.*").expect("pattern"), None, 100);
        sub.deliver(val("a.1", 1));
        sub.deliver(val("a.2", 2));
        sub.start_resync(false);
        for ev in [val("a.1", 1), Event::Synced, val("a.1", 3)] {
            sub.deliver(ev);
        }
        assert_eq!(
            drain(&sub.queue),
            [
                val("a.1", 1),
                val("a.2", 2),
                del("a.2", 0),
                Event::Synced,
                val("a.1", 3)
            ]
        );
    }

    #[test]
    fn a_new_store_passes_on_every_value_again() {
        let sub = sub();
        sub.start_resync(true);
        for ev in [val("a.1", 1), val("a.2", 2), Event::Synced] {
            sub.deliver(ev);
        }
        assert_eq!(
            drain(&sub.queue),
            [val("a.1", 1), val("a.2", 2), del("a.3", 0)]
        );
    }
}
