//! A TCP proxy in front of a server, whose connections a test can cut (as
//! a network failure would), refuse for a while (the bus is away for that
//! client), or whose replies it can hold back (so that a request is
//! applied but its reply not yet delivered). [`Proxy::older`] also takes
//! the limits and `subs` out of the server's `hello`, and the `sub`
//! parameters out of the upgrade request, as a server from before they
//! were announced. [`Proxy::framed`] reads the WebSocket frames going
//! through, so that it can cut a connection just before a `synced`, or
//! close it as a server would and leave the TCP connection open, and
//! tells which requests the clients sent ([`Proxy::requests`]). Both keep
//! the upgrade requests they passed on ([`Proxy::upgrades`]); a
//! [`Proxy::start`] passes bytes as they are (it also stands in front of
//! NATS).

use bytes::{Bytes, BytesMut};
use ipcbus_protocol::{msgpack, Op, ServerMsg};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The proxy; dropping it stops accepting (open connections are cut).
pub struct Proxy {
    addr: SocketAddr,
    /// Counts cuts; a connection ends when it changes.
    cuts: watch::Sender<u64>,
    /// True: bytes from the server are held in the proxy.
    hold: watch::Sender<bool>,
    /// True: new connections are closed at once.
    block: watch::Sender<bool>,
    /// Counts accepted connections.
    accepted: watch::Sender<u64>,
    framed: Option<Framed>,
    upgrades: Log<Upgrade>,
    accept: JoinHandle<()>,
}

/// What a proxy saw, shared with its connections.
type Log<T> = Arc<Mutex<Vec<T>>>;

fn push<T>(log: &Log<T>, item: T) {
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(item);
}

fn read_log<T: Clone>(log: &Log<T>) -> Vec<T> {
    log.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// The upgrade request of one connection through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// Its target (`/ws?…`) as the client sent it.
    pub sent: String,
    /// Its target as the server got it: a [`Proxy::older`] takes the
    /// `sub` parameters out.
    pub forwarded: String,
}

