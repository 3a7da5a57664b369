//! `Link`: the task that owns a client's connection for its whole life.
//! It connects (retrying with backoff), writes the requests of every
//! `Client` clone in batches, and when the connection is lost: fails the
//! writes in flight as `maybe_applied`, keeps the reads to send again,
//! reconnects, sets the ephemeral keys again, makes every subscription
//! again, and only then reads new requests (the reconnect contract in
//! docs/clients.md). While it is down, requests wait in the bounded
//! channel, and their callers' timeouts run.

use crate::backoff::Backoff;
use crate::conn::{self, Command, Kind, Lost, Shared, Ws};
use crate::dial::{dial, is_refusal, Hello};
use crate::ephemeral::{Again, Ephemeral};
use crate::error::{Error, Result};
use crate::options::ClientOptions;
use crate::resync::SubShared;
use crate::state::{State, StateKind};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use ipcbus_protocol::{ErrorCode, Life, Op};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// How long a client that closes waits for its close frame to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the client closed when the program closed it.
pub(crate) const CLOSED_BY_CLIENT: &str = "closed by the client";

/// Everything the connection task owns or shares with the clients.
pub(crate) struct Link {
    pub(crate) url: String,
    /// Until the first connection is open: `url` with the `sub`
    /// parameters of [`Link::url_subs`] (protocol.md §5.1). Later
    /// connections use `url`: the client makes its subscriptions again
    /// with requests.
    pub(crate) first_url: Option<String>,
    /// The subscriptions the upgrade request of the first connection
    /// names, in order: if its `hello` says the server made them, they
    /// are bound to ids 1 to n before anything is read after it.
    pub(crate) url_subs: Vec<Arc<SubShared>>,
    pub(crate) options: ClientOptions,
    pub(crate) shared: Shared,
    pub(crate) rx: mpsc::Receiver<Command>,
    /// Weak: dropping every `Client` still ends the client.
    pub(crate) weak: mpsc::WeakSender<Command>,
    pub(crate) state: watch::Sender<State>,
    /// True once the program closed the client or dropped every `Client`.
    pub(crate) closing: watch::Receiver<bool>,
    pub(crate) info: Arc<Mutex<Hello>>,
    pub(crate) ephemeral: Arc<Ephemeral>,
    pub(crate) ids: Arc<AtomicU64>,
    /// Reads and `sub`s that were in flight when the connection was lost,
    /// and requests that could not be written on it (see `write_all`).
    pub(crate) resend: Vec<Command>,
}

/// One open connection: the writing half, and the task reading the other.
struct Live {
    sink: SplitSink<Ws, Message>,
    reader: JoinHandle<Lost>,
    epoch: u64,
}

/// The most stray subscriptions of an upgrade request (see
/// `Link::establish`) ended: a server makes no more than its `max_subs`.
const MAX_STRAY_SUBS: u64 = 1 << 16;

/// Runs the client's connection until it is closed; `first` learns how
/// the first connect went: whether the server made the subscriptions the
/// upgrade request named ([`Link::url_subs`]).
pub(crate) async fn run(mut link: Link, first: oneshot::Sender<Result<bool>>) {
    let mut conn = match link.connect(true).await {
        Ok(conn) => conn,
        Err(e) => {
            link.shut(&e.to_string());
            let _ = first.send(Err(e));
            return;
        }
    };
    let mut first = Some(first);
    loop {
        let (ws, hello) = conn;
        let lost = match link.establish(ws, hello, first.is_none()).await {
            Ok((live, made)) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(made));
                }
                link.drive(live).await
            }
            Err(lost) => Some(lost),
        };
        let Some(lost) = lost else {
            return link.shut(CLOSED_BY_CLIENT);
        };
        link.lost(&lost);
        if !link.options.reconnect {
            return link.shut(&format!("connection lost: {}", lost.reason));
        }
        tracing::warn!("ipcbus: connection to {} lost: {}", link.url, lost.reason);
        link.set_state(
            StateKind::Reconnecting,
            format!("connection lost: {}", lost.reason),
        );
        conn = match link.connect(false).await {
            Ok(conn) => conn,
            Err(e) => return link.shut(&e.to_string()),
        };
    }
}

/// Resolves once the client is closing.
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

impl Link {
    fn set_state(&self, kind: StateKind, reason: String) {
        self.state.send_replace(State::new(kind, reason));
    }

