//! Test harness: runs the real ipcbus server on `127.0.0.1:0` in a thread of
//! its own and stops it on `Drop`; plus a raw WebSocket peer for wire-level
//! tests; and [`child`], the server as a child process, for the soak test
//! and the benchmarks; [`restart`], a server stopped and started again on
//! the same port and data directory, and [`proxy`], a TCP proxy whose
//! connections a test can cut, for the reconnect tests; [`nats`], a NATS
//! JetStream cluster, and [`backplane`], ipcbus servers on it; [`netns`],
//! hosts in network namespaces with delay between them, for the cluster.
//! The end-to-end tests are in `tests/tests/`.

pub mod backplane;
pub mod child;
pub mod nats;
pub mod netns;
pub mod proxy;
pub mod restart;
pub mod standalone;

use futures_util::{SinkExt, StreamExt};
use ipcbus::Config;
use ipcbus_protocol::transcode::msgpack_to_json_value;
use ipcbus_protocol::Codec;
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for an expected message before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// The servers' logs, into the output of the test whose thread started
/// them (shown when it fails): warnings, and what the backplane does;
/// `IPCBUS_LOG` (as `ipcbus` reads it) says otherwise.
fn test_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IPCBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,ipcbus::backplane=info"));
    let _already = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

/// A running server. Dropping it shuts the server down gracefully and
/// removes its data directory.
pub struct TestServer {
    addr: SocketAddr,
    token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Removed on drop, after the server has stopped.
    _data_dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server with test defaults: no self-test, two workers.
    pub fn start() -> TestServer {
        TestServer::with_config(test_config())
    }

