//! The server's own keys (`ipcbus.sys.*`): who may write them, and
//! `ipcbus.sys.stats`, published once a second while someone watches it.
//!
//! Watching is counted by the sessions as they subscribe ([`Watchers`]).
//! While the count is 0 the publisher sleeps without a timer: the first
//! subscription wakes it, so a server nobody watches never runs it (no
//! wakeup, no figures read, nothing allocated, no key written).

use crate::app::AppState;
use crate::request::{KeyMsg, Requester};
use actix_web::web;
use ipcbus_actors::{Outbox, Set};
use ipcbus_protocol::transcode::json_value_to_msgpack;
use ipcbus_protocol::{ErrorBody, ErrorCode, Life, Pattern};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Keys under this prefix are written by the server only.
pub(crate) const SYS_PREFIX: &str = "ipcbus.sys.";
/// The key the figures are published on.
pub(crate) const STATS_KEY: &str = "ipcbus.sys.stats";
/// How often the figures are published while watched.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// The figures expire this long after their last publication, so a key
/// nobody watches any more does not linger with stale figures.
const STATS_TTL_MS: u64 = 3_000;
/// How many of the sessions with the most bytes waiting are listed.
const SLOWEST: usize = 3;
/// How long one publication may wait for the key's actor.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Refuses a client's write to the server's namespace (`bad_key`).
pub(crate) fn check_writable(key: &str) -> Result<(), ErrorBody> {
    if key.starts_with(SYS_PREFIX) {
        let msg = format!(
            "{key}: the {SYS_PREFIX}* namespace is the server's; clients cannot set or delete it"
        );
        return Err(ErrorBody::new(ErrorCode::BadKey, msg));
    }
    Ok(())
}

/// What the sessions tell the publisher: who watches, and their outboxes.
#[derive(Debug, Default)]
pub(crate) struct Sys {
    /// The subscriptions that switch the publication on.
    pub(crate) watchers: Watchers,
    /// Every session's outbox by session id, for the slowest ones. A
    /// session adds itself when it starts and leaves when it ends: one
    /// lock each, never on the path of a request or an event.
    outboxes: Mutex<HashMap<u64, Weak<Outbox>>>,
}

impl Sys {
    /// A session with this outbox started.
    pub(crate) fn session_started(&self, outbox: &Arc<Outbox>) {
        self.sessions().insert(outbox.id(), Arc::downgrade(outbox));
    }

    /// The session with this outbox ended.
    pub(crate) fn session_ended(&self, outbox: &Outbox) {
        self.sessions().remove(&outbox.id());
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<Outbox>>> {
        self.outboxes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Up to [`SLOWEST`] sessions with bytes waiting, the most first:
    /// `[{"session": id, "bytes": n}, …]`.
    fn slowest(&self) -> serde_json::Value {
        let mut waiting: Vec<(usize, u64)> = self
            .sessions()
            .values()
            .filter_map(Weak::upgrade)
            .map(|o| (o.queued_bytes(), o.id()))
            .filter(|&(bytes, _)| bytes > 0)
            .collect();
        waiting.sort_unstable_by(|a, b| b.cmp(a));
        waiting
            .iter()
            .take(SLOWEST)
            .map(|&(bytes, session)| serde_json::json!({ "session": session, "bytes": bytes }))
            .collect()
    }
}

/// The subscriptions that switch the publication of `ipcbus.sys.stats` on,
/// and what wakes the publisher when the first one comes.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    count: AtomicUsize,
    first: Notify,
}

impl Watchers {
    /// Whether `pattern` asks for the server's figures: its first token is
    /// the literal `ipcbus` and it matches `ipcbus.sys.stats`. A `>` or
    /// `*.sys.stats` does not: a client that follows every key should not
    /// make the server publish a key a second nobody reads.
    pub(crate) fn counts(pattern: &Pattern) -> bool {
        pattern.tokens().next() == Some("ipcbus") && pattern.matches(STATS_KEY)
    }

    /// A subscription to `pattern` was opened.
    pub(crate) fn opened(&self, pattern: &Pattern) {
        if Self::counts(pattern) && self.count.fetch_add(1, Ordering::Relaxed) == 0 {
            // Stores a permit if the publisher is not waiting yet, so a
            // wakeup between its check and its wait is not lost.
            self.first.notify_one();
        }
    }