    /// Tries to connect with backoff: the first time until the connect
    /// timeout (a refusal or `fail_fast` ends it at once), later for as
    /// long as the client is not closed (each distinct error logged once).
    async fn connect(&mut self, first: bool) -> Result<(Ws, Hello)> {
        let options = &self.options;
        let url = &self.url;
        let dial_url = match &self.first_url {
            Some(with_subs) if first => with_subs,
            _ => url,
        };
        let patience = options.connect_timeout.unwrap_or(options.timeout);
        // A patience past the clock's range is no deadline.
        let deadline = first
            .then(|| Instant::now().checked_add(patience))
            .flatten();
        let mut backoff = Backoff::new();
        let mut delay = if first {
            Duration::ZERO
        } else {
            backoff.next_delay()
        };
        let mut said = None;
        loop {
            let attempt = async {
                tokio::time::sleep(delay).await;
                let limit = deadline.map_or(options.timeout, |d| d - Instant::now());
                tokio::time::timeout(limit, dial(dial_url, options)).await
            };
            let error = tokio::select! {
                attempt = attempt => match attempt {
                    Ok(Ok(conn)) => return Ok(conn),
                    Ok(Err(e)) => e,
                    Err(_) => Error::unavailable(format!("cannot connect to {url}: no answer")),
                },
                () = closed(&mut self.closing) => return Err(Error::unavailable(CLOSED_BY_CLIENT)),
            };
            if first && (options.fail_fast || is_refusal(&error)) {
                return Err(error);
            }
            let why = error.to_string();
            if said.as_ref() != Some(&why) {
                if !first {
                    tracing::warn!("ipcbus: reconnecting to {url}: {why} (will keep trying)");
                }
                let kind = if first {
                    StateKind::Connecting
                } else {
                    StateKind::Reconnecting
                };
                self.state.send_replace(State::new(kind, why.clone()));
                said = Some(why);
            }
            delay = backoff.next_delay();
            if deadline.is_some_and(|d| Instant::now() + delay >= d) {
                let why = said.unwrap_or_default();
                return Err(Error::unavailable(format!(
                    "cannot connect to {url} within {patience:?}: {why}"
                )));
            }
        }
    }

    /// Starts the reader on a new connection; after a reconnect, sets the
    /// ephemeral keys again, makes the subscriptions again and sends the
    /// reads that were in flight. Then the client is open. True when the
    /// server made the upgrade request's subscriptions ([`Link::url_subs`]).
    async fn establish(
        &mut self,
        ws: Ws,
        hello: Hello,
        again: bool,
    ) -> std::result::Result<(Live, bool), Lost> {
        let asked = self.url_subs.len() as u64;
        let made = !again && asked > 0 && hello.subs == Some(asked);
        // Subscriptions the server made for `sub` parameters that are not
        // ours (a proxy's: a URL with its own is refused at connect), or a
        // number of them other than we asked for: nothing routes their
        // events, so end them.
        let stray = if made {
            0
        } else {
            hello.subs.unwrap_or(0).min(MAX_STRAY_SUBS)
        };
        if !again && asked > 0 && !made {
            tracing::debug!(
                "ipcbus: the server made {} of the {asked} subscriptions of the upgrade request \
                 (an older server makes none): subscribing with requests",
                hello.subs.unwrap_or(0)
            );
        }
        let store_changed = {
            let mut info = self.info.lock().unwrap_or_else(PoisonError::into_inner);
            let changed = again && info.store != hello.store;
            *info = hello;
            changed
        };
        let epoch = {
            let mut routes = self.shared.lock();
            routes.epoch += 1;
            let epoch = routes.epoch;
            if made {
                // Bound before the reader starts: their first events may
                // have come in the same read as `hello`.
                for (sub, id) in self.url_subs.iter().zip(1..) {
                    sub.attach(id, epoch);
                    routes.live.insert(id, sub.clone());
                    routes.subs.insert(sub.local, sub.clone());
                }
            }
            epoch
        };
        let strays: Vec<_> = (1..=stray).map(|id| Command::unsub(id, epoch)).collect();
        let (sink, stream) = ws.split();
        let reader = conn::read_loop(
            stream,
            self.shared.clone(),
            self.weak.clone(),
            epoch,
            self.options.idle_timeout,
        );
        let mut live = Live {
            sink,
            reader: tokio::spawn(reader),
            epoch,
        };
        if again {
            self.reassert(&mut live, !store_changed).await?;
            let subs: Vec<_> = self.shared.lock().subs.values().cloned().collect();
            let mut cmds = Vec::with_capacity(subs.len() + self.resend.len());
            for sub in subs {
                sub.start_resync(store_changed);
                let id = self.ids.fetch_add(1, Ordering::Relaxed);
                cmds.push(Command {
                    frame: sub.frame(id),
                    id: Some(id),
                    kind: Kind::Resub(sub),
                    reply: None,
                    progress: None,
                });
            }
            cmds.append(&mut self.resend);
            cmds.splice(0..0, strays);
            self.write_all(&mut live, cmds).await?;
        } else if !strays.is_empty() {
            self.write_all(&mut live, strays).await?;
        }
        if !again {
            // Made, or left to the client's `sub` requests: either way
            // not named again.
            self.first_url = None;
            self.url_subs.clear();
        }
        self.set_state(StateKind::Open, format!("connected to {}", self.url));
        Ok((live, made))
    }

