//! The load: writers that set, delete and read their own keys and record
//! what was acknowledged, and subscribers that come and go and check that
//! each key's revs only grow. Every client drops its connection at random.

use crate::model::{self, Class, Key, State};
use futures_util::StreamExt;
use ipcbus_client::{Client, ClientOptions, Event, SetOptions};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{watch, RwLock};

/// How long one request may take before the soak calls it a hang.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `ttl_ms` a TTL key is given.
pub(crate) const MAX_TTL: Duration = Duration::from_millis(500);

/// Where the server is: `None` while it is being restarted.
#[derive(Debug, Clone)]
pub(crate) struct Phase {
    /// The server's URL.
    pub(crate) url: String,
    /// Its token.
    pub(crate) token: String,
    /// Counts restarts: an error on a connection of an older generation is expected.
    pub(crate) generation: u64,
}

/// Counters of the run.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) sets: AtomicU64,
    pub(crate) dels: AtomicU64,
    pub(crate) gets: AtomicU64,
    pub(crate) lost_answers: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) skipped: AtomicU64,
}

/// What every task of the load shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) phase: watch::Receiver<Option<Phase>>,
    /// Held (read) by a writer around each request, and (write) by the
    /// restarter while it checks the restarted server, so that no write
    /// lands before the check.
    pub(crate) gate: RwLock<()>,
    pub(crate) stop: AtomicBool,
    pub(crate) counts: Counts,
    pub(crate) violations: Mutex<Vec<String>>,
    /// Each writer's keys.
    pub(crate) keys: Vec<Arc<Mutex<Vec<Key>>>>,
    /// Bytes of text per value.
    pub(crate) value_bytes: usize,
    /// Chance that a client drops its connection after a request.
    pub(crate) disconnect_rate: f64,
}

