//! Helpers for the tests of several ipcbus servers on one NATS JetStream
//! bucket (docs/scaling.md): a server on a [`NatsCluster`] node (on that
//! node's host, when the cluster has hosts), the Rust client connected to
//! it, and the next events of a subscription; [`cases`], the tests that
//! run both on loopback and on hosts.

pub mod cases;

use crate::nats::NatsCluster;
use crate::{test_config, TestServer};
use futures_util::StreamExt;
use ipcbus::backplane::BackplaneConfig;
use ipcbus_client::{Client, ClientOptions, Entry, Event, Subscription, Watch};
use std::path::Path;
use std::time::Duration;

/// Long enough for a change to cross servers, on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(20);

/// The settings of an ipcbus server on the cluster, through NATS node
/// `node`, with the startup self-test on. Its lease is the default (30 s),
/// which outlasts a NATS leader election as docs/scaling.md §6 requires: a
/// shorter one runs out while a test kills the leader or the quorum, and
/// the server then closes its sessions (1012) so that their ephemeral keys
/// are set again. The server a test kills to see its ephemeral keys go
/// ([`child`]) has a lease of one second.
pub fn config(cluster: &NatsCluster, node: usize) -> ipcbus::Config {
    ipcbus::Config {
        backplane: Some(BackplaneConfig::default().with_servers(&cluster.url(node))),
        selftest: true,
        ..test_config()
    }
}

/// An ipcbus server on the cluster, through NATS node `node`.
/// It runs its startup self-test, through the bucket.
pub fn server(cluster: &NatsCluster, node: usize) -> TestServer {
    place(cluster, node, config(cluster, node))
}

/// A server with `config` on node `node`'s host when the cluster has
/// hosts; otherwise here, on loopback.
pub fn place(cluster: &NatsCluster, node: usize, config: ipcbus::Config) -> TestServer {
    match cluster.hosts() {
        Some(hosts) => {
            let host = hosts.host(node);
            TestServer::in_netns(config, &host.netns, host.ip.into())
        }
        None => TestServer::with_config(config),
    }
}

/// An ipcbus server in a child process on the cluster, through NATS node
/// `node`, with a lease of one second; `dir` holds its data and config.
/// `program` runs [`crate::child::serve_main`] (`ipcbus-soak` does). On
/// hosts it runs on the node's host, through `ip netns exec`, which execs
/// it in the same process: killing the child kills the server.
pub fn child(
    cluster: &NatsCluster,
    node: usize,
    dir: &Path,
    program: &Path,
) -> crate::child::Server {
    use crate::child::{Launcher, AS_SERVER};
    let config = dir.join("ipcbus.toml");
    let text = format!(
        "selftest = false\n[backplane]\nservers = [\"{}\"]\nlease_ttl_ms = 1000\n",
        cluster.url(node)
    );
    std::fs::write(&config, text).expect("config");
    let mut extra = vec!["--config".to_owned(), config.display().to_string()];
    let (program, prefix) = match cluster.hosts() {
        Some(hosts) => {
            let host = hosts.host(node);
            extra.extend(["--host".to_owned(), host.ip.to_string()]);
            let exec =
                ["netns", "exec", &host.netns, &program.display().to_string()].map(str::to_owned);
            (
                "ip".into(),
                [exec.as_slice(), &[AS_SERVER.to_owned()]].concat(),
            )
        }
        None => (program.to_owned(), vec![AS_SERVER.to_owned()]),
    };
    let launcher = Launcher {
        program,
        prefix,
        data_dir: dir.to_owned(),
        panics: Default::default(),
        extra,
    };
    launcher.start().expect("start the server")
}

/// The Rust client, connected to `server` (waiting up to [`WAIT`]). Its
/// requests wait up to [`WAIT`] too: longer than the server's
/// `write_timeout_ms` (5 s), so that a write the bucket does not take in
/// time fails with the server's `unavailable`, not the client's own
/// timeout, which on hosts with delay could come first.
pub async fn client(server: &TestServer) -> Client {
    let options = ClientOptions {
        token: server.token().map(str::to_owned),
        connect_timeout: Some(WAIT),
        timeout: WAIT,
        ..ClientOptions::default()
    };
    Client::connect_with(&server.url(), options)
        .await
        .expect("connect")
}

/// The next event, within [`WAIT`].
pub async fn next(sub: &mut Subscription) -> Event {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("an event within WAIT")
        .expect("subscription open")
}

/// Waits until `found` finds what it looks for in `watch`, within `bound`
/// (one against a hang, not a figure); `None` if it did not.
pub async fn watch_until<T>(
    watch: &Watch,
    bound: Duration,
    found: impl Fn(&Watch) -> Option<T>,
) -> Option<T> {
    let waiting = async {
        loop {
            let changed = watch.changed();
            match found(watch) {
                Some(it) => return it,
                None => changed.await,
            }
        }
    };
    tokio::time::timeout(bound, waiting).await.ok()
}

/// Waits until `watch` has `key` at `rev` or later, within `bound` (one
/// against a hang, not a figure), and returns what it has; `what` names
/// the watch in the panic otherwise.
pub async fn reaches(watch: &Watch, key: &str, rev: u64, bound: Duration, what: &str) -> Entry {
    let entry = watch_until(watch, bound, |w| w.get_raw(key).filter(|e| e.rev >= rev)).await;
    entry.unwrap_or_else(|| {
        panic!(
            "{what}: {key} at {:?}, want rev {rev}",
            watch.get_raw(key).map(|e| (e.rev, e.value))
        )
    })
}

/// Takes the deletion marker of `key` (plain tokens, no escapes: its
/// subject is `k.<key>`) out of the `ipcbus` bucket on the NATS at `url`,
/// as NATS does when the marker's hour runs out (docs/scaling.md §7).
pub async fn purge_marker(url: &str, key: &str) {
    let client = async_nats::connect(url).await.expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("KV_ipcbus").await.expect("stream");
    let purged = stream
        .purge()
        .filter(format!("$KV.ipcbus.k.{key}"))
        .await
        .expect("purge");
    assert_eq!(purged.purged, 1, "{key}: the marker, and nothing else");
}

/// Reads events until the subscription's `synced`.
pub async fn synced(sub: &mut Subscription) {
    while next(sub).await != Event::Synced {}
}
