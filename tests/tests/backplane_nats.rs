//! The backplane's NATS side against a real 3-node JetStream cluster
//! (docs/scaling.md §5–7): writes take the stream's sequence as their rev,
//! `if_rev` maps to the bucket's compare-and-set with exactly one winner
//! across servers, deletes and creates over delete markers behave as the
//! protocol says, the feed replays the bucket then follows it (TTL
//! markers, owners, escaped keys), and writes without quorum fail as
//! `Unavailable` while nothing is lost.

use bytes::Bytes;
use ipcbus::backplane::{BackplaneConfig, Change, Expect, Feed, NatsBackplane, Put, WriteError};
use ipcbus_tests::nats::NatsCluster;
use std::time::Duration;

/// How long a change may take to reach a feed (a new stream leader may
/// take several seconds to be elected).
const WAIT: Duration = Duration::from_secs(20);

fn config(cluster: &NatsCluster, node: usize) -> BackplaneConfig {
    BackplaneConfig {
        write_timeout_ms: 2_000,
        ..BackplaneConfig::default().with_servers(&cluster.url(node))
    }
}

async fn connect(cluster: &NatsCluster, node: usize, name: &str) -> NatsBackplane {
    NatsBackplane::connect(&config(cluster, node), name)
        .await
        .expect("backplane")
}

fn put(value: &'static [u8], expect: Expect) -> Put {
    Put {
        value: Bytes::from_static(value),
        expect,
        ttl_ms: None,
        ephemeral: false,
    }
}

/// The feed's next change, with its store time checked and zeroed (it
/// cannot be known in advance).
async fn next(feed: &mut Feed) -> Change {
    let mut change = tokio::time::timeout(WAIT, feed.next())
        .await
        .expect("a change within WAIT")
        .expect("feed open")
        .expect("no error");
    if let Change::Value { at_ms, .. } = &mut change {
        let now = ipcbus_now_ms();
        assert!(
            *at_ms > now - 60_000 && *at_ms <= now + 1_000,
            "stored at {at_ms}, now {now}"
        );
        *at_ms = 0;
    }
    change
}

#[tokio::test]
async fn writes_map_to_the_buckets_sequence_and_compare_and_set() {
    let cluster = NatsCluster::start(3).await.expect("cluster");
    let a = connect(&cluster, 0, "a").await;
    let b = connect(&cluster, 2, "b").await;
    assert_eq!(a.store_id(), b.store_id(), "one bucket, one store");
    assert!(a.store_id().starts_with("nats:ipcbus:"), "{}", a.store_id());

    // MessagePack values: 1, 2, 3 (positive fixints).
    let r1 = a.put("k", put(b"\x01", Expect::Any), 0).await.expect("put");
    let r2 = b
        .put("k", put(b"\x02", Expect::Rev(r1)), r1)
        .await
        .expect("if_rev");
    assert!(r2 > r1);
    assert_eq!(
        a.put("k", put(b"\x03", Expect::Rev(r1)), r1).await,
        Err(WriteError::Conflict { current: r2 })
    );
    // if_rev 0: only without a value; a deleted key has none.
    let c1 = a
        .put("c", put(b"\x01", Expect::Absent), 0)
        .await
        .expect("create");
    assert_eq!(
        b.put("c", put(b"\x02", Expect::Absent), 0).await,
        Err(WriteError::Conflict { current: c1 })
    );
    let d = b.delete("c", None, c1).await.expect("del");
    assert!(d > c1);
    // A deletion's rev is no value's: neither `del` nor `if_rev` takes it.
    assert_eq!(b.delete("c", None, 0).await, Err(WriteError::NotFound));
    assert_eq!(b.delete("c", Some(d), 0).await, Err(WriteError::NotFound));
    assert_eq!(
        b.put("c", put(b"\x02", Expect::Rev(d)), 0).await,
        Err(WriteError::Conflict { current: 0 })
    );
    let c2 = b
        .put("c", put(b"\x03", Expect::Absent), 0)
        .await
        .expect("create over a marker");
    assert!(c2 > d);
    assert_eq!(
        a.put("c", put(b"\x03", Expect::Rev(d)), 0).await,
        Err(WriteError::Conflict { current: c2 }),
        "a marker's sequence is no value's rev"
    );
    // A mirror that has not seen the value yet costs a round trip, not a failure.
    assert!(
        a.put("c", put(b"\x04", Expect::Rev(c2)), 0)
            .await
            .expect("if_rev")
            > c2
    );
    // del: with if_rev only at that rev; without, whatever rev the key has
    // (a stale hint costs a round trip, not a failure).
    assert_eq!(
        a.delete("k", Some(r1), r1).await,
        Err(WriteError::Conflict { current: r2 })
    );
    assert!(
        a.delete("k", None, r1)
            .await
            .expect("del with a stale mirror")
            > r2
    );
    assert_eq!(a.delete("never", None, 0).await, Err(WriteError::NotFound));
    assert_eq!(
        a.delete("never", Some(5), 5).await,
        Err(WriteError::NotFound)
    );
}