/// The controls of a [`Proxy::framed`].
#[derive(Clone)]
struct Framed {
    /// True: the next `synced` from the server cuts its connection instead
    /// (once: it turns false again).
    cut_at_synced: watch::Sender<bool>,
    /// Counts [`Proxy::close_and_hang`]s.
    hang: watch::Sender<u64>,
    /// Counts close frames the client sent on hung connections.
    client_closes: watch::Sender<u64>,
    /// The requests clients sent, as [`describe`] tells them.
    requests: Log<String>,
    /// A pattern the proxy names in every upgrade request, as one `sub`
    /// parameter more ([`Proxy::framed_adding_sub`]).
    extra_sub: Option<String>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        Proxy::listen(target, false, false, None).await
    }

    /// [`Proxy::start`], reading frames: see [`Proxy::cut_at_synced`] and
    /// [`Proxy::close_and_hang`].
    pub async fn framed(target: SocketAddr) -> Proxy {
        Proxy::listen(target, false, true, None).await
    }

    /// [`Proxy::framed`] that adds `sub=<pattern>` to every upgrade request
    /// it passes on: the server then makes one subscription more than the
    /// client asked for, and its `hello` counts it.
    pub async fn framed_adding_sub(target: SocketAddr, pattern: &str) -> Proxy {
        Proxy::listen(target, false, true, Some(pattern.to_owned())).await
    }

    /// [`Proxy::start`] as a server from before the limits and the
    /// subscriptions of the upgrade request (protocol.md §2.1, §5.1):
    /// `max_value_bytes`, `max_frame_bytes` and `subs` are taken out of
    /// every `hello`, so the client does not know the server's limits, and
    /// the `sub` parameters out of every upgrade request, so the server
    /// makes no subscriptions for them.
    pub async fn older(target: SocketAddr) -> Proxy {
        Proxy::listen(target, true, false, None).await
    }

    async fn listen(
        target: SocketAddr,
        older: bool,
        framed: bool,
        extra_sub: Option<String>,
    ) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (cuts, _) = watch::channel(0);
        let (hold, _) = watch::channel(false);
        let (block, _) = watch::channel(false);
        let (accepted, _) = watch::channel(0);
        let framed = framed.then(|| Framed {
            cut_at_synced: watch::channel(false).0,
            hang: watch::channel(0).0,
            client_closes: watch::channel(0).0,
            requests: Log::default(),
            extra_sub,
        });
        let upgrades = Log::default();
        let (c, h, b, a) = (cuts.clone(), hold.clone(), block.clone(), accepted.clone());
        let (f, u) = (framed.clone(), upgrades.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                a.send_modify(|n| *n += 1);
                if !*b.borrow() {
                    let (cuts, hold, u) = (c.subscribe(), h.subscribe(), u.clone());
                    match &f {
                        Some(f) => {
                            let f = f.clone();
                            tokio::spawn(forward_frames(client, target, cuts, hold, f, u));
                        }
                        None => {
                            tokio::spawn(forward(client, target, cuts, hold, older, u));
                        }
                    }
                }
            }
        });
        Proxy {
            addr,
            cuts,
            hold,
            block,
            accepted,
            framed,
            upgrades,
            accept,
        }
    }

    /// The upgrade requests passed on so far, in the order they came. Only
    /// for a [`Proxy::older`] or a [`Proxy::framed`] (none for a
    /// [`Proxy::start`]).
    pub fn upgrades(&self) -> Vec<Upgrade> {
        read_log(&self.upgrades)
    }

    /// The requests clients sent so far (on every connection, in the order
    /// each connection sent them), as [`describe`] tells them: `"sub
    /// PATTERN"`, `"unsub ID"`, `"set KEY"`… Only for a [`Proxy::framed`].
    pub fn requests(&self) -> Vec<String> {
        read_log(&self.framed_controls().requests)
    }

    fn framed_controls(&self) -> &Framed {
        self.framed.as_ref().expect("a Proxy::framed")
    }

    /// The next `synced` the server sends (on any connection) cuts that
    /// connection instead of reaching the client: a connection lost in the
    /// middle of a replay. Only for a [`Proxy::framed`].
    pub fn cut_at_synced(&self) {
        self.framed_controls().cut_at_synced.send_replace(true);
    }

    /// On every connection open now, sends the client a close frame (1001,
    /// as a server that stops) and then forwards nothing more either way,
    /// keeping the TCP connection open until [`Proxy::cut`]. Only for a
    /// [`Proxy::framed`].
    pub fn close_and_hang(&self) {
        self.framed_controls().hang.send_modify(|n| *n += 1);
    }

    /// Counts the close frames clients sent back on connections
    /// [`Proxy::close_and_hang`] closed. Only for a [`Proxy::framed`].
    pub fn client_closes(&self) -> watch::Receiver<u64> {
        self.framed_controls().client_closes.subscribe()
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://PROXY/ws?token=…`: a URL for the server behind it.
    pub fn url(&self, token: Option<&str>) -> String {
        match token {
            Some(token) => format!("ws://{}/ws?token={token}", self.addr),
            None => format!("ws://{}/ws", self.addr),
        }
    }

    /// Closes every connection open now, both ways; new ones are accepted.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Cuts every connection and refuses new ones (true), or lets them
    /// through again (false).
    pub fn block(&self, on: bool) {
        self.block.send_replace(on);
        if on {
            self.cut();
        }
    }

    /// Counts the connections accepted so far, as they come.
    pub fn accepted(&self) -> watch::Receiver<u64> {
        self.accepted.subscribe()
    }

    /// Holds back (true) or releases (false) what the server sends.
    pub fn hold(&self, on: bool) {
        self.hold.send_replace(on);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn forward(
    client: TcpStream,
    target: SocketAddr,
    mut cuts: watch::Receiver<u64>,
    hold: watch::Receiver<bool>,
    older: bool,
    upgrades: Log<Upgrade>,
) {
    cuts.mark_unchanged();
    let Ok(server) = TcpStream::connect(target).await else {
        return; // the client sees the connection close, as with no server
    };
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let (_free, free) = watch::channel(false);
    let up = async {
        // Only an `older` reads the upgrade request: others pass any protocol.
        if !older
            || pass_upgrade(&mut client_rx, &mut server_tx, true, None, &upgrades)
                .await
                .is_some()
        {
            pipe(client_rx, server_tx, free).await;
        }
    };
    tokio::select! {
        biased; // a cut wins over bytes released at the same moment
        _ = cuts.changed() => {}
        () = up => {}
        () = async {
            if !older || pass_hello_without_limits(&mut server_rx, &mut client_tx).await.is_some() {
                pipe(server_rx, client_tx, hold).await;
            }
        } => {}
    }
}

/// Copies `from` to `to`, waiting while `hold` is true before each write.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut hold: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if hold.wait_for(|h| !*h).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Passes on the client's upgrade request, without its `sub` parameters
/// if `older`, with `sub=<extra>` added if given, and logs its target in
/// `upgrades`. None if the connection ended first.
async fn pass_upgrade(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    older: bool,
    extra: Option<&str>,
    upgrades: &Log<Upgrade>,
) -> Option<()> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(from.read_u8().await.ok()?);
    }
    let head = String::from_utf8(head).expect("an HTTP head is ASCII");
    let (line, rest) = head.split_once("\r\n").expect("a request line");
    let mut parts = line.splitn(3, ' ');
    let (method, sent, version) = (parts.next()?, parts.next()?, parts.next()?);
    let mut forwarded = if older {
        without_subs(sent)
    } else {
        sent.to_owned()
    };
    if let Some(pattern) = extra {
        let sep = if forwarded.contains('?') { '&' } else { '?' };
        forwarded = format!("{forwarded}{sep}sub={pattern}");
    }
    let head = format!("{method} {forwarded} {version}\r\n{rest}");
    let sent = sent.to_owned();
    push(upgrades, Upgrade { sent, forwarded });
    to.write_all(head.as_bytes()).await.ok()
}

