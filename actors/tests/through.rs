//! Key actors with a backplane (actors/src/through.rs, docs/scaling.md
//! §5): writes go through it and apply at the rev it gives; the feed's
//! `Mirror` messages apply only if newer; a deletion this server made
//! ahead of its feed is not undone by the feed's older writes of the key,
//! even once the key has left the registry. The backplane here is a small
//! in-memory store that numbers writes as a NATS stream does.

mod common;

use common::{del, get, outcome, set, value, Inbox};
use ipcbus_actors::backplane::{Backplane, Expect, Pending, Put, WriteError};
use ipcbus_actors::{Done, Mirror, Registry, RegistryOptions, Set};
use ipcbus_protocol::Life;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A store numbering every write, values and deletions alike, with
/// compare-and-set on a key's value rev.
#[derive(Default)]
struct Numbered {
    state: Mutex<(u64, HashMap<Arc<str>, u64>)>,
    /// Deletions to refuse (as `unavailable`) before taking one.
    refuse_deletes: std::sync::atomic::AtomicUsize,
}

impl Backplane for Numbered {
    fn put(&self, key: Arc<str>, put: Put, _live: u64) -> Pending {
        let mut state = self.state.lock().expect("lock");
        let current = state.1.get(&key).copied().unwrap_or(0);
        let result = match put.expect {
            Expect::Rev(rev) if rev != current => Err(WriteError::Conflict { current }),
            Expect::Absent if current != 0 => Err(WriteError::Conflict { current }),
            _ => {
                state.0 += 1;
                let rev = state.0;
                state.1.insert(key, rev);
                Ok(rev)
            }
        };
        Box::pin(async move { result })
    }

    fn delete(&self, key: Arc<str>, if_rev: Option<u64>, _live: u64) -> Pending {
        use std::sync::atomic::Ordering;
        let refuse = self.refuse_deletes.load(Ordering::Acquire);
        if refuse > 0 {
            self.refuse_deletes.store(refuse - 1, Ordering::Release);
            let e = WriteError::Unavailable("no quorum".into());
            return Box::pin(async move { Err(e) });
        }
        let mut state = self.state.lock().expect("lock");
        let current = state.1.get(&key).copied().unwrap_or(0);
        let result = match if_rev {
            _ if current == 0 => Err(WriteError::NotFound),
            Some(rev) if rev != current => Err(WriteError::Conflict { current }),
            _ => {
                state.0 += 1;
                state.1.remove(&key);
                Ok(state.0)
            }
        };
        Box::pin(async move { result })
    }
}

