//! Randomised churn with a tiny outbox and in-flight limit, so conflation
//! and backpressure happen all the time: writers set and delete while raw
//! subscribers subscribe, unsubscribe and read slowly. Every guarantee of
//! docs/protocol.md §7 is checked on every message, and every subscription
//! must end with the final state of every key it matches.

use futures_util::{SinkExt, StreamExt};
use ipcbus::Config;
use ipcbus_protocol::transcode::{json_value_to_msgpack, msgpack_to_json_value};
use ipcbus_protocol::{Codec, Pattern};
use ipcbus_tests::{test_config, TestServer, WAIT};
use serde_json::{json, Value};
use std::collections::HashMap;
use tokio_tungstenite::tungstenite::Message;

const KEYS: u64 = 6;
const ROUNDS: u64 = 300;
const PATTERNS: [&str; 4] = ["c.*", "c.>", ">", "c.k1"];

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Default)]
struct Sub {
    pattern: Option<Pattern>,
    synced: bool,
    /// An `unsub` for it is on its way.
    leaving: bool,
    /// Its `unsub` was answered.
    dead: bool,
    /// key -> (rev, is a value)
    last: HashMap<String, (u64, bool)>,
}

#[derive(Default)]
struct Checker {
    /// request id -> the sub it unsubscribes, or None for a `sub`
    pending: HashMap<u64, (Option<u64>, Option<Pattern>)>,
    subs: HashMap<u64, Sub>,
}

impl Checker {
    fn on(&mut self, v: &Value) {
        if let Some(id) = v["id"].as_u64() {
            assert_eq!(v["ok"], true, "{v}");
            let (unsub, pattern) = self
                .pending
                .remove(&id)
                .expect("reply to a request we sent");
            match unsub {
                Some(sub) => self.subs.get_mut(&sub).expect("known sub").dead = true,
                None if pattern.is_some() => {
                    let sub = v["sub"].as_u64().expect("sub id");
                    let prev = self.subs.insert(
                        sub,
                        Sub {
                            pattern,
                            ..Sub::default()
                        },
                    );
                    assert!(
                        prev.is_none(),
                        "sub {sub}: events before its reply, or a reused id"
                    );
                }
                None => {}
            }
            return;
        }
        let sub_id = v["sub"]
            .as_u64()
            .unwrap_or_else(|| panic!("unexpected message {v}"));
        let sub = self
            .subs
            .get_mut(&sub_id)
            .unwrap_or_else(|| panic!("event before the sub reply: {v}"));
        assert!(!sub.dead, "event after the unsub reply: {v}");
        match v["ev"].as_str() {
            Some("synced") => {
                assert!(!sub.synced, "synced twice: {v}");
                sub.synced = true;
            }
            Some(ev @ ("val" | "del")) => {
                let key = v["key"].as_str().expect("key").to_owned();
                let rev = v["rev"].as_u64().expect("rev");
                assert!(
                    sub.pattern.as_ref().is_some_and(|p| p.matches(&key)),
                    "{key} does not match: {v}"
                );
                if let Some((prev, _)) = sub.last.insert(key, (rev, ev == "val")) {
                    assert!(rev > prev, "rev {rev} after {prev}: {v}");
                }
            }
            _ => panic!("unexpected message {v}"),
        }
    }
}

