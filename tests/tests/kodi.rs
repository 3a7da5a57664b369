//! `serve --kodi` end to end: a scripted Kodi JSON-RPC peer (`fake_kodi`),
//! the real server with `kodi` set, and the real Rust client subscribed to
//! `kodi.player.>`. Every wait is for an event, with a timeout.

mod fake_kodi;

use fake_kodi::{FakeKodi, CLIP};
use futures_util::StreamExt;
use ipcbus::Config;
use ipcbus_client::{Event, Subscription};
use ipcbus_protocol::transcode::msgpack_to_json_value;
use ipcbus_tests::{test_config, TestServer, WAIT};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const STATE: &str = "kodi.player.state";
const ITEM: &str = "kodi.player.item";

fn server(kodi_url: String) -> TestServer {
    TestServer::with_config(Config {
        kodi: Some(kodi_url),
        ..test_config()
    })
}

/// The next key event: (key, value), the value `None` for a deletion.
async fn next(sub: &mut Subscription) -> (String, Option<Value>) {
    loop {
        let event = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("no event in time")
            .expect("subscription ended");
        match event {
            Event::Value { key, value, .. } => {
                return (key, Some(msgpack_to_json_value(&value).expect("msgpack")))
            }
            Event::Deleted { key, .. } => return (key, None),
            Event::Synced => {}
        }
    }
}

/// Skips events until `key` gets `want`.
async fn until(sub: &mut Subscription, key: &str, want: Option<Value>) {
    loop {
        let got = next(sub).await;
        if got.0 == key && got.1 == want {
            return;
        }
    }
}

fn stopped() -> Option<Value> {
    Some(json!({"state": "stopped", "file": null, "speed": 0}))
}

fn playing(speed: i64) -> Option<Value> {
    let state = if speed == 0 { "paused" } else { "playing" };
    Some(json!({"state": state, "file": CLIP, "speed": speed}))
}

fn clip_item() -> Value {
    json!({"title": "clip.mp4", "label": "clip.mp4", "mediatype": "video",
        "showtitle": null, "season": null, "episode": null, "year": null,
        "duration": 5, "file": CLIP,
        "video": {"width": 640, "height": 360, "fps": 25.0, "aspect": 1.78, "codec": "h264"}})
}

async fn subscribe(server: &TestServer) -> (ipcbus_client::Client, Subscription) {
    let client = server.client().await;
    let sub = client.subscribe("kodi.player.>").await.expect("subscribe");
    (client, sub)
}

#[tokio::test]
async fn start_pause_resume_and_stop() {
    let kodi = FakeKodi::start().await;
    let server = server(kodi.url());
    let (_client, mut sub) = subscribe(&server).await;
    until(&mut sub, STATE, stopped()).await;

    kodi.script(|s| (s.playing, s.speed) = (true, 1));
    kodi.notify("Player.OnAVStart", 1).await;
    let (key, item) = next(&mut sub).await;
    assert_eq!((key.as_str(), item.as_ref()), (ITEM, Some(&clip_item())));
    let item = item.expect("item");
    assert!(item["video"]["fps"].is_f64() && item["video"]["width"].is_u64());
    assert_eq!(next(&mut sub).await, (STATE.to_owned(), playing(1)));

    kodi.notify("Player.OnPause", 0).await;
    assert_eq!(next(&mut sub).await, (STATE.to_owned(), playing(0)));
    kodi.notify("Player.OnResume", 1).await;
    assert_eq!(next(&mut sub).await, (STATE.to_owned(), playing(1)));

    kodi.script(|s| s.playing = false);
    let stop = json!({"jsonrpc": "2.0", "method": "Player.OnStop",
        "params": {"data": {"end": false, "item": {"title": "clip.mp4", "type": "movie"}}, "sender": "xbmc"}});
    kodi.send(Message::text(stop.to_string())).await;
    assert_eq!(next(&mut sub).await, (STATE.to_owned(), stopped()));
    assert_eq!(next(&mut sub).await, (ITEM.to_owned(), None));

    let (status, body) = server.http_get("/health").await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""kodi":"connected""#), "{body}");
}

#[tokio::test]
async fn reconnects_and_republishes_what_plays() {
    let mut kodi = FakeKodi::start().await;
    kodi.script(|s| (s.playing, s.speed) = (true, 1));
    let server = server(kodi.url());
    let (_client, mut sub) = subscribe(&server).await;
    until(&mut sub, STATE, playing(1)).await;

    kodi.drop_connection().await;
    // Unseen, the playback is not claimed; then the new connection reads it.
    assert_eq!(next(&mut sub).await, (STATE.to_owned(), stopped()));
    assert_eq!(next(&mut sub).await, (ITEM.to_owned(), None));
    kodi.wait_connections(2).await;
    assert_eq!(next(&mut sub).await, (ITEM.to_owned(), Some(clip_item())));
    assert_eq!(next(&mut sub).await, (STATE.to_owned(), playing(1)));
}

