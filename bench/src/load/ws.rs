//! ipcbus's protocol for the load generator: WebSocket (tokio-tungstenite,
//! Nagle off) with MessagePack frames. Bodies travel as MessagePack `bin`
//! values. Publishes are `set`s without an id, so the server answers only
//! if one fails (§2.4 of docs/protocol.md); subscriptions are exact-key
//! `sub`s. The floor server speaks the same subset.

use super::{Broker, Fetch, Publish, Subscribe};
use anyhow::{anyhow, bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use ipcbus_protocol::msgpack::decode_server;
use ipcbus_protocol::{ServerMsg, SUBPROTOCOL_MSGPACK};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client connection.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An ipcbus (or floor) server at `url`.
#[derive(Debug, Clone)]
pub(crate) struct WsBroker {
    /// `ws://127.0.0.1:<port>/ws`.
    pub(crate) url: String,
    /// Sent as a Bearer token when set.
    pub(crate) token: Option<String>,
}

/// The read buffer of the connections a scenario opens by the thousand
/// ((e), (f), (g)), as in ipcbus's own Rust client: tungstenite's default
/// (128 KiB) is zero-filled before each read, which made the load generator
/// spend most of scenario (e) clearing fresh pages. Publishers and
/// subscribers of the throughput scenarios keep the default.
const SMALL_READ_BUFFER: usize = 16 << 10;

impl WsBroker {
    /// Connects; `small` gives the connection a [`SMALL_READ_BUFFER`].
    async fn connect(&self, small: bool) -> anyhow::Result<Ws> {
        Ok(self.connect_to(&self.url, small).await?.0)
    }

    /// Connects to `url`; returns the socket and how many subscriptions
    /// the upgrade request made (`hello`'s `subs`, 0 from the floor).
    async fn connect_to(&self, url: &str, small: bool) -> anyhow::Result<(Ws, u64)> {
        let mut request = url.into_client_request()?;
        let headers = request.headers_mut();
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL_MSGPACK),
        );
        if let Some(token) = &self.token {
            headers.insert("Authorization", format!("Bearer {token}").try_into()?);
        }
        let config = small.then(|| WebSocketConfig::default().read_buffer_size(SMALL_READ_BUFFER));
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, config, true)
            .await
            .with_context(|| format!("connecting to {}", self.url))?;
        match decode_server(&next_msg(&mut ws).await?) {
            Ok(ServerMsg::Hello { subs, .. }) => Ok((ws, subs.unwrap_or(0))),
            _ => bail!("{}: the first message is not hello", self.url),
        }
    }

    /// Subscribes `ws` to each topic and waits until each is `synced`.
    async fn subscribe(ws: &mut Ws, topics: &[String]) -> anyhow::Result<()> {
        for (id, topic) in (1..).zip(topics) {
            ws.feed(Message::Binary(sub_frame(id, topic))).await?;
        }
        ws.flush().await?;
        let mut synced = 0;
        while synced < topics.len() {
            let frame = next_msg(ws).await?;
            match decode_server(&frame)? {
                ServerMsg::Synced { .. } => synced += 1,
                ServerMsg::Reply { result: Err(e), .. } | ServerMsg::Error(e) => {
                    bail!("sub refused: {}: {}", e.code.as_str(), e.msg)
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Broker for WsBroker {
    type Pub = WsPublisher;
    type Sub = WsSubscriber;
    type Reader = WsReader;

    async fn publisher(&self) -> anyhow::Result<WsPublisher> {
        Ok(WsPublisher {
            ws: self.connect(false).await?,
            next_id: 1,
        })
    }

    async fn subscriber(&self, topics: &[String]) -> anyhow::Result<WsSubscriber> {
        let mut ws = self.connect(false).await?;
        WsBroker::subscribe(&mut ws, topics).await?;
        Ok(WsSubscriber { ws })
    }

    type Stalled = Ws;

    async fn stalled(&self, topic: &str) -> anyhow::Result<Ws> {
        let mut ws = self.connect(true).await?;
        WsBroker::subscribe(&mut ws, &[topic.to_owned()]).await?;
        Ok(ws)
    }

    async fn reader(&self) -> anyhow::Result<WsReader> {
        Ok(WsReader {
            ws: self.connect(true).await?,
            next_id: 1,
        })
    }

    /// The subscription travels in the upgrade request (protocol.md §5.1),
    /// so the value follows `hello` with no round trip of its own. A
    /// server that does not take it (the floor) gets a `sub` instead.
    async fn reader_of(&self, topic: &str) -> anyhow::Result<(WsReader, Bytes)> {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        let topic_param = utf8_percent_encode(topic, NON_ALPHANUMERIC);
        let url = format!("{}{sep}sub={topic_param}", self.url);
        let (ws, subs) = self.connect_to(&url, true).await?;
        let mut reader = WsReader { ws, next_id: 1 };
        let value = if subs == 1 {
            reader.replayed(topic).await?
        } else {
            reader.fetch(topic).await?
        };
        Ok((reader, value))
    }
}

/// A publishing connection.
pub(crate) struct WsPublisher {
    ws: Ws,
    next_id: u64,
}

impl Publish for WsPublisher {
    async fn publish(&mut self, topic: &str, body: &[u8]) -> anyhow::Result<()> {
        self.ws
            .feed(Message::Binary(set_frame(None, topic, body)))
            .await?;
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.ws.flush().await?)
    }

    async fn store(&mut self, topic: &str, body: &[u8]) -> anyhow::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        self.ws
            .send(Message::Binary(set_frame(Some(id), topic, body)))
            .await?;
        loop {
            let frame = next_msg(&mut self.ws).await?;
            match decode_server(&frame)? {
                ServerMsg::Reply { id: got, result } if got == id => {
                    return result
                        .map(|_| ())
                        .map_err(|e| anyhow!("set refused: {}: {}", e.code.as_str(), e.msg))
                }
                ServerMsg::Error(e) => bail!("set refused: {}: {}", e.code.as_str(), e.msg),
                _ => {}
            }
        }
    }
}

/// A subscribing connection.
pub(crate) struct WsSubscriber {
    ws: Ws,
}

impl Subscribe for WsSubscriber {
    async fn next(&mut self) -> anyhow::Result<Bytes> {
        loop {
            let frame = next_msg(&mut self.ws).await?;
            match decode_server(&frame)? {
                ServerMsg::Val { value, .. } => return bin_body(&value),
                ServerMsg::Error(e) => bail!("error event: {}: {}", e.code.as_str(), e.msg),
                _ => {}
            }
        }
    }
}

/// A reading connection: `sub` (or `?sub=`), take the replayed value.
pub(crate) struct WsReader {
    ws: Ws,
    next_id: u64,
}

impl WsReader {
    /// The value a subscription to `topic` replays.
    async fn replayed(&mut self, topic: &str) -> anyhow::Result<Bytes> {
        loop {
            let frame = next_msg(&mut self.ws).await?;
            match decode_server(&frame)? {
                ServerMsg::Val { value, .. } => return bin_body(&value),
                ServerMsg::Synced { .. } => bail!("{topic} has no value"),
                ServerMsg::Reply { result: Err(e), .. } | ServerMsg::Error(e) => {
                    bail!("sub refused: {}: {}", e.code.as_str(), e.msg)
                }
                _ => {}
            }
        }
    }
}

impl Fetch for WsReader {
    async fn fetch(&mut self, topic: &str) -> anyhow::Result<Bytes> {
        let id = self.next_id;
        self.next_id += 1;
        self.ws.send(Message::Binary(sub_frame(id, topic))).await?;
        self.replayed(topic).await
    }
}

/// The next binary message; pings are answered by tungstenite as it reads.
async fn next_msg(ws: &mut Ws) -> anyhow::Result<Bytes> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(frame))) => return Ok(frame),
            Some(Ok(Message::Close(close))) => bail!("the server closed the connection: {close:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the server closed the connection"),
        }
    }
}

