//! `Client`: a cheap-to-clone handle to one connection.

use crate::conn::{self, Command};
use crate::error::{Error, Result};
use crate::queue::EventQueue;
use crate::subscription::Subscription;
use crate::watch::Watch;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use ipcbus_protocol::{
    msgpack, KeyRev, Life, Op, Pattern, Reply, Request, ServerMsg, MAX_TTL_MS, SUBPROTOCOL_MSGPACK,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Socket read buffer per connection. Small by default: tungstenite's
    /// 128 KiB default costs that much per idle connection.
    pub read_buffer_bytes: usize,
    /// Requests queued for the writer before callers wait.
    pub request_capacity: usize,
    /// Events buffered per subscription before each key keeps only its
    /// newest waiting event (see [`Subscription`]).
    pub subscription_capacity: usize,
    /// Largest message accepted from the server.
    pub max_message_bytes: usize,
    /// The access token, sent as `Authorization: Bearer`. When `None`, the
    /// client uses `$IPCBUS_TOKEN` or the token file the local server wrote
    /// (see `ipcbus_protocol::auth`), if there is one.
    pub token: Option<String>,
}

/// How a `set` stores its value; see [`Client::set_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// Write only if the key's current rev is this (0: only if absent).
    pub if_rev: Option<u64>,
    /// Write the value to disk before the server acknowledges it, so it
    /// survives a restart or a crash of the server.
    pub persist: bool,
    /// Delete the key when this connection ends (a "last will").
    pub ephemeral: bool,
    /// Delete the key after this long.
    pub ttl: Option<std::time::Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            read_buffer_bytes: 16 << 10,
            request_capacity: 1024,
            subscription_capacity: 4096,
            max_message_bytes: 16 << 20,
            token: None,
        }
    }
}

/// A connection to an ipcbus server. Clones share the connection; requests
/// from all of them are pipelined and matched to replies by id.
///
/// ```no_run
/// # async fn demo() -> Result<(), ipcbus_client::Error> {
/// let client = ipcbus_client::Client::connect("ws://127.0.0.1:9099/ws").await?;
/// client.set("weather.today", &21.5).await?;
/// let t: f64 = client.get("weather.today").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Command>,
    routes: conn::Shared,
    next_id: AtomicU64,
    session: String,
    store: String,
    options: ClientOptions,
}

impl Client {
    /// Connects with default options (MessagePack).
    pub async fn connect(url: &str) -> Result<Client> {
        Client::connect_with(url, ClientOptions::default()).await
    }