/// A request target without its `sub` parameters.
fn without_subs(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| kv.split('=').next() != Some("sub"))
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// A client's request in a few words: `"sub PATTERN"`, `"unsub ID"`, the op
/// and key of a `set`, `get` or `del`, `"keys"`; `"?"` if it cannot be read.
pub fn describe(frame: &[u8]) -> String {
    let frame = Bytes::copy_from_slice(frame);
    let Ok(request) = msgpack::decode_request(&frame) else {
        return "?".into();
    };
    match request.op {
        Op::Sub { pattern, .. } => format!("sub {pattern}"),
        Op::Unsub { sub } => format!("unsub {sub}"),
        Op::Set { key, .. } => format!("set {key}"),
        Op::Get { key } => format!("get {key}"),
        Op::Del { key, .. } => format!("del {key}"),
        Op::Keys { .. } => "keys".into(),
    }
}

/// Passes on the server's HTTP response and its first WebSocket frame, the
/// `hello`, without the limits in it. None if the connection ended first.
async fn pass_hello_without_limits(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
) -> Option<()> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(from.read_u8().await.ok()?);
    }
    to.write_all(&head).await.ok()?;
    // A server frame is unmasked; a hello is shorter than 64 KiB.
    let (op, len) = (from.read_u8().await.ok()?, from.read_u8().await.ok()?);
    let len = match len {
        126 => usize::from(from.read_u16().await.ok()?),
        n => usize::from(n),
    };
    let mut payload = vec![0; len];
    from.read_exact(&mut payload).await.ok()?;
    let payload = Bytes::from(payload);
    let mut out = BytesMut::new();
    match msgpack::decode_server(&payload).expect("the server's hello") {
        ServerMsg::Hello {
            proto,
            server,
            session,
            store,
            ..
        } => msgpack::encode_server(
            &ServerMsg::Hello {
                proto,
                server,
                session,
                store,
                max_value_bytes: None,
                max_frame_bytes: None,
                subs: None,
            },
            &mut out,
        ),
        other => panic!("the first frame is not a hello: {other:?}"),
    }
    let mut frame = vec![op];
    match u16::try_from(out.len()) {
        Ok(n) if n < 126 => frame.push(n as u8),
        Ok(n) => {
            frame.push(126);
            frame.extend_from_slice(&n.to_be_bytes());
        }
        Err(_) => panic!("a hello over 64 KiB"),
    }
    frame.extend_from_slice(&out);
    to.write_all(&frame).await.ok()
}