/// `{"op":"set","key":topic,"value":bin(body)}`, with `"id"` if given.
pub(crate) fn set_frame(id: Option<u64>, topic: &str, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + topic.len() + body.len());
    buf.put_u8(0x80 | if id.is_some() { 4 } else { 3 });
    if let Some(id) = id {
        put_str(&mut buf, "id");
        put_uint(&mut buf, id);
    }
    put_str(&mut buf, "op");
    put_str(&mut buf, "set");
    put_str(&mut buf, "key");
    put_str(&mut buf, topic);
    put_str(&mut buf, "value");
    put_bin(&mut buf, body);
    buf.freeze()
}

/// `{"id":id,"op":"sub","pattern":topic}`.
pub(crate) fn sub_frame(id: u64, topic: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + topic.len());
    buf.put_u8(0x83);
    put_str(&mut buf, "id");
    put_uint(&mut buf, id);
    put_str(&mut buf, "op");
    put_str(&mut buf, "sub");
    put_str(&mut buf, "pattern");
    put_str(&mut buf, topic);
    buf.freeze()
}

fn put_str(buf: &mut BytesMut, s: &str) {
    let len = s.len();
    if len < 32 {
        buf.put_u8(0xa0 | len as u8);
    } else if let Ok(len) = u8::try_from(len) {
        buf.put_u8(0xd9);
        buf.put_u8(len);
    } else {
        buf.put_u8(0xda);
        buf.put_u16(len as u16);
    }
    buf.put_slice(s.as_bytes());
}

fn put_uint(buf: &mut BytesMut, n: u64) {
    buf.put_u8(0xcf);
    buf.put_u64(n);
}

fn put_bin(buf: &mut BytesMut, b: &[u8]) {
    match u8::try_from(b.len()) {
        Ok(len) => {
            buf.put_u8(0xc4);
            buf.put_u8(len);
        }
        Err(_) => {
            buf.put_u8(0xc6);
            buf.put_u32(b.len() as u32);
        }
    }
    buf.put_slice(b);
}

/// The bytes of a MessagePack `bin` value.
pub(crate) fn bin_body(value: &Bytes) -> anyhow::Result<Bytes> {
    let start = match value.first() {
        Some(0xc4) => 2,
        Some(0xc5) => 3,
        Some(0xc6) => 5,
        _ => bail!("the value is not a MessagePack bin"),
    };
    if value.len() < start {
        bail!("a truncated bin value");
    }
    Ok(value.slice(start..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipcbus_protocol::msgpack::decode_request;
    use ipcbus_protocol::Op;

    #[test]
    fn frames_are_what_the_server_decodes() {
        let body = vec![7u8; 300];
        let frame = set_frame(Some(9), "bench.t", &body);
        let req = decode_request(&frame).expect("set decodes");
        assert_eq!(req.id, Some(9));
        match req.op {
            Op::Set { key, value, .. } => {
                assert_eq!(key, "bench.t");
                assert_eq!(bin_body(&value).expect("bin"), body.as_slice());
            }
            other => panic!("not a set: {other:?}"),
        }
        let frame = sub_frame(3, &"k".repeat(40));
        let req = decode_request(&frame).expect("sub decodes");
        assert_eq!(req.id, Some(3));
        assert!(matches!(req.op, Op::Sub { .. }));
    }
}
