//! `ipcbus-bench backplane` (docs/scaling.md; docs/benchmarks.md,
//! "Backplane"): what the NATS backplane costs, measured beside one ipcbus
//! server and beside raw NATS KV, in one run. Each round starts a 3-node
//! JetStream cluster on loopback (`ipcbus_tests::nats`) and, as processes
//! of their own, one plain ipcbus server and two on the cluster (through
//! nodes 1 and 2). "Across" means written through one server (or node)
//! and received through another:
//!
//! - latency: one put at a time to one key, from the put until a
//!   subscriber (watcher) on the other side has it; p50 and p99;
//! - writes/s: `--inflight` writers at once, each waiting for its acks;
//! - deliveries/s: `--fanout` subscribers of `fan.>` on the other side,
//!   each reading as the writers write; deliveries they received per
//!   second, until the last write reached each;
//! - replay: `--keys` keys stored, then the time from subscribing to `r.>`
//!   (watching with history) until the last of them has arrived (`synced`,
//!   or NATS's pending count at 0).

use anyhow::{bail, Context};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use ipcbus_client::{Client, ClientOptions, Event};
use ipcbus_tests::child::{Launcher, Server};
use ipcbus_tests::nats::NatsCluster;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Options of `ipcbus-bench backplane`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Rounds; each figure is the median over them.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Puts timed one at a time, for the latency.
    #[arg(long, default_value_t = 2_000)]
    puts: usize,
    /// Writes for the throughput (and fan-out) run.
    #[arg(long, default_value_t = 20_000)]
    writes: usize,
    /// Writers at once.
    #[arg(long, default_value_t = 32)]
    inflight: usize,
    /// Subscribers for the fan-out.
    #[arg(long, default_value_t = 10)]
    fanout: usize,
    /// Keys for the replay.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// The ipcbus binary to measure, e.g. target/release/ipcbus. By
    /// default this program serves.
    #[arg(long)]
    server: Option<std::path::PathBuf>,
}

/// One system's way to write and to follow.
#[derive(Clone)]
enum Side {
    Bus(Client),
    Kv(Box<kv::Store>),
}

impl Side {
    async fn put(&self, key: &str, value: Bytes) -> anyhow::Result<u64> {
        Ok(match self {
            Side::Bus(c) => c.set_raw(key, value, None).await?,
            Side::Kv(s) => s.put(key, value).await?,
        })
    }

    /// Follows `pattern`; with `history`, current values first.
    async fn follow(&self, pattern: &str) -> anyhow::Result<Follow> {
        Ok(match self {
            Side::Bus(c) => Follow::Bus(c.subscribe(pattern).await?),
            Side::Kv(s) => Follow::Kv(Box::new(s.watch_with_history(pattern).await?)),
        })
    }
}

enum Follow {
    Bus(ipcbus_client::Subscription),
    Kv(Box<kv::Watch>),
}

/// What a follower saw next: a key's rev (and, for NATS, whether nothing
/// more is pending: the end of the history), or that the replay is
/// complete (ipcbus's `synced`).
enum Seen {
    Rev(String, u64, bool),
    Synced,
}

impl Follow {
    async fn next(&mut self) -> anyhow::Result<Seen> {
        let wait = Duration::from_secs(60);
        match self {
            Follow::Bus(s) => match tokio::time::timeout(wait, s.next()).await? {
                Some(Event::Value { key, rev, .. } | Event::Deleted { key, rev }) => {
                    Ok(Seen::Rev(key, rev, false))
                }
                Some(Event::Synced) => Ok(Seen::Synced),
                None => bail!("subscription ended"),
            },
            Follow::Kv(w) => match tokio::time::timeout(wait, w.next()).await? {
                Some(entry) => {
                    let entry = entry?;
                    Ok(Seen::Rev(entry.key, entry.revision, entry.delta == 0))
                }
                None => bail!("watch ended"),
            },
        }
    }

    /// Waits until `key` is at `rev` or later; counts what it saw.
    async fn until(&mut self, key: &str, rev: u64) -> anyhow::Result<u64> {
        let mut seen = 0;
        loop {
            if let Seen::Rev(k, r, _) = self.next().await? {
                seen += 1;
                if k == key && r >= rev {
                    return Ok(seen);
                }
            }
        }
    }

    /// Waits until `key` arrives, at any rev; counts what it saw.
    async fn until_key(&mut self, key: &str) -> anyhow::Result<u64> {
        self.until(key, 0).await
    }
}

/// One round's figures for one system.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    writes_per_s: f64,
    deliveries_per_s: f64,
    replay_ms: f64,
}

/// The writer side and the follower side of a system.
struct Pair {
    writer: Side,
    reader: Side,
    /// More connections on the follower side, for the fan-out.
    more: Vec<Side>,
}

