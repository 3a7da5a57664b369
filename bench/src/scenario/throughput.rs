//! Scenarios (a), (b) and (c): sustained, lossless deliveries per second.
//! `pubs` publishers each own a topic; each of `subs` subscribers
//! subscribes to every topic. The loop is closed: a subscriber has at most
//! [`WINDOW`] messages in flight, shared evenly among the publishers (a
//! publisher stops while any subscriber is `WINDOW / pubs` messages behind
//! it), so no queue grows and nothing may be lost; a subscriber that sees a
//! gap or a reordering fails the run.

use crate::load::{now_ns, Broker, Payload, Publish, Subscribe, VALUE_BYTES};
use crate::procs::{CpuSample, CpuUse};
use anyhow::{anyhow, bail};
use futures_util::future::try_join_all;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Messages in flight to one subscriber, from all publishers together.
pub(crate) const WINDOW: u64 = 2000;
/// A publisher sends at most this many messages between flushes.
const BATCH: u64 = 64;
/// A subscriber wakes its publisher every this many messages.
const NOTIFY_EVERY: u64 = 64;
/// A run fails when no subscriber moves for this long.
const STALL: Duration = Duration::from_secs(10);

/// Who publishes and who subscribes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Publishers, one topic each.
    pub(crate) pubs: usize,
    /// Subscribers, each to every topic.
    pub(crate) subs: usize,
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Throughput {
    /// Messages received by subscribers per second, all together.
    pub(crate) per_second: f64,
    /// Messages received in the measured interval.
    pub(crate) deliveries: u64,
    /// CPU used in the measured interval.
    pub(crate) cpu: CpuUse,
}

struct Progress {
    /// `received[s * pubs + p]`: messages subscriber s has from publisher p.
    received: Vec<AtomicU64>,
    wake: Vec<Notify>,
    stop: AtomicBool,
    pubs: usize,
    /// Messages a subscriber may be behind one publisher.
    window: u64,
}

