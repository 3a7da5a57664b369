//! Scenario (d): latency from publish to delivery at a fixed rate, one
//! publisher and one subscriber. The publisher wakes every millisecond
//! (tokio's timer resolution) and sends the messages that are due, so at
//! 10 000/s they leave in bursts of 10; each carries the time it was
//! written to the connection, and the subscriber takes the difference on
//! arrival. The first [`WARMUP`] of messages are not counted.

use crate::load::{now_ns, Broker, Payload, Publish, Subscribe, VALUE_BYTES};
use crate::procs::{CpuSample, CpuUse};
use anyhow::bail;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// Not counted at the start of a run.
const WARMUP: Duration = Duration::from_millis(500);
/// How long the subscriber may wait for the last message.
const DRAIN: Duration = Duration::from_secs(10);

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Latency {
    /// Median, in µs.
    pub(crate) p50: f64,
    /// 99th percentile, in µs.
    pub(crate) p99: f64,
    /// 99.9th percentile, in µs.
    pub(crate) p999: f64,
    /// CPU used while measuring.
    pub(crate) cpu: CpuUse,
}

/// Publishes `rate` messages per second for `WARMUP + duration`.
pub(crate) async fn run<B: Broker>(
    broker: &B,
    rate: u64,
    server_pid: u32,
    duration: Duration,
    prefix: &str,
) -> anyhow::Result<Latency> {
    let topic = format!("{prefix}.lat");
    let mut sub = broker.subscriber(std::slice::from_ref(&topic)).await?;
    let mut publ = broker.publisher().await?;
    let warmup = rate * WARMUP.as_millis() as u64 / 1000;
    let total = warmup + (rate as f64 * duration.as_secs_f64()) as u64;
    let receiving = tokio::spawn(async move {
        let mut samples = Vec::with_capacity(total as usize);
        for seq in 0..total {
            let body = sub.next().await?;
            let arrived = now_ns();
            let header = Payload::read(&body)?;
            if header.seq != seq {
                bail!("expected message {seq}, got {}", header.seq);
            }
            if seq >= warmup {
                samples.push(arrived.saturating_sub(header.sent_ns));
            }
        }
        Ok(samples)
    });

    let mut body = vec![0x5a; VALUE_BYTES];
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut cpu_start = None;
    let mut seq = 0;
    while seq < total {
        tick.tick().await;
        if seq >= warmup && cpu_start.is_none() {
            cpu_start = Some(CpuSample::take(server_pid));
        }
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while seq < due.min(total) {
            Payload {
                seq,
                sent_ns: now_ns(),
                publisher: 0,
            }
            .write(&mut body);
            publ.publish(&topic, &body).await?;
            seq += 1;
        }
        publ.flush().await?;
    }
    let mut samples = match tokio::time::timeout(DRAIN, receiving).await {
        Ok(joined) => joined??,
        Err(_) => bail!("the subscriber did not get all {total} messages within {DRAIN:?}"),
    };
    let cpu = CpuSample::take(server_pid)
        .since(&cpu_start.unwrap_or_else(|| CpuSample::take(server_pid)));
    drop(publ);
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1));
        samples.get(i).map_or(0.0, |&ns| ns as f64 / 1000.0)
    };
    Ok(Latency {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        cpu,
    })
}