/// [`forward`] for a [`Proxy::framed`]: frame by frame.
async fn forward_frames(
    client: TcpStream,
    target: SocketAddr,
    mut cuts: watch::Receiver<u64>,
    hold: watch::Receiver<bool>,
    framed: Framed,
    upgrades: Log<Upgrade>,
) {
    cuts.mark_unchanged();
    let mut hang = framed.hang.subscribe();
    hang.mark_unchanged();
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let (hung_tx, hung) = watch::channel(false);
    let up = async {
        let extra = framed.extra_sub.as_deref();
        pass_upgrade(&mut client_rx, &mut server_tx, false, extra, &upgrades).await?;
        pass_up(&mut client_rx, &mut server_tx, hung, &framed).await
    };
    let down = async {
        let pass = async {
            pass_head(&mut server_rx, &mut client_tx).await?;
            pass_frames(&mut server_rx, &mut client_tx, hold, &framed.cut_at_synced).await
        };
        tokio::select! {
            _ = pass => return,
            _ = hang.changed() => {}
        }
        hung_tx.send_replace(true);
        // A close frame, 1001 ("going away"), unmasked as from a server.
        let _ = client_tx.write_all(&[0x88, 2, 0x03, 0xe9]).await;
        std::future::pending::<()>().await;
    };
    tokio::select! {
        biased;
        _ = cuts.changed() => {}
        _ = up => {}
        () = down => {}
    }
}

/// Copies client frames to the server, logging their requests; once
/// `hung`, drops them instead, counting close frames.
async fn pass_up(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    hung: watch::Receiver<bool>,
    framed: &Framed,
) -> Option<()> {
    loop {
        let frame = read_frame(from).await?;
        if *hung.borrow() {
            if frame.opcode == 8 {
                framed.client_closes.send_modify(|n| *n += 1);
            }
            continue;
        }
        if frame.opcode == 2 {
            push(&framed.requests, describe(&frame.payload));
        }
        to.write_all(&frame.raw).await.ok()?;
    }
}

/// Copies server frames to the client, waiting while `hold` is true; None
/// when the connection ends or is cut before a `synced`.
async fn pass_frames(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    mut hold: watch::Receiver<bool>,
    cut_at_synced: &watch::Sender<bool>,
) -> Option<()> {
    loop {
        let frame = read_frame(from).await?;
        let synced = frame.opcode == 2
            && matches!(
                msgpack::decode_server(&Bytes::from(frame.payload)),
                Ok(ServerMsg::Synced { .. })
            );
        if synced && cut_at_synced.send_replace(false) {
            return None;
        }
        hold.wait_for(|h| !*h).await.ok()?;
        to.write_all(&frame.raw).await.ok()?;
    }
}

/// Copies an HTTP head (up to its empty line).
async fn pass_head(from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf) -> Option<()> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(from.read_u8().await.ok()?);
    }
    to.write_all(&head).await.ok()
}

/// One WebSocket frame: as it went over the wire, its opcode, and its
/// payload unmasked.
struct Frame {
    raw: Vec<u8>,
    opcode: u8,
    payload: Vec<u8>,
}

async fn read_frame(from: &mut OwnedReadHalf) -> Option<Frame> {
    let mut raw = vec![from.read_u8().await.ok()?, from.read_u8().await.ok()?];
    let len = match raw[1] & 0x7f {
        126 => {
            let n = from.read_u16().await.ok()?;
            raw.extend_from_slice(&n.to_be_bytes());
            u64::from(n)
        }
        127 => {
            let n = from.read_u64().await.ok()?;
            raw.extend_from_slice(&n.to_be_bytes());
            n
        }
        n => u64::from(n),
    };
    let mut mask = None;
    if raw[1] & 0x80 != 0 {
        let mut m = [0u8; 4];
        from.read_exact(&mut m).await.ok()?;
        raw.extend_from_slice(&m);
        mask = Some(m);
    }
    let mut payload = vec![0; usize::try_from(len).ok()?];
    from.read_exact(&mut payload).await.ok()?;
    raw.extend_from_slice(&payload);
    if let Some(m) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    Some(Frame {
        opcode: raw[0] & 0x0f,
        raw,
        payload,
    })
}
