//! Prometheus metrics: the registry behind `GET /metrics` and the handles
//! that the hot paths bump.
//!
//! Most figures are not counted here: the bus's own counters
//! (`ipcbus_actors::Stats`, shared atomics that `/health` reads too) are
//! read at each scrape by [`bus::BusFigures`], and the process's by
//! [`process::ProcessFigures`]. What lives here is what nothing else
//! counts: refusals by reason and the two duration histograms. Every
//! handle is resolved once, at startup, so bumping one is an atomic add
//! (a counter) or one uncontended lock (a histogram, sampled: [`timing`]).
//! The metric names and their meaning are in docs/metrics.md.

mod bus;
mod process;
pub(crate) mod timing;

use crate::app::AppState;
use crate::kodi::KodiStatus;
use actix_web::{web, HttpResponse};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// Request durations: 50 µs to about 3 s, each bucket four times the last.
const REQUEST_BUCKETS: (f64, f64, u16) = (0.000_05, 4.0, 9);
/// Commit durations (an fsync each): 100 µs to about 6.5 s.
const COMMIT_BUCKETS: (f64, f64, u16) = (0.000_1, 4.0, 9);

/// Why a request was turned away before reaching its route (`auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No token, or a wrong one (401).
    Token,
    /// A browser `Origin` that is not allowed (403).
    Origin,
}

impl Refused {
    const ALL: [Refused; 2] = [Refused::Token, Refused::Origin];

    /// The value of the `reason` label.
    fn label(self) -> &'static str {
        match self {
            Refused::Token => "token",
            Refused::Origin => "origin",
        }
    }
}

/// The metrics of one server.
pub(crate) struct Metrics {
    registry: Registry,
    /// One handle per [`Refused`], in the order of [`Refused::ALL`].
    refusals: [Counter; Refused::ALL.len()],
    /// WebSocket requests, from decoding to their reply being written.
    pub(crate) request_seconds: Histogram,
    /// The store's commits (one redb transaction and fsync per batch).
    pub(crate) commit_seconds: Histogram,
    /// The rev the store started from: writes are counted from there.
    first_rev: u64,
}

impl Metrics {
    /// The metrics of the bus `bus` (its counters, and its writes from
    /// now on), with the Kodi bridge's and the backplane's state when it
    /// has them.
    pub(crate) fn new(
        bus: ipcbus_actors::Registry,
        kodi: Option<Arc<KodiStatus>>,
        backplane: Option<crate::backplane::NatsBackplane>,
    ) -> Metrics {
        let mut registry = Registry::default();
        let first_rev = bus.last_rev();
        let figures = bus::BusFigures {
            registry: bus,
            first_rev,
            kodi,
            backplane,
        };
        registry.register_collector(Box::new(figures));
        registry.register_collector(Box::new(process::ProcessFigures));

        let refused = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let refusals =
            Refused::ALL.map(|r| refused.get_or_create(&[("reason", r.label())]).clone());
        registry.register(
            "ipcbus_refusals",
            "Requests refused before their route, by reason: token (401) or origin (403)",
            refused,
        );
        let (start, factor, len) = REQUEST_BUCKETS;
        let request_seconds = Histogram::new(exponential_buckets(start, factor, len));
        registry.register(
            "ipcbus_request_duration_seconds",
            format!(
                "WebSocket requests with an id, from decoding to the reply being written; \
                 one in {} per session is timed",
                timing::SAMPLE_EVERY
            ),
            request_seconds.clone(),
        );
        let (start, factor, len) = COMMIT_BUCKETS;
        let commit_seconds = Histogram::new(exponential_buckets(start, factor, len));
        registry.register(
            "ipcbus_persist_commit_duration_seconds",
            "Commits of persisted writes to the data file, one transaction and fsync per batch",
            commit_seconds.clone(),
        );
        Metrics {
            registry,
            refusals,
            request_seconds,
            commit_seconds,
            first_rev,
        }
    }

    /// The rev the store started from (`Stats::writes` counts from it).
    pub(crate) fn first_rev(&self) -> u64 {
        self.first_rev
    }

    /// Counts a refusal.
    pub(crate) fn refused(&self, why: Refused) {
        let index = Refused::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.refusals[index].inc();
    }

    /// What the store calls after each commit.
    pub(crate) fn commit_hook(&self) -> ipcbus_actors::store::CommitHook {
        let histogram = self.commit_seconds.clone();
        Box::new(move |took: Duration| histogram.observe(took.as_secs_f64()))
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub(crate) fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// `GET /metrics`. It needs the token like every route but `/health`
/// (docs/security.md says why).
pub(crate) async fn handler(state: web::Data<AppState>) -> HttpResponse {
    match state.metrics.render() {
        Ok(text) => HttpResponse::Ok()
            .content_type(prometheus_text::CONTENT_TYPE)
            .body(text),
        Err(_) => HttpResponse::InternalServerError().body("cannot encode the metrics\n"),
    }
}
