//! What durability costs. A persisted `set` is acknowledged only once it is
//! in the data file and fsync'd (redb, `Durability::Immediate`); the store's
//! one writer thread commits every write waiting at that moment in one
//! transaction, so the cost per write falls as more are in flight. This
//! measures acknowledged writes per second, persisted and in memory, with
//! 1, 16, 64 and 256 requests in flight on one connection, against a
//! server in this process whose data directory is a temporary one (so on
//! the disk of `$TMPDIR`).

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use ipcbus_client::{Client, ClientOptions, SetOptions};
use ipcbus_tests::TestServer;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Options of `ipcbus-bench persist`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Requests in flight, one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    inflight: Vec<usize>,
    /// Distinct keys written, round robin.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
}

/// Runs the measurements; returns a markdown table.
pub(crate) async fn run(args: Args) -> anyhow::Result<String> {
    let server = TestServer::start();
    let options = ClientOptions {
        token: server.token().map(str::to_owned),
        ..ClientOptions::default()
    };
    let client = Client::connect_with(&server.bare_url(), options).await?;
    let value = Bytes::from(rmp_serde::to_vec(&"x".repeat(args.value_bytes))?);
    let keys: Vec<String> = (0..args.keys)
        .map(|i| format!("bench.persist.{i}"))
        .collect();
    let mut table = String::from(
        "| in flight | persisted writes/s | mean latency | in-memory writes/s | mean latency |\n|---:|---:|---:|---:|---:|\n",
    );
    for &inflight in &args.inflight {
        let duration = Duration::from_secs_f64(args.seconds);
        let on_disk = measure(&client, &keys, &value, inflight, true, duration).await?;
        let in_memory = measure(&client, &keys, &value, inflight, false, duration).await?;
        let _ = writeln!(
            table,
            "| {inflight} | {:.0} | {:.2} ms | {:.0} | {:.3} ms |",
            on_disk.0, on_disk.1, in_memory.0, in_memory.1
        );
    }
    Ok(table)
}

/// Writes for `duration` keeping `inflight` requests outstanding; returns
/// (acknowledged writes per second, mean latency in ms).
async fn measure(
    client: &Client,
    keys: &[String],
    value: &Bytes,
    inflight: usize,
    persist: bool,
    duration: Duration,
) -> anyhow::Result<(f64, f64)> {
    let options = SetOptions {
        persist,
        ..SetOptions::default()
    };
    let write = |i: usize| {
        let key = &keys[i % keys.len()];
        let sent = Instant::now();
        let request = client.set_raw_with(key, value.clone(), options);
        async move { request.await.map(|_| sent.elapsed()) }
    };
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    while next < inflight {
        pending.push(write(next));
        next += 1;
    }
    let started = Instant::now();
    let (mut done, mut latency) = (0u64, Duration::ZERO);
    while let Some(result) = pending.next().await {
        latency += result?;
        done += 1;
        if started.elapsed() < duration {
            pending.push(write(next));
            next += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((
        done as f64 / secs,
        latency.as_secs_f64() * 1000.0 / done.max(1) as f64,
    ))
}
