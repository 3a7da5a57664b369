//! Faults and scale on the NATS backplane (docs/scaling.md §8, issue 16),
//! through real ipcbus servers and the unchanged Rust client: three
//! servers under concurrent mixed writes end with one state; without a
//! quorum writes fail `unavailable` while reads go on; every acknowledged
//! write survives a restart of everything; a stalled subscriber costs its
//! own server a bounded outbox and slows nobody else.
//!
//! Each test starts its own 3-node NATS cluster. Times are printed
//! (`--nocapture`), never asserted but for generous bounds.

use futures_util::StreamExt;
use ipcbus_client::{Client, Event, Watch};
use ipcbus_protocol::{Codec, ErrorCode};
use ipcbus_tests::backplane::{cases, client, config, server, synced, WAIT};
use ipcbus_tests::nats::NatsCluster;
use ipcbus_tests::TestServer;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Every key a client sees: key → (rev, MessagePack value).
type State = BTreeMap<String, (u64, bytes::Bytes)>;

/// What a watch holds now.
fn watched(watch: &Watch) -> State {
    watch
        .keys()
        .into_iter()
        .filter_map(|key| watch.get_raw(&key).map(|e| (key, (e.rev, e.value))))
        .collect()
}

/// What a server answers now: `keys`, then `get` of each.
async fn read(client: &Client) -> State {
    let mut state = State::new();
    for (key, rev) in client.keys(None).await.expect("keys") {
        let (value, got) = client.get_raw(&key).await.expect("get");
        assert_eq!(got, rev, "{key}: nothing writes any more");
        state.insert(key, (got, value));
    }
    state
}