#[tokio::test]
async fn a_reconnect_writes_the_keys_afresh() {
    let mut kodi = FakeKodi::start().await;
    let server = server(kodi.url());
    let (client, mut sub) = subscribe(&server).await;
    until(&mut sub, STATE, stopped()).await;
    // Another client removes the state; the bridge's next connection,
    // though nothing changed in Kodi, puts it back.
    client.del(STATE).await.expect("del");
    assert_eq!(next(&mut sub).await, (STATE.to_owned(), None));
    kodi.drop_connection().await;
    kodi.wait_connections(2).await;
    until(&mut sub, STATE, stopped()).await;
}

#[tokio::test]
async fn kodi_down_at_start_then_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let server = server(format!("ws://{port}/jsonrpc"));
    let (_client, mut sub) = subscribe(&server).await;
    // No key until Kodi answers; /health says the bridge retries.
    let retrying = async {
        loop {
            let (_, body) = server.http_get("/health").await;
            if body.contains(r#""kodi":"retrying""#) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, retrying)
        .await
        .expect("/health never said retrying");
    let listener = tokio::net::TcpListener::bind(port).await.expect("rebind");
    let mut kodi = FakeKodi::on(listener);
    kodi.script(|s| (s.playing, s.speed) = (true, 0));
    kodi.wait_connections(1).await;
    assert_eq!(next(&mut sub).await, (ITEM.to_owned(), Some(clip_item())));
    assert_eq!(next(&mut sub).await, (STATE.to_owned(), playing(0)));
}

#[tokio::test]
async fn malformed_input_is_skipped() {
    let mut kodi = FakeKodi::start().await;
    let server = server(kodi.url());
    let (_client, mut sub) = subscribe(&server).await;
    until(&mut sub, STATE, stopped()).await;
    kodi.script(|s| (s.playing, s.speed) = (true, 1));

    for junk in [
        Message::text("garbage {"),
        Message::binary(vec![0x82, 0xa1, 0x61]),
        Message::text(r#"{"jsonrpc":"2.0","params":{}}"#),
        Message::text(r#"[{"jsonrpc":"2.0","method":"Player.OnAVStart"}]"#),
        Message::text(r#"{"jsonrpc":"2.0","id":"x","result":1}"#),
        Message::text(r#"{"jsonrpc":"2.0","id":999,"result":1}"#),
        Message::text(
            r#"{"jsonrpc":"2.0","method":"Player.OnAVStart","params":{"data":{"player":{"playerid":"one","speed":[]}}}}"#,
        ),
        Message::text(r#"{"jsonrpc":"2.0","method":"Player.OnAVStart","params":7}"#),
    ] {
        kodi.send(junk).await;
    }
    // A reply with an error object, then one that never comes (a timeout).
    kodi.script(|s| _ = s.fail.insert("Player.GetItem"));
    kodi.notify("Player.OnAVStart", 1).await;
    kodi.wait_calls("Player.GetItem", 1).await;
    kodi.script(|s| {
        s.fail.clear();
        s.stall.insert("Player.GetItem");
    });
    kodi.notify("Player.OnAVStart", 1).await;
    kodi.wait_calls("Player.GetItem", 2).await;
    // Still the first connection, and a valid notification still works.
    kodi.script(|s| s.stall.clear());
    kodi.notify("Player.OnAVStart", 1).await;
    assert_eq!(next(&mut sub).await, (ITEM.to_owned(), Some(clip_item())));
    assert_eq!(next(&mut sub).await, (STATE.to_owned(), playing(1)));
    assert_eq!(kodi.connections(), 1, "the bridge reconnected");
    let (_, body) = server.http_get("/health").await;
    assert!(body.contains(r#""kodi":"connected""#), "{body}");
}

#[tokio::test]
async fn the_keys_are_not_persisted_even_with_persist_all() {
    let kodi = FakeKodi::start().await;
    kodi.script(|s| (s.playing, s.speed) = (true, 1));
    let dir = tempfile::tempdir().expect("data dir");
    let config = Config {
        kodi: Some(kodi.url()),
        persist_all: true,
        data_dir: Some(dir.path().to_owned()),
        ..test_config()
    };
    let server = TestServer::with_config(config.clone());
    let (client, mut sub) = subscribe(&server).await;
    until(&mut sub, STATE, playing(1)).await;
    drop((sub, client));
    drop(server);
    let server = TestServer::with_config(Config {
        kodi: None,
        ..config
    });
    let keys = server.client().await.keys(Some("kodi.>")).await;
    assert_eq!(keys.expect("keys"), vec![]);
}
