//! Several ipcbus servers on one NATS JetStream bucket (docs/scaling.md),
//! with the unchanged Rust client: a write through one server reaches the
//! subscribers of another with the same rev, read-your-writes holds on the
//! writer's server, compare-and-set through two servers has one winner,
//! and TTL and ephemeral keys go away on every server.

use ipcbus_client::{Client, ClientOptions, Event, SetOptions};
use ipcbus_protocol::ErrorCode;
use ipcbus_tests::backplane::{client, next, server, synced, WAIT};
use ipcbus_tests::nats::NatsCluster;
use ipcbus_tests::TestServer;
use std::time::Duration;

/// Waits for the startup self-test's outcome in `/health`.
async fn selftest(server: &TestServer) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = server.http_get("/health").await;
        let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let outcome = health["selftest"].as_str().unwrap_or("").to_owned();
        if outcome != "pending" || tokio::time::Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_write_through_one_server_reaches_the_others_with_its_rev() {
    let cluster = NatsCluster::start(3).await.expect("cluster");
    let (one, two) = (server(&cluster, 0), server(&cluster, 1));
    let (a, b) = (client(&one).await, client(&two).await);
    assert_eq!(a.store(), b.store(), "one bucket, one store");
    // Both self-tests ran at once on one bucket, each on its own key.
    assert_eq!(selftest(&one).await, "passed");
    assert_eq!(selftest(&two).await, "passed");
    let before = a.set("svc.weather.today", &21).await.expect("set");

    // Replayed on the other server, then live, with the writer's revs.
    let mut sub = b.subscribe("svc.>").await.expect("sub");
    match next(&mut sub).await {
        Event::Value { key, rev, .. } => {
            assert_eq!((key.as_str(), rev), ("svc.weather.today", before));
        }
        other => panic!("replay expected, got {other:?}"),
    }
    assert_eq!(next(&mut sub).await, Event::Synced);
    let rev = a.set("svc.weather.today", &22).await.expect("set");
    match next(&mut sub).await {
        Event::Value { key, rev: r, value } => {
            assert_eq!((key.as_str(), r), ("svc.weather.today", rev));
            assert_eq!(rmp_serde::from_slice::<i32>(&value).expect("value"), 22);
        }
        other => panic!("the live value expected, got {other:?}"),
    }
    // Read-your-writes on the writer's server, at once.
    for i in 0..50 {
        let rev = a.set("svc.counter", &i).await.expect("set");
        assert_eq!(a.get_raw("svc.counter").await.expect("get").1, rev);
        assert_eq!(a.get::<i32>("svc.counter").await.expect("get"), i);
    }
    // A deletion through the other server, of a key it has just seen.
    match next(&mut sub).await {
        Event::Value { key, .. } => assert_eq!(key, "svc.counter"),
        other => panic!("{other:?}"),
    }
    let del = b.del("svc.weather.today").await.expect("del");
    assert!(del > rev);
    assert_eq!(
        a.del("svc.weather.today").await.map_err(|e| e.code()),
        Err(Some(ErrorCode::NotFound))
    );
}

#[tokio::test]
async fn compare_and_set_through_two_servers_has_one_winner_each_round() {
    let cluster = NatsCluster::start(3).await.expect("cluster");
    let (one, two) = (server(&cluster, 0), server(&cluster, 2));
    let (a, b) = (client(&one).await, client(&two).await);
    let mut rev = a.set("cas", &0).await.expect("set");
    for round in 1..=100 {
        let other = -round;
        let (x, y) = tokio::join!(a.set_if("cas", &round, rev), b.set_if("cas", &other, rev));
        let (won, lost) = match (x, y) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            other => panic!("round {round}: exactly one winner expected, got {other:?}"),
        };
        assert_eq!(
            lost.code(),
            Some(ErrorCode::RevMismatch),
            "round {round}: {lost}"
        );
        rev = won;
    }
    // Both servers end with the winner of the last round.
    let (va, vb) = (a.get_raw("cas").await.expect("get"), b.get_raw("cas").await);
    assert_eq!(va.1, rev);
    let vb = vb.expect("get");
    assert!(vb.1 <= rev, "the other server's mirror may lag, never lead");
}

#[tokio::test]
async fn ttl_and_ephemeral_keys_go_away_on_every_server() {
    let cluster = NatsCluster::start(3).await.expect("cluster");
    let (one, two) = (server(&cluster, 0), server(&cluster, 1));
    let (a, b) = (client(&one).await, client(&two).await);
    let mut sub = b.subscribe("k.>").await.expect("sub");
    synced(&mut sub).await;
    let ttl = SetOptions {
        ttl: Some(Duration::from_millis(300)),
        ..SetOptions::default()
    };
    let short = a.set_with("k.short", &1, ttl).await.expect("set");
    let eph = SetOptions {
        ephemeral: true,
        ..SetOptions::default()
    };
    let online = a.set_with("k.online", &true, eph).await.expect("set");
    // The session that set the ephemeral key ends.
    a.close();
    let mut deleted = std::collections::HashMap::new();
    while deleted.len() < 2 {
        if let Event::Deleted { key, rev } = next(&mut sub).await {
            deleted.insert(key, rev);
        }
    }
    assert!(deleted["k.short"] > short, "{deleted:?}");
    assert!(deleted["k.online"] > online, "{deleted:?}");
    assert_eq!(b.keys(Some("k.>")).await.expect("keys"), []);
}

