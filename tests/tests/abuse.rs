//! Abuse tests: a buggy or hostile client with the token tries to make the
//! server exceed a bound that docs/reliability.md states. Each test asserts
//! that bound, scaled down to run in seconds, and was checked to fail
//! against the server before its fix. Memory bounds are read from the
//! RSS of a server in a child process of its own.

use futures_util::SinkExt;
use ipcbus_protocol::Codec;
use ipcbus_tests::child::{Launcher, Server, AS_SERVER};
use ipcbus_tests::{Next, Raw, TestServer};
use serde_json::json;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// A server in a child process, with a data directory removed on drop.
struct Child {
    server: Server,
    _dir: tempfile::TempDir,
}

impl Child {
    fn start(extra: &[&str]) -> Child {
        Child::start_under(&[], extra)
    }

    /// Starts the server as the last argument of `wrapper` (a command
    /// such as `prlimit --nofile=...`).
    fn start_under(wrapper: &[&str], extra: &[&str]) -> Child {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = env!("CARGO_BIN_EXE_ipcbus-soak");
        let (program, mut prefix) = match wrapper.split_first() {
            Some((program, args)) => (*program, args.iter().map(|a| (*a).to_owned()).collect()),
            None => (server, vec![]),
        };
        if !wrapper.is_empty() {
            prefix.push(server.to_owned());
        }
        prefix.push(AS_SERVER.to_owned());
        let launcher = Launcher {
            program: program.into(),
            prefix,
            data_dir: dir.path().to_owned(),
            panics: Default::default(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        let server = launcher.start().expect("start the server");
        Child { server, _dir: dir }
    }

    fn url(&self) -> String {
        format!("{}?token={}", self.server.url, self.server.token)
    }

    async fn raw(&self, codec: Codec) -> Raw {
        let mut raw = Raw::connect(&self.url(), codec).await;
        assert_eq!(raw.recv().await["ev"], "hello");
        raw
    }

    fn rss_mib(&self) -> f64 {
        self.server.rss_kib().expect("server RSS") as f64 / 1024.0
    }

    /// The largest RSS growth over `baseline` seen within `during`.
    async fn peak_growth_mib(&self, baseline: f64, during: Duration) -> f64 {
        let end = tokio::time::Instant::now() + during;
        let mut peak: f64 = 0.0;
        while tokio::time::Instant::now() < end {
            peak = peak.max(self.rss_mib() - baseline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("RSS: baseline {baseline:.1} MiB, peak growth {peak:.1} MiB");
        peak
    }
}

/// A MessagePack string of `len` bytes: a value of about that size.
fn big_value(len: usize) -> serde_json::Value {
    json!("x".repeat(len))
}

/// Another client is served promptly while the server is under abuse.
async fn healthy_client_is_served(child: &Child) {
    let mut raw = child.raw(Codec::Json).await;
    let (r, _) = raw
        .call(json!({"id": 1, "op": "set", "key": "bystander", "value": 1}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let (r, _) = raw
        .call(json!({"id": 2, "op": "get", "key": "bystander"}))
        .await;
    assert_eq!(r["value"], 1, "{r}");
}

#[tokio::test]
async fn a_frame_over_the_limit_is_refused_with_1009_as_its_header_arrives() {
    let server = TestServer::start();
    let mut raw = server.raw(Codec::MsgPack).await;
    // A masked binary frame announcing 2^40 bytes, and the first 256 KiB.
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 40).to_be_bytes());
    bytes.extend_from_slice(&[1, 2, 3, 4]);
    bytes.resize(bytes.len() + (256 << 10), 0);
    let MaybeTlsStream::Plain(tcp) = raw.ws.get_mut() else {
        panic!("plain TCP expected");
    };
    tcp.write_all(&bytes).await.expect("write");
    // Before the fix the server buffered the payload, waiting for all of it.
    match raw.next().await {
        Next::Closed(code) => assert_eq!(code, Some(CloseCode::Size)),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stalled_subscriber_pins_no_copies_of_values_at_rest() {
    let child = Child::start(&[]);
    let mut writer = child.raw(Codec::Json).await;
    // 16 keys of 512 KiB at rest.
    for i in 0..16 {
        let set =
            json!({"id": i, "op": "set", "key": format!("big.{i}"), "value": big_value(512 << 10)});
        let (r, _) = writer.call(set).await;
        assert_eq!(r["ok"], true, "{r}");
    }
    let baseline = child.rss_mib();
    // 30 subscriptions to everything from a client that never reads: 240
    // MiB of replay if each were a copy.
    let mut stalled = Raw::connect(&child.url(), Codec::Json).await;
    for id in 0..30 {
        let sub = json!({"id": id, "op": "sub", "pattern": ">"}).to_string();
        stalled.ws.feed(Message::text(sub)).await.expect("send");
    }
    stalled.ws.flush().await.expect("flush");
    let growth = child
        .peak_growth_mib(baseline, Duration::from_secs(3))
        .await;
    assert!(
        growth < 32.0,
        "RSS grew {growth:.1} MiB for one stalled subscriber (bound: outbox budget and frames in flight)"
    );
    healthy_client_is_served(&child).await;
    drop(stalled);
}

#[tokio::test]
async fn a_stalled_subscriber_pins_no_copies_of_one_write_to_many_subscriptions() {
    let child = Child::start(&[]);
    let mut stalled = Raw::connect(&child.url(), Codec::MsgPack).await;
    for id in 0..64 {
        let sub = json!({"id": id, "op": "sub", "pattern": "hot"});
        let frame = ipcbus_protocol::transcode::json_value_to_msgpack(&sub);
        stalled.ws.feed(Message::binary(frame)).await.expect("send");
    }
    stalled.ws.flush().await.expect("flush");
    let mut writer = child.raw(Codec::Json).await;
    // Whether each subscription comes before the write or after it, it
    // gets the 1 MiB value: as an event, or in its replay.
    let baseline = child.rss_mib();
    let set = json!({"id": 1, "op": "set", "key": "hot", "value": big_value(1000 << 10)});
    let (r, _) = writer.call(set).await;
    assert_eq!(r["ok"], true, "{r}");
    let growth = child
        .peak_growth_mib(baseline, Duration::from_secs(3))
        .await;
    assert!(
        growth < 24.0,
        "RSS grew {growth:.1} MiB for one 1 MiB write to 64 stalled subscriptions"
    );
    healthy_client_is_served(&child).await;
    drop(stalled);
}

/// Tries `n` upgrades one after another, keeping each that succeeds open;
/// returns how many succeeded and how many were refused with 503. Any
/// other outcome, a wait over [`CONNECT_WAIT`] included, fails the test.
async fn open_sessions(child: &Child, n: usize) -> (Vec<impl Sized>, usize) {
    let mut open = Vec::new();
    let mut refused = 0;
    for i in 0..n {
        let attempt = tokio_tungstenite::connect_async(child.url());
        match tokio::time::timeout(CONNECT_WAIT, attempt).await {
            Ok(Ok((ws, _))) => open.push(ws),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
                assert_eq!(resp.status(), 503, "connection {i}");
                refused += 1;
            }
            Ok(Err(e)) => panic!("connection {i} failed: {e}"),
            Err(_) => panic!("connection {i} got no answer within {CONNECT_WAIT:?}"),
        }
    }
    (open, refused)
}

/// How long a refused connection may take to be told so.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn connections_beyond_the_open_file_limit_are_refused_at_once() {
    // A hard limit of 128 files: 64 are kept for the server, so 64
    // sessions fit, and the rest must be told 503, not left to time out.
    let child = Child::start_under(&["prlimit", "--nofile=128:128"], &[]);
    let (open, refused) = open_sessions(&child, 100).await;
    assert_eq!((open.len(), refused), (64, 36));
    let log = std::fs::read_to_string(child._dir.path().join("server.log")).expect("log");
    assert!(log.contains("leaves room for 64"), "{log}");
}

#[tokio::test]
async fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let child = Child::start_under(&["prlimit", "--nofile=128:4096"], &[]);
    let (open, refused) = open_sessions(&child, 200).await;
    assert_eq!((open.len(), refused), (200, 0));
}

/// Stores `n` keys of about 1 KiB (`prefix.<i>`) without waiting for each
/// reply; returns once all are applied.
async fn fill(raw: &mut Raw, prefix: &str, n: usize) {
    for i in 0..n {
        let set = json!({"op": "set", "key": format!("{prefix}.{i}"), "value": "x".repeat(1000)});
        raw.ws
            .feed(Message::text(set.to_string()))
            .await
            .expect("send");
    }
    // Requests without an id get no reply; `keys` waits for them all.
    let (r, _) = raw
        .call(json!({"id": 1, "op": "keys", "pattern": format!("{prefix}.>")}))
        .await;
    assert_eq!(r["keys"].as_array().map(Vec::len), Some(n), "{prefix}");
}

/// Options that make outboxes small, so that a few thousand keys overflow one.
const SMALL_OUTBOX: &[&str] = &["--outbox-bytes", "65536", "--outbox-events", "1000"];

#[tokio::test]
async fn a_subscriber_too_far_behind_is_closed_and_pins_nothing() {
    let child = Child::start(SMALL_OUTBOX);
    let mut stalled = child.raw(Codec::Json).await;
    let (r, _) = stalled
        .call(json!({"id": 1, "op": "sub", "pattern": ">"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    // 20 000 distinct keys change while it reads nothing: far more than
    // the kernel's buffers, the outbox's budget and its 1000 events hold.
    let mut writer = child.raw(Codec::Json).await;
    fill(&mut writer, "w", 20_000).await;
    let health = child.server.health().await.expect("/health");
    assert_eq!(health["overflows"], 1, "{health}");
    healthy_client_is_served(&child).await;
    // When it reads again, it gets what was on its way, then a close that
    // tells it to reconnect for the current state.
    loop {
        match stalled.next().await {
            Next::Msg(_) => {}
            Next::Closed(code) => break assert_eq!(code, Some(CloseCode::Policy)),
            other => panic!("expected close 1008, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_replay_bigger_than_the_outbox_goes_at_the_pace_of_its_reader() {
    let child = Child::start(SMALL_OUTBOX);
    let mut writer = child.raw(Codec::Json).await;
    fill(&mut writer, "r", 5_000).await;
    // 5 MB of replay through a 64 KiB, 1000-event outbox: the walk waits
    // for the client instead of overflowing it.
    let mut reader = child.raw(Codec::Json).await;
    reader
        .send(json!({"id": 1, "op": "sub", "pattern": "r.>"}))
        .await;
    let mut vals = 0;
    loop {
        let msg = reader.recv().await;
        match msg["ev"].as_str() {
            Some("val") => vals += 1,
            Some("synced") => break,
            _ => assert_eq!(msg["ok"], true, "{msg}"),
        }
    }
    assert_eq!(vals, 5_000);
    let health = child.server.health().await.expect("/health");
    assert_eq!(health["overflows"], 0, "{health}");
}

#[tokio::test]
async fn a_client_asking_for_the_listing_without_reading_pins_one_at_most() {
    let child = Child::start(SMALL_OUTBOX);
    let mut writer = child.raw(Codec::Json).await;
    fill(&mut writer, "l", 20_000).await;
    let baseline = child.rss_mib();
    // 300 listings of 20 000 keys (about a megabyte each, made afresh for
    // each request) asked for by a client that never reads them. The first
    // few fill the sockets' buffers (and the allocator's caches, hence the
    // bound); before the fix every one of them stayed queued, 75 MiB per
    // hundred.
    let mut stalled = Raw::connect(&child.url(), Codec::Json).await;
    for id in 0..300 {
        let keys = json!({"id": id, "op": "keys"}).to_string();
        stalled.ws.feed(Message::text(keys)).await.expect("send");
    }
    stalled.ws.flush().await.expect("flush");
    let growth = child
        .peak_growth_mib(baseline, Duration::from_secs(3))
        .await;
    assert!(
        growth < 64.0,
        "RSS grew {growth:.1} MiB for 300 unread listings"
    );
    healthy_client_is_served(&child).await;
    drop(stalled);
}
