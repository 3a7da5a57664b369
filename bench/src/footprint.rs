//! Scenario (f) of the benchmark suite: what the server holds in memory
//! per idle connection with one subscription, and per stored key. The
//! server runs as a child process (this program, see
//! `ipcbus_tests::child`, or the `ipcbus` binary given with `--server`),
//! so its RSS is apart from the load's. Each
//! figure is the growth of its settled RSS divided by the count.

use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use ipcbus_client::{Client, ClientOptions, Event};
use ipcbus_tests::child::{Launcher, Server};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The RSS has settled when it has not changed by more than 1% for this long.
const SETTLED_FOR: Duration = Duration::from_secs(2);
/// The longest wait for it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections opened at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Writes in flight while the keys are stored.
const WRITES_IN_FLIGHT: usize = 256;

/// Options of `ipcbus-bench footprint`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Idle connections, each with one subscription to a key of its own.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Keys stored, of `--value-bytes` each.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Bytes per value (a MessagePack string of this many bytes of text).
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// The server binary to measure, e.g. target/release/ipcbus. By default
    /// this program serves (the same server code, but its bigger binary
    /// adds its own pages to the idle RSS).
    #[arg(long)]
    server: Option<std::path::PathBuf>,
}

/// Measures; returns a markdown table.
pub(crate) async fn run(args: Args) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let program = match &args.server {
        Some(path) => path.display().to_string(),
        None => "ipcbus-bench, serving".to_owned(),
    };
    let mut launcher = Launcher::new(args.server.clone(), dir.path().to_owned())?;
    let max = (args.connections + 16).to_string();
    launcher.extra = vec!["--max-connections".into(), max, "--no-selftest".into()];
    let server = launcher.start()?;
    let options = ClientOptions {
        token: Some(server.token.clone()),
        ..ClientOptions::default()
    };
    let idle = settled_rss(&server).await;

    let clients: Vec<(Client, ipcbus_client::Subscription)> = stream::iter(0..args.connections)
        .map(|i| subscribed(&server.url, options.clone(), i))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    let with_connections = settled_rss(&server).await;

    let writer = Client::connect_with(&server.url, options.clone()).await?;
    let value = Bytes::from(rmp_serde::to_vec(&"x".repeat(args.value_bytes))?);
    let key_bytes: usize = (0..args.keys).map(|i| key(i).len()).sum();
    stream::iter(0..args.keys)
        .map(|i| {
            let (writer, value) = (&writer, value.clone());
            async move { writer.set_raw(&key(i), value, None).await }
        })
        .buffer_unordered(WRITES_IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let with_keys = settled_rss(&server).await;
    drop(clients);

    let per_connection =
        with_connections.saturating_sub(idle) * 1024 / args.connections.max(1) as u64;
    let per_key = with_keys.saturating_sub(with_connections) * 1024 / args.keys.max(1) as u64;
    let stored = (value.len() + key_bytes / args.keys.max(1)) as u64;
    let mut table = String::from("| measure | figure |\n|---|---:|\n");
    let _ = writeln!(
        table,
        "| idle server RSS ({program}) | {:.1} MiB |",
        idle as f64 / 1024.0
    );
    let _ = writeln!(
        table,
        "| per idle connection with one subscription ({} connections) | {:.1} KiB |",
        args.connections,
        per_connection as f64 / 1024.0
    );
    let _ = writeln!(
        table,
        "| per stored key ({} keys, {} B of key and value each) | {per_key} B ({} B beyond key and value) |",
        args.keys,
        stored,
        per_key.saturating_sub(stored)
    );
    server.stop()?;
    Ok(table)
}

fn key(i: usize) -> String {
    format!("bench.footprint.{i}")
}

/// A connection subscribed to a key of its own, once its replay is done.
async fn subscribed(
    url: &str,
    options: ClientOptions,
    i: usize,
) -> anyhow::Result<(Client, ipcbus_client::Subscription)> {
    let client = Client::connect_with(url, options).await?;
    let mut sub = client.subscribe(&format!("bench.conn.{i}")).await?;
    while let Some(event) = sub.next().await {
        if event == Event::Synced {
            return Ok((client, sub));
        }
    }
    anyhow::bail!("subscription {i} ended before it synced")
}

/// The server's RSS in KiB once it has stopped moving.
async fn settled_rss(server: &Server) -> u64 {
    let started = Instant::now();
    let mut last = server.rss_kib().unwrap_or(0);
    let mut since = Instant::now();
    while since.elapsed() < SETTLED_FOR && started.elapsed() < SETTLE_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = server.rss_kib().unwrap_or(0);
        if now.abs_diff(last) * 100 > last {
            since = Instant::now();
        }
        last = now;
    }
    last
}
