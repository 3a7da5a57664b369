//! `ttl_ms` on tokio's paused clock: a key lives exactly its time, then is
//! deleted with a new rev and a `del` to subscribers; a later `set`
//! replaces or cancels the countdown.

use bytes::Bytes;
use ipcbus_actors::{Done, Out, Outbox, OutboxConfig, Registry, ReplyTo, Set, Subscriber};
use ipcbus_protocol::{Life, Pattern};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// An outbox and the bell it rings when it has items.
struct Inbox {
    outbox: Arc<Outbox>,
    bell: Arc<Notify>,
}

impl Inbox {
    fn new(id: u64, registry: &Registry) -> Inbox {
        let bell = Arc::new(Notify::new());
        let ring = bell.clone();
        let config = OutboxConfig::default();
        let outbox = Outbox::new(id, config, registry.stats().clone(), move || {
            ring.notify_one();
        });
        Inbox {
            outbox: Arc::new(outbox),
            bell,
        }
    }

    /// Waits for the next batch of items.
    async fn next(&self) -> VecDeque<Out> {
        let mut got = VecDeque::new();
        loop {
            self.outbox.take_all(&mut got);
            if !got.is_empty() {
                return got;
            }
            self.bell.notified().await;
        }
    }

    /// What is queued after the actors have run, without waiting for more.
    async fn now(&self) -> VecDeque<Out> {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let mut got = VecDeque::new();
        self.outbox.take_all(&mut got);
        got
    }
}

/// Sets `key` with a TTL (or none) and returns the rev.
async fn set(registry: &Registry, writer: &Inbox, key: &str, ttl_ms: Option<u64>) -> u64 {
    writer.outbox.begin();
    let msg = Set {
        value: Bytes::from_static(&[0x01]),
        if_rev: None,
        life: Life {
            ttl_ms,
            ..Life::default()
        },
        reply: ReplyTo {
            outbox: writer.outbox.clone(),
            id: Some(1),
        },
    };
    assert!(registry.send(key, true, msg).is_ok());
    match writer.next().await.pop_front() {
        Some(Out::Reply {
            result: Ok(Done::Rev(rev)),
            ..
        }) => rev,
        _ => panic!("no rev for the set"),
    }
}

/// The (key, rev, deleted) of each event in `outs`.
fn events(outs: &VecDeque<Out>) -> Vec<(String, u64, bool)> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Event { update, .. } => {
                Some((update.key.to_string(), update.rev, update.value.is_none()))
            }
            _ => None,
        })
        .collect()
}

async fn watcher(registry: &Registry) -> Inbox {
    let inbox = Inbox::new(2, registry);
    let subscriber = Subscriber {
        outbox: inbox.outbox.clone(),
        sub: 1,
    };
    registry.subscribe(&Pattern::parse("t.>").expect("pattern"), &subscriber, None);
    assert!(matches!(
        inbox.next().await.pop_front(),
        Some(Out::Synced { sub: 1 })
    ));
    inbox
}

#[actix::test]
async fn a_key_expires_exactly_at_its_ttl() {
    tokio::time::pause();
    let registry = Registry::new();
    let sub = watcher(&registry).await;
    let writer = Inbox::new(1, &registry);
    let rev = set(&registry, &writer, "t.a", Some(60_000)).await;
    assert_eq!(events(&sub.next().await), [("t.a".to_owned(), rev, false)]);

    tokio::time::advance(Duration::from_millis(59_999)).await;
    assert!(events(&sub.now().await).is_empty(), "expired early");
    assert_eq!(registry.list(None).await.len(), 1);

    tokio::time::advance(Duration::from_millis(1)).await;
    let expired = events(&sub.next().await);
    assert_eq!(
        expired,
        [("t.a".to_owned(), rev + 1, true)],
        "a del, new rev"
    );
    assert!(registry.list(None).await.is_empty());
    assert_eq!(registry.last_rev(), rev + 1);
}

#[actix::test]
async fn a_later_set_replaces_or_cancels_the_countdown() {
    tokio::time::pause();
    let registry = Registry::new();
    let sub = watcher(&registry).await;
    let writer = Inbox::new(1, &registry);

    set(&registry, &writer, "t.moved", Some(1_000)).await;
    set(&registry, &writer, "t.kept", Some(1_000)).await;
    tokio::time::advance(Duration::from_millis(500)).await;
    let moved = set(&registry, &writer, "t.moved", Some(5_000)).await;
    set(&registry, &writer, "t.kept", None).await;
    sub.now().await;

    tokio::time::advance(Duration::from_millis(600)).await;
    assert!(
        events(&sub.now().await).is_empty(),
        "an old countdown fired"
    );
    tokio::time::advance(Duration::from_millis(4_000)).await;
    let expired = events(&sub.next().await);
    assert_eq!(expired, [("t.moved".to_owned(), moved + 2, true)]);
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(events(&sub.now().await).is_empty(), "t.kept expired");
    let keys: Vec<_> = registry
        .list(None)
        .await
        .into_iter()
        .map(|k| k.key)
        .collect();
    assert_eq!(keys, ["t.kept"]);
}