#[tokio::test]
async fn concurrent_if_rev_writes_through_two_servers_have_one_winner() {
    let cluster = NatsCluster::start(3).await.expect("cluster");
    let a = connect(&cluster, 0, "a").await;
    let b = connect(&cluster, 1, "b").await;
    let mut rev = a
        .put("cas", put(b"\x00", Expect::Any), 0)
        .await
        .expect("put");
    for round in 0..100 {
        let (x, y) = tokio::join!(
            a.put("cas", put(b"\x01", Expect::Rev(rev)), rev),
            b.put("cas", put(b"\x02", Expect::Rev(rev)), rev)
        );
        let (won, lost) = match (x, y) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            other => panic!("round {round}: exactly one winner expected, got {other:?}"),
        };
        assert_eq!(lost, WriteError::Conflict { current: won }, "round {round}");
        rev = won;
    }
}

#[tokio::test]
async fn the_feed_replays_the_bucket_then_follows_it() {
    let cluster = NatsCluster::start(3).await.expect("cluster");
    let a = connect(&cluster, 0, "server-a").await;
    let b = connect(&cluster, 1, "server-b").await;
    let kept = a
        .put("svc.weather.today", put(b"\x15", Expect::Any), 0)
        .await
        .expect("put");
    let gone = a
        .put("svc.old", put(b"\x01", Expect::Any), 0)
        .await
        .expect("put");
    let gone = a.delete("svc.old", None, gone).await.expect("del");
    let odd = a
        .put("ü.a:b.x=1", put(b"\x02", Expect::Any), 0)
        .await
        .expect("put");
    let eph = Put {
        ephemeral: true,
        ..put(b"\x03", Expect::Any)
    };
    let eph = a.put("svc.online", eph, 0).await.expect("put");

    let mut feed = Feed::start(&b).await.expect("feed");
    let mut replay = Vec::new();
    while !feed.caught_up() {
        replay.push(next(&mut feed).await);
    }
    let value = |key: &str, rev, v: &'static [u8], owner: Option<&str>| Change::Value {
        key: key.to_owned(),
        rev,
        value: Bytes::from_static(v),
        owner: owner.map(str::to_owned),
        expires_at_ms: None,
        at_ms: 0,
    };
    assert_eq!(
        replay,
        [
            value("svc.weather.today", kept, b"\x15", None),
            Change::Deleted {
                key: "svc.old".into(),
                rev: gone
            },
            value("ü.a:b.x=1", odd, b"\x02", None),
            value("svc.online", eph, b"\x03", Some("server-a")),
        ]
    );

    // Live: a write through the other server arrives with its rev; a TTL
    // runs out into a deletion that every feed sees.
    let live = a
        .put("svc.weather.today", put(b"\x16", Expect::Any), 0)
        .await
        .expect("put");
    assert_eq!(
        next(&mut feed).await,
        value("svc.weather.today", live, b"\x16", None)
    );
    let ttl = Put {
        ttl_ms: Some(1000),
        ..put(b"\x04", Expect::Any)
    };
    let before = ipcbus_now_ms();
    let short = a.put("svc.short", ttl, 0).await.expect("put");
    match next(&mut feed).await {
        Change::Value {
            key,
            rev,
            expires_at_ms: Some(at),
            ..
        } => {
            assert_eq!((key.as_str(), rev), ("svc.short", short));
            assert!(
                (before..before + 5_000).contains(&(at - 1000)),
                "expires {at}"
            );
        }
        other => panic!("the TTL'd value expected, got {other:?}"),
    }
    match next(&mut feed).await {
        Change::Deleted { key, rev } => assert!(key == "svc.short" && rev > short),
        other => panic!("the expiry's marker expected, got {other:?}"),
    }
}

