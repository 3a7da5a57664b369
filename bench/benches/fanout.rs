//! Micro-benchmark of one key's fan-out: a `set` to a key actor with N
//! subscribers, timed from the request to the moment every subscriber's
//! outbox holds the event. No sockets: the cost of the actor, the update
//! and the outboxes only.
//!
//!     cargo bench -p ipcbus-bench --bench fanout

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipcbus_actors::{Done, Out, Outbox, OutboxConfig, Registry, ReplyTo, Set, Subscriber};
use ipcbus_protocol::{Life, Pattern};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const KEY: &str = "bench.fanout";

/// A session's outbox, and the bell it rings when it has items.
struct Inbox {
    outbox: Arc<Outbox>,
    bell: Arc<Notify>,
    got: VecDeque<Out>,
}

impl Inbox {
    fn new(id: u64, registry: &Registry) -> Inbox {
        let bell = Arc::new(Notify::new());
        let ring = bell.clone();
        let config = OutboxConfig::default();
        let outbox = Outbox::new(id, config, registry.stats().clone(), move || {
            ring.notify_one();
        });
        Inbox {
            outbox: Arc::new(outbox),
            bell,
            got: VecDeque::new(),
        }
    }

    /// Waits for the next item.
    async fn next(&mut self) -> Out {
        loop {
            if let Some(out) = self.got.pop_front() {
                return out;
            }
            self.outbox.take_all(&mut self.got);
            if self.got.is_empty() {
                self.bell.notified().await;
            }
        }
    }
}

/// Sets the key and waits for the writer's reply.
async fn set(registry: &Registry, writer: &mut Inbox, value: &Bytes) {
    writer.outbox.begin();
    let msg = Set {
        value: value.clone(),
        if_rev: None,
        life: Life::default(),
        reply: ReplyTo {
            outbox: writer.outbox.clone(),
            id: Some(1),
        },
    };
    assert!(registry.send(KEY, true, msg).is_ok(), "key actor gone");
    let reply = writer.next().await;
    assert!(
        matches!(
            reply,
            Out::Reply {
                result: Ok(Done::Rev(_)),
                ..
            }
        ),
        "{reply:?}"
    );
}

/// `iters` sets to a key with `n` subscribers, each delivered to all.
async fn run(n: usize, iters: u64) -> Duration {
    let registry = Registry::new();
    let value = Bytes::from(rmp_serde::to_vec(&"x".repeat(100)).expect("encode value"));
    let mut writer = Inbox::new(0, &registry);
    set(&registry, &mut writer, &value).await;
    let pattern = Pattern::parse(KEY).expect("pattern");
    let mut subscribers: Vec<Inbox> = (1..=n as u64).map(|id| Inbox::new(id, &registry)).collect();
    for s in &mut subscribers {
        let subscriber = Subscriber {
            outbox: s.outbox.clone(),
            sub: 1,
        };
        registry.subscribe(&pattern, &subscriber, None);
        while !matches!(s.next().await, Out::Synced { .. }) {}
    }
    let started = Instant::now();
    for _ in 0..iters {
        set(&registry, &mut writer, &value).await;
        for s in &mut subscribers {
            let event = s.next().await;
            assert!(matches!(event, Out::Event { .. }), "{event:?}");
        }
    }
    started.elapsed()
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("one set delivered to N subscribers");
    for n in [1usize, 10, 100] {
        // Throughput in deliveries, so figures compare across N.
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| actix::System::new().block_on(run(n, iters)));
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
