//! `Client`: a cheap-to-clone handle to one logical connection, which the
//! connection task (`reconnect.rs`) keeps up across server restarts.

use crate::conn::{self, Command, Kind, Progress, Shared};
use crate::dial::{self, Hello};
use crate::ephemeral::Ephemeral;
use crate::error::{Error, Result};
use crate::options::{ClientOptions, SetOptions, SubscribeOptions};
use crate::reconnect::{self, Link};
use crate::resync::SubShared;
use crate::state::{State, StateKind};
use crate::subscription::Subscription;
use crate::watch::Watch;
use bytes::Bytes;
use ipcbus_protocol::{KeyRev, Life, Op, Pattern, Reply, MAX_TTL_MS};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// A connection to an ipcbus server. Clones share the connection; requests
/// from all of them are pipelined and matched to replies by id.
///
/// When the connection is lost the client reconnects by itself (see
/// [`ClientOptions::reconnect`]): calls wait for it up to
/// [`ClientOptions::timeout`], subscriptions and watches carry on, and
/// [`Client::state`] tells what is going on. It closes when the program
/// calls [`Client::close`] or drops every `Client` (and every
/// [`Subscription`] and [`Watch`], which hold one).
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
    shared: Shared,
    ids: Arc<AtomicU64>,
    info: Arc<Mutex<Hello>>,
    ephemeral: Arc<Ephemeral>,
    state: watch::Receiver<State>,
    closing: watch::Sender<bool>,
    options: ClientOptions,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closing.send_replace(true);
    }
}

impl Client {
    /// Connects with default options (MessagePack): retries for up to
    /// [`ClientOptions::timeout`] if the bus is not up yet.
    pub async fn connect(url: &str) -> Result<Client> {
        Client::connect_with(url, ClientOptions::default()).await
    }

    /// Connects with the given options. A bus that is not up yet is tried
    /// again (0.1 s, doubling to 5 s) until [`ClientOptions::connect_timeout`],
    /// then this fails with [`Error::Unavailable`]; a refused token or
    /// origin (401, 403) fails at once with [`Error::Refused`]. With
    /// [`ClientOptions::fail_fast`], one attempt, and its error as it is.
    ///
    /// A `url` with `sub=` parameters of its own (`?sub=a.%3E`) fails at
    /// once with [`Error::Protocol`], before anything is sent: name the
    /// subscriptions with [`Client::connect_subscribed`] instead. A
    /// parameter named exactly `sub` counts, with or without a `=`; others
    /// (`?token=`, `?x=sub`, `?subs=`) are sent as they are.
    pub async fn connect_with(url: &str, options: ClientOptions) -> Result<Client> {
        let (client, _) = Client::start(url, options, Vec::new()).await?;
        Ok(client)
    }