impl Shared {
    pub(crate) fn violation(&self, what: String) {
        self.violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(what);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Waits for the server to be up; `None` once the run stops.
    async fn phase(&self) -> Option<Phase> {
        let mut rx = self.phase.clone();
        loop {
            if self.stopped() {
                return None;
            }
            if let Some(p) = rx.borrow_and_update().clone() {
                return Some(p);
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
        }
    }

    fn generation(&self) -> u64 {
        self.phase
            .borrow()
            .as_ref()
            .map_or(u64::MAX, |p| p.generation)
    }

    /// An error on a connection of `generation`: expected if the server
    /// was restarted since, a violation otherwise.
    fn failed(&self, who: &str, generation: u64, e: &dyn std::fmt::Display) {
        if self.generation() == generation && !self.stopped() {
            self.violation(format!("{who}: {e} while the server was up"));
        }
    }
}

/// Connects to the current server; `None` once the run stops.
async fn connect(shared: &Shared, who: &str) -> Option<(Client, u64)> {
    loop {
        let phase = shared.phase().await?;
        // The soak reconnects by itself and counts each connection's end.
        let options = ClientOptions {
            token: Some(phase.token.clone()),
            fail_fast: true,
            reconnect: false,
            ..ClientOptions::default()
        };
        match Client::connect_with(&phase.url, options).await {
            Ok(c) => {
                shared.counts.connects.fetch_add(1, Ordering::Relaxed);
                return Some((c, phase.generation));
            }
            Err(e) => {
                shared.failed(who, phase.generation, &e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One writer: random sets, deletes and gets of its own keys until the run stops.
pub(crate) async fn writer(shared: Arc<Shared>, id: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let who = format!("writer {id}");
    let keys = shared.keys[id].clone();
    let count = keys.lock().unwrap_or_else(PoisonError::into_inner).len();
    let mut seq = 0u64;
    while let Some((client, generation)) = connect(&shared, &who).await {
        // The writer's "last will": deleted by the server when this connection ends.
        let online = format!("soak.online.w{id}");
        let will = SetOptions {
            ephemeral: true,
            ..SetOptions::default()
        };
        if let Err(e) = client.set_with(&online, &generation, will).await {
            shared.failed(&who, generation, &e);
            continue;
        }
        while !shared.stopped() {
            let _gate = shared.gate.read().await;
            let i = rng.usize(..count);
            let (name, class) = {
                let k = &keys.lock().unwrap_or_else(PoisonError::into_inner)[i];
                (k.name.clone(), k.class)
            };
            seq += 1;
            let roll = rng.u8(..100);
            let outcome = if roll < 70 {
                let options = SetOptions {
                    persist: class == Class::Persisted,
                    ttl: (class == Class::Ttl)
                        .then(|| Duration::from_millis(rng.u64(50..=MAX_TTL.as_millis() as u64))),
                    ..SetOptions::default()
                };
                shared.counts.sets.fetch_add(1, Ordering::Relaxed);
                let v = model::value(seq, shared.value_bytes);
                let op = client.set_raw_with(&name, v, options);
                write(&shared, &keys, i, State::Seq(seq), op).await
            } else if roll < 80 {
                shared.counts.dels.fetch_add(1, Ordering::Relaxed);
                write(&shared, &keys, i, State::Absent, client.del(&name)).await
            } else {
                shared.counts.gets.fetch_add(1, Ordering::Relaxed);
                read(&shared, &keys, i, &client).await
            };
            if let Err(e) = outcome {
                shared.failed(&who, generation, &e);
                break;
            }
            if rng.f64() < shared.disconnect_rate {
                shared.counts.disconnects.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
}

/// Runs a write that would leave key `i` in `state`, and records the outcome.
async fn write<F>(
    shared: &Shared,
    keys: &Mutex<Vec<Key>>,
    i: usize,
    state: State,
    op: F,
) -> Result<(), String>
where
    F: std::future::Future<Output = ipcbus_client::Result<u64>>,
{
    let result = tokio::time::timeout(OP_TIMEOUT, op).await;
    let mut keys = keys.lock().unwrap_or_else(PoisonError::into_inner);
    let key = &mut keys[i];
    match result {
        Ok(Ok(_)) => {
            key.acked = state;
            key.maybe = None;
            Ok(())
        }
        // Deleting an absent key: nothing changed. Only a TTL key (or one
        // whose last write's answer was lost) may be absent unexpectedly.
        Ok(Err(e)) if e.code() == Some(ipcbus_client::ErrorCode::NotFound) => {
            let unexpected = key.class != Class::Ttl
                && key.acked != State::Absent
                && key.maybe != Some(State::Absent);
            if unexpected {
                shared.violation(format!(
                    "del {}: not_found, acknowledged {:?}",
                    key.name, key.acked
                ));
            }
            key.acked = State::Absent;
            key.maybe = None;
            Ok(())
        }
        Ok(Err(e)) => {
            key.maybe = Some(state);
            shared.counts.lost_answers.fetch_add(1, Ordering::Relaxed);
            Err(format!("{}: {e}", key.name))
        }
        Err(_) => {
            key.maybe = Some(state);
            shared.counts.lost_answers.fetch_add(1, Ordering::Relaxed);
            Err(format!("{}: no answer in {OP_TIMEOUT:?}", key.name))
        }
    }
}

/// Reads key `i` and checks it against what was acknowledged.
async fn read(
    shared: &Shared,
    keys: &Mutex<Vec<Key>>,
    i: usize,
    client: &Client,
) -> Result<(), String> {
    let name = keys.lock().unwrap_or_else(PoisonError::into_inner)[i]
        .name
        .clone();
    let seen = match tokio::time::timeout(OP_TIMEOUT, client.get_raw(&name)).await {
        Ok(Ok((value, _))) => State::Seq(model::seq_of(&value).unwrap_or(u64::MAX)),
        Ok(Err(e)) if e.code() == Some(ipcbus_client::ErrorCode::NotFound) => State::Absent,
        Ok(Err(e)) => return Err(format!("get {name}: {e}")),
        Err(_) => return Err(format!("get {name}: no answer in {OP_TIMEOUT:?}")),
    };
    let mut keys = keys.lock().unwrap_or_else(PoisonError::into_inner);
    let key = &mut keys[i];
    let expired = key.class == Class::Ttl && seen == State::Absent;
    if seen != key.acked && Some(seen) != key.maybe && !expired {
        shared.violation(format!(
            "get {name}: {seen:?}, acknowledged {:?}",
            key.acked
        ));
    }
    Ok(())
}

/// One subscriber: subscribes to a random writer's keys (or all), reads
/// for a while with pauses, checks that revs per key only grow, leaves.
pub(crate) async fn subscriber(shared: Arc<Shared>, id: usize, seed: u64, writers: usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let who = format!("subscriber {id}");
    while let Some((client, generation)) = connect(&shared, &who).await {
        let pattern = match rng.usize(..=writers) {
            w if w == writers => "soak.>".to_owned(),
            w => format!("soak.w{w}.>"),
        };
        let mut sub = match client.subscribe(&pattern).await {
            Ok(s) => s,
            Err(e) => {
                shared.failed(&who, generation, &e);
                continue;
            }
        };
        let mut revs: HashMap<String, u64> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(rng.u64(200..3000));
        let slow = rng.bool();
        loop {
            let next = tokio::time::timeout_at(deadline, sub.next()).await;
            let Ok(event) = next else { break };
            let Some(event) = event else {
                shared.failed(&who, generation, &"subscription ended");
                break;
            };
            shared.counts.events.fetch_add(1, Ordering::Relaxed);
            if let Event::Value { key, rev, .. } | Event::Deleted { key, rev } = &event {
                let last = revs.insert(key.clone(), *rev).unwrap_or(0);
                if *rev <= last {
                    shared.violation(format!(
                        "{who} on {pattern}: {key} went from rev {last} to {rev}"
                    ));
                }
            }
            if slow && shared.stopped() {
                break;
            }
            if slow {
                tokio::time::sleep(Duration::from_millis(rng.u64(0..5))).await;
            }
        }
        shared
            .counts
            .skipped
            .fetch_add(sub.skipped(), Ordering::Relaxed);
        shared.counts.disconnects.fetch_add(1, Ordering::Relaxed);
    }
}