    /// Starts a server with the given settings (host and port are ignored).
    /// Without a `data_dir`, it gets a fresh one that is removed on drop.
    pub fn with_config(config: Config) -> TestServer {
        let (config, token, data_dir) = prepare(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let mut server = TestServer::on(listener, config, token);
        server._data_dir = data_dir;
        server
    }

    /// Starts a server as [`Self::with_config`] does, but on a host of
    /// [`netns::Hosts`]: its thread enters namespace `netns` before it
    /// binds `ip:0`, so the listener, the server's threads and its
    /// connections (to NATS) are that host's.
    pub fn in_netns(config: Config, netns: &str, ip: std::net::IpAddr) -> TestServer {
        let (config, token, data_dir) = prepare(config);
        let netns = netns.to_owned();
        let bind = move || {
            netns::enter(&netns).expect("enter the host's namespace");
            TcpListener::bind((ip, 0)).expect("bind the host's address")
        };
        let mut server = TestServer::spawn(bind, config, token);
        server._data_dir = data_dir;
        server
    }

    /// Starts a server on `listener` with `config` (which has its data
    /// directory) and the `token` it will find there.
    pub(crate) fn on(listener: TcpListener, config: Config, token: Option<String>) -> TestServer {
        TestServer::spawn(move || listener, config, token)
    }

    /// Starts a server, in a thread of its own, on the listener `bind`
    /// makes there, with `config` and `token` as [`Self::on`] takes them.
    fn spawn(
        bind: impl FnOnce() -> TcpListener + Send + 'static,
        config: Config,
        token: Option<String>,
    ) -> TestServer {
        test_logs();
        let (stop, stopped) = oneshot::channel::<()>();
        let (bound, addr) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let listener = bind();
            let _ = bound.send(listener.local_addr().expect("local addr"));
            let shutdown = async {
                let _ = stopped.await;
            };
            actix_web::rt::System::new()
                .block_on(ipcbus::serve(listener, config, shutdown))
                .expect("server failed");
        });
        let addr = addr
            .recv()
            .expect("the server's thread could not bind (its panic says why)");
        TestServer {
            addr,
            token,
            stop: Some(stop),
            thread: Some(thread),
            _data_dir: None,
        }
    }

    /// The access token (`None` with `auth = false`).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/ws?token=…`: the URL carries the token, so
    /// every client and example can use it as is.
    pub fn url(&self) -> String {
        match &self.token {
            Some(token) => format!("ws://{}/ws?token={token}", self.addr),
            None => format!("ws://{}/ws", self.addr),
        }
    }

    /// `ws://127.0.0.1:PORT/ws`, without the token.
    pub fn bare_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// A connected Rust client.
    pub async fn client(&self) -> ipcbus_client::Client {
        ipcbus_client::Client::connect(&self.url())
            .await
            .expect("client connect")
    }

    /// A raw WebSocket peer speaking `codec`, past the `hello`.
    pub async fn raw(&self, codec: Codec) -> Raw {
        let mut raw = self.raw_with_hello(codec).await;
        let hello = raw.recv().await;
        assert_eq!(hello["ev"], "hello", "first message: {hello}");
        raw
    }

    /// A raw WebSocket peer that has not read the `hello` yet.
    pub async fn raw_with_hello(&self, codec: Codec) -> Raw {
        Raw::connect(&self.url(), codec).await
    }

    /// `GET path` with the token, over a plain socket; returns (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        self.http(&format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
            self.addr
        ))
        .await
    }

    /// Sends `request` (a whole HTTP/1.1 request with `Connection: close`)
    /// as is; returns (status, body).
    pub async fn http(&self, request: &str) -> (u16, String) {
        http_request(&self.addr.to_string(), request)
            .await
            .expect("HTTP request")
    }

    /// The HTTP status of a WebSocket upgrade to `url` with `headers`
    /// (101 when it succeeds).
    pub async fn upgrade_status(&self, url: &str, headers: &[(&str, &str)]) -> u16 {
        let mut req = url.into_client_request().expect("request");
        for (name, value) in headers {
            let name: tokio_tungstenite::tungstenite::http::HeaderName =
                name.parse().expect("header name");
            req.headers_mut()
                .insert(name, HeaderValue::from_str(value).expect("header value"));
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((_, resp)) => resp.status().as_u16(),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(e) => panic!("upgrade failed without a status: {e}"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `config` with a data directory (a fresh one, returned to be removed
/// on drop, where it had none) and the server's token (with `auth`).
fn prepare(mut config: Config) -> (Config, Option<String>, Option<tempfile::TempDir>) {
    let data_dir = match config.data_dir {
        Some(_) => None,
        None => {
            let dir = tempfile::tempdir().expect("temp data dir");
            config.data_dir = Some(dir.path().to_owned());
            Some(dir)
        }
    };
    let token_file = config.token_file.clone().unwrap_or_else(|| {
        let dir = config.data_dir.as_ref().expect("data dir");
        dir.join(ipcbus_protocol::auth::TOKEN_FILE_NAME)
    });
    let token = config.auth.then(|| test_token(&token_file));
    (config, token, data_dir)
}

/// The token of a test server: the one in `file`, or a new one written
/// there (the server then reads it instead of making its own).
fn test_token(file: &std::path::Path) -> String {
    if let Some(token) = ipcbus_protocol::auth::read_token_file(file) {
        return token;
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(file, format!("{token}\n")).expect("write token file");
    token
}

/// Starts a server with `config` in this thread and stops it at once:
/// the error it refused to start with, if any.
pub fn start_error(config: Config) -> Option<String> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    actix_web::rt::System::new()
        .block_on(ipcbus::serve(listener, config, async {}))
        .err()
        .map(|e| e.to_string())
}

/// The settings tests start from.
pub fn test_config() -> Config {
    Config {
        workers: 2,
        selftest: false,
        ..Config::default()
    }
}

/// A raw WebSocket peer: sends and receives protocol messages as JSON values
/// whatever the codec, so tests can compare both codecs with one assertion.
pub struct Raw {
    /// The socket.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The session's codec.
    pub codec: Codec,
}

impl Raw {
    /// Connects to `url` (with its token) speaking `codec`; the `hello`
    /// is not read yet.
    pub async fn connect(url: &str, codec: Codec) -> Raw {
        let mut req = url.into_client_request().expect("request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(codec.subprotocol()),
        );
        let (ws, resp) = tokio_tungstenite::connect_async_with_config(req, None, true)
            .await
            .expect("ws connect");
        let chosen = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        assert_eq!(chosen, Some(codec.subprotocol()));
        Raw { ws, codec }
    }

    /// Sends a request given as JSON, encoded in the session's codec.
    pub async fn send(&mut self, req: Value) {
        let msg = match self.codec {
            Codec::Json => Message::text(req.to_string()),
            Codec::MsgPack => {
                Message::binary(ipcbus_protocol::transcode::json_value_to_msgpack(&req))
            }
        };
        self.ws.send(msg).await.expect("send");
    }

    /// Sends a frame as is.
    pub async fn send_frame(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send frame");
    }

    /// The next protocol message, as JSON. Panics on timeout or close.
    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Next::Msg(v) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The next thing the server sends.
    pub async fn next(&mut self) -> Next {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await;
            return match msg {
                Err(_) => Next::Timeout,
                Ok(None) => Next::Gone,
                Ok(Some(Err(e))) => Next::Error(e.to_string()),
                Ok(Some(Ok(Message::Binary(b)))) => {
                    assert_eq!(self.codec, Codec::MsgPack, "binary frame on a JSON session");
                    Next::Msg(msgpack_to_json_value(&b).expect("server sent bad MessagePack"))
                }
                Ok(Some(Ok(Message::Text(t)))) => {
                    assert_eq!(
                        self.codec,
                        Codec::Json,
                        "text frame on a MessagePack session"
                    );
                    Next::Msg(serde_json::from_str(&t).expect("server sent bad JSON"))
                }
                Ok(Some(Ok(Message::Close(frame)))) => Next::Closed(frame.map(|f| f.code)),
                Ok(Some(Ok(_))) => continue,
            };
        }
    }

    /// Sends a request with an id and returns the reply with that id;
    /// anything else received first is returned too, in order.
    pub async fn call(&mut self, req: Value) -> (Value, Vec<Value>) {
        let id = req["id"].clone();
        assert!(id.is_u64(), "call needs an id");
        self.send(req).await;
        let mut before = Vec::new();
        loop {
            let msg = self.recv().await;
            if msg["id"] == id {
                return (msg, before);
            }
            before.push(msg);
        }
    }
}

/// What [`Raw::next`] saw.
#[derive(Debug)]
pub enum Next {
    /// A protocol message.
    Msg(Value),
    /// A close frame, with its code.
    Closed(Option<CloseCode>),
    /// The stream ended without a close frame.
    Gone,
    /// A WebSocket error.
    Error(String),
    /// Nothing within [`WAIT`].
    Timeout,
}

/// Sends `request` (a whole HTTP/1.1 request with `Connection: close`) to
/// `addr` as is; returns (status, body). Status 0 if the answer had none.
pub async fn http_request(addr: &str, request: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(request.as_bytes()).await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}