    /// Connects as [`Client::connect_with`] does, subscribed to `patterns`
    /// from the start: one [`Subscription`] per pattern, in order, each
    /// the same as one from [`Client::subscribe`] (replay, then
    /// [`crate::Event::Synced`], then live changes; it carries on after a
    /// reconnect; dropping it unsubscribes).
    ///
    /// The subscriptions are named in the upgrade request (`GET
    /// /ws?sub=<pattern>&…`, protocol.md §5.1), so the server makes them
    /// before anything else and their replay follows its `hello`: the
    /// first values come one round trip sooner than with `connect` and
    /// then `subscribe`. A server older than that feature ignores the
    /// parameters; the client then sends `sub` requests for them before
    /// this returns, and the subscriptions are the same. After a
    /// reconnect they are made again with requests, as any subscription.
    ///
    /// Patterns are checked first, as [`Client::subscribe`] does: a bad
    /// one fails with [`Error::Server`] and code `bad_pattern` before
    /// anything is sent. A list the server refuses fails at once, not
    /// retried, with [`Error::Server`] and the server's code:
    /// `bad_pattern` (for instance a pattern over its `max_key_bytes`), or
    /// `limit` (more than its `max_subs`). `url` must have no `sub`
    /// parameters of its own (see [`Client::connect_with`]); any other
    /// query, such as `?token=`, is kept.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), ipcbus_client::Error> {
    /// use futures_util::StreamExt;
    /// use ipcbus_client::{Client, ClientOptions};
    /// let url = "ws://127.0.0.1:9099/ws";
    /// let patterns = ["weather.today", "svc.*.online"];
    /// let (client, mut subs) =
    ///     Client::connect_subscribed(url, ClientOptions::default(), &patterns).await?;
    /// let mut online = subs.pop().expect("svc.*.online");
    /// let mut weather = subs.pop().expect("weather.today");
    /// while let Some(event) = weather.next().await {
    ///     println!("{event:?}");
    /// }
    /// # drop((client, online)); Ok(()) }
    /// ```
    pub async fn connect_subscribed(
        url: &str,
        options: ClientOptions,
        patterns: &[impl AsRef<str>],
    ) -> Result<(Client, Vec<Subscription>)> {
        let patterns = patterns
            .iter()
            .map(|p| parse_pattern(p.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let capacity = options.subscription_capacity;
        // Local ids from 1: the client's request ids start after them.
        let subs: Vec<Arc<SubShared>> = (1..)
            .zip(patterns)
            .map(|(local, pattern)| {
                let options = SubscribeOptions::default();
                Arc::new(SubShared::new(local, pattern, options, capacity))
            })
            .collect();
        let (client, made) = Client::start(url, options, subs.clone()).await?;
        if made {
            let subs = subs
                .into_iter()
                .map(|sub| Subscription {
                    sub,
                    client: client.clone(),
                })
                .collect();
            return Ok((client, subs));
        }
        // An older server: the same subscriptions, with requests.
        let made = futures_util::future::join_all(subs.into_iter().map(|sub| {
            let client = client.clone();
            async move {
                let frame = sub.frame(sub.local);
                let kind = Kind::Sub(sub.clone());
                let made = client.call(sub.local, frame, kind, Arc::default()).await;
                made.map(|_| Subscription { sub, client })
            }
        }))
        .await;
        // On a failure, the others made are dropped: unsubscribed.
        let subs = made.into_iter().collect::<Result<Vec<_>>>()?;
        Ok((client, subs))
    }

    /// [`Client::connect_subscribed`], with a [`Watch`] of each pattern
    /// instead of a [`Subscription`]: a local mirror whose initial state
    /// follows the server's `hello`. Await [`Watch::synced`] for it.
    pub async fn connect_watching(
        url: &str,
        options: ClientOptions,
        patterns: &[impl AsRef<str>],
    ) -> Result<(Client, Vec<Watch>)> {
        let (client, subs) = Client::connect_subscribed(url, options, patterns).await?;
        Ok((client, subs.into_iter().map(Watch::start).collect()))
    }

    /// Starts the connection task and waits for the first connection: with
    /// `url_subs`, named in its upgrade request. True when the server made
    /// them (bound to ids 1 to n, routed and kept by the client).
    async fn start(
        url: &str,
        options: ClientOptions,
        url_subs: Vec<Arc<SubShared>>,
    ) -> Result<(Client, bool)> {
        // Before the task: a mistake of the caller's, never retried.
        dial::check_url(url)?;
        let (tx, rx) = mpsc::channel(options.request_capacity);
        let (state_tx, state) = watch::channel(State::new(
            StateKind::Connecting,
            format!("connecting to {url}"),
        ));
        let (closing, closing_rx) = watch::channel(false);
        let first_id = url_subs.len() as u64 + 1;
        let first_url = (!url_subs.is_empty())
            .then(|| dial::with_subscriptions(url, url_subs.iter().map(|s| s.pattern())));
        let inner = Inner {
            shared: Shared::default(),
            ids: Arc::new(AtomicU64::new(first_id)),
            info: Arc::default(),
            ephemeral: Arc::default(),
            state,
            closing,
            options: options.clone(),
            tx,
        };
        let link = Link {
            url: url.to_owned(),
            first_url,
            url_subs,
            options,
            shared: inner.shared.clone(),
            rx,
            weak: inner.tx.downgrade(),
            state: state_tx,
            closing: closing_rx,
            info: inner.info.clone(),
            ephemeral: inner.ephemeral.clone(),
            ids: inner.ids.clone(),
            resend: Vec::new(),
        };
        let (first, connected) = oneshot::channel();
        tokio::spawn(reconnect::run(link, first));
        match connected.await {
            Ok(Ok(made)) => {
                let inner = Arc::new(inner);
                Ok((Client { inner }, made))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::unavailable(reconnect::CLOSED_BY_CLIENT)),
        }
    }

    /// The connection's state, as it changes.
    ///
    /// ```no_run
    /// # async fn demo(client: ipcbus_client::Client) {
    /// let mut state = client.state();
    /// while state.changed().await.is_ok() {
    ///     let now = state.borrow_and_update().clone();
    ///     println!("bus: {} ({})", now.kind, now.reason); // "reconnecting (...)"
    /// }
    /// # }
    /// ```
    pub fn state(&self) -> watch::Receiver<State> {
        self.inner.state.clone()
    }

    /// Closes the client: calls in flight or waiting fail with
    /// [`Error::Unavailable`] ("closed by the client"), subscriptions end,
    /// the state becomes [`StateKind::Closed`]. The server deletes this
    /// client's ephemeral keys.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    fn info(&self) -> MutexGuard<'_, Hello> {
        self.inner
            .info
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The server's id for the current session (a new one after a reconnect).
    pub fn session(&self) -> String {
        self.info().session.clone()
    }

    /// The server's store id (from `hello`). Revs are only comparable, and
    /// `since` only meaningful, within one store.
    pub fn store(&self) -> String {
        self.info().store.clone()
    }

    fn next_id(&self) -> u64 {
        self.inner.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `op` and waits for its reply, up to the call timeout.
    async fn request(&self, op: Op<'_>, kind: Kind) -> Result<Reply<'static>> {
        self.request_with(op, kind, Arc::default()).await
    }

    /// [`Client::request`], with the request's progress in the caller's hands.
    async fn request_with(
        &self,
        op: Op<'_>,
        kind: Kind,
        progress: Arc<Progress>,
    ) -> Result<Reply<'static>> {
        let id = self.next_id();
        self.call(id, conn::encode(Some(id), op), kind, progress)
            .await
    }

    /// Sends one request and waits for its reply, up to the call timeout.
    async fn call(
        &self,
        id: u64,
        frame: Bytes,
        kind: Kind,
        progress: Arc<Progress>,
    ) -> Result<Reply<'static>> {
        if let Some(max) = self.info().max_frame_bytes {
            if frame.len() as u64 > max {
                return Err(Error::too_large(format!(
                    "request of {} bytes exceeds the server's max_frame_bytes ({max}); nothing was sent",
                    frame.len()
                )));
            }
        }
        let write = matches!(kind, Kind::Write);
        let (reply, rx) = oneshot::channel();
        let cmd = Command {
            frame,
            id: Some(id),
            kind,
            reply: Some(reply),
            progress: Some(progress.clone()),
        };
        let timeout = self.inner.options.timeout;
        let waited = tokio::time::timeout(timeout, async {
            self.inner.tx.send(cmd).await.ok()?;
            rx.await.ok()
        })
        .await;
        match waited {
            Ok(Some(result)) => result,
            Ok(None) => Err(Error::unavailable(self.inner.state.borrow().reason.clone())),
            Err(_) => {
                let sent = progress.abandon();
                let state = self.inner.state.borrow().clone();
                let reason = if sent || state.kind == StateKind::Open {
                    format!("no reply within {timeout:?}")
                } else {
                    format!("not connected within {timeout:?}: {}", state.reason)
                };
                Err(Error::Unavailable {
                    reason,
                    maybe_applied: write && sent,
                })
            }
        }
    }

    /// Sets `key` to `value`, encoded as MessagePack (structs as maps).
    /// Returns the rev of the write.
    ///
    /// If the connection is lost before the reply, this fails with
    /// [`Error::Unavailable`] and [`Error::maybe_applied`]: the write is
    /// not sent again. Read the key to learn what happened, or use
    /// [`Client::set_if`], which applies at most once and is safe to retry.
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
    /// // Deleted when this client ends: plugins see the service go away.
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

    /// [`Client::set_with`] for a MessagePack value given as bytes. A value
    /// over the server's `max_value_bytes` fails with `too_large` before
    /// anything is sent.
    pub async fn set_raw_with(&self, key: &str, value: Bytes, options: SetOptions) -> Result<u64> {
        if let Some(max) = self.info().max_value_bytes {
            if value.len() as u64 > max {
                return Err(Error::too_large(format!(
                    "value of {} bytes exceeds the server's max_value_bytes ({max}); nothing was sent",
                    value.len()
                )));
            }
        }
        let ephemeral = &self.inner.ephemeral;
        let progress = Arc::new(Progress::default());
        let claim = if options.ephemeral {
            // With the request's progress: a reconnect does not set the key
            // again while this set still waits to be sent (it would be
            // written twice).
            let sending = progress.clone();
            Some(ephemeral.begin(key, value.clone(), options.ttl, sending))
        } else {
            ephemeral.forget(key, None);
            None
        };
        let op = Op::Set {
            key: Cow::Borrowed(key),
            value,
            if_rev: options.if_rev,
            life: Life {
                persist: options.persist,
                ephemeral: options.ephemeral,
                ttl_ms: options.ttl.map(ttl_ms),
            },
        };
        let result = self.request_with(op, Kind::Write, progress).await;
        let result = result.and_then(|reply| rev(&reply));
        if let Some((generation, previous)) = claim {
            match &result {
                Ok(rev) => ephemeral.acked(key, generation, *rev),
                Err(e) if !e.maybe_applied() => ephemeral.refused(key, generation, previous),
                Err(_) => {}
            }
        }
        result
    }

    /// Reads `key` and decodes it. Fails with `not_found` if absent.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        let (value, _) = self.get_raw(key).await?;
        Ok(rmp_serde::from_slice(&value)?)
    }

    /// Reads `key` as MessagePack bytes, with its rev.
    pub async fn get_raw(&self, key: &str) -> Result<(Bytes, u64)> {
        let op = Op::Get {
            key: Cow::Borrowed(key),
        };
        let reply = self.request(op, Kind::Read).await?;
        match (reply.value, reply.rev) {
            (Some(value), Some(rev)) => Ok((value, rev)),
            _ => Err(Error::Protocol("get reply without value or rev".into())),
        }
    }

    /// Deletes `key`; returns the rev of the deletion. Like [`Client::set`],
    /// it fails with [`Error::maybe_applied`] if the reply is lost.
    pub async fn del(&self, key: &str) -> Result<u64> {
        self.del_maybe_if(key, None).await
    }

    /// Deletes `key` only if its current rev is `rev`.
    pub async fn del_if(&self, key: &str, rev_: u64) -> Result<u64> {
        self.del_maybe_if(key, Some(rev_)).await
    }

    async fn del_maybe_if(&self, key: &str, if_rev: Option<u64>) -> Result<u64> {
        self.inner.ephemeral.forget(key, None);
        let op = Op::Del {
            key: Cow::Borrowed(key),
            if_rev,
        };
        rev(&self.request(op, Kind::Write).await?)
    }

    /// Lists keys and revs, all or those matching `pattern`.
    pub async fn keys(&self, pattern: Option<&str>) -> Result<Vec<(String, u64)>> {
        let pattern = pattern.map(parse_pattern).transpose()?;
        let reply = self.request(Op::Keys { pattern }, Kind::Read).await?;
        let keys = reply.keys.unwrap_or_default();
        Ok(keys
            .into_iter()
            .map(|KeyRev { key, rev }| (key.into_owned(), rev))
            .collect())
    }

    /// Subscribes to a key or pattern: current values first, then
    /// [`crate::Event::Synced`], then every change. After a reconnect the
    /// stream goes on with what changed meanwhile (see [`Subscription`]).
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        self.subscribe_since(pattern, None).await
    }