/// An ipcbus server in a child process on the cluster, through NATS node
/// `node`, with a lease of one second; `dir` holds its data and config.
fn child(cluster: &NatsCluster, node: usize, dir: &std::path::Path) -> ipcbus_tests::child::Server {
    use ipcbus_tests::child::{Launcher, AS_SERVER};
    let config = dir.join("ipcbus.toml");
    let text = format!(
        "selftest = false\n[backplane]\nservers = [\"{}\"]\nlease_ttl_ms = 1000\n",
        cluster.url(node)
    );
    std::fs::write(&config, text).expect("config");
    let launcher = Launcher {
        program: env!("CARGO_BIN_EXE_ipcbus-soak").into(),
        prefix: vec![AS_SERVER.to_owned()],
        data_dir: dir.to_owned(),
        panics: Default::default(),
        extra: vec!["--config".to_owned(), config.display().to_string()],
    };
    launcher.start().expect("start the server")
}

#[tokio::test]
async fn a_killed_servers_ephemeral_keys_go_away_everywhere() {
    let cluster = NatsCluster::start(3).await.expect("cluster");
    let dir = tempfile::tempdir().expect("dir");
    let victim = child(&cluster, 0, dir.path());
    let options = ClientOptions {
        token: Some(victim.token.clone()),
        ..ClientOptions::default()
    };
    let v = Client::connect_with(&victim.url, options)
        .await
        .expect("connect");
    let eph = SetOptions {
        ephemeral: true,
        ..SetOptions::default()
    };
    let online = v
        .set_with("node.victim.online", &true, eph)
        .await
        .expect("set");
    let kept = v.set("node.victim.name", &"kitchen").await.expect("set");

    let two = server(&cluster, 1);
    let b = client(&two).await;
    let mut sub = b.subscribe("node.>").await.expect("sub");
    synced(&mut sub).await;
    let started = std::time::Instant::now();
    victim.kill9();
    match next(&mut sub).await {
        Event::Deleted { key, rev } => assert!(key == "node.victim.online" && rev > online),
        other => panic!("only the ephemeral key's deletion expected, got {other:?}"),
    }
    eprintln!("ephemeral key gone {:?} after kill -9", started.elapsed());
    // The other key, not ephemeral, stays.
    assert_eq!(b.get_raw("node.victim.name").await.expect("get").1, kept);
}

#[tokio::test]
async fn killing_the_nats_leader_loses_no_acknowledged_write() {
    use std::collections::BTreeMap;
    let mut cluster = NatsCluster::start(3).await.expect("cluster");
    let (one, two) = (server(&cluster, 0), server(&cluster, 1));
    let (a, b) = (client(&one).await, client(&two).await);
    let mut watches = [
        a.watch("w.>").await.expect("watch"),
        b.watch("w.>").await.expect("watch"),
    ];
    a.set("w.first", &0).await.expect("set");
    let leader = cluster.stream_leader("KV_ipcbus").await.expect("leader");
    // Writes before, during and after the leader's death; those that fail
    // (`unavailable`: maybe applied) are left out of what must be there.
    let mut acked = BTreeMap::new();
    let (mut failed, mut slowest) = (0, Duration::ZERO);
    for i in 0..300 {
        if i == 100 {
            cluster.kill(leader);
        }
        let key = format!("w.{}", i % 50);
        let started = std::time::Instant::now();
        match a.set(&key, &i).await {
            Ok(rev) => {
                acked.insert(key, (rev, i));
            }
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e}");
                failed += 1;
            }
        }
        slowest = slowest.max(started.elapsed());
    }
    eprintln!(
        "leader {} killed: {failed} writes unavailable, slowest write {slowest:?}",
        cluster.name(leader)
    );
    assert!(
        acked.len() == 50,
        "writes went on after the election: {}",
        acked.len()
    );
    // Both servers' subscribers converge on the last acknowledged writes.
    for watch in &mut watches {
        for (key, (rev, value)) in &acked {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let changed = watch.changed();
                let got = watch
                    .get_raw(key)
                    .map(|e| (e.rev, rmp_serde::from_slice::<i32>(&e.value).ok()));
                if got.as_ref().is_some_and(|(r, _)| r >= rev) {
                    assert_eq!(got, Some((*rev, Some(*value))), "{key}");
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{key}: {got:?}, want rev {rev}"
                );
                let _ = tokio::time::timeout_at(deadline, changed).await;
            }
        }
    }
}