    /// Connects with the given options.
    pub async fn connect_with(url: &str, options: ClientOptions) -> Result<Client> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL_MSGPACK),
        );
        let in_url = request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")));
        let token = match &options.token {
            Some(token) => Some(token.clone()),
            None if in_url => None,
            None => ipcbus_protocol::auth::discover_token(),
        };
        if let Some(token) = token {
            let value = HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Error::Protocol("the token is not a valid header value".into()))?;
            request.headers_mut().insert("Authorization", value);
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(options.read_buffer_bytes)
            .max_message_size(Some(options.max_message_bytes))
            .max_frame_size(Some(options.max_message_bytes));
        let (mut ws, _) =
            match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
                Ok(connected) => connected,
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    return Err(refused(resp.status().as_u16(), resp.body().as_deref()));
                }
                Err(e) => return Err(e.into()),
            };
        let (session, store) = match ws.next().await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(frame))) => {
                match msgpack::decode_server(&frame) {
                    Ok(ServerMsg::Hello { session, store, .. }) => {
                        (session.into_owned(), store.into_owned())
                    }
                    _ => return Err(Error::Protocol("expected hello".into())),
                }
            }
            Some(Err(e)) => return Err(e.into()),
            _ => return Err(Error::Protocol("expected hello".into())),
        };
        let (tx, routes) = conn::spawn(ws, options.request_capacity);
        Ok(Client {
            inner: Arc::new(Inner {
                tx,
                routes,
                next_id: AtomicU64::new(1),
                session,
                store,
                options,
            }),
        })
    }

    /// The server's id for this session.
    pub fn session(&self) -> &str {
        &self.inner.session
    }

    /// The server's store id (from `hello`). Revs are only comparable, and
    /// `since` only meaningful, within one store.
    pub fn store(&self) -> &str {
        &self.inner.store
    }

    async fn request(&self, op: Op<'_>, events: Option<Arc<EventQueue>>) -> Result<Reply<'static>> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut buf = BytesMut::new();
        msgpack::encode_request(&Request { id: Some(id), op }, &mut buf);
        let (reply, rx) = oneshot::channel();
        let cmd = Command {
            frame: buf.freeze(),
            id: Some(id),
            reply: Some(reply),
            events,
        };
        self.inner.tx.send(cmd).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Sets `key` to `value`, encoded as MessagePack (structs as maps).
    /// Returns the rev of the write.
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<u64> {
        self.set_raw(key, encode(value)?, None).await
    }

    /// Sets `key` only if its current rev is `rev` (0: only if it does not
    /// exist). Fails with `rev_mismatch` otherwise; see [`Error::current_rev`].
    pub async fn set_if<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        rev: u64,
    ) -> Result<u64> {
        self.set_raw(key, encode(value)?, Some(rev)).await
    }

    /// Sets `key` to one MessagePack value given as bytes.
    pub async fn set_raw(&self, key: &str, value: Bytes, if_rev: Option<u64>) -> Result<u64> {
        let options = SetOptions {
            if_rev,
            ..SetOptions::default()
        };
        self.set_raw_with(key, value, options).await
    }

    /// Sets `key` with persistence, session binding or expiry.
    ///
    /// ```no_run
    /// # async fn demo(client: ipcbus_client::Client) -> Result<(), ipcbus_client::Error> {
    /// use ipcbus_client::SetOptions;
    /// // Deleted when this connection ends: plugins see the service go away.
    /// let online = SetOptions { ephemeral: true, ..SetOptions::default() };
    /// client.set_with("svc.weather.online", &true, online).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_with<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: SetOptions,
    ) -> Result<u64> {
        self.set_raw_with(key, encode(value)?, options).await
    }

    /// [`Client::set_with`] for a MessagePack value given as bytes.
    pub async fn set_raw_with(&self, key: &str, value: Bytes, options: SetOptions) -> Result<u64> {
        let ttl_ms = options
            .ttl
            .map(|t| u64::try_from(t.as_millis()).map_or(MAX_TTL_MS, |ms| ms.clamp(1, MAX_TTL_MS)));
        let op = Op::Set {
            key: Cow::Borrowed(key),
            value,
            if_rev: options.if_rev,
            life: Life {
                persist: options.persist,
                ephemeral: options.ephemeral,
                ttl_ms,
            },
        };
        rev(&self.request(op, None).await?)
    }

    /// Reads `key` and decodes it. Fails with `not_found` if absent.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        let (value, _) = self.get_raw(key).await?;
        Ok(rmp_serde::from_slice(&value)?)
    }

    /// Reads `key` as MessagePack bytes, with its rev.
    pub async fn get_raw(&self, key: &str) -> Result<(Bytes, u64)> {
        let reply = self
            .request(
                Op::Get {
                    key: Cow::Borrowed(key),
                },
                None,
            )
            .await?;
        match (reply.value, reply.rev) {
            (Some(value), Some(rev)) => Ok((value, rev)),
            _ => Err(Error::Protocol("get reply without value or rev".into())),
        }
    }

    /// Deletes `key`; returns the rev of the deletion.
    pub async fn del(&self, key: &str) -> Result<u64> {
        rev(&self
            .request(
                Op::Del {
                    key: Cow::Borrowed(key),
                    if_rev: None,
                },
                None,
            )
            .await?)
    }

    /// Deletes `key` only if its current rev is `rev`.
    pub async fn del_if(&self, key: &str, rev_: u64) -> Result<u64> {
        rev(&self
            .request(
                Op::Del {
                    key: Cow::Borrowed(key),
                    if_rev: Some(rev_),
                },
                None,
            )
            .await?)
    }

    /// Lists keys and revs, all or those matching `pattern`.
    pub async fn keys(&self, pattern: Option<&str>) -> Result<Vec<(String, u64)>> {
        let pattern = pattern.map(parse_pattern).transpose()?;
        let reply = self.request(Op::Keys { pattern }, None).await?;
        let keys = reply.keys.unwrap_or_default();
        Ok(keys
            .into_iter()
            .map(|KeyRev { key, rev }| (key.into_owned(), rev))
            .collect())
    }

    /// Subscribes to a key or pattern: current values first, then
    /// [`crate::Event::Synced`], then every change.
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        self.subscribe_since(pattern, None).await
    }

    /// Like [`Client::subscribe`], replaying only keys whose rev is above `since`.
    pub async fn subscribe_since(&self, pattern: &str, since: Option<u64>) -> Result<Subscription> {
        let pattern = parse_pattern(pattern)?;
        let queue = Arc::new(EventQueue::new(self.inner.options.subscription_capacity));
        let reply = self
            .request(Op::Sub { pattern, since }, Some(queue.clone()))
            .await?;
        let id = reply
            .sub
            .ok_or_else(|| Error::Protocol("sub reply without sub".into()))?;
        Ok(Subscription {
            id,
            queue,
            client: self.clone(),
        })
    }

    /// A local mirror of every key matching `pattern`, kept current by push.
    /// Reads from it are local. Await [`Watch::synced`] for the initial state.
    pub async fn watch(&self, pattern: &str) -> Result<Watch> {
        Ok(Watch::start(self.subscribe(pattern).await?))
    }

    /// Stops routing `sub` and sends `unsub` without waiting (used by
    /// `Subscription::drop`, which cannot await).
    pub(crate) fn unsubscribe_later(&self, sub: u64) {
        self.inner.routes.forget(sub);
        let cmd = Command::unsub(sub);
        if let Err(mpsc::error::TrySendError::Full(cmd)) = self.inner.tx.try_send(cmd) {
            let tx = self.inner.tx.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = tx.send(cmd).await;
                });
            }
        }
    }
}

/// The error for a refused upgrade: the `msg` of the server's JSON error
/// body, or the body as text.
fn refused(status: u16, body: Option<&[u8]>) -> Error {
    let text = String::from_utf8_lossy(body.unwrap_or_default());
    let msg = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["msg"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned());
    Error::Refused { status, msg }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    Ok(rmp_serde::to_vec_named(value)?.into())
}

fn rev(reply: &Reply<'_>) -> Result<u64> {
    reply
        .rev
        .ok_or_else(|| Error::Protocol("reply without rev".into()))
}

fn parse_pattern(p: &str) -> Result<Pattern> {
    Pattern::parse(p).map_err(|e| Error::Server(e.for_pattern()))
}