    /// Like [`Client::subscribe`], replaying only keys whose rev is above `since`.
    pub async fn subscribe_since(&self, pattern: &str, since: Option<u64>) -> Result<Subscription> {
        let options = SubscribeOptions {
            since,
            ..SubscribeOptions::default()
        };
        self.subscribe_with(pattern, options).await
    }

    /// Like [`Client::subscribe`], with [`SubscribeOptions`]: `since` as in
    /// [`Client::subscribe_since`]; with `meta`, every value event comes
    /// with the [`crate::Meta`] of its write (read it with
    /// [`Subscription::next_with_meta`] or [`Subscription::with_meta`]),
    /// asked for again after every reconnect. A server older than `meta`
    /// sends none: the meta is then `None`, "not known".
    pub async fn subscribe_with(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        let pattern = parse_pattern(pattern)?;
        let id = self.next_id();
        let capacity = self.inner.options.subscription_capacity;
        let sub = Arc::new(SubShared::new(id, pattern, options, capacity));
        self.call(id, sub.frame(id), Kind::Sub(sub.clone()), Arc::default())
            .await?;
        Ok(Subscription {
            sub,
            client: self.clone(),
        })
    }

    /// A local mirror of every key matching `pattern`, kept current by push,
    /// and correct again after a reconnect once the replay is in.
    /// Reads from it are local. Await [`Watch::synced`] for the initial state.
    pub async fn watch(&self, pattern: &str) -> Result<Watch> {
        Ok(Watch::start(self.subscribe(pattern).await?))
    }

