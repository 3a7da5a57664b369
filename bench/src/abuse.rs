//! What one abusive session costs everyone else (issue 12, finding 3): on
//! a store of many keys at rest, one connection subscribes to hundreds of
//! wildcard patterns that match nothing, then to `>` (a replay of the whole
//! store), then hangs up. A bystander meanwhile does `set` round trips one
//! at a time; this reports its latency in each phase, beside a quiet
//! baseline. The server runs as a process of its own, with a worker per
//! core, all of its threads then pinned to core 0 and this program to the
//! others (as `compare` does), so that the load generator's own CPU use
//! does not show up as the server's latency.

use crate::procs;
use futures_util::{SinkExt, StreamExt};
use ipcbus_client::{Client, ClientOptions};
use ipcbus_tests::child::Launcher;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Options of `ipcbus-bench abuse`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Keys stored before the abuse, 100 bytes each.
    #[arg(long, default_value_t = 300_000)]
    keys: usize,
    /// Wildcard subscriptions that match nothing: half `none<i>.>` (their
    /// walk is a range the store lacks), half `*.none<i>` (their walk
    /// visits every key).
    #[arg(long, default_value_t = 300)]
    subs: usize,
    /// Seconds of the quiet baseline.
    #[arg(long, default_value_t = 2.0)]
    baseline_seconds: f64,
    /// The ipcbus binary to measure, e.g. target/release/ipcbus. By
    /// default this program serves.
    #[arg(long)]
    server: Option<std::path::PathBuf>,
    /// Leave the server and this program on every core.
    #[arg(long)]
    no_pin: bool,
}

/// The bystander's round trips over one phase.
#[derive(Default)]
struct Phase {
    latencies: Vec<Duration>,
    took: Duration,
}

impl Phase {
    fn row(&mut self, name: &str) -> String {
        self.latencies.sort_unstable();
        let at = |q: f64| {
            let n = self.latencies.len();
            let i = ((n as f64 * q) as usize).min(n.saturating_sub(1));
            self.latencies
                .get(i)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        format!(
            "| {name} | {:.0} ms | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            self.took.as_secs_f64() * 1000.0,
            self.latencies.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        )
    }
}

/// Runs the phases; returns a markdown table.
pub(crate) async fn run(args: Args) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let mut launcher = Launcher::new(args.server.clone(), dir.path().to_owned())?;
    launcher.extra = vec!["--no-selftest".into()];
    let server = launcher.start()?;
    let cores = procs::cores();
    if !args.no_pin && cores >= 2 {
        procs::pin(server.pid(), "0")?;
        procs::pin(std::process::id(), &format!("1-{}", cores - 1))?;
    }
    let url = format!("{}?token={}", server.url, server.token);
    let options = ClientOptions {
        token: Some(server.token.clone()),
        ..ClientOptions::default()
    };
    let writer = Client::connect_with(&server.url, options.clone()).await?;
    fill(&writer, args.keys).await?;
    let bystander = Client::connect_with(&server.url, options).await?;

    let mut table = String::from(
        "| phase | took | bystander round trips | p50 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n",
    );
    let quiet = Duration::from_secs_f64(args.baseline_seconds);
    let mut phase = during(&bystander, async {
        tokio::time::sleep(quiet).await;
        anyhow::Ok(())
    })
    .await?;
    let _ = writeln!(table, "{}", phase.row("quiet"));

    let mut request = url.as_str().into_client_request()?;
    let json = ipcbus_protocol::Codec::Json.subprotocol();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", json.parse()?);
    let (mut attacker, _) = tokio_tungstenite::connect_async(request).await?;
    let subs = args.subs;
    let mut phase = during(&bystander, async {
        for i in 0..subs {
            let pattern = if i % 2 == 0 {
                format!("none{i}.>")
            } else {
                format!("*.none{i}")
            };
            let sub = format!(r#"{{"op":"sub","pattern":"{pattern}"}}"#);
            attacker.feed(Message::text(sub)).await?;
        }
        attacker.flush().await?;
        read_synced(&mut attacker, subs).await
    })
    .await?;
    let _ = writeln!(
        table,
        "{}",
        phase.row(&format!("{subs} wildcard subs matching nothing"))
    );

    let mut phase = during(&bystander, async {
        attacker
            .send(Message::text(r#"{"op":"sub","pattern":">"}"#))
            .await?;
        read_synced(&mut attacker, 1).await
    })
    .await?;
    let _ = writeln!(
        table,
        "{}",
        phase.row(&format!("`>` replay of {} keys", args.keys))
    );

    let mut phase = during(&bystander, async {
        drop(attacker);
        // The hang-up's walks cannot be watched from outside: measure the
        // second that follows.
        tokio::time::sleep(Duration::from_secs(1)).await;
        anyhow::Ok(())
    })
    .await?;
    let _ = writeln!(table, "{}", phase.row("hang-up, first second"));
    server.stop()?;
    Ok(table)
}

/// Stores `n` keys of 100 bytes, 256 in flight.
async fn fill(client: &Client, n: usize) -> anyhow::Result<()> {
    let value = "x".repeat(100);
    let mut pending = futures_util::stream::iter(0..n)
        .map(|i| {
            let key = format!("store.k{:02}.item{i}", i % 64);
            let value = &value;
            async move { client.set(&key, value).await }
        })
        .buffer_unordered(256);
    while let Some(result) = pending.next().await {
        result?;
    }
    Ok(())
}

/// Runs `work` while the bystander does round trips; returns them.
async fn during<T>(
    bystander: &Client,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let probe = async {
        let mut latencies = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            bystander.set("bystander", &i).await?;
            latencies.push(sent.elapsed());
            i += 1;
        }
        anyhow::Ok(latencies)
    };
    let started = Instant::now();
    let work = async {
        let result = work.await;
        stop.store(true, Ordering::Relaxed);
        result
    };
    let (result, latencies) = tokio::join!(work, probe);
    result?;
    Ok(Phase {
        latencies: latencies?,
        took: started.elapsed(),
    })
}

/// Reads until `n` `synced` events have come.
async fn read_synced<S>(ws: &mut S, n: usize) -> anyhow::Result<()>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut synced = 0;
    while synced < n {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.contains(r#""ev":"synced""#) => synced += 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("the server closed the connection"),
        }
    }
    Ok(())
}
