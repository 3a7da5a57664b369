//! Scenario (f) of the benchmark suite: what a server holds in memory per
//! idle connection with one subscription, and per stored key, for every
//! system side by side. Each system runs fresh (nothing else was asked of
//! it), as a process of its own, so its RSS is apart from the load's. Each
//! figure is the growth of its settled RSS divided by the count.
//!
//! Before any load, each idle server is also watched for `--idle-secs`
//! (60 by default): the context switches of each of its threads over that
//! window, from `/proc/<pid>/task/*/status`, tell how often it wakes up
//! while no client is connected (issue 17; docs/benchmarks.md).

use crate::load::peers::Brokers;
use crate::load::{Broker, Publish};
use crate::procs;
use crate::systems::{with_broker, Running, System};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The RSS has settled when it has not changed by more than 1% for this long.
const SETTLED_FOR: Duration = Duration::from_secs(2);
/// The longest wait for it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections opened at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Connections storing keys at once, each one key at a time.
const WRITERS: usize = 16;

/// Options of `ipcbus-bench footprint`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Idle connections, each with one subscription to a key of its own.
    /// ipcbus and Redis are started with room for 20 000 in all.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Keys stored, of `--value-bytes` each.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Systems to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ipcbus,floor,redis,nats,mosquitto"
    )]
    systems: Vec<System>,
    /// The ipcbus binary to measure, e.g. target/release/ipcbus. By default
    /// this program serves (the same server code, but its bigger binary
    /// adds its own pages to the idle RSS).
    #[arg(long)]
    server: Option<std::path::PathBuf>,
    /// How long each idle server is watched for wakeups (context switches
    /// per thread), in seconds, before the load; 0 skips it.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Start ipcbus with its startup self-test, as users run it (by
    /// default it runs with `--no-selftest`).
    #[arg(long)]
    selftest: bool,
}

/// What one system measured, in KiB and bytes.
struct Footprint {
    idle_kib: u64,
    /// Each thread's context switches while idle over `--idle-secs`.
    idle_threads: Vec<procs::ThreadSwitches>,
    per_connection: u64,
    per_key: u64,
}

/// Measures every system; returns a markdown table.
pub(crate) async fn run(args: Args) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let brokers = match args.systems.iter().any(|s| s.is_peer()) {
        true => Some(Brokers::start()?),
        false => None,
    };
    let mut measured = Vec::new();
    for &system in &args.systems {
        eprintln!("footprint: {system}");
        let running = Running::start(
            system,
            dir.path(),
            brokers.as_ref(),
            args.server.as_deref(),
            args.selftest,
        )?;
        let pid = running.pid();
        let f = with_broker!(&running, b => measure(b, pid, &args).await)?;
        measured.push((system, f));
    }
    Ok(table(&args, &measured))
}

/// Idle RSS, then `args.keys` stored keys, then `args.connections` idle
/// subscribed connections, on a system nothing else has used. Keys come
/// first because what they hold stays put, while a server may trim the
/// buffers of idle connections as time passes (Redis does, in its cron).
async fn measure<B: Broker>(broker: &B, pid: u32, args: &Args) -> anyhow::Result<Footprint> {
    let idle = settled_rss(pid).await;
    let idle_threads = idle_wakeups(pid, args.idle_secs).await;
    let body: Vec<u8> = (0..args.value_bytes)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let per_writer = args.keys.div_ceil(WRITERS);
    let writers: Vec<B::Pub> = stream::iter(0..WRITERS)
        .map(|w| {
            let body = &body;
            async move {
                let mut publ = broker.publisher().await?;
                for i in (w * per_writer)..((w + 1) * per_writer).min(args.keys) {
                    publ.store(&key(i), body).await?;
                }
                anyhow::Ok(publ)
            }
        })
        .buffer_unordered(WRITERS)
        .try_collect()
        .await?;
    drop(writers);
    let with_keys = settled_rss(pid).await;

    let connections: Vec<B::Stalled> = stream::iter(0..args.connections)
        .map(|i| async move { broker.stalled(&format!("bench.conn.{i}")).await })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    let with_connections = settled_rss(pid).await;
    drop(connections);
    Ok(Footprint {
        idle_kib: idle,
        idle_threads,
        per_key: with_keys.saturating_sub(idle) * 1024 / args.keys.max(1) as u64,
        per_connection: with_connections.saturating_sub(with_keys) * 1024
            / args.connections.max(1) as u64,
    })
}

