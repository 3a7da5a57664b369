//! `SubShared`: one subscription as the connection sees it, across
//! reconnects: its queue, the server's id for it on the current
//! connection, and what its consumer was last told of each key, so that
//! the full replay after a reconnect is reduced to what changed meanwhile
//! (as the Python client's `Subscription._deliver` does).

use crate::options::SubscribeOptions;
use crate::queue::EventQueue;
use crate::subscription::Event;
use bytes::Bytes;
use ipcbus_protocol::{Op, Pattern, ValMeta};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A rev no value has: "deliver this key again whatever its rev".
const ANY_REV: u64 = 0;

pub(crate) struct SubShared {
    /// The client's own id for it (that of its first `sub` request).
    pub(crate) local: u64,
    pattern: Pattern,
    /// Its value events carry [`ValMeta`]: asked for in every `sub` it
    /// is made with, the first and those after a reconnect.
    meta: bool,
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
        options: SubscribeOptions,
        capacity: usize,
    ) -> SubShared {
        SubShared {
            local,
            pattern,
            meta: options.meta,
            queue: EventQueue::new(capacity),
            state: Mutex::new(Filter {
                since: options.since,
                ..Filter::default()
            }),
        }
    }

    /// The pattern it subscribes to.
    pub(crate) fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    fn lock(&self) -> MutexGuard<'_, Filter> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `sub` request that (re)makes this subscription.
    pub(crate) fn frame(&self, id: u64) -> Bytes {
        let op = Op::Sub {
            pattern: self.pattern.clone(),
            since: self.lock().since,
            meta: self.meta,
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

    /// Passes `event` (with the `meta` of a value event) on, unless the
    /// consumer already knows it.
    pub(crate) fn deliver(&self, event: Event, meta: Option<ValMeta>) {
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
                            let gone = Event::Deleted {
                                key: key.clone(),
                                rev: 0,
                            };
                            self.queue.push(gone, None);
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
        self.queue.push(event, meta);
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

    fn pattern() -> Pattern {
        Pattern::parse("a.*").expect("pattern")
    }

    fn sub() -> SubShared {
        let sub = SubShared::new(1, pattern(), SubscribeOptions::default(), 100);
        for ev in [val("a.1", 1), val("a.2", 2), val("a.3", 3), Event::Synced] {
            sub.deliver(ev, None);
        }
        drain(&sub.queue);
        sub
    }

    #[test]
    fn a_replay_passes_on_only_what_changed() {
        let sub = sub();
        sub.start_resync(false);
        for ev in [val("a.1", 1), val("a.3", 7), val("a.4", 8), Event::Synced] {
            sub.deliver(ev, None);
        }
        sub.deliver(val("a.1", 9), None); // live again
        assert_eq!(
            drain(&sub.queue),
            [val("a.3", 7), val("a.4", 8), del("a.2", 0), val("a.1", 9)]
        );
    }

    #[test]
    fn a_replay_made_again_before_synced_ends_in_synced() {
        let sub = SubShared::new(1, pattern(), SubscribeOptions::default(), 100);
        sub.deliver(val("a.1", 1), None);
        sub.deliver(val("a.2", 2), None);
        sub.start_resync(false);
        for ev in [val("a.1", 1), Event::Synced, val("a.1", 3)] {
            sub.deliver(ev, None);
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
            sub.deliver(ev, None);
        }
        assert_eq!(
            drain(&sub.queue),
            [val("a.1", 1), val("a.2", 2), del("a.3", 0)]
        );
    }

    /// The `meta` and `since` of the `sub` a frame carries.
    fn asked(frame: &Bytes) -> (bool, Option<u64>) {
        match ipcbus_protocol::msgpack::decode_request(frame)
            .expect("a request")
            .op
        {
            Op::Sub { meta, since, .. } => (meta, since),
            _ => panic!("not a sub"),
        }
    }

    #[test]
    fn a_subscription_asks_for_meta_again_after_a_reconnect() {
        let options = SubscribeOptions {
            meta: true,
            since: Some(4),
        };
        let sub = SubShared::new(1, pattern(), options, 100);
        assert_eq!(asked(&sub.frame(1)), (true, Some(4)));
        sub.start_resync(true);
        assert_eq!(
            asked(&sub.frame(2)),
            (true, None),
            "a new store drops since"
        );
        let plain = SubShared::new(2, pattern(), SubscribeOptions::default(), 100);
        plain.start_resync(false);
        assert_eq!(asked(&plain.frame(3)), (false, None));
    }
}
