//! A server cut off from NATS for longer than its lease (docs/scaling.md
//! §6): the other servers delete its sessions' ephemeral keys, as for a
//! dead server. When it is back it ends its sessions, so that their
//! clients reconnect and set their ephemeral keys again: the key is back
//! everywhere, with no action of the program that set it. It also reads
//! the bucket again from the start, so that it forgets a key deleted
//! meanwhile whose deletion has left the bucket since (as a marker does
//! after an hour).
//!
//! One NATS server (a cluster would tell the cut-off client of its other
//! nodes, and it would reconnect around the cut), reached by one ipcbus
//! server through a TCP proxy that the test blocks.

use ipcbus::backplane::BackplaneConfig;
use ipcbus_client::{Client, ClientOptions, Event, SetOptions};
use ipcbus_protocol::ErrorCode;
use ipcbus_tests::backplane::{next, purge_marker};
use ipcbus_tests::proxy::Proxy;
use ipcbus_tests::standalone::Standalone;
use ipcbus_tests::{test_config, TestServer};
use std::time::{Duration, Instant};

/// Long enough for NATS's client to reconnect and the feed to resume.
const BACK: Duration = Duration::from_secs(90);

fn server(nats: &str) -> TestServer {
    TestServer::with_config(ipcbus::Config {
        backplane: Some(BackplaneConfig {
            replicas: 1,
            lease_ttl_ms: 1_000,
            write_timeout_ms: 1_000,
            ..BackplaneConfig::default().with_servers(nats)
        }),
        ..test_config()
    })
}

async fn client(server: &TestServer) -> Client {
    let options = ClientOptions {
        token: server.token().map(str::to_owned),
        connect_timeout: Some(Duration::from_secs(20)),
        ..ClientOptions::default()
    };
    Client::connect_with(&server.url(), options)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_cut_off_longer_than_its_lease_gets_its_ephemeral_keys_set_again() {
    let nats = Standalone::start(tempfile::tempdir().expect("temp dir"), &[]);
    let target = nats
        .url()
        .trim_start_matches("nats://")
        .parse()
        .expect("addr");
    let proxy = Proxy::start(target).await;
    let cut_off = server(&format!("nats://{}", proxy.addr()));
    let other = server(nats.url());
    let owner = client(&cut_off).await;
    let ephemeral = SetOptions {
        ephemeral: true,
        ..SetOptions::default()
    };
    owner
        .set_with("room.online", &true, ephemeral)
        .await
        .expect("set");
    let watcher = client(&other).await;
    let mut watcher_states = watcher.state();
    watcher_states.mark_unchanged();
    let mut sub = watcher.subscribe("room.online").await.expect("sub");
    assert!(matches!(next(&mut sub).await, Event::Value { .. }));
    assert_eq!(next(&mut sub).await, Event::Synced);
    let topic = watcher.set("room.topic", &"news").await.expect("set");
    let mirrored = async {
        while owner.get_raw("room.topic").await.ok().map(|(_, rev)| rev) != Some(topic) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(BACK, mirrored)
        .await
        .expect("room.topic on the other server within BACK");

    proxy.block(true);
    let started = Instant::now();
    assert!(
        matches!(next(&mut sub).await, Event::Deleted { .. }),
        "the key of a server without a lease is deleted"
    );
    println!("deleted after {:?} cut off", started.elapsed());
    // Deleted while the server is cut off, and the deletion's marker gone
    // from the bucket before it is back.
    watcher.del("room.topic").await.expect("del");
    purge_marker(nats.url(), "room.topic").await;

    proxy.block(false);
    let back = Instant::now();
    let event = tokio::time::timeout(BACK, futures_util::StreamExt::next(&mut sub))
        .await
        .expect("the key set again within BACK")
        .expect("subscription open");
    assert!(matches!(event, Event::Value { .. }), "{event:?}");
    println!("set again {:?} after the cut ended", back.elapsed());
    let forgotten = async {
        loop {
            match owner.get_raw("room.topic").await {
                Err(e) if e.code() == Some(ErrorCode::NotFound) => return,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    tokio::time::timeout(BACK, forgotten)
        .await
        .expect("the cut-off server forgets room.topic within BACK");
    println!(
        "room.topic forgotten {:?} after the cut ended",
        back.elapsed()
    );
    // Only the cut-off server closed its sessions.
    assert!(
        !watcher_states.has_changed().expect("open"),
        "the other server's client reconnected: {:?}",
        *watcher_states.borrow()
    );
    // Held by the owner's new session: it goes when that client goes.
    drop(owner);
    assert!(matches!(next(&mut sub).await, Event::Deleted { .. }));
}