/// How two states differ, in a few words, for a failing test's message.
fn diff(a: &State, b: &State) -> String {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let rev = |s: &State| s.get(k).map(|(r, _)| *r);
            format!("{k}: {:?} vs {:?}", rev(a), rev(b))
        })
        .collect();
    let shown: Vec<&String> = differ.iter().take(5).collect();
    format!("{} keys differ, e.g. {shown:?}", differ.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wildcard_subscriber_on_each_server_ends_with_identical_state_after_10k_mixed_writes() {
    const WRITES: usize = 10_000;
    const KEYS: usize = 300;
    const WRITERS_PER_SERVER: usize = 4;
    let cluster = NatsCluster::start(3).await.expect("cluster");
    let servers = [
        server(&cluster, 0),
        server(&cluster, 1),
        server(&cluster, 2),
    ];
    let mut clients = Vec::new();
    for s in &servers {
        clients.push(client(s).await);
    }
    let mut watches = Vec::new();
    for c in &clients {
        let watch = c.watch(">").await.expect("watch");
        watch.synced().await.expect("synced");
        watches.push(watch);
    }

    // Writers on every server at once, each with its own choices: plain
    // sets, sets with the rev it last saw (conflicts are expected), and
    // deletions (of keys that may be gone already).
    let seed = fastrand::u64(..);
    eprintln!("seed {seed}");
    let writers = WRITERS_PER_SERVER * clients.len();
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let c = clients[w % clients.len()].clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(w as u64));
                let mut seen: HashMap<String, u64> = HashMap::new();
                let [mut ok, mut conflicts, mut missing] = [0usize; 3];
                for i in (w..WRITES).step_by(writers) {
                    let k = rng.usize(..KEYS);
                    let key = format!("mix.{}.k{k}", k % 7);
                    let value = format!("w{w}.{i}");
                    let choice = rng.u8(..100);
                    let result = if choice < 60 {
                        c.set(&key, &value).await
                    } else if choice < 85 {
                        let rev = seen.get(&key).copied().unwrap_or(0);
                        c.set_if(&key, &value, rev).await
                    } else {
                        c.del(&key).await
                    };
                    match result {
                        Ok(rev) => {
                            ok += 1;
                            seen.insert(key, rev);
                        }
                        Err(e) => match e.code() {
                            Some(ErrorCode::RevMismatch) => {
                                conflicts += 1;
                                seen.insert(key, e.current_rev().unwrap_or(0));
                            }
                            Some(ErrorCode::NotFound) => missing += 1,
                            _ => panic!("writer {w}, write {i} ({key}): {e}"),
                        },
                    }
                }
                [ok, conflicts, missing]
            })
        })
        .collect();
    let mut totals = [0usize; 3];
    for task in tasks {
        let counts = task.await.expect("writer");
        for (t, n) in totals.iter_mut().zip(counts) {
            *t += n;
        }
    }
    let written = started.elapsed();
    assert_eq!(totals.iter().sum::<usize>(), WRITES);
    eprintln!(
        "{WRITES} writes by {writers} writers on 3 servers in {written:?} \
         ({:.0}/s): {} applied, {} rev_mismatch, {} not_found",
        WRITES as f64 / written.as_secs_f64(),
        totals[0],
        totals[1],
        totals[2]
    );

    // Nothing writes any more: the three watches converge, on what a
    // fresh read of a server shows.
    let converging = Instant::now();
    let deadline = converging + Duration::from_secs(60);
    loop {
        let changes: Vec<_> = watches.iter().map(|w| Box::pin(w.changed())).collect();
        let states: Vec<State> = watches.iter().map(watched).collect();
        let (same, fresh) = if states[0] == states[1] && states[1] == states[2] {
            let fresh = read(&clients[0]).await;
            (fresh == states[0], Some(fresh))
        } else {
            (false, None)
        };
        if same {
            eprintln!(
                "the three watches identical and equal to a fresh read {:?} after the \
                 last write: {} keys",
                converging.elapsed(),
                states[0].len()
            );
            assert!(states[0].len() > KEYS / 2, "some keys are left");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence within 60 s: watch 0 vs 1: {}; watch 0 vs 2: {}; \
             watch 0 vs a fresh read of server 0: {}",
            diff(&states[0], &states[1]),
            diff(&states[0], &states[2]),
            fresh.map_or_else(|| "not read".to_owned(), |f| diff(&states[0], &f))
        );
        // The next change of any watch; a fresh read that differed from
        // an unchanged watch is read again a moment later.
        let any = futures_util::future::select_all(changes);
        let _ = tokio::time::timeout(Duration::from_millis(200), any).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_quorum_fails_writes_with_unavailable_and_reads_keep_working() {
    let mut cluster = NatsCluster::start(3).await.expect("cluster");
    cases::losing_quorum_fails_writes_with_unavailable_and_reads_keep_working(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_restart_of_everything() {
    const KEYS: usize = 200;
    let mut cluster = NatsCluster::start(3).await.expect("cluster");
    let (acked, store) = {
        let (one, two) = (server(&cluster, 0), server(&cluster, 1));
        let (a, b) = (client(&one).await, client(&two).await);
        assert_eq!(a.store(), b.store());
        // Each key through one server or the other, some written again
        // through the other one.
        let write = |i: usize, round: usize| {
            let c = if (i + round).is_multiple_of(2) {
                &a
            } else {
                &b
            };
            let (key, value) = (format!("r.k{i}"), format!("v{round}.{i}"));
            async move {
                let rev = c.set(&key, &value).await.expect("set");
                (key, (rev, value))
            }
        };
        let first = futures_util::future::join_all((0..KEYS).map(|i| write(i, 0))).await;
        let again = futures_util::future::join_all((0..KEYS).step_by(3).map(|i| write(i, 1))).await;
        let acked: BTreeMap<String, (u64, String)> = first.into_iter().chain(again).collect();
        (acked, a.store())
    };
    // Both servers have stopped (gracefully); now every NATS node dies.
    for i in 0..3 {
        cluster.kill(i);
    }
    let restarting = Instant::now();
    cluster
        .restart_stopped()
        .await
        .expect("restart the cluster");
    let ready = restarting.elapsed();
    // The servers connect with backoff (up to 10 s between tries) while
    // the bucket has no leader: start them once it has one.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        match cluster.stream_leader("KV_ipcbus").await {
            Ok(leader) => break leader,
            Err(e) => assert!(Instant::now() < deadline, "after 30 s: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let led = restarting.elapsed();
    let (one, two) = (server(&cluster, 1), server(&cluster, 2));
    let (a, b) = (client(&one).await, client(&two).await);
    eprintln!(
        "cluster ready {ready:?} after the restart, the bucket led by {} {led:?} after \
         it, both servers serving {:?} after it",
        cluster.name(leader),
        restarting.elapsed()
    );
    // Just after a restart the stream's leader may still be applying its
    // log, so a server's mirror can start with a prefix of it and get the
    // rest as new changes: wait (within a deadline) for each write.
    let deadline = Instant::now() + Duration::from_secs(30);
    for c in [&a, &b] {
        assert_eq!(c.store(), store, "the same store after the restart");
        for (key, (rev, value)) in &acked {
            loop {
                let got = c.get_raw(key).await.ok().map(|(bytes, got_rev)| {
                    let got: String = rmp_serde::from_slice(&bytes).expect("a string");
                    (got_rev, got)
                });
                if got.as_ref() == Some(&(*rev, value.clone())) {
                    break;
                }
                assert!(Instant::now() < deadline, "{key}: {got:?}, want rev {rev}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert_eq!(c.keys(Some("r.>")).await.expect("keys").len(), KEYS);
    }
}

/// A figure of `GET /metrics`.
async fn metric(server: &TestServer, name: &str) -> f64 {
    let (status, body) = server.http_get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_subscriber_on_one_server_keeps_bounded_memory_there_and_slows_no_other() {
    const KEYS: usize = 50;
    const ROUNDS: usize = 40;
    const VALUE_BYTES: usize = 10 << 10;
    const OUTBOX: usize = 64 << 10;
    /// The outbox's budget, plus one pending event of each key past it
    /// (protocol.md §8.2), plus the gauge's steps of 16 KiB, with room.
    const BOUND: f64 = (OUTBOX + KEYS * (VALUE_BYTES + 1024) + (64 << 10)) as f64;
    let cluster = NatsCluster::start(3).await.expect("cluster");
    let one = TestServer::with_config(ipcbus::Config {
        outbox_bytes: OUTBOX,
        ..config(&cluster, 0)
    });
    let two = server(&cluster, 1);

    // On A, a peer subscribes and reads nothing more.
    let mut stuck = one.raw(Codec::MsgPack).await;
    let (reply, _) = stuck
        .call(json!({"id": 1, "op": "sub", "pattern": "big.>"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    // On B, a subscriber that reads everything.
    let b = client(&two).await;
    let mut sub = b.subscribe("big.>").await.expect("subscribe");
    synced(&mut sub).await;
    let (seen_tx, mut seen) = tokio::sync::watch::channel((0usize, HashMap::<String, u64>::new()));
    let consumer = tokio::spawn(async move {
        while let Some(event) = sub.next().await {
            match event {
                Event::Value { key, rev, .. } => seen_tx.send_modify(|(n, last)| {
                    *n += 1;
                    let prev = last.insert(key.clone(), rev);
                    assert!(prev.is_none_or(|p| p < rev), "{key}: {rev} after {prev:?}");
                }),
                other => panic!("only values expected, got {other:?}"),
            }
        }
    });

    // A writer on B; meanwhile A's outbox figures are sampled.
    let writer = client(&two).await;
    let filler = "x".repeat(VALUE_BYTES);
    let done = std::sync::atomic::AtomicBool::new(false);
    let writes = async {
        let started = Instant::now();
        let mut last = HashMap::new();
        for round in 0..ROUNDS {
            let sets = (0..KEYS).map(|k| {
                let key = format!("big.k{k}");
                let value = (round, &filler);
                let writer = &writer;
                async move { (writer.set(&key, &value).await.expect("set"), key) }
            });
            for (rev, key) in futures_util::future::join_all(sets).await {
                last.insert(key, rev);
            }
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        (last, started.elapsed())
    };
    let sample = async {
        let (mut most, mut samples) = (0f64, 0usize);
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            most = most.max(metric(&one, "ipcbus_outbox_bytes").await);
            samples += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (most, samples)
    };
    let ((last, took), (most, samples)) = tokio::join!(writes, sample);
    let megabytes = (KEYS * ROUNDS * VALUE_BYTES) as f64 / f64::from(1 << 20);
    eprintln!(
        "{} writes of {VALUE_BYTES} bytes ({megabytes:.1} MiB) through B in {took:?}; \
         A's outbox bytes at most {most} in {samples} samples (bound {BOUND})",
        KEYS * ROUNDS
    );

    // B's subscriber got the last write of every key.
    let wait = tokio::time::timeout(
        WAIT,
        seen.wait_for(|(_, got)| last.iter().all(|(k, r)| got.get(k) == Some(r))),
    );
    let received = wait
        .await
        .expect("B's subscriber has the last write of every key within WAIT")
        .expect("the consumer is alive")
        .0;
    eprintln!(
        "B's subscriber received {received} of {} writes",
        KEYS * ROUNDS
    );
    // A's feed went on too: a reader there finds every last write.
    let reader = client(&one).await;
    for (key, rev) in &last {
        let deadline = Instant::now() + WAIT;
        while reader.get_raw(key).await.expect("get").1 != *rev {
            assert!(Instant::now() < deadline, "A never had {key} at {rev}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // A's outbox stayed bounded: the stalled session was conflated (or
    // closed), not buffered.
    let skips = metric(&one, "ipcbus_conflation_skips_total").await;
    let overflows = metric(&one, "ipcbus_outbox_overflows_total").await;
    eprintln!("A: {skips} events conflated away, {overflows} sessions overflowed");
    assert!(most <= BOUND, "A's outbox held {most} bytes, bound {BOUND}");
    assert!(
        skips > 0.0 || overflows > 0.0,
        "the stalled session was neither conflated nor closed"
    );
    drop(stuck);
    consumer.abort();
}
