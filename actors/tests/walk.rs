//! The walk of a wildcard subscription: its replay goes in turns of the
//! key index (other work runs between them), and keys written, deleted,
//! created or woken from rest while it goes are each delivered exactly
//! once, ending with the latest state of every key.

mod common;

use common::*;
use ipcbus_actors::{Del, Out, Registry, Set};
use ipcbus_protocol::{Life, Pattern};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;

/// Keys at rest before the subscription: a few turns' worth.
const KEYS: usize = 3000;

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Sends a write (a set, or a delete of a key that may not exist) without
/// waiting; its outcome is taken from `writer` later.
fn write(registry: &Registry, writer: &Inbox, key: &str, delete: bool) {
    if delete {
        let msg = Del {
            if_rev: None,
            reply: writer.reply_to(),
        };
        if let Err(Del { reply, .. }) = registry.send(key, false, msg) {
            reply.send(Err(ipcbus_protocol::ErrorBody::not_found()));
        }
    } else {
        let msg = Set {
            value: value(7),
            if_rev: None,
            life: Life::default(),
            reply: writer.reply_to(),
        };
        assert!(registry.send(key, true, msg).is_ok());
    }
}

/// What the subscriber saw: per key, its revs in order and whether it is there.
#[derive(Default)]
struct Mirror {
    revs: HashMap<String, Vec<u64>>,
    live: BTreeMap<String, u64>,
    synced: bool,
}

impl Mirror {
    fn apply(&mut self, out: &Out) {
        match out {
            Out::Event { update, .. } => {
                let key = update.key.to_string();
                let revs = self.revs.entry(key.clone()).or_default();
                if let Some(last) = revs.last() {
                    assert!(update.rev > *last, "{key}: rev {} after {last}", update.rev);
                }
                revs.push(update.rev);
                if update.value.is_some() {
                    self.live.insert(key, update.rev);
                } else {
                    self.live.remove(&key);
                }
            }
            Out::Synced { .. } => self.synced = true,
            Out::Reply { .. } => panic!("no reply expected: {out:?}"),
        }
    }

    fn take(&mut self, reader: &Inbox) {
        let mut got = std::collections::VecDeque::new();
        reader.outbox.take_all(&mut got);
        for out in &got {
            self.apply(out);
        }
    }
}

#[actix::test]
async fn a_replay_in_turns_under_writes_misses_and_doubles_nothing() {
    let registry = Registry::new();
    let writer = Inbox::new(1, &registry);
    for i in 0..KEYS {
        set(&registry, &writer, &format!("k.{i:04}"), 1, Life::default()).await;
    }
    // Another tree the pattern does not match, walked past by its prefix.
    set(&registry, &writer, "other.x", 1, Life::default()).await;
    let reader = Inbox::new(2, &registry);
    registry.subscribe(
        &Pattern::parse("k.>").expect("pattern"),
        &reader.subscriber(1),
        None,
    );
    let mut mirror = Mirror::default();
    mirror.take(&reader);
    assert!(
        mirror.revs.is_empty(),
        "the replay ran before its first turn"
    );

    // Writes land while the walk goes: on keys it has passed, keys it has
    // not reached (at rest, so they get an actor), new keys and deletes.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut turns = 0;
    let mut writes = 0;
    while !mirror.synced {
        for _ in 0..5 {
            let key = format!("k.{:04}", rng.below(KEYS + 500));
            write(&registry, &writer, &key, rng.below(4) == 0);
            writes += 1;
        }
        tokio::task::yield_now().await;
        turns += 1;
        mirror.take(&reader);
        assert!(turns < 100_000, "no synced");
    }
    assert!(
        turns > 2,
        "the replay took {turns} turns: not in turns of the index"
    );
    // Let the writes finish, then every event has been pushed.
    for _ in 0..writes {
        let _ = writer.next().await;
    }
    mirror.take(&reader);
    let want: BTreeMap<String, u64> = registry
        .list(Some(&Pattern::parse("k.>").expect("pattern")))
        .await
        .into_iter()
        .map(|k| (k.key.into_owned(), k.rev))
        .collect();
    assert_eq!(mirror.live.len(), want.len());
    assert!(
        mirror.live == want,
        "the subscriber's view differs from the store"
    );
}

#[actix::test]
async fn a_key_woken_before_the_walk_reaches_it_replays_to_the_walk_once() {
    let registry = Registry::new();
    let writer = Inbox::new(1, &registry);
    for i in 0..KEYS {
        set(&registry, &writer, &format!("k.{i:04}"), 1, Life::default()).await;
    }
    let reader = Inbox::new(2, &registry);
    registry.subscribe(
        &Pattern::parse("k.*").expect("pattern"),
        &reader.subscriber(1),
        None,
    );
    // An exact subscription gives the last key an actor before the walk's
    // first turn; that actor, not the walk, owes the replay.
    let other = Inbox::new(3, &registry);
    let last = format!("k.{:04}", KEYS - 1);
    registry.subscribe(
        &Pattern::parse(&last).expect("pattern"),
        &other.subscriber(1),
        None,
    );
    let mut mirror = Mirror::default();
    while !mirror.synced {
        tokio::task::yield_now().await;
        mirror.take(&reader);
    }
    assert_eq!(mirror.live.len(), KEYS);
    assert_eq!(
        mirror.revs[&last].len(),
        1,
        "replayed {:?}",
        mirror.revs[&last]
    );
}

#[actix::test]
async fn a_listing_goes_in_turns_and_lists_each_key_once() {
    let registry = Registry::new();
    let writer = Inbox::new(1, &registry);
    for i in 0..KEYS {
        set(&registry, &writer, &format!("k.{i:04}"), 1, Life::default()).await;
    }
    let listing = registry.list(None);
    let mut listing = std::pin::pin!(listing);
    // One turn, then the listing lets others run: the lock is free.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(listing.as_mut().poll(cx))).await;
    assert!(first.is_pending(), "listed {KEYS} keys in one turn");
    set(&registry, &writer, "k.9999", 1, Life::default()).await;
    del(&registry, &writer, "k.0000").await;
    let keys = listing.await;
    let names: Vec<&str> = keys.iter().map(|k| &*k.key).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted, each once");
    // k.0000 was listed before its deletion; k.9999 came after the turn.
    assert_eq!(names.len(), KEYS + 1);
    assert_eq!(names.first(), Some(&"k.0000"));
    assert_eq!(names.last(), Some(&"k.9999"));
}
