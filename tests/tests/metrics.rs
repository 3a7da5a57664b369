//! `GET /metrics`, parsed with a Prometheus text-format parser
//! (`prometheus-parse`): every metric of docs/metrics.md is there with its
//! type, and each one moves when its event happens.

use futures_util::StreamExt;
use ipcbus::backplane::BackplaneConfig;
use ipcbus_client::{Event, SetOptions};
use ipcbus_protocol::Codec;
use ipcbus_tests::nats::NatsCluster;
use ipcbus_tests::{test_config, TestServer, WAIT};
use prometheus_parse::{Scrape, Value};
use serde_json::json;
use std::future::Future;

/// Where the metrics are documented, one table row per metric.
const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");

async fn scrape(server: &TestServer) -> Scrape {
    let (status, body) = server.http_get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("a valid exposition")
}

/// The value of `name` (with the label `label`, if given); for a
/// histogram, its count.
fn value(scrape: &Scrape, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))?;
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        Value::Histogram(buckets) => buckets.last().map(|b| b.count),
        Value::Summary(_) => None,
    }
}

fn get(scrape: &Scrape, name: &str) -> f64 {
    value(scrape, name, None).unwrap_or_else(|| panic!("{name} missing"))
}

/// Scrapes until `done` holds, for at most [`WAIT`].
async fn scrape_until(server: &TestServer, done: impl Fn(&Scrape) -> bool) -> Scrape {
    within(async {
        loop {
            let scrape = scrape(server).await;
            if done(&scrape) {
                return scrape;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut).await.expect("in time")
}

/// (name, type) of each row of docs/metrics.md's table.
fn documented() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(DOC).expect("docs/metrics.md");
    doc.lines()
        .filter_map(|line| {
            let mut cells = line.split('|').map(str::trim).skip(1);
            let name = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            let kind = cells.next()?;
            Some((name.to_owned(), kind.to_owned()))
        })
        .filter(|(name, _)| name.starts_with("ipcbus_") || name.starts_with("process_"))
        .collect()
}

#[tokio::test]
async fn every_documented_metric_is_there_with_its_type() {
    // A Kodi that is not there: the bridge's state is shown all the same.
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let kodi = format!("ws://{}/jsonrpc", nobody.local_addr().expect("addr"));
    drop(nobody);
    // And a NATS backplane, which has a metric of its own.
    let mut cluster = NatsCluster::start(3).await.expect("cluster");
    let server = TestServer::with_config(ipcbus::Config {
        kodi: Some(kodi),
        backplane: Some(BackplaneConfig::default().with_servers(&cluster.urls())),
        ..test_config()
    });
    let scrape = scrape(&server).await;
    let rows = documented();
    assert!(rows.len() >= 17, "the table of docs/metrics.md: {rows:?}");
    for (name, kind) in rows {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("{name} is documented but not in /metrics"));
        let found = match sample.value {
            Value::Counter(_) => "counter",
            Value::Gauge(_) => "gauge",
            Value::Histogram(_) => "histogram",
            _ => "other",
        };
        assert_eq!(found, kind, "{name}");
        assert!(scrape.docs.contains_key(&name), "{name} has no HELP");
    }
    assert!(get(&scrape, "process_resident_memory_bytes") > 0.0);
    assert!(get(&scrape, "process_open_fds") > 0.0);
    // The bridge finds no Kodi: it goes from connecting to retrying.
    scrape_until(&server, |s| {
        value(s, "ipcbus_kodi_bridge_state", Some(("state", "retrying"))) == Some(1.0)
    })
    .await;
    // The backplane is up, then down with every NATS server gone.
    assert_eq!(get(&scrape, "ipcbus_backplane_up"), 1.0);
    for i in 0..3 {
        cluster.kill(i);
    }
    scrape_until(&server, |s| {
        value(s, "ipcbus_backplane_up", None) == Some(0.0)
    })
    .await;
}

#[tokio::test]
async fn metrics_need_the_token_and_each_refusal_is_counted_by_reason() {
    let server = TestServer::start();
    let before = scrape(&server).await;
    let refused = |s: &Scrape, reason| value(s, "ipcbus_refusals_total", Some(("reason", reason)));
    assert_eq!(refused(&before, "token"), Some(0.0));
    assert_eq!(refused(&before, "origin"), Some(0.0));
    let bare = format!(
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr()
    );
    assert_eq!(server.http(&bare).await.0, 401);
    let token = server.token().expect("token");
    let forged = format!(
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Origin: http://evil.example\r\nConnection: close\r\n\r\n",
        server.addr()
    );
    assert_eq!(server.http(&forged).await.0, 403);
    let after = scrape(&server).await;
    assert_eq!(refused(&after, "token"), Some(1.0));
    assert_eq!(refused(&after, "origin"), Some(1.0));
}

#[tokio::test]
async fn each_figure_moves_with_its_event() {
    let server = TestServer::start();
    let s0 = scrape(&server).await;
    assert_eq!(get(&s0, "ipcbus_connections"), 0.0);

    let subscriber = server.client().await;
    let mut events = subscriber.subscribe("m.>").await.expect("subscribe");
    let writer = server.client().await;
    writer.set("m.a", &1).await.expect("set");
    let persisted = SetOptions {
        persist: true,
        ..SetOptions::default()
    };
    writer.set_with("m.b", &2, persisted).await.expect("set");
    writer.del("m.a").await.expect("del");
    // Synced, then val m.a, val m.b, del m.a: once the last is here, the
    // session has counted them (it counts a batch before sending it).
    let mut seen = 0;
    within(async {
        while seen < 3 {
            match events.next().await.expect("event") {
                Event::Synced => {}
                _ => seen += 1,
            }
        }
    })
    .await;

    let s1 = scrape(&server).await;
    let moved = |name: &str| get(&s1, name) - get(&s0, name);
    assert_eq!(get(&s1, "ipcbus_connections"), 2.0);
    assert_eq!(get(&s1, "ipcbus_subscriptions"), 1.0);
    assert_eq!(get(&s1, "ipcbus_keys"), 1.0);
    assert_eq!(moved("ipcbus_writes_total"), 2.0);
    assert_eq!(moved("ipcbus_deletes_total"), 1.0);
    assert_eq!(moved("ipcbus_deliveries_total"), 3.0);
    assert_eq!(moved("ipcbus_persist_commit_duration_seconds"), 1.0);
    // Each session times its first request with an id: the subscriber's
    // `sub` and the writer's first `set`.
    assert_eq!(moved("ipcbus_request_duration_seconds"), 2.0);
    assert!(get(&s1, "process_cpu_seconds_total") >= get(&s0, "process_cpu_seconds_total"));

    drop(events);
    drop(subscriber);
    drop(writer);
    scrape_until(&server, |s| {
        get(s, "ipcbus_connections") == 0.0 && get(s, "ipcbus_subscriptions") == 0.0
    })
    .await;
}

/// Writes `write(0)`, `write(1)`, ... (key, value) in batches, scraping
/// after each, until `done` holds.
async fn write_until(
    server: &TestServer,
    writer: &ipcbus_client::Client,
    write: impl Fn(usize) -> (String, String),
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    const BATCH: usize = 16;
    let mut next = 0;
    within(async {
        loop {
            for i in next..next + BATCH {
                let (key, value) = write(i);
                writer.set(&key, &value).await.expect("set");
            }
            next += BATCH;
            let s = scrape(server).await;
            if done(&s) {
                return s;
            }
        }
    })
    .await
}

/// A subscriber that stops reading: its outbox fills (outbox bytes), then
/// conflates (skips), then, past `outbox_events` distinct keys, overflows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_subscriber_shows_in_outbox_bytes_skips_and_overflows() {
    const VALUE_BYTES: usize = 32 << 10;
    let server = TestServer::with_config(ipcbus::Config {
        outbox_bytes: 256 << 10,
        outbox_events: 256,
        ..test_config()
    });
    let mut stuck = server.raw(Codec::MsgPack).await;
    let (reply, _) = stuck
        .call(json!({"id": 1, "op": "sub", "pattern": "s.>"}))
        .await;
    assert_eq!(reply["ok"], true);
    // From here on `stuck` does not read.
    let writer = server.client().await;
    let filler = "x".repeat(VALUE_BYTES);
    // Four keys written again and again: past the budget, they conflate.
    let same = |i: usize| (format!("s.k{}", i % 4), format!("{i}{filler}"));
    // The kernel's socket buffers may take some of the outbox between two
    // scrapes: write until one scrape shows both the skips and the bytes.
    let backed_up = write_until(&server, &writer, same, |s| {
        get(s, "ipcbus_conflation_skips_total") > 0.0
            && get(s, "ipcbus_outbox_bytes") >= f64::from(128 << 10)
    })
    .await;
    assert!(get(&backed_up, "ipcbus_outbox_bytes") >= f64::from(128 << 10));
    // Distinct keys cannot be conflated: the outbox overflows.
    let distinct = |i: usize| (format!("s.new{i}"), i.to_string());
    let s = write_until(&server, &writer, distinct, |s| {
        get(s, "ipcbus_outbox_overflows_total") > 0.0
    })
    .await;
    assert_eq!(get(&s, "ipcbus_outbox_overflows_total"), 1.0);
    // The closed outbox no longer counts.
    assert!(get(&s, "ipcbus_outbox_bytes") < f64::from(16 << 10));
}
