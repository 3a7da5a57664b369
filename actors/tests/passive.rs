//! Keys at rest: a key actor with nothing to do stops and leaves its value
//! in the registry; the key keeps its value, rev and ties, answers `get`
//! and wildcard replays without an actor, and gets one back for writes,
//! exact subscriptions and its owner's end.

mod common;

use common::*;
use ipcbus_actors::{Del, Done, Out, Registry, Set};
use ipcbus_protocol::{Life, Pattern};
use std::sync::Arc;
use std::time::Duration;

#[actix::test]
async fn an_idle_key_rests_and_keeps_its_value_and_rev() {
    let registry = Registry::new();
    let writer = Inbox::new(1, &registry);
    let rev = set(&registry, &writer, "k", 7, Life::default()).await;
    assert!(at_rest(&registry, "k").await, "no rest after a set");

    // `get` is answered at rest.
    assert_eq!(get(&registry, &writer, "k").await, Some((rev, value(7))));
    assert_eq!(registry.has_actor("k"), Some(false));
    assert_eq!(registry.list(None).await[0].rev, rev);

    // A compare-and-set sees the rev the key had.
    let msg = Set {
        value: value(8),
        if_rev: Some(rev),
        life: Life::default(),
        reply: writer.reply_to(),
    };
    assert!(registry.send("k", true, msg).is_ok());
    assert!(matches!(outcome(&writer).await, Ok(Done::Rev(r)) if r == rev + 1));
    assert!(at_rest(&registry, "k").await);
    assert_eq!(
        get(&registry, &writer, "k").await,
        Some((rev + 1, value(8)))
    );

    // A deleted key leaves the registry.
    let msg = Del {
        if_rev: None,
        reply: writer.reply_to(),
    };
    assert!(registry.send("k", false, msg).is_ok());
    assert!(matches!(outcome(&writer).await, Ok(Done::Rev(r)) if r == rev + 2));
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(registry.has_actor("k"), None);
    assert_eq!(get(&registry, &writer, "k").await, None);
}

#[actix::test]
async fn subscriptions_reach_a_key_at_rest() {
    let registry = Registry::new();
    let writer = Inbox::new(1, &registry);
    let rev = set(&registry, &writer, "a.b", 1, Life::default()).await;
    assert!(at_rest(&registry, "a.b").await);

    // A wildcard replays from the registry; the key stays at rest.
    let wild = Inbox::new(2, &registry);
    let pattern = Pattern::parse("a.*").expect("pattern");
    registry.subscribe(&pattern, &wild.subscriber(1), None);
    assert_eq!(
        event(&wild.next().await),
        (1, "a.b".into(), rev, Some(value(1)))
    );
    assert!(matches!(wild.next().await, Out::Synced { sub: 1 }));
    assert_eq!(registry.has_actor("a.b"), Some(false));
    // Resuming past the key's rev replays nothing.
    registry.subscribe(&pattern, &wild.subscriber(2), Some(rev));
    assert!(matches!(wild.next().await, Out::Synced { sub: 2 }));

    // An exact subscription brings the actor back, with the value.
    let exact = Inbox::new(3, &registry);
    let key = Pattern::parse("a.b").expect("pattern");
    registry.subscribe(&key, &exact.subscriber(1), None);
    assert_eq!(
        event(&exact.next().await),
        (1, "a.b".into(), rev, Some(value(1)))
    );
    assert!(matches!(exact.next().await, Out::Synced { sub: 1 }));
    assert_eq!(registry.has_actor("a.b"), Some(true));

    // A write reaches both wildcard subscriptions and the exact one.
    let next = set(&registry, &writer, "a.b", 2, Life::default()).await;
    assert_eq!(
        event(&exact.next().await),
        (1, "a.b".into(), next, Some(value(2)))
    );
    let mut subs = [event(&wild.next().await), event(&wild.next().await)];
    subs.sort_by_key(|e| e.0);
    assert_eq!(subs[0], (1, "a.b".into(), next, Some(value(2))));
    assert_eq!(subs[1].0, 2);

    // Once the last subscriber is gone, the key rests again.
    registry.unsubscribe(&key, &exact.outbox, 1);
    registry.unsubscribe(&pattern, &wild.outbox, 1);
    registry.unsubscribe(&pattern, &wild.outbox, 2);
    assert!(at_rest(&registry, "a.b").await, "subscribers left, no rest");
    assert_eq!(get(&registry, &writer, "a.b").await, Some((next, value(2))));
}