#[tokio::test]
async fn without_quorum_writes_are_unavailable_and_nothing_acknowledged_is_lost() {
    let mut cluster = NatsCluster::start(3).await.expect("cluster");
    let a = connect(&cluster, 0, "a").await;
    let mut acked = Vec::new();
    for i in 0..20u8 {
        let value = Bytes::from(vec![i]);
        let rev = a
            .put(
                &format!("k.{i}"),
                Put {
                    value,
                    expect: Expect::Any,
                    ttl_ms: None,
                    ephemeral: false,
                },
                0,
            )
            .await
            .expect("put");
        acked.push(rev);
    }
    cluster.kill(1);
    cluster.kill(2);
    match a.put("k.late", put(b"\x01", Expect::Any), 0).await {
        Err(WriteError::Unavailable(why)) => assert!(!why.is_empty()),
        other => panic!("unavailable expected without quorum, got {other:?}"),
    }
    // Everything back: every acknowledged write is there, with its rev.
    cluster.restart(1).await.expect("restart");
    cluster.restart(2).await.expect("restart");
    let b = connect(&cluster, 2, "b").await;
    let mut feed = Feed::start(&b).await.expect("feed");
    let mut seen = std::collections::HashMap::new();
    // Just after a restart the stream's leader may still be applying its
    // log: what the feed calls caught up can lack the last writes, which
    // then come as new. So read until every acknowledged write is there
    // (`next` fails the test after WAIT without a change).
    let all_there = |seen: &std::collections::HashMap<String, u64>| {
        acked
            .iter()
            .enumerate()
            .all(|(i, rev)| seen.get(&format!("k.{i}")) == Some(rev))
    };
    while !all_there(&seen) {
        if let Change::Value { key, rev, .. } = next(&mut feed).await {
            seen.insert(key, rev);
        }
    }
    for (i, rev) in acked.iter().enumerate() {
        assert_eq!(
            seen.get(&format!("k.{i}")),
            Some(rev),
            "k.{i}; seen {seen:?}; logs:\n{}\n{}\n{}",
            cluster.log(0),
            cluster.log(1),
            cluster.log(2)
        );
    }
}

fn ipcbus_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[tokio::test]
async fn a_gone_servers_ephemeral_keys_are_deleted_by_the_others() {
    use ipcbus::backplane::lease::{keep_lease, reap};
    use ipcbus::backplane::Owners;
    let cluster = NatsCluster::start(3).await.expect("cluster");
    let ttl = Duration::from_millis(1000);
    let a = connect(&cluster, 0, "server-a").await;
    let b = connect(&cluster, 1, "server-b").await;
    let lease_a = tokio::spawn(keep_lease(
        a.clone(),
        ttl,
        0,
        tokio::sync::watch::channel(0).0,
    ));
    let lease_b = tokio::spawn(keep_lease(
        b.clone(),
        ttl,
        0,
        tokio::sync::watch::channel(0).0,
    ));
    let eph = |v| Put {
        ephemeral: true,
        ..put(v, Expect::Any)
    };
    let gone = a.put("a.online", eph(b"\x01"), 0).await.expect("put");
    let taken = a.put("a.taken", eph(b"\x02"), 0).await.expect("put");
    let over = b
        .put("a.taken", put(b"\x03", Expect::Any), taken)
        .await
        .expect("taken over");
    let kept = b.put("b.online", eph(b"\x04"), 0).await.expect("put");

    // Server b follows the bucket, as its feed task will.
    let mut feed = Feed::start(&b).await.expect("feed");
    let mut owners = Owners::default();
    while !feed.caught_up() {
        owners.apply(&next(&mut feed).await);
    }
    assert!(owners.orphans().is_empty(), "both leases live");
    // Server a dies: its lease is no longer written.
    lease_a.abort();
    let deleted = loop {
        let change = next(&mut feed).await;
        let doomed = owners.apply(&change);
        if !doomed.is_empty() {
            assert_eq!(doomed, [("a.online".to_owned(), gone)]);
            reap(&b, doomed).await;
        }
        if let Change::Deleted { key, rev } = change {
            break (key, rev);
        }
    };
    assert_eq!(deleted.0, "a.online");
    assert!(deleted.1 > gone);
    // A key taken over by another write, and b's own, are left alone.
    assert_eq!(
        b.delete("a.taken", Some(taken), 0).await,
        Err(WriteError::Conflict { current: over })
    );
    assert_eq!(
        b.put("b.online", put(b"\x05", Expect::Rev(kept)), 0)
            .await
            .map(|r| r > kept),
        Ok(true)
    );
    lease_b.abort();
}
