//! Scenario (g): one subscriber stops reading while a publisher sends
//! [`RATE`] messages per second to the key it subscribed to. Measured: the
//! server's RSS over time, and what a healthy subscriber of the same key
//! receives beside it, against its rate with no stalled neighbour.

use crate::load::{now_ns, Broker, Payload, Publish, Subscribe, VALUE_BYTES};
use crate::procs::rss_kib;
use anyhow::bail;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// Messages published per second.
pub(crate) const RATE: u64 = 30_000;
/// How often the server's RSS is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How long the healthy subscriber may take to catch up at the end.
const DRAIN: Duration = Duration::from_secs(5);

/// What one run measured.
#[derive(Debug, Clone)]
pub(crate) struct Stall {
    /// Messages/s the healthy subscriber received with no stalled neighbour.
    pub(crate) unloaded: f64,
    /// ... and beside the stalled one.
    pub(crate) loaded: f64,
    /// Messages the healthy subscriber never received, beside the stalled one.
    pub(crate) lost: u64,
    /// Server RSS in KiB when the stalled subscriber stopped reading.
    pub(crate) rss_before: u64,
    /// The highest server RSS seen while it was stalled.
    pub(crate) rss_peak: u64,
    /// (seconds, server RSS in KiB) while it was stalled.
    pub(crate) rss: Vec<(f64, u64)>,
}

/// Publishes for `duration` without, then for `duration` with, a stalled
/// subscriber.
pub(crate) async fn run<B: Broker>(
    broker: &B,
    server_pid: u32,
    duration: Duration,
    prefix: &str,
) -> anyhow::Result<Stall> {
    let unloaded = healthy_rate(
        broker,
        None,
        duration,
        &format!("{prefix}.free"),
        server_pid,
    )
    .await?;
    let topic = format!("{prefix}.stall");
    let stalled = broker.stalled(&topic).await?;
    let rss_before = rss_kib(server_pid).unwrap_or(0);
    let loaded = healthy_rate(broker, Some(&topic), duration, &topic, server_pid).await?;
    drop(stalled);
    let rss_peak = loaded.rss.iter().map(|&(_, kib)| kib).max().unwrap_or(0);
    Ok(Stall {
        unloaded: unloaded.rate,
        loaded: loaded.rate,
        lost: loaded.lost,
        rss_before,
        rss_peak,
        rss: loaded.rss,
    })
}

struct Healthy {
    rate: f64,
    lost: u64,
    rss: Vec<(f64, u64)>,
}

/// Publishes to `topic` at [`RATE`] with one healthy subscriber; returns
/// its receive rate and loss, sampling the server's RSS if `sample` is set.
async fn healthy_rate<B: Broker>(
    broker: &B,
    sample: Option<&str>,
    duration: Duration,
    topic: &str,
    server_pid: u32,
) -> anyhow::Result<Healthy> {
    let mut sub = broker.subscriber(&[topic.to_owned()]).await?;
    let mut publ = broker.publisher().await?;
    let received = Arc::new(AtomicU64::new(0));
    let last_seq = Arc::new(AtomicU64::new(0));
    let receiving = {
        let (received, last_seq) = (Arc::clone(&received), Arc::clone(&last_seq));
        tokio::spawn(async move { count(&mut sub, &received, &last_seq).await })
    };
    let mut body = vec![0x5a; VALUE_BYTES];
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let started = Instant::now();
    let (mut seq, mut rss, mut next_sample) = (0, Vec::new(), started);
    while started.elapsed() < duration {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * RATE as f64) as u64;
        while seq < due {
            Payload {
                seq,
                sent_ns: now_ns(),
                publisher: 0,
            }
            .write(&mut body);
            publ.publish(topic, &body).await?;
            seq += 1;
        }
        publ.flush().await?;
        if sample.is_some() && Instant::now() >= next_sample {
            rss.push((
                started.elapsed().as_secs_f64(),
                rss_kib(server_pid).unwrap_or(0),
            ));
            next_sample += SAMPLE_EVERY;
        }
    }
    let in_time = received.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + DRAIN;
    while last_seq.load(Ordering::Relaxed) < seq && Instant::now() < deadline {
        if receiving.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    receiving.abort();
    if let Ok(Err(e)) = receiving.await {
        bail!("the healthy subscriber failed: {e:#}");
    }
    let got = received.load(Ordering::Relaxed);
    Ok(Healthy {
        rate: in_time as f64 / elapsed,
        lost: seq.saturating_sub(got),
        rss,
    })
}

/// Counts what `sub` receives, and the sequence number after the last.
async fn count<S: Subscribe>(
    sub: &mut S,
    received: &AtomicU64,
    last_seq: &AtomicU64,
) -> anyhow::Result<()> {
    loop {
        let header = Payload::read(&sub.next().await?)?;
        received.fetch_add(1, Ordering::Relaxed);
        last_seq.store(header.seq + 1, Ordering::Relaxed);
    }
}