/// Waits (up to 10 s) until `key` has no value, in the registry and in
/// the backplane.
async fn wait_gone(registry: &Registry, reader: &Inbox, backplane: &Numbered, key: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while get(registry, reader, key).await.is_some() {
        assert!(std::time::Instant::now() < deadline, "{key} stayed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(backplane.state.lock().expect("lock").1.get(key), None);
}

fn registry() -> Registry {
    shared().1
}

/// A registry on an in-memory backplane, and the backplane.
fn shared() -> (Arc<Numbered>, Registry) {
    let backplane = Arc::new(Numbered::default());
    let registry = Registry::with_backplane(backplane.clone(), RegistryOptions::default());
    (backplane, registry)
}

/// What the feed would bring for a write at `rev`.
fn mirror(rev: u64, byte: Option<u8>) -> Mirror {
    Mirror {
        rev,
        value: byte.map(value),
        at_ms: 1,
        expires_at_ms: None,
        ephemeral: false,
        own: false,
        permit: None,
    }
}

#[actix::test]
async fn writes_take_the_backplanes_revs_and_compare_and_set_is_its_own() {
    let registry = registry();
    let inbox = Inbox::new(1, &registry);
    let one = set(&registry, &inbox, "k", 1, Life::default()).await;
    let two = set(&registry, &inbox, "k", 2, Life::default()).await;
    assert_eq!((one, two), (1, 2));
    assert_eq!(get(&registry, &inbox, "k").await, Some((2, value(2))));
    let msg = Set {
        value: value(3),
        if_rev: Some(1),
        life: Life::default(),
        reply: inbox.reply_to(),
    };
    assert!(registry.send("k", true, msg).is_ok());
    let refused = outcome(&inbox).await.expect_err("a conflict");
    assert_eq!(refused.rev, Some(2));
    // Another server's write, then this server's own write seen again.
    registry.mirror("k", mirror(5, Some(5)));
    registry.mirror("k", mirror(2, Some(2)));
    assert_eq!(get(&registry, &inbox, "k").await, Some((5, value(5))));
    assert_eq!(registry.last_rev(), 5);
}

#[actix::test]
async fn the_feeds_older_writes_do_not_bring_back_a_key_deleted_ahead_of_it() {
    let registry = registry();
    let inbox = Inbox::new(1, &registry);
    // This server writes and deletes; its feed has brought neither yet.
    let written = set(&registry, &inbox, "k", 1, Life::default()).await;
    del(&registry, &inbox, "k").await;
    assert!(common::at_rest(&registry, "k").await || registry.has_actor("k").is_none());
    // The feed catches up: the write, then the deletion.
    registry.mirror("k", mirror(written, Some(1)));
    assert_eq!(
        get(&registry, &inbox, "k").await,
        None,
        "a deleted key came back"
    );
    registry.mirror("k", mirror(written + 1, None));
    assert_eq!(get(&registry, &inbox, "k").await, None);
    // Later writes of the key, from anywhere, apply as usual.
    registry.mirror("k", mirror(written + 2, Some(9)));
    assert_eq!(
        get(&registry, &inbox, "k").await,
        Some((written + 2, value(9)))
    );
}

#[actix::test]
async fn a_value_this_server_never_saw_stays_deleted_when_the_feed_brings_it_late() {
    let (backplane, registry) = shared();
    let inbox = Inbox::new(1, &registry);
    // Another server wrote the key; this server's feed has not brought it.
    let put = Put {
        value: value(5),
        expect: Expect::Any,
        ttl_ms: None,
        ephemeral: false,
    };
    let theirs = backplane.put("k".into(), put, 0).await.expect("put");
    let msg = ipcbus_actors::Del {
        if_rev: None,
        reply: inbox.reply_to(),
    };
    assert!(registry.send("k", true, msg).is_ok());
    assert!(matches!(outcome(&inbox).await, Ok(Done::Rev(rev)) if rev > theirs));
    registry.mirror("k", mirror(theirs, Some(5)));
    assert_eq!(
        get(&registry, &inbox, "k").await,
        None,
        "a deleted key came back"
    );
}

#[actix::test]
async fn a_deletion_through_the_backplane_answers_with_its_rev() {
    let registry = registry();
    let inbox = Inbox::new(1, &registry);
    set(&registry, &inbox, "k", 1, Life::default()).await;
    let msg = ipcbus_actors::Del {
        if_rev: None,
        reply: inbox.reply_to(),
    };
    assert!(registry.send("k", true, msg).is_ok());
    assert!(matches!(outcome(&inbox).await, Ok(Done::Rev(2))));
    // Not found: the backplane says so, even for a key this server lacks.
    let msg = ipcbus_actors::Del {
        if_rev: None,
        reply: inbox.reply_to(),
    };
    assert!(registry.send("never", true, msg).is_ok());
    let refused = outcome(&inbox).await.expect_err("not found");
    assert_eq!(refused.code, ipcbus_protocol::ErrorCode::NotFound);
}

#[actix::test]
async fn the_end_of_a_session_deletes_its_ephemeral_key_even_if_the_first_try_fails() {
    let (backplane, registry) = shared();
    let session = Inbox::new(1, &registry);
    let reader = Inbox::new(2, &registry);
    let life = Life {
        ephemeral: true,
        ..Life::default()
    };
    let rev = set(&registry, &session, "online", 1, life).await;
    backplane
        .refuse_deletes
        .store(2, std::sync::atomic::Ordering::Release);
    session.outbox.close();
    registry.release_owned(&session.outbox);
    // Two refusals, a second apart each, then the deletion goes through.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while get(&registry, &reader, "online").await == Some((rev, value(1))) {
        assert!(
            std::time::Instant::now() < deadline,
            "the key outlived its session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(get(&registry, &reader, "online").await, None);
    assert_eq!(backplane.state.lock().expect("lock").1.get("online"), None);
}

#[actix::test]
async fn an_ephemeral_value_of_this_server_that_no_session_holds_is_deleted() {
    // An ephemeral set whose acknowledgement was lost (the session was told
    // `unavailable`) was stored all the same: the feed brings it, tied to
    // this server's lease but to no session of it.
    let (backplane, registry) = shared();
    let reader = Inbox::new(2, &registry);
    let put = Put {
        value: value(7),
        expect: Expect::Any,
        ttl_ms: None,
        ephemeral: true,
    };
    let stored = backplane.put("lost".into(), put, 0).await.expect("put");
    registry.mirror(
        "lost",
        Mirror {
            ephemeral: true,
            own: true,
            ..mirror(stored, Some(7))
        },
    );
    wait_gone(&registry, &reader, &backplane, "lost").await;
    // Another server's ephemeral value stays: its lease answers for it.
    let put = Put {
        value: value(8),
        expect: Expect::Any,
        ttl_ms: None,
        ephemeral: true,
    };
    let theirs = backplane.put("theirs".into(), put, 0).await.expect("put");
    registry.mirror(
        "theirs",
        Mirror {
            ephemeral: true,
            ..mirror(theirs, Some(8))
        },
    );
    assert_eq!(
        get(&registry, &reader, "theirs").await,
        Some((theirs, value(8)))
    );
    assert_eq!(
        backplane.state.lock().expect("lock").1.get("theirs"),
        Some(&theirs)
    );
}

#[actix::test]
async fn an_ephemeral_value_of_this_server_stays_while_the_session_holding_the_key_lives() {
    // A session holds an ephemeral key; its next set times out but is
    // stored: the feed brings it, and it is that session's value.
    let (backplane, registry) = shared();
    let session = Inbox::new(1, &registry);
    let reader = Inbox::new(2, &registry);
    let life = Life {
        ephemeral: true,
        ..Life::default()
    };
    set(&registry, &session, "online", 1, life).await;
    let put = Put {
        value: value(2),
        expect: Expect::Any,
        ttl_ms: None,
        ephemeral: true,
    };
    let stored = backplane.put("online".into(), put, 0).await.expect("put");
    registry.mirror(
        "online",
        Mirror {
            ephemeral: true,
            own: true,
            ..mirror(stored, Some(2))
        },
    );
    assert_eq!(
        get(&registry, &reader, "online").await,
        Some((stored, value(2)))
    );
    // Still the session's: its end deletes the key.
    session.outbox.close();
    registry.release_owned(&session.outbox);
    wait_gone(&registry, &reader, &backplane, "online").await;
}