    /// A subscription to `pattern` was closed.
    pub(crate) fn closed(&self, pattern: &Pattern) {
        if Self::counts(pattern) {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Returns once someone watches (at once if someone does already).
    async fn wait_for_one(&self) {
        while !self.any() {
            self.first.notified().await;
        }
    }
}

/// The counters a rate is taken from, as of one tick.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    writes: u64,
    deliveries: u64,
}

/// Publishes the figures once a second while [`Watchers`] counts anyone,
/// until the server shuts down. While nobody watches it sleeps until the
/// first subscription, with no timer running.
pub(crate) async fn publish_stats(state: web::Data<AppState>) {
    let requester = Requester::new(state.registry.clone(), 0, PUBLISH_TIMEOUT);
    let mut ticks = tokio::time::interval(STATS_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = state.shutdown.clone();
    let mut last: Option<Sample> = None;
    // Our own writes, left out of writes/s.
    let mut published: u64 = 0;
    loop {
        if !state.sys.watchers.any() {
            last = None;
            tokio::select! {
                () = state.sys.watchers.wait_for_one() => {}
                _ = shutdown.changed() => return,
            }
            // The first publication a second after the subscription (up to
            // a second when the timer ran all along).
            ticks.reset();
        }
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => return,
        }
        if !state.sys.watchers.any() {
            continue;
        }
        let now = sample(&state, published);
        let figures = figures(&state, now, last);
        last = Some(now);
        let set = |reply| {
            KeyMsg::Set(Set {
                value: json_value_to_msgpack(&figures),
                if_rev: None,
                life: Life {
                    persist: false,
                    ephemeral: false,
                    ttl_ms: Some(STATS_TTL_MS),
                },
                reply,
            })
        };
        match requester.call(STATS_KEY, true, set).await {
            Ok(_) => published += 1,
            Err(e) => tracing::warn!("cannot publish {STATS_KEY}: {}", e.msg),
        }
    }
}

fn sample(state: &AppState, published: u64) -> Sample {
    let stats = state.registry.stats();
    let writes = stats.writes(state.metrics.first_rev(), state.registry.last_rev());
    Sample {
        at: Instant::now(),
        writes: writes.saturating_sub(published),
        deliveries: stats.deliveries.load(Ordering::Relaxed),
    }
}

/// Per second between two samples; 0 for the first.
fn rate(now: u64, then: Option<(u64, Instant)>, at: Instant) -> f64 {
    let Some((then, when)) = then else {
        return 0.0;
    };
    let secs = at.duration_since(when).as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    // One decimal is all a chart shows.
    ((now.saturating_sub(then)) as f64 / secs * 10.0).round() / 10.0
}

/// The value of `ipcbus.sys.stats` (docs/protocol.md §15 lists its fields).
fn figures(state: &AppState, now: Sample, last: Option<Sample>) -> serde_json::Value {
    let s = state.registry.stats();
    let trouble = state.registry.storage_trouble();
    let mut persistence = serde_json::json!({
        "status": if trouble.is_some() { "degraded" } else { "ok" },
    });
    if let Some(why) = trouble {
        persistence["reason"] = (*why).into();
    }
    serde_json::json!({
        "connections": s.sessions.load(Ordering::Relaxed),
        "subscriptions": s.subscriptions.load(Ordering::Relaxed),
        "keys": s.live_keys.load(Ordering::Relaxed),
        "rev": state.registry.last_rev(),
        "writes": now.writes,
        "deliveries": now.deliveries,
        "writes_per_s": rate(now.writes, last.map(|l| (l.writes, l.at)), now.at),
        "deliveries_per_s": rate(now.deliveries, last.map(|l| (l.deliveries, l.at)), now.at),
        "conflation_skips": s.skipped.load(Ordering::Relaxed),
        "outbox_overflows": s.overflows.load(Ordering::Relaxed),
        "outbox_bytes": s.outbox_bytes.load(Ordering::Relaxed),
        "slowest": state.sys.slowest(),
        "persistence": persistence,
        "selftest": state.selftest(),
        "kodi": state.kodi.as_ref().map(|k| k.as_str()),
        "backplane": state.backplane.as_ref().map(|b| if b.connected() { "ok" } else { "down" }),
    })
}