fn key(i: usize) -> String {
    format!("bench.footprint.{i}")
}

/// The markdown report: one column per system.
fn table(args: &Args, measured: &[(System, Footprint)]) -> String {
    let stored = (args.value_bytes
        + (0..args.keys).map(|i| key(i).len()).sum::<usize>() / args.keys.max(1))
        as u64;
    let mut out = String::from("| measure |");
    for (system, _) in measured {
        let _ = write!(out, " {system} |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(measured.len()));
    let cells = |cell: fn(&Footprint, u64) -> String| -> Vec<String> {
        measured.iter().map(|(_, f)| cell(f, stored)).collect()
    };
    let rows = [
        (
            "idle server RSS".to_owned(),
            cells(|f, _| format!("{:.1} MiB", f.idle_kib as f64 / 1024.0)),
        ),
        (
            format!(
                "per idle connection with one subscription ({} connections)",
                args.connections
            ),
            cells(|f, _| format!("{:.1} KiB", f.per_connection as f64 / 1024.0)),
        ),
        (
            format!(
                "per stored key ({} keys, {stored} B of key and value each), beyond key and value",
                args.keys
            ),
            cells(|f, stored| format!("{} B", f.per_key.saturating_sub(stored))),
        ),
    ];
    for (name, row) in rows {
        let _ = write!(out, "\n| {name} | {} |", row.join(" | "));
    }
    if args.idle_secs > 0 {
        let _ = write!(
            out,
            "\n| idle context switches in {} s, all threads (the busiest thread) | {} |",
            args.idle_secs,
            cells(|f, _| {
                let all: u64 = f.idle_threads.iter().map(|t| t.switches).sum();
                let most = f.idle_threads.iter().map(|t| t.switches).max();
                format!("{all} ({})", most.unwrap_or(0))
            })
            .join(" | ")
        );
        out.push_str(&threads(args.idle_secs, measured));
    }
    if let Some(server) = &args.server {
        let _ = write!(out, "\n\nipcbus: {}", server.display());
    }
    out.push('\n');
    out
}

/// Each thread of the idle process `pid` with its context switches over
/// `secs` seconds; nothing for 0.
async fn idle_wakeups(pid: u32, secs: u64) -> Vec<procs::ThreadSwitches> {
    if secs == 0 {
        return Vec::new();
    }
    let before = procs::thread_switches(pid);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    procs::switches_between(&before, &procs::thread_switches(pid))
}

/// Each system's threads with their idle context switches, one line each.
fn threads(secs: u64, measured: &[(System, Footprint)]) -> String {
    let mut out = format!("\n\nContext switches per thread in {secs} s idle (thread id, name):\n");
    for (system, f) in measured {
        let list: Vec<String> = f
            .idle_threads
            .iter()
            .map(|t| format!("{} `{}` {}", t.tid, t.name, t.switches))
            .collect();
        let _ = write!(out, "\n- {system}: {}", list.join(", "));
    }
    out
}

/// The RSS of process `pid` in KiB once it has stopped moving.
async fn settled_rss(pid: u32) -> u64 {
    let started = Instant::now();
    let mut last = procs::rss_kib(pid).unwrap_or(0);
    let mut since = Instant::now();
    while since.elapsed() < SETTLED_FOR && started.elapsed() < SETTLE_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = procs::rss_kib(pid).unwrap_or(0);
        if now.abs_diff(last) * 100 > last {
            since = Instant::now();
        }
        last = now;
    }
    last
}
