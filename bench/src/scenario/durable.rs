//! Scenario (h): durable writes per second, acknowledged only once they
//! are on disk, one connection with 1 and with 64 writes in flight.
//! ipcbus: `set` with `persist: true` (redb, fsync before the reply, the
//! writes waiting at that moment committed together; docs/reliability.md).
//! Redis: `SET` on a server of its own with `appendonly yes` and
//! `appendfsync always` (fsync before the reply, the same promise), and for
//! reference `appendfsync everysec` (replies before the fsync: up to a
//! second of acknowledged writes is lost in a crash, which ipcbus does not
//! offer). Every data directory is under `$TMPDIR`, on the same disk.

use crate::procs::Owned;
use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use ipcbus_client::{Client, ClientOptions, SetOptions};
use redis::aio::MultiplexedConnection;
use std::future::Future;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Distinct keys written, round robin.
const KEYS: usize = 1000;

/// Durable writes per second with `inflight` in flight, for `duration`.
pub(crate) async fn ipcbus(
    url: &str,
    token: &str,
    inflight: usize,
    duration: Duration,
    prefix: &str,
) -> anyhow::Result<f64> {
    let options = ClientOptions {
        token: Some(token.to_owned()),
        ..ClientOptions::default()
    };
    let client = Client::connect_with(url, options).await?;
    let value = Bytes::from(rmp_serde::to_vec(&"x".repeat(crate::load::VALUE_BYTES))?);
    let keys: Vec<String> = (0..KEYS).map(|i| format!("{prefix}.k{i}")).collect();
    let persist = SetOptions {
        persist: true,
        ..SetOptions::default()
    };
    closed_loop(inflight, duration, |i| {
        let request = client.set_raw_with(&keys[i % KEYS], value.clone(), persist);
        async move { request.await.map(|_| ()).map_err(anyhow::Error::from) }
    })
    .await
}

/// A Redis server with an append-only file, killed when dropped.
pub(crate) struct AofRedis {
    conn: MultiplexedConnection,
    _server: Owned,
    /// A new one per server: a second server in the same directory would
    /// first load the first one's file.
    _data: tempfile::TempDir,
}

impl AofRedis {
    /// Starts `redis-server` with `appendfsync <policy>`, its data in `dir`.
    pub(crate) async fn start(dir: &Path, policy: &str) -> anyhow::Result<AofRedis> {
        let data = tempfile::Builder::new()
            .prefix(&format!("redis-aof-{policy}"))
            .tempdir_in(dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let server = Owned(
            Command::new("redis-server")
                .args([
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                ])
                .args(["--appendonly", "yes", "--appendfsync", policy])
                .arg("--dir")
                .arg(data.path())
                .stdout(Stdio::null())
                .spawn()
                .context("cannot start redis-server (bash bench/brokers.sh install)")?,
        );
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let started = Instant::now();
        let conn = loop {
            match client.get_multiplexed_async_connection().await {
                Ok(conn) => break conn,
                Err(_) if started.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => bail!("redis-server with appendfsync {policy} did not start: {e}"),
            }
        };
        Ok(AofRedis {
            conn,
            _server: server,
            _data: data,
        })
    }

    /// Durable writes per second with `inflight` `SET`s in flight.
    pub(crate) async fn writes(&self, inflight: usize, duration: Duration) -> anyhow::Result<f64> {
        let value = vec![b'x'; crate::load::VALUE_BYTES];
        closed_loop(inflight, duration, |i| {
            let mut conn = self.conn.clone();
            let cmd = redis::cmd("SET")
                .arg(format!("k{}", i % KEYS))
                .arg(&value)
                .clone();
            async move { cmd.exec_async(&mut conn).await.map_err(anyhow::Error::from) }
        })
        .await
    }
}

/// Keeps `inflight` requests outstanding for `duration`; returns the
/// acknowledged requests per second.
async fn closed_loop<F, Fut>(
    inflight: usize,
    duration: Duration,
    mut request: F,
) -> anyhow::Result<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut pending: FuturesUnordered<Fut> = (0..inflight).map(&mut request).collect();
    let mut next = inflight;
    let started = Instant::now();
    let mut done = 0u64;
    while let Some(result) = pending.next().await {
        result?;
        done += 1;
        if started.elapsed() < duration {
            pending.push(request(next));
            next += 1;
        }
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}