async fn measure(pair: &Pair, args: &Args) -> anyhow::Result<Figures> {
    let mut f = Figures::default();
    // Latency: one put at a time, until the other side has it.
    let mut follow = pair.reader.follow("lat").await?;
    let mut times = Vec::with_capacity(args.puts);
    for i in 0..args.puts {
        let started = Instant::now();
        let rev = pair
            .writer
            .put("lat", Bytes::from(vec![0xcd, (i >> 8) as u8, i as u8]))
            .await?;
        follow.until("lat", rev).await?;
        times.push(started.elapsed());
    }
    times.sort_unstable();
    let ms = |q: f64| {
        times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1e3
    };
    (f.p50_ms, f.p99_ms) = (ms(0.5), ms(0.99));
    // Throughput and fan-out: subscribers of fan.> on the other side,
    // each reading as the changes come (a subscriber that only read after
    // the writes would measure its own client's queue, not the fan-out),
    // until the write that ends the run.
    let mut followers = Vec::new();
    for side in pair.more.iter().take(args.fanout) {
        let mut follow = side.follow("fan.>").await?;
        followers.push(tokio::spawn(
            async move { follow.until_key("fan.end").await },
        ));
    }
    let started = Instant::now();
    let per_writer = args.writes / args.inflight;
    let mut writers = Vec::new();
    for w in 0..args.inflight {
        let side = pair.writer.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..per_writer {
                side.put(&format!("fan.{w}.{}", i % 10), Bytes::from_static(&[0x2a]))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    f.writes_per_s = (per_writer * args.inflight) as f64 / started.elapsed().as_secs_f64();
    pair.writer
        .put("fan.end", Bytes::from_static(&[0xc3]))
        .await?;
    let mut delivered = 0;
    for follow in followers {
        delivered += follow.await??;
    }
    f.deliveries_per_s = delivered as f64 / started.elapsed().as_secs_f64();
    // Replay of `keys` keys.
    let per_writer = args.keys.div_ceil(args.inflight);
    let mut writers = Vec::new();
    for w in 0..args.inflight {
        let side = pair.writer.clone();
        writers.push(tokio::spawn(async move {
            for i in (w * per_writer)..((w + 1) * per_writer) {
                side.put(&format!("r.{i}"), Bytes::from_static(&[0x01]))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    // The other side must have the last of them before its replay counts.
    let last = format!("r.{}", args.inflight * per_writer - 1);
    let last_rev = pair.writer.put(&last, Bytes::from_static(&[0x02])).await?;
    pair.reader
        .follow(&last)
        .await?
        .until(&last, last_rev)
        .await?;
    let started = Instant::now();
    let mut replay = pair.reader.follow("r.>").await?;
    while !matches!(replay.next().await?, Seen::Synced | Seen::Rev(_, _, true)) {}
    f.replay_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(f)
}

async fn bus(server: &Server) -> anyhow::Result<Side> {
    let options = ClientOptions {
        token: Some(server.token.clone()),
        ..ClientOptions::default()
    };
    Ok(Side::Bus(Client::connect_with(&server.url, options).await?))
}

async fn raw_kv(url: &str) -> anyhow::Result<Side> {
    let js = jetstream::new(async_nats::connect(url).await?);
    let config = kv::Config {
        bucket: "raw".to_owned(),
        history: 1,
        num_replicas: 3,
        ..Default::default()
    };
    let store = match js.get_key_value("raw").await {
        Ok(store) => store,
        Err(_) => js
            .create_key_value(config)
            .await
            .context("create the raw bucket")?,
    };
    Ok(Side::Kv(Box::new(store)))
}

async fn pair<F, Fut>(reader: usize, connect: F, writer: Side) -> anyhow::Result<Pair>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Side>>,
{
    let mut more = Vec::new();
    for _ in 0..reader {
        more.push(connect().await?);
    }
    Ok(Pair {
        writer,
        reader: connect().await?,
        more,
    })
}

pub(crate) async fn run(args: Args) -> anyhow::Result<String> {
    let mut rows: [Vec<Figures>; 3] = Default::default();
    for round in 0..args.rounds {
        eprintln!("backplane: round {} of {}", round + 1, args.rounds);
        let cluster = NatsCluster::start(3).await?;
        let dir = tempfile::tempdir()?;
        let launcher = |name: &str, extra: Vec<String>| -> anyhow::Result<Server> {
            let data = dir.path().join(name);
            std::fs::create_dir_all(&data)?;
            let mut launcher = Launcher::new(args.server.clone(), data)?;
            launcher.extra = extra;
            launcher.extra.push("--no-selftest".to_owned());
            launcher.start()
        };
        let single = launcher("single", Vec::new())?;
        let a = launcher("a", vec!["--backplane".into(), cluster.url(1)])?;
        let b = launcher("b", vec!["--backplane".into(), cluster.url(2)])?;
        let (url1, url2) = (cluster.url(1), cluster.url(2));
        let systems = [
            pair(args.fanout, || bus(&single), bus(&single).await?).await?,
            pair(args.fanout, || bus(&b), bus(&a).await?).await?,
            pair(args.fanout, || raw_kv(&url2), raw_kv(&url1).await?).await?,
        ];
        for (i, system) in systems.iter().enumerate() {
            rows[i].push(measure(system, &args).await?);
        }
    }
    Ok(table(&rows, &args))
}

/// Picks one figure of a round.
type Pick = fn(&Figures) -> f64;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn table(rows: &[Vec<Figures>; 3], args: &Args) -> String {
    let m = |i: usize, pick: Pick| median(rows[i].iter().map(pick).collect());
    let measures: [(&str, Pick); 5] = [
        ("put-to-subscriber latency p50 (ms)", |f| f.p50_ms),
        ("put-to-subscriber latency p99 (ms)", |f| f.p99_ms),
        ("writes/s", |f| f.writes_per_s),
        ("deliveries/s", |f| f.deliveries_per_s),
        ("replay of the keys (ms)", |f| f.replay_ms),
    ];
    let mut out = format!(
        "Medians of {} rounds; {} writers, {} subscribers, {} keys replayed.\n\n\
         | measure | one ipcbus server | ipcbus, across servers on the backplane | raw NATS KV, across nodes | backplane vs raw |\n\
         |---|---|---|---|---|\n",
        args.rounds, args.inflight, args.fanout, args.keys
    );
    for (name, pick) in measures {
        let (one, shared, raw) = (m(0, pick), m(1, pick), m(2, pick));
        let ratio = shared / raw;
        let _ = writeln!(
            out,
            "| {name} | {one:.2} | {shared:.2} | {raw:.2} | {ratio:.2}× |"
        );
    }
    out
}
