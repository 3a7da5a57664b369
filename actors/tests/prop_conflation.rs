//! Property test of the outbox's slow-subscriber policy (module docs of
//! `ipcbus_actors::outbox`): whatever the interleaving of pushes and takes,
//! under a budget small enough that conflation happens all the time, the
//! consumer ends on the newest rev of every (sub, key), sees each (sub, key)'s
//! revs in increasing order, and loses nothing while under budget; and past
//! the budget the queue holds at most one event per (sub, key).

use bytes::Bytes;
use ipcbus_actors::{Out, Outbox, OutboxConfig, Stats, Update, Written};
use proptest::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Keys of different lengths, so events cost different amounts.
const KEYS: &[&str] = &["a", "b.c", "sensor.kitchen.temp"];
/// Subscriptions of the session.
const SUBS: u64 = 2;

#[derive(Debug, Clone)]
enum Step {
    /// A write of `KEYS[key]` delivered to `sub`: a value of `len` bytes, or a deletion.
    Push {
        sub: u64,
        key: usize,
        value: Option<usize>,
    },
    /// The session drains the outbox.
    Take,
    /// The session takes at least one item and at most about this many bytes.
    TakeSome(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let push = (
        0..SUBS,
        0..KEYS.len(),
        prop::option::weighted(0.8, 0..48usize),
    )
        .prop_map(|(sub, key, value)| Step::Push { sub, key, value });
    prop_oneof![6 => push, 1 => Just(Step::Take), 1 => (0..200usize).prop_map(Step::TakeSome)]
}

type Slot = (u64, Arc<str>);

/// What the consumer saw, checked batch by batch.
struct Consumer {
    max_bytes: usize,
    /// Newest rev seen per (sub, key).
    seen: HashMap<Slot, u64>,
    delivered: u64,
    batches: usize,
}

impl Consumer {
    /// Checks one batch. `pushed` lists the events pushed since the last
    /// take; `whole` says the batch holds everything queued since the last
    /// batch that emptied the outbox (the budget checks apply only then).
    fn batch(&mut self, batch: &VecDeque<Out>, pushed: &[(Slot, u64, usize)], whole: bool) {
        let mut last_cost: HashMap<Slot, usize> = HashMap::new();
        let mut total = 0;
        let mut got = Vec::new();
        for out in batch {
            let Out::Event { sub, update } = out else {
                panic!("only events were pushed, got {out:?}");
            };
            let slot = (*sub, update.key.clone());
            if let Some(before) = self.seen.insert(slot.clone(), update.rev) {
                assert!(
                    update.rev > before,
                    "{slot:?}: rev {} after {before}",
                    update.rev
                );
            }
            total += update.cost();
            last_cost.insert(slot.clone(), update.cost());
            got.push((slot, update.rev));
        }
        self.delivered += batch.len() as u64;
        if !whole {
            return;
        }
        // The bound: beyond the budget, only the newest pending event of
        // each (sub, key); everything before those fits in the budget.
        let newest: usize = last_cost.values().sum();
        assert!(
            total - newest <= self.max_bytes,
            "{total} bytes queued, {newest} of them newest per (sub, key), budget {}",
            self.max_bytes
        );
        // Under budget every event is queued, in order.
        if pushed.iter().map(|(_, _, cost)| cost).sum::<usize>() <= self.max_bytes {
            let want: Vec<_> = pushed.iter().map(|(s, rev, _)| (s.clone(), *rev)).collect();
            assert_eq!(got, want, "nothing may be skipped under budget");
        }
    }
}

/// Plays `steps` against a fresh outbox, checks everything, and returns how
/// many events were skipped.
fn run(max_bytes: usize, steps: &[Step]) -> u64 {
    let stats = Arc::new(Stats::default());
    let wakes = Arc::new(AtomicUsize::new(0));
    let w = wakes.clone();
    let config = OutboxConfig {
        max_bytes,
        max_inflight: 8,
        max_events: usize::MAX,
    };
    let outbox = Outbox::new(1, config, stats.clone(), move || {
        w.fetch_add(1, Ordering::Relaxed);
    });
    let mut consumer = Consumer {
        max_bytes,
        seen: HashMap::new(),
        delivered: 0,
        batches: 0,
    };
    let mut latest: HashMap<Slot, u64> = HashMap::new();
    let mut pushed = Vec::new();
    let mut total_pushed = 0u64;
    let mut rev = 0;
    let mut batch = VecDeque::new();
    // Whether the last take left items behind.
    let mut leftover = false;
    let mut take =
        |limit: usize, batch: &mut VecDeque<Out>, pushed: &mut Vec<_>, consumer: &mut Consumer| {
            batch.clear();
            let more = outbox.take(batch, limit);
            // Each batch that empties the outbox ends one wake-up's turn.
            if !more && !batch.is_empty() {
                consumer.batches += 1;
            }
            consumer.batch(batch, pushed, !more && !leftover);
            leftover = more;
            pushed.clear();
        };
    for step in steps {
        match step {
            Step::Push { sub, key, value } => {
                // Revs are store-wide, so every write has a greater one.
                rev += 1;
                let value = value.map(|len| Bytes::from(vec![0x2a; len]));
                let update = Arc::new(Update::new(
                    KEYS[*key].into(),
                    rev,
                    value,
                    Written::default(),
                ));
                let slot = (*sub, update.key.clone());
                latest.insert(slot.clone(), rev);
                pushed.push((slot, rev, update.cost()));
                total_pushed += 1;
                outbox.push(Out::Event { sub: *sub, update });
            }
            Step::Take => take(usize::MAX, &mut batch, &mut pushed, &mut consumer),
            Step::TakeSome(limit) => take(*limit, &mut batch, &mut pushed, &mut consumer),
        }
    }
    take(usize::MAX, &mut batch, &mut pushed, &mut consumer);
    assert_eq!(
        consumer.seen, latest,
        "the newest rev of every (sub, key) arrives"
    );
    let skipped = stats.skipped.load(Ordering::Relaxed);
    assert_eq!(
        consumer.delivered + skipped,
        total_pushed,
        "skipped events are counted"
    );
    assert_eq!(
        wakes.load(Ordering::Relaxed),
        consumer.batches,
        "one wake-up per batch"
    );
    skipped
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// A budget of 0 to about five events: most runs conflate.
    #[test]
    fn conflation_keeps_the_newest(max_bytes in 0..600usize, steps in prop::collection::vec(step(), 0..120)) {
        run(max_bytes, &steps);
    }
}

#[test]
fn the_test_sees_conflation() {
    // Guards the property test against budgets that never conflate: ten
    // writes of one key into room for two must skip some.
    let push = Step::Push {
        sub: 0,
        key: 0,
        value: Some(1),
    };
    assert!(run(2 * 70, &vec![push; 10]) > 0);
}