async fn subscriber(
    server_url: String,
    seed: u64,
    writers_done: tokio::sync::watch::Receiver<bool>,
) -> Checker {
    let server = Raw::connect(&server_url).await;
    let mut ws = server;
    let mut rng = Rng(seed);
    let mut c = Checker::default();
    let mut next_id = 1;
    let mut send = |ws_msg: Value, c: &mut Checker, entry| {
        let id = next_id;
        next_id += 1;
        c.pending.insert(id, entry);
        let mut req = ws_msg;
        req["id"] = json!(id);
        Message::binary(json_value_to_msgpack(&req))
    };
    while !*writers_done.borrow() {
        let live: Vec<u64> = c
            .subs
            .iter()
            .filter(|(_, s)| !s.leaving)
            .map(|(id, _)| *id)
            .collect();
        match rng.below(10) {
            0..=2 if live.len() < 6 => {
                let p = PATTERNS[rng.below(PATTERNS.len() as u64) as usize];
                let pattern = Pattern::parse(p).expect("pattern");
                let msg = send(
                    json!({"op": "sub", "pattern": p}),
                    &mut c,
                    (None, Some(pattern)),
                );
                ws.0.send(msg).await.expect("send");
            }
            3 if !live.is_empty() => {
                let sub = live[rng.below(live.len() as u64) as usize];
                c.subs.get_mut(&sub).expect("live sub").leaving = true;
                let msg = send(
                    json!({"op": "unsub", "sub": sub}),
                    &mut c,
                    (Some(sub), None),
                );
                ws.0.send(msg).await.expect("send");
            }
            4 => {
                // A slow reader: let the outbox fill and conflate.
                for _ in 0..rng.below(200) {
                    tokio::task::yield_now().await;
                }
            }
            _ => {}
        }
        for _ in 0..rng.below(50) {
            let next = tokio::select! {
                m = ws.0.next() => m,
                _ = tokio::task::yield_now() => break,
            };
            c.on(&decode(next));
        }
    }
    // Writers are done and acknowledged, so their events are already queued
    // for us: everything before this marker's reply is all there is.
    let marker = send(json!({"op": "keys"}), &mut c, (None, None));
    let marker_id = next_id - 1;
    ws.0.send(marker).await.expect("send marker");
    while c.pending.contains_key(&marker_id) {
        let next = tokio::time::timeout(WAIT, ws.0.next())
            .await
            .expect("marker reply in time");
        c.on(&decode(next));
    }
    assert!(
        c.pending.is_empty(),
        "replies missing: {:?}",
        c.pending.keys()
    );
    c
}

struct Raw(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl Raw {
    async fn connect(url: &str) -> Raw {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().expect("request");
        let proto = Codec::MsgPack.subprotocol().parse().expect("header");
        req.headers_mut().insert("Sec-WebSocket-Protocol", proto);
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
            .await
            .expect("connect");
        let hello = decode(ws.next().await);
        assert_eq!(hello["ev"], "hello");
        Raw(ws)
    }
}

fn decode(m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Value {
    match m {
        Some(Ok(Message::Binary(b))) => msgpack_to_json_value(&b).expect("MessagePack"),
        other => panic!("expected a binary message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_keeps_every_guarantee() {
    let config = Config {
        outbox_bytes: 400,
        max_inflight: 3,
        ..test_config()
    };
    for seed in [1u64, 2, 3] {
        let server = TestServer::with_config(config.clone());
        let (done_tx, done) = tokio::sync::watch::channel(false);
        let subscribers: Vec<_> = (0..3)
            .map(|i| tokio::spawn(subscriber(server.url(), seed * 100 + i + 1, done.clone())))
            .collect();
        let mut writers = Vec::new();
        for w in 0..3u64 {
            let client = server.client().await;
            writers.push(tokio::spawn(async move {
                let mut rng = Rng(seed * 1000 + w + 7);
                for round in 0..ROUNDS {
                    let key = format!("c.k{}", rng.below(KEYS));
                    if rng.below(5) == 0 {
                        let _ = client.del(&key).await; // not_found is fine
                    } else {
                        client.set(&key, &round).await.expect("set");
                    }
                }
            }));
        }
        for w in writers {
            w.await.expect("writer");
        }
        let reader = server.client().await;
        let finals: HashMap<String, u64> =
            reader.keys(None).await.expect("keys").into_iter().collect();
        done_tx.send_replace(true);
        for s in subscribers {
            let checker = s.await.expect("subscriber");
            for (id, sub) in checker.subs.iter().filter(|(_, s)| !s.dead) {
                assert!(sub.synced, "seed {seed} sub {id} never synced");
                let pattern = sub.pattern.as_ref().expect("pattern");
                for k in 0..KEYS {
                    let key = format!("c.k{k}");
                    if !pattern.matches(&key) {
                        continue;
                    }
                    match (finals.get(&key), sub.last.get(&key)) {
                        (Some(rev), got) => {
                            assert_eq!(got, Some(&(*rev, true)), "seed {seed} sub {id} {key}");
                        }
                        (None, Some((_, is_value))) => {
                            assert!(!is_value, "seed {seed} sub {id}: {key} was deleted");
                        }
                        (None, None) => {}
                    }
                }
            }
        }
    }
}
