//! The bus's figures, read at each scrape from the counters the bus keeps
//! anyway (`ipcbus_actors::Stats`, the Kodi bridge's state), so nothing is
//! counted twice.

use crate::kodi::KodiStatus;
use ipcbus_actors::Registry;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The states the Kodi bridge reports (`KodiStatus::as_str`).
const KODI_STATES: [&str; 3] = ["connecting", "connected", "retrying"];

/// Reads the registry's `Stats`, its rev counter and the Kodi bridge's state.
pub(super) struct BusFigures {
    pub(super) registry: Registry,
    /// The rev the store started from: writes are counted from there.
    pub(super) first_rev: u64,
    pub(super) kodi: Option<Arc<KodiStatus>>,
    pub(super) backplane: Option<crate::backplane::NatsBackplane>,
}

impl std::fmt::Debug for BusFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusFigures").finish_non_exhaustive()
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: &AtomicUsize,
) -> Result<(), std::fmt::Error> {
    let value = i64::try_from(value.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// `name` without its `_total`: the encoder adds it to counters.
fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: &AtomicU64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value.load(Ordering::Relaxed));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for BusFigures {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &**self.registry.stats();
        let writes = AtomicU64::new(s.writes(self.first_rev, self.registry.last_rev()));
        let e = &mut encoder;
        gauge(
            e,
            "ipcbus_connections",
            "Open WebSocket sessions",
            &s.sessions,
        )?;
        gauge(
            e,
            "ipcbus_subscriptions",
            "Open subscriptions, over every session",
            &s.subscriptions,
        )?;
        gauge(e, "ipcbus_keys", "Keys that have a value", &s.live_keys)?;
        gauge(
            e,
            "ipcbus_outbox_bytes",
            "Bytes of events and replies waiting in session outboxes (each outbox reports in 16 KiB steps and when it empties)",
            &s.outbox_bytes,
        )?;
        counter(
            e,
            "ipcbus_writes",
            "Values written (set), by every client and the Kodi bridge",
            &writes,
        )?;
        counter(
            e,
            "ipcbus_deletes",
            "Values removed: del, expired TTL, or the end of an ephemeral key's session",
            &s.deletes,
        )?;
        counter(
            e,
            "ipcbus_deliveries",
            "Events (val and del) written to subscribers",
            &s.deliveries,
        )?;
        counter(
            e,
            "ipcbus_conflation_skips",
            "Events dropped for slow subscribers because a newer event of the same key replaced them",
            &s.skipped,
        )?;
        counter(
            e,
            "ipcbus_outbox_overflows",
            "Sessions closed because they fell outbox_events behind",
            &s.overflows,
        )?;
        if let Some(kodi) = &self.kodi {
            let now = kodi.as_str();
            let mut family = e.encode_descriptor(
                "ipcbus_kodi_bridge_state",
                "The Kodi bridge's connection: 1 for its current state, 0 for the others",
                None,
                MetricType::Gauge,
            )?;
            for state in KODI_STATES {
                let labels = [("state", state)];
                let metric = ConstGauge::new(i64::from(state == now));
                metric.encode(family.encode_family(&labels)?)?;
            }
        }
        if let Some(backplane) = &self.backplane {
            let metric = ConstGauge::new(i64::from(backplane.connected()));
            metric.encode(e.encode_descriptor(
                "ipcbus_backplane_up",
                "1 while the connection to the NATS backplane is up, 0 while it is down",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}
