//! A scripted Kodi JSON-RPC peer for the bridge's tests: a tokio-tungstenite
//! server on `127.0.0.1:0` that answers the bridge's requests with replies
//! shaped like Kodi 20's (copied from /work/shared/kodi/README.md) and
//! sends whatever notifications or frames the test asks for.

#![allow(dead_code, unreachable_pub)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

pub const CLIP: &str = "/media/clip.mp4";

/// What the fake Kodi answers.
#[derive(Debug, Default)]
pub struct Script {
    /// A video player is active (else `GetActivePlayers` is empty).
    pub playing: bool,
    /// `GetProperties` speed.
    pub speed: i64,
    /// Methods answered with a JSON-RPC error object.
    pub fail: HashSet<&'static str>,
    /// Methods never answered.
    pub stall: HashSet<&'static str>,
}

/// Test commands for the current connection.
enum Cmd {
    Send(Message),
    Drop,
}

#[derive(Default)]
struct Shared {
    script: Script,
    current: Option<mpsc::Sender<Cmd>>,
    /// Every request's method, in order.
    calls: Vec<String>,
}

/// The running fake; it serves until the test ends.
pub struct FakeKodi {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    /// How many connections were accepted (and sent their first request).
    connections: watch::Receiver<usize>,
    /// Bumped after each request.
    called: watch::Receiver<usize>,
}

impl FakeKodi {
    /// Listens on a free port.
    pub async fn start() -> FakeKodi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        FakeKodi::on(listener)
    }

    /// Serves on `listener` (a port the bridge already tries).
    pub fn on(listener: TcpListener) -> FakeKodi {
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (count_tx, connections) = watch::channel(0);
        let (called_tx, called) = watch::channel(0);
        let called_tx = Arc::new(called_tx);
        let accepting = shared.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    continue;
                };
                let (tx, rx) = mpsc::channel(16);
                accepting.lock().expect("lock").current = Some(tx);
                count_tx.send_modify(|n| *n += 1);
                tokio::spawn(serve(ws, rx, accepting.clone(), called_tx.clone()));
            }
        });
        FakeKodi {
            addr,
            shared,
            connections,
            called,
        }
    }

    /// Waits until `method` has been called `n` times in all.
    pub async fn wait_calls(&mut self, method: &str, n: usize) {
        let shared = self.shared.clone();
        let count = move || {
            let s = shared.lock().expect("lock");
            s.calls.iter().filter(|m| *m == method).count()
        };
        let waiting = self.called.wait_for(|_| count() >= n);
        tokio::time::timeout(ipcbus_tests::WAIT, waiting)
            .await
            .expect("the bridge did not call")
            .expect("fake stopped");
    }

    /// `ws://127.0.0.1:PORT/jsonrpc`.
    pub fn url(&self) -> String {
        format!("ws://{}/jsonrpc", self.addr)
    }

    /// Changes what the fake answers.
    pub fn script(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.shared.lock().expect("lock").script);
    }

    /// How many connections have been accepted so far.
    pub fn connections(&self) -> usize {
        *self.connections.borrow()
    }

    /// Waits until `n` connections have been accepted.
    pub async fn wait_connections(&mut self, n: usize) {
        let waiting = self.connections.wait_for(|c| *c >= n);
        tokio::time::timeout(ipcbus_tests::WAIT, waiting)
            .await
            .expect("bridge did not connect")
            .expect("fake stopped");
    }

    async fn cmd(&self, cmd: Cmd) {
        let tx = self.shared.lock().expect("lock").current.clone();
        tx.expect("no connection")
            .send(cmd)
            .await
            .expect("connection gone");
    }

    /// Sends a frame on the current connection.
    pub async fn send(&self, msg: Message) {
        self.cmd(Cmd::Send(msg)).await;
    }

    /// Sends a notification like Kodi's, for player 1.
    pub async fn notify(&self, method: &str, speed: i64) {
        let data = json!({"item": {"title": "clip.mp4", "type": "movie"}, "player": {"playerid": 1, "speed": speed}});
        let msg =
            json!({"jsonrpc": "2.0", "method": method, "params": {"data": data, "sender": "xbmc"}});
        self.send(Message::text(msg.to_string())).await;
    }

    /// Closes the current connection abruptly.
    pub async fn drop_connection(&self) {
        self.cmd(Cmd::Drop).await;
    }
}

async fn serve(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    mut cmds: mpsc::Receiver<Cmd>,
    shared: Arc<Mutex<Shared>>,
    called: Arc<watch::Sender<usize>>,
) {
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Send(m)) => { let _ = sink.send(m).await; }
                Some(Cmd::Drop) | None => return,
            },
            msg = stream.next() => {
                let Some(Ok(Message::Text(text))) = msg else { return };
                let Ok(req) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                let reply = {
                    let mut s = shared.lock().expect("lock");
                    s.calls.push(req["method"].as_str().unwrap_or_default().to_owned());
                    answer(&req, &s.script)
                };
                called.send_modify(|n| *n += 1);
                if let Some(reply) = reply {
                    let _ = sink.send(Message::text(reply.to_string())).await;
                }
            }
        }
    }
}

/// Kodi 20's replies for a 640x360 clip outside the library.
fn answer(req: &Value, script: &Script) -> Option<Value> {
    let id = req["id"].clone();
    let method = req["method"].as_str().unwrap_or_default();
    if script.stall.contains(method) {
        return None;
    }
    if script.fail.contains(method) {
        let error = json!({"code": -32602, "message": "Invalid params."});
        return Some(json!({"id": id, "jsonrpc": "2.0", "error": error}));
    }
    let result = match method {
        "JSONRPC.Ping" => json!("pong"),
        "Player.GetActivePlayers" if script.playing => {
            json!([{"playerid": 1, "playertype": "internal", "type": "video"}])
        }
        "Player.GetActivePlayers" => json!([]),
        "Player.GetItem" => json!({"item": {"episode": -1, "file": CLIP, "label": "clip.mp4",
            "season": -1, "showtitle": "", "streamdetails": {"audio": [], "subtitle": [], "video": []},
            "title": "", "type": "unknown", "year": 0}}),
        "Player.GetProperties" => json!({"speed": script.speed,
            "totaltime": {"hours": 0, "milliseconds": 0, "minutes": 0, "seconds": 5}}),
        "XBMC.GetInfoLabels" => json!({"Player.Process(videodar)": "1.78",
            "Player.Process(videofps)": "25.000", "Player.Process(videoheight)": "368",
            "Player.Process(videowidth)": "640", "VideoPlayer.VideoCodec": "h264"}),
        _ => {
            return Some(
                json!({"id": id, "jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found."}}),
            )
        }
    };
    Some(json!({"id": id, "jsonrpc": "2.0", "result": result}))
}