#[actix::test]
async fn a_key_at_rest_is_written_with_its_wildcard_subscribers() {
    let registry = Registry::new();
    let writer = Inbox::new(1, &registry);
    set(&registry, &writer, "w.x", 1, Life::default()).await;
    assert!(at_rest(&registry, "w.x").await);
    let wild = Inbox::new(2, &registry);
    registry.subscribe(
        &Pattern::parse("w.>").expect("pattern"),
        &wild.subscriber(5),
        None,
    );
    wild.next().await;
    assert!(matches!(wild.next().await, Out::Synced { sub: 5 }));

    // The actor started for this write takes the subscriber from the pattern.
    let rev = set(&registry, &writer, "w.x", 2, Life::default()).await;
    assert_eq!(
        event(&wild.next().await),
        (5, "w.x".into(), rev, Some(value(2)))
    );
}

#[actix::test]
async fn an_ephemeral_key_at_rest_is_released_by_its_owner_only() {
    let registry = Registry::new();
    let owner = Inbox::new(9, &registry);
    let life = Life {
        ephemeral: true,
        ..Life::default()
    };
    let rev = set(&registry, &owner, "e", 1, life).await;
    assert!(at_rest(&registry, "e").await);

    let other = Inbox::new(8, &registry);
    other.outbox.close();
    registry.release_owned(&other.outbox);
    assert!(at_rest(&registry, "e").await);
    assert_eq!(registry.last_rev(), rev, "another session's end deleted it");

    owner.outbox.close();
    registry.release_owned(&owner.outbox);
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(registry.has_actor("e"), None, "the owner's end kept it");
    assert_eq!(registry.last_rev(), rev + 1);
    assert!(registry.list(None).await.is_empty());
}

#[actix::test]
async fn a_key_with_a_ttl_keeps_its_actor_until_it_expires() {
    tokio::time::pause();
    let registry = Registry::new();
    let writer = Inbox::new(1, &registry);
    let life = Life {
        ttl_ms: Some(1_000),
        ..Life::default()
    };
    let rev = set(&registry, &writer, "t", 1, life).await;
    assert!(!at_rest(&registry, "t").await, "rested with a countdown");
    // The paused clock jumps to the expiry once the actors are idle.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(registry.has_actor("t"), None, "not expired");
    assert_eq!(registry.last_rev(), rev + 1);
    // Without a TTL, the next value of the key rests.
    set(&registry, &writer, "t", 2, Life::default()).await;
    assert!(at_rest(&registry, "t").await);
}

#[actix::test]
async fn ephemeral_keys_deleted_or_overwritten_leave_no_trace_of_their_owner() {
    let registry = Registry::new();
    let owner = Inbox::new(9, &registry);
    let other = Inbox::new(8, &registry);
    let life = Life {
        ephemeral: true,
        ..Life::default()
    };
    for i in 0..100 {
        let key = format!("e.{i}");
        set(&registry, &owner, &key, 1, life).await;
        match i % 3 {
            // Deleted by the owner, overwritten by another session, or kept.
            0 => del(&registry, &owner, &key).await,
            1 => _ = set(&registry, &other, &key, 2, Life::default()).await,
            _ => {}
        }
    }
    assert_eq!(
        registry.owned_keys(),
        33,
        "only the keys still owned are tracked"
    );
    owner.outbox.close();
    registry.release_owned(&owner.outbox);
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(registry.owned_keys(), 0);
    assert_eq!(
        registry.list(None).await.len(),
        33,
        "the overwritten keys stay"
    );
    // A set that reaches its key after its session ended is not applied.
    let msg = Set {
        value: value(3),
        if_rev: None,
        life,
        reply: owner.reply_to(),
    };
    assert!(registry.send("late", true, msg).is_ok());
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(registry.has_actor("late"), None);
    assert_eq!(registry.owned_keys(), 0);
}

#[actix::test]
async fn a_key_at_rest_shares_one_write_with_every_reader() {
    // So its value is never copied per reader, and its JSON is rendered once.
    let registry = Registry::new();
    let reader = Inbox::new(1, &registry);
    set(&registry, &reader, "r", 1, Life::default()).await;
    assert!(at_rest(&registry, "r").await);
    let first = get_shared(&registry, &reader, "r").await;
    let json = first
        .json()
        .expect("json")
        .expect("a value")
        .get()
        .to_owned();
    let second = get_shared(&registry, &reader, "r").await;
    assert!(Arc::ptr_eq(&first, &second), "a copy per read");
    assert_eq!(second.json().expect("json").expect("a value").get(), json);
}
