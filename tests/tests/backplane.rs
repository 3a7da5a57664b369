//! Several ipcbus servers on one NATS JetStream bucket (docs/scaling.md),
//! with the unchanged Rust client: a write through one server reaches the
//! subscribers of another with the same rev, read-your-writes holds on the
//! writer's server, compare-and-set through two servers has one winner,
//! and TTL and ephemeral keys go away on every server. The bodies shared
//! with `backplane_hosts.rs` are in `ipcbus_tests::backplane::cases`.

use ipcbus_client::{Event, SetOptions};
use ipcbus_tests::backplane::{cases, client, next, server, synced};
use ipcbus_tests::nats::NatsCluster;
use std::time::Duration;

#[tokio::test]
async fn a_write_through_one_server_reaches_the_others_with_its_rev() {
    let cluster = NatsCluster::start(3).await.expect("cluster");
    cases::a_write_reaches_the_others_with_its_rev(&cluster).await;
}

#[tokio::test]
async fn compare_and_set_through_two_servers_has_one_winner_each_round() {
    let cluster = NatsCluster::start(3).await.expect("cluster");
    cases::compare_and_set_has_one_winner_each_round(&cluster).await;
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

#[tokio::test]
async fn a_killed_servers_ephemeral_keys_go_away_everywhere() {
    let cluster = NatsCluster::start(3).await.expect("cluster");
    let program = std::path::Path::new(env!("CARGO_BIN_EXE_ipcbus-soak"));
    cases::a_killed_servers_ephemeral_keys_go_away_everywhere(&cluster, program).await;
}

#[tokio::test]
async fn killing_the_nats_leader_loses_no_acknowledged_write() {
    let mut cluster = NatsCluster::start(3).await.expect("cluster");
    cases::killing_the_nats_leader_loses_no_acknowledged_write(&mut cluster).await;
}
