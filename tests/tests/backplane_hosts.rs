//! The backplane's cluster tests on hosts ([`ipcbus_tests::netns`]): three
//! network namespaces, each with one NATS node and one ipcbus server, with
//! 2 ms of delay on each host's link (4 ms round trips between hosts), and
//! the test's clients in the root namespace. The bodies are
//! `ipcbus_tests::backplane::cases`, which `backplane.rs` runs on loopback.
//!
//! Needs root, iproute2 and iptables (legacy). Without them the tests run
//! on the loopback cluster and say so, unless `IPCBUS_NETNS=required` (CI):
//! then they fail.

use ipcbus_tests::backplane::cases;
use ipcbus_tests::nats::NatsCluster;
use ipcbus_tests::netns::{self, Hosts};
use std::time::{Duration, Instant};

/// One test at a time: each runs three nats-servers (syncing every write
/// to disk) and three ipcbus servers, and what it measures on hosts means
/// little with other clusters competing for the machine's cores.
static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts the cluster on three hosts, saying how long it took.
async fn cluster() -> NatsCluster {
    let started = Instant::now();
    let cluster = NatsCluster::start_on_hosts(3).await.expect("cluster");
    match cluster.hosts() {
        Some(hosts) => eprintln!(
            "cluster on 3 hosts (round trip {:?}) ready in {:?}",
            hosts.rtt(),
            started.elapsed()
        ),
        None => eprintln!("cluster on loopback ready in {:?}", started.elapsed()),
    }
    // `ip netns exec` became nats-server in the same process: `kill(i)`
    // kills the node.
    for i in 0..3 {
        let pid = cluster.pid(i).expect("running");
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_eq!(comm.trim(), "nats-server", "process {pid}");
    }
    cluster
}

#[test]
fn hosts_have_the_delay_between_them_and_are_removed_after() {
    let _one = ONE.blocking_lock();
    let hosts = match Hosts::new(3, netns::DELAY) {
        Ok(hosts) => hosts,
        Err(e) if netns::required() => panic!("IPCBUS_NETNS=required, but no hosts: {e:#}"),
        Err(e) => {
            eprintln!("netns: no hosts ({e:#}); nothing to measure on loopback");
            return;
        }
    };
    // Hosts 3 and 1 (`new` measured 1 and 2): each way, one delay.
    let (min, median) = hosts.round_trips(2, 0).expect("round trips");
    eprintln!("TCP round trip host 3 ⇄ host 1: min {min:?}, median {median:?}");
    assert!(min >= netns::DELAY * 2, "{min:?}");
    assert!(median < Duration::from_secs(1), "{median:?}");
    let names: Vec<String> = (0..3).map(|i| hosts.host(i).netns.clone()).collect();
    drop(hosts);
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let left = String::from_utf8_lossy(&left.stdout);
    for name in names {
        assert!(!left.contains(&name), "{name} is left: {left}");
    }
}

#[tokio::test]
async fn a_write_through_one_host_reaches_the_others_with_its_rev() {
    let _one = ONE.lock().await;
    let cluster = cluster().await;
    cases::a_write_reaches_the_others_with_its_rev(&cluster).await;
}

#[tokio::test]
async fn compare_and_set_through_two_hosts_has_one_winner_each_round() {
    let _one = ONE.lock().await;
    let cluster = cluster().await;
    cases::compare_and_set_has_one_winner_each_round(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_nats_leader_on_its_host_loses_no_acknowledged_write() {
    let _one = ONE.lock().await;
    let mut cluster = cluster().await;
    cases::killing_the_nats_leader_loses_no_acknowledged_write(&mut cluster).await;
}

#[tokio::test]
async fn a_killed_hosts_server_has_its_ephemeral_keys_go_away_everywhere() {
    let _one = ONE.lock().await;
    let cluster = cluster().await;
    let program = std::path::Path::new(env!("CARGO_BIN_EXE_ipcbus-soak"));
    cases::a_killed_servers_ephemeral_keys_go_away_everywhere(&cluster, program).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_quorum_across_hosts_fails_writes_with_unavailable_and_reads_keep_working() {
    let _one = ONE.lock().await;
    let mut cluster = cluster().await;
    cases::losing_quorum_fails_writes_with_unavailable_and_reads_keep_working(&mut cluster).await;
}