    /// Ends a subscription and sends `unsub` without waiting (used by
    /// `Subscription::drop`, which cannot await).
    pub(crate) fn unsubscribe_later(&self, sub: &SubShared) {
        let Some(cmd) = self.inner.shared.forget(sub) else {
            return;
        };
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

/// A `ttl` as the wire's `ttl_ms`: at least 1, at most `MAX_TTL_MS`.
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).map_or(MAX_TTL_MS, |ms| ms.clamp(1, MAX_TTL_MS))
}

/// The value as MessagePack. A failure names the value's type: serde's own
/// message (a `Serialize` impl's error, the depth limit) often does not.
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    rmp_serde::to_vec_named(value)
        .map(Bytes::from)
        .map_err(|e| {
            Error::Encode(rmp_serde::encode::Error::Syntax(format!(
                "{e} (a value of type {})",
                std::any::type_name::<T>()
            )))
        })
}

fn rev(reply: &Reply<'_>) -> Result<u64> {
    reply
        .rev
        .ok_or_else(|| Error::Protocol("reply without rev".into()))
}

fn parse_pattern(p: &str) -> Result<Pattern> {
    Pattern::parse(p).map_err(|e| Error::Server(e.for_pattern()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value whose serialization fails, with a message that does not say
    /// which type it was.
    struct Opaque;

    impl Serialize for Opaque {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no way"))
        }
    }

    /// A URL with `sub=` parameters of its own fails the connect before
    /// anything reaches the server, with or without `connect_subscribed`;
    /// one whose query has other parameters is sent as it is.
    #[tokio::test]
    async fn a_url_with_its_own_sub_parameters_fails_before_anything_is_sent() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("ws://{}/ws", listener.local_addr().expect("addr"));
        let options = ClientOptions {
            fail_fast: true,
            token: Some("t".into()),
            ..ClientOptions::default()
        };
        let want = "protocol: the URL has its own sub= parameters (sub=a.%3E); \
                    name subscriptions with Client::connect_subscribed or connect_watching instead";
        let url = format!("{base}?sub=a.%3E");
        let err = Client::connect_with(&url, options.clone())
            .await
            .expect_err("refused");
        assert!(matches!(err, Error::Protocol(_)), "{err}");
        assert_eq!(err.to_string(), want);
        let url = format!("{base}?token=t&sub=a.%3E");
        let err = Client::connect_watching(&url, options.clone(), &["b.*"])
            .await
            .expect_err("refused");
        assert_eq!(err.to_string(), want);
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(accepted.is_err(), "nothing was sent");

        let url = format!("{base}?token=t&x=sub&subs=1");
        let connect = tokio::spawn(async move { Client::connect_with(&url, options).await });
        let (mut socket, _) = listener.accept().await.expect("a connection");
        let mut head = vec![0; 4096];
        let n = socket.read(&mut head).await.expect("the request");
        let head = String::from_utf8_lossy(&head[..n]);
        assert!(
            head.starts_with("GET /ws?token=t&x=sub&subs=1 HTTP/1.1\r\n"),
            "{head}"
        );
        drop(socket);
        let err = connect.await.expect("joined").expect_err("no server");
        assert!(!matches!(err, Error::Protocol(_)), "{err}");
    }

    #[test]
    fn an_encode_error_names_the_type() {
        let err = encode(&Opaque).expect_err("fails");
        assert!(matches!(err, Error::Encode(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "cannot encode value: no way (a value of type ipcbus_client::client::tests::Opaque)"
        );
        let err = encode(&vec![Opaque]).expect_err("fails");
        assert!(
            err.to_string().ends_with(
                "(a value of type alloc::vec::Vec<ipcbus_client::client::tests::Opaque>)"
            ),
            "{err}"
        );
    }
}
