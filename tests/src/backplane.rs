//! Helpers for the tests of several ipcbus servers on one NATS JetStream
//! bucket (docs/scaling.md): a server on a [`NatsCluster`] node, the Rust
//! client connected to it, and the next events of a subscription.

use crate::nats::NatsCluster;
use crate::{test_config, TestServer};
use futures_util::StreamExt;
use ipcbus::backplane::BackplaneConfig;
use ipcbus_client::{Client, ClientOptions, Event, Subscription};
use std::time::Duration;

/// Long enough for a change to cross servers, on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(20);

/// The settings of an ipcbus server on the cluster, through NATS node
/// `node`, with a lease of one second and the startup self-test on.
pub fn config(cluster: &NatsCluster, node: usize) -> ipcbus::Config {
    ipcbus::Config {
        backplane: Some(BackplaneConfig {
            lease_ttl_ms: 1_000,
            ..BackplaneConfig::default().with_servers(&cluster.url(node))
        }),
        selftest: true,
        ..test_config()
    }
}

/// An ipcbus server on the cluster, through NATS node `node`.
/// It runs its startup self-test, through the bucket.
pub fn server(cluster: &NatsCluster, node: usize) -> TestServer {
    TestServer::with_config(config(cluster, node))
}

/// The Rust client, connected to `server` (waiting up to [`WAIT`]).
pub async fn client(server: &TestServer) -> Client {
    let options = ClientOptions {
        token: server.token().map(str::to_owned),
        connect_timeout: Some(WAIT),
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

/// Reads events until the subscription's `synced`.
pub async fn synced(sub: &mut Subscription) {
    while next(sub).await != Event::Synced {}
}