    /// Writes the requests of the program until the connection is lost
    /// (`Some`) or the client is closed (`None`).
    async fn drive(&mut self, mut live: Live) -> Option<Lost> {
        loop {
            let cmd = tokio::select! {
                biased;
                () = closed(&mut self.closing) => None,
                lost = &mut live.reader => return Some(joined(lost)),
                cmd = self.rx.recv() => cmd,
            };
            let Some(cmd) = cmd else {
                live.reader.abort();
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, live.sink.close()).await;
                return None;
            };
            // Send whatever else is queued in the same flush.
            let mut cmds = vec![cmd];
            while let Ok(cmd) = self.rx.try_recv() {
                cmds.push(cmd);
            }
            if let Err(lost) = self.write_all(&mut live, cmds).await {
                return Some(lost);
            }
        }
    }

    /// Sends `cmds` and flushes; on failure the connection is over. A
    /// request that certainly did not go out (the connection was already
    /// closing when it was to be written, or it came after one that
    /// failed) waits for the next connection, as if it had never left the
    /// queue: a write that was not sent is not `maybe_applied`.
    async fn write_all(
        &mut self,
        live: &mut Live,
        cmds: Vec<Command>,
    ) -> std::result::Result<(), Lost> {
        let mut cmds = cmds.into_iter();
        let mut result = Ok(());
        // The sink holds the last frame fed back until the next `feed` or
        // the `flush`, and an error there is that frame's.
        let mut held = None;
        for cmd in cmds.by_ref() {
            let id = cmd.id;
            let Some(frame) = self.admit(cmd, live.epoch) else {
                continue;
            };
            if let Err(e) = live.sink.feed(Message::Binary(frame)).await {
                self.unadmit(id); // not taken by the sink
                if not_sent(&e) {
                    self.unadmit(held);
                }
                result = Err(e);
                break;
            }
            held = id;
        }
        if result.is_ok() {
            result = live.sink.flush().await;
            if result.as_ref().is_err_and(not_sent) {
                self.unadmit(held);
            }
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                for cmd in cmds {
                    self.keep(cmd);
                }
                Err(end(live, format!("cannot write: {e}")).await)
            }
        }
    }

    /// Takes back the admitted request `id`, which was not sent after all.
    fn unadmit(&mut self, id: Option<u64>) {
        let cmd = id.and_then(|id| self.shared.lock().waiting.remove(&id));
        if let Some(cmd) = cmd {
            self.keep(cmd);
        }
    }

    /// Keeps a request that was not sent for the next connection (the
    /// client's own requests are made anew there).
    fn keep(&mut self, cmd: Command) {
        if let Some(progress) = &cmd.progress {
            progress.unsend();
        }
        if matches!(cmd.kind, Kind::Read | Kind::Write | Kind::Sub(_)) {
            self.resend.push(cmd);
        }
    }

    /// Records who waits for the reply to `cmd`; returns its frame, or
    /// `None` if it is not to be sent (its caller gave up, or it is an
    /// `unsub` for another connection).
    fn admit(&self, cmd: Command, epoch: u64) -> Option<bytes::Bytes> {
        if cmd.reply.as_ref().is_some_and(|r| r.is_closed()) {
            return None;
        }
        if cmd.progress.as_ref().is_some_and(|p| !p.send()) {
            return None;
        }
        if matches!(cmd.kind, Kind::Unsub { epoch: e } if e != epoch) {
            return None;
        }
        let frame = cmd.frame.clone();
        if let Some(id) = cmd.id {
            self.shared.lock().waiting.insert(id, cmd);
        }
        Some(frame)
    }

    /// The connection is gone: writes in flight fail (maybe applied),
    /// reads and `sub`s wait to be sent again.
    fn lost(&mut self, lost: &Lost) {
        let mut routes = self.shared.lock();
        routes.live.clear();
        for (_, cmd) in routes.waiting.drain() {
            if cmd.reply.as_ref().is_none_or(|r| r.is_closed()) {
                continue;
            }
            if lost.too_large {
                cmd.fail(Error::too_large(lost.reason.clone()));
                continue;
            }
            match cmd.kind {
                Kind::Write => cmd.fail(Error::Unavailable {
                    reason: format!("connection lost: {}", lost.reason),
                    maybe_applied: true,
                }),
                Kind::Read | Kind::Sub(_) => self.resend.push(cmd),
                Kind::Internal | Kind::Resub(_) | Kind::Unsub { .. } => {}
            }
        }
    }

    /// Closed for good: everything waiting fails with `reason`, every
    /// subscription ends.
    fn shut(&mut self, reason: &str) {
        self.set_state(StateKind::Closed, reason.to_owned());
        let mut routes = self.shared.lock();
        for (_, cmd) in routes.waiting.drain() {
            let maybe_applied = matches!(cmd.kind, Kind::Write);
            cmd.fail(Error::Unavailable {
                reason: reason.to_owned(),
                maybe_applied,
            });
        }
        routes.live.clear();
        for (_, sub) in routes.subs.drain() {
            sub.queue.close();
        }
        drop(routes);
        self.rx.close();
        let resend = std::mem::take(&mut self.resend);
        for cmd in resend
            .into_iter()
            .chain(std::iter::from_fn(|| self.rx.try_recv().ok()))
        {
            if let Kind::Sub(sub) = &cmd.kind {
                sub.queue.close();
            }
            cmd.fail(Error::unavailable(reason));
        }
    }

    /// Sets the ephemeral keys again on a new connection, before anything
    /// else is sent on it (see `ephemeral.rs`).
    async fn reassert(
        &mut self,
        live: &mut Live,
        same_store: bool,
    ) -> std::result::Result<(), Lost> {
        let again = self.ephemeral.again();
        let first: Vec<_> = again.iter().map(|a| (a, 0)).collect();
        let replies = self.exchange(live, &first).await?;
        let mut second = Vec::new();
        for (a, reply) in again.iter().zip(replies) {
            match reply {
                // The old connection's write is still there: take it over.
                Err(e)
                    if same_store
                        && e.code() == Some(ErrorCode::RevMismatch)
                        && a.claim.rev.is_some()
                        && e.current_rev() == a.claim.rev =>
                {
                    second.push((a, e.current_rev().unwrap_or_default()));
                }
                reply => self.ephemeral.settle(a, reply.map_err(|e| e.to_string())),
            }
        }
        let replies = self.exchange(live, &second).await?;
        for ((a, _), reply) in second.iter().zip(replies) {
            self.ephemeral.settle(a, reply.map_err(|e| e.to_string()));
        }
        Ok(())
    }

    /// Sends an ephemeral `set` (with `if_rev`) for each of `sets` and
    /// waits for the replies, up to the call timeout.
    async fn exchange(
        &mut self,
        live: &mut Live,
        sets: &[(&Again, u64)],
    ) -> std::result::Result<Vec<Result<u64>>, Lost> {
        let mut cmds = Vec::with_capacity(sets.len());
        let mut replies = Vec::with_capacity(sets.len());
        for (a, if_rev) in sets {
            let id = self.ids.fetch_add(1, Ordering::Relaxed);
            let op = Op::Set {
                key: Cow::Borrowed(&a.key),
                value: a.claim.value.clone(),
                if_rev: Some(*if_rev),
                life: Life {
                    persist: false,
                    ephemeral: true,
                    ttl_ms: a.ttl.map(crate::client::ttl_ms),
                },
            };
            let (reply, rx) = oneshot::channel();
            cmds.push(Command {
                frame: conn::encode(Some(id), op),
                id: Some(id),
                kind: Kind::Internal,
                reply: Some(reply),
                progress: None,
            });
            replies.push(rx);
        }
        self.write_all(live, cmds).await?;
        // `sleep`, not `sleep_until(now + timeout)`: a timeout past the
        // clock's range must not panic.
        let expiry = tokio::time::sleep(self.options.timeout);
        tokio::pin!(expiry);
        let mut out = Vec::with_capacity(replies.len());
        for rx in replies {
            tokio::select! {
                reply = rx => out.push(reply.unwrap_or_else(|_| Err(Error::unavailable("no reply")))
                    .and_then(|r| r.rev.ok_or_else(|| Error::Protocol("reply without rev".into())))),
                lost = &mut live.reader => return Err(joined(lost)),
                () = &mut expiry => {
                    return Err(end(live, "no reply while setting ephemeral keys again".into()).await);
                }
            }
        }
        Ok(out)
    }
}

/// True when a write failed before its frame went anywhere: the
/// connection was closing (the server's close frame came) or closed.
fn not_sent(e: &tokio_tungstenite::tungstenite::Error) -> bool {
    use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
    matches!(
        e,
        WsError::AlreadyClosed | WsError::Protocol(ProtocolError::SendAfterClosing)
    )
}

/// Ends a connection whose reader has not finished: its reason if it
/// has one by now, else `why`.
async fn end(live: &mut Live, why: String) -> Lost {
    live.reader.abort();
    match (&mut live.reader).await {
        Ok(lost) => lost,
        Err(_) => Lost {
            reason: why,
            too_large: false,
        },
    }
}

fn joined(reader: std::result::Result<Lost, tokio::task::JoinError>) -> Lost {
    reader.unwrap_or_else(|e| Lost {
        reason: format!("the reader failed: {e}"),
        too_large: false,
    })
}