impl Progress {
    fn slowest(&self, p: usize) -> u64 {
        let n = self.received.len() / self.pubs;
        (0..n)
            .map(|s| self.received[s * self.pubs + p].load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn total(&self) -> u64 {
        self.received
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum()
    }
}

/// Runs one measurement: `warmup`, then `duration` measured. `prefix`
/// makes the topics of this run its own.
pub(crate) async fn run<B: Broker>(
    broker: &B,
    shape: Shape,
    server_pid: u32,
    warmup: Duration,
    duration: Duration,
    prefix: &str,
) -> anyhow::Result<Throughput> {
    let topics: Vec<String> = (0..shape.pubs).map(|p| format!("{prefix}.t{p}")).collect();
    let progress = Arc::new(Progress {
        received: (0..shape.pubs * shape.subs)
            .map(|_| AtomicU64::new(0))
            .collect(),
        wake: (0..shape.pubs).map(|_| Notify::new()).collect(),
        stop: AtomicBool::new(false),
        pubs: shape.pubs,
        window: (WINDOW / shape.pubs as u64).max(1),
    });
    let subscribers = try_join_all((0..shape.subs).map(|_| broker.subscriber(&topics))).await?;
    let publishers = try_join_all((0..shape.pubs).map(|_| broker.publisher())).await?;
    let receiving: Vec<JoinHandle<anyhow::Result<()>>> = subscribers
        .into_iter()
        .enumerate()
        .map(|(s, sub)| tokio::spawn(receive(sub, s, Arc::clone(&progress))))
        .collect();
    let sending: Vec<_> = publishers
        .into_iter()
        .zip(topics)
        .enumerate()
        .map(|(p, (publ, topic))| tokio::spawn(send(publ, p, topic, Arc::clone(&progress))))
        .collect();

    tokio::time::sleep(warmup).await;
    let (start, before) = (CpuSample::take(server_pid), progress.total());
    tokio::time::sleep(duration).await;
    let (end, after) = (CpuSample::take(server_pid), progress.total());
    progress.stop.store(true, Ordering::Release);

    let mut sent = Vec::new();
    let mut open = Vec::new();
    let mut failed = None;
    for handle in sending {
        match handle.await? {
            Ok((count, publ)) => {
                sent.push(count);
                open.push(publ);
            }
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    let drained = match failed {
        Some(e) => Err(e),
        None => drain(&progress, &sent, &receiving).await,
    };
    for handle in &receiving {
        handle.abort();
    }
    if let Err(e) = drained {
        // A subscriber's own error says more than "not delivered".
        for handle in receiving {
            if let Ok(Err(cause)) = handle.await {
                return Err(cause.context(e));
            }
        }
        return Err(e);
    }
    drop(open);
    let cpu = end.since(&start);
    let deliveries = after - before;
    Ok(Throughput {
        per_second: deliveries as f64 / cpu.wall,
        deliveries,
        cpu,
    })
}

/// Waits until every subscriber has every message sent; fails on a
/// subscriber's error or when nothing moves for [`STALL`].
async fn drain(
    progress: &Progress,
    sent: &[u64],
    receiving: &[JoinHandle<anyhow::Result<()>>],
) -> anyhow::Result<()> {
    let expected: u64 = sent.iter().sum::<u64>() * (progress.received.len() / progress.pubs) as u64;
    let (mut last, mut since) = (progress.total(), tokio::time::Instant::now());
    loop {
        let now = progress.total();
        if now == expected {
            return Ok(());
        }
        if receiving.iter().any(|h| h.is_finished()) {
            bail!("a subscriber stopped with {now} of {expected} messages delivered");
        }
        if now != last {
            (last, since) = (now, tokio::time::Instant::now());
        } else if since.elapsed() > STALL {
            bail!("only {now} of {expected} messages delivered, none for {STALL:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn send<P: Publish>(
    mut publ: P,
    p: usize,
    topic: String,
    progress: Arc<Progress>,
) -> anyhow::Result<(u64, P)> {
    let mut body = vec![0x5a; VALUE_BYTES];
    let publisher = u16::try_from(p)?;
    let mut seq = 0;
    while !progress.stop.load(Ordering::Acquire) {
        let limit = progress.slowest(p) + progress.window;
        if seq >= limit {
            publ.flush().await?;
            let woken = progress.wake[p].notified();
            if progress.slowest(p) + progress.window > seq {
                continue;
            }
            tokio::time::timeout(STALL, woken)
                .await
                .map_err(|_| anyhow!("publisher {p}: no subscriber progress for {STALL:?}"))?;
            continue;
        }
        for seq in seq..limit.min(seq + BATCH) {
            Payload {
                seq,
                sent_ns: now_ns(),
                publisher,
            }
            .write(&mut body);
            publ.publish(&topic, &body).await?;
        }
        seq = limit.min(seq + BATCH);
        publ.flush().await?;
    }
    publ.flush().await?;
    Ok((seq, publ))
}

async fn receive<S: Subscribe>(
    mut sub: S,
    s: usize,
    progress: Arc<Progress>,
) -> anyhow::Result<()> {
    let pubs = progress.pubs;
    let mut expected = vec![0u64; pubs];
    loop {
        let body = sub.next().await?;
        let header = Payload::read(&body)?;
        let p = usize::from(header.publisher);
        let Some(next) = expected.get_mut(p) else {
            bail!("subscriber {s}: a message from unknown publisher {p}");
        };
        if header.seq != *next || body.len() != VALUE_BYTES {
            bail!(
                "subscriber {s}: from publisher {p} expected message {} of {VALUE_BYTES} bytes, got {} of {}",
                *next,
                header.seq,
                body.len()
            );
        }
        *next += 1;
        progress.received[s * pubs + p].store(*next, Ordering::Release);
        if *next % NOTIFY_EVERY == 0 {
            progress.wake[p].notify_one();
        }
    }
}
