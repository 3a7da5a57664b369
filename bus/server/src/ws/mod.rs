//! The WebSocket transport: the one module that knows `actix-web-actors`.
//! A `WsSession` actor reads frames, decodes them with the session's codec,
//! hands requests to [`Session`], and writes what the outbox holds
//! (`output.rs`).

use crate::app::AppState;
use crate::session::{Limits, Session};
use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError, WebsocketContext};
use bytes::{Bytes, BytesMut};
use ipcbus_actors::{Out, Outbox, OutboxConfig};
use ipcbus_protocol::{
    json, msgpack, Codec, ErrorBody, ErrorCode, Pattern, ServerMsg, PROTO_VERSION,
};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

mod guard;
mod output;
mod pause;
mod query;

use crate::metrics::timing::RequestTimer;
use pause::Until;
use prometheus_client::metrics::histogram::Histogram;

/// How often the server pings a client, by default (`heartbeat_ms`).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// A client silent for this long (no frame, no pong) is disconnected, by
/// default (`client_timeout_ms`).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Room the encoding buffer takes for a batch of output. It is let go at
/// the end of the batch, so an idle connection holds none.
const ENCODE_BUF_BYTES: usize = 4096;

/// Output encoded in one turn of a session, at most (but at least one
/// item, whatever its size). The rest waits in the outbox until the
/// connection has taken this turn's frames.
const DRAIN_BYTES: usize = 64 * 1024;

/// Tells the session its outbox has items.
#[derive(Message)]
#[rtype(result = "()")]
struct Wake;

/// `GET /ws`: upgrades to a session. The codec is the first subprotocol the
/// client offers that we know; no subprotocol means MessagePack.
pub(crate) async fn upgrade(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let mut names = req
        .headers()
        .get_all(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .peekable();
    let asked = names.peek().is_some();
    let offered = names.find_map(Codec::from_subprotocol);
    if asked && offered.is_none() {
        // A client that names only unknown subprotocols would fail the
        // handshake on its side anyway; say why instead.
        return Ok(HttpResponse::BadRequest().body(format!(
            "unsupported WebSocket subprotocol: use {} or {}\n",
            Codec::MsgPack.subprotocol(),
            Codec::Json.subprotocol()
        )));
    }
    let codec = offered.unwrap_or_default();
    let subs = match query::subscriptions(&req, &Limits::from(&state.config)) {
        Ok(subs) => subs,
        Err(e) => return Ok(crate::http::error(&e)),
    };
    let max = state.config.max_connections;
    if !state.registry.stats().try_open_session(max) {
        return Ok(HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "1"))
            .body(format!(
                "too many connections: this server allows max_connections ({max})\n"
            )));
    }
    // From here the slot belongs to the session, which frees it on drop.
    let session = WsSession::new(&state, codec, subs);
    let max_frame_bytes = state.config.max_frame_bytes;
    let stream = guard::FrameGuard::new(stream, max_frame_bytes, session.refused.clone());
    let protocols = [codec.subprotocol()];
    let mut builder = ws::WsResponseBuilder::new(session, &req, stream).frame_size(max_frame_bytes);
    if offered.is_some() {
        builder = builder.protocols(&protocols);
    }
    builder.start()
}

/// One WebSocket connection.
pub(crate) struct WsSession {
    session: Session,
    codec: Codec,
    me: Arc<OnceLock<Addr<WsSession>>>,
    shutdown: watch::Receiver<bool>,
    /// Moves when the backplane lease ran out (`AppState::leases_lost`).
    leases_lost: watch::Receiver<u64>,
    store_id: String,
    max_frame_bytes: usize,
    /// Announced in `hello`, so clients refuse a larger value before sending.
    max_value_bytes: usize,
    /// Set by the frame guard when a header announced more than `max_frame_bytes`.
    refused: Rc<Cell<bool>>,
    /// A close frame has been queued; nothing more is read or written.
    closing: bool,
    /// For the close reason when the outbox overflows.
    outbox_events: usize,
    heartbeat: Duration,
    client_timeout: Duration,
    last_seen: Instant,
    /// Reassembly of a fragmented message: its first opcode was text?
    partial: Option<(bool, BytesMut)>,
    /// Reused between drains.
    batch: VecDeque<Out>,
    /// Encoded frames are split off it; empty (no allocation) between batches.
    buf: BytesMut,
    /// The upgrade request's subscriptions, made right after `hello`.
    url_subs: Vec<Pattern>,
    /// Times a sample of the requests (`ipcbus_request_duration_seconds`).
    timer: RequestTimer,
    request_seconds: Histogram,
}

impl WsSession {
    fn new(state: &AppState, codec: Codec, url_subs: Vec<Pattern>) -> WsSession {
        let me: Arc<OnceLock<Addr<WsSession>>> = Arc::default();
        let waker = me.clone();
        let config = OutboxConfig {
            max_bytes: state.config.outbox_bytes,
            max_inflight: state.config.max_inflight,
            max_events: state.config.outbox_events,
        };
        let id = state.next_session_id();
        let stats = state.registry.stats().clone();
        let outbox = Outbox::new(id, config, stats, move || {
            if let Some(addr) = waker.get() {
                // One Wake per batch: the outbox wakes again only after
                // `take`, so Wakes cannot pile up in the mailbox.
                addr.do_send(Wake);
            }
        });
        WsSession {
            session: Session::new(
                state.registry.clone(),
                Arc::new(outbox),
                Limits::from(&state.config),
                state.sys.clone(),
            ),
            codec,
            me,
            shutdown: state.shutdown.clone(),
            leases_lost: state.leases_lost.clone(),
            store_id: state.store_id.clone(),
            max_frame_bytes: state.config.max_frame_bytes,
            max_value_bytes: state.config.max_value_bytes,
            refused: Rc::default(),
            closing: false,
            outbox_events: state.config.outbox_events,
            heartbeat: Duration::from_millis(state.config.heartbeat_ms),
            client_timeout: Duration::from_millis(state.config.client_timeout_ms),
            last_seen: Instant::now(),
            partial: None,
            batch: VecDeque::new(),
            buf: BytesMut::new(),
            url_subs,
            timer: RequestTimer::default(),
            request_seconds: state.metrics.request_seconds.clone(),
        }
    }

    fn on_request_frame(&mut self, frame: &Frame, ctx: &mut WebsocketContext<Self>) {
        let decoded = match (frame, self.codec) {
            (Frame::Binary(bytes), Codec::MsgPack) => msgpack::decode_request(bytes),
            (Frame::Text(text), Codec::Json) => json::decode_request(text),
            _ => {
                let msg = match self.codec {
                    Codec::MsgPack => "this session speaks MessagePack: send binary frames",
                    Codec::Json => "this session speaks JSON: send text frames",
                };
                self.session
                    .reply(None, Err(ErrorBody::new(ErrorCode::BadRequest, msg)));
                return;
            }
        };
        let later = match decoded {
            Ok(req) => {
                self.timer.started(req.id);
                self.session.handle(req)
            }
            Err(e) => {
                // An id the client may not use is not echoed either.
                let id = e.id.filter(|id| *id <= ipcbus_protocol::MAX_ID);
                self.session.reply(id, Err(e.error));
                None
            }
        };
        if let Some(later) = later {
            // Read-your-writes for `keys`: answer once this session's
            // writes have been applied, and read nothing else meanwhile.
            // ... and read nothing more until the listing is queued.
            let then = move |act: &mut Self, ctx: &mut WebsocketContext<Self>| {
                act.session.keys(later);
                act.pause(Until::Idle, |act, ctx| act.after_listing(ctx), ctx);
            };
            self.pause(Until::Idle, then, ctx);
        }
        if self.session.outbox.is_saturated() {
            // Stop reading this socket until key actors catch up; the
            // client feels it as TCP backpressure.
            self.pause(Until::Room, |act, ctx| act.drain(ctx), ctx);
        }
    }

    fn on_fragment(&mut self, item: actix_http::ws::Item, ctx: &mut WebsocketContext<Self>) {
        let (text, data, last) = match item {
            actix_http::ws::Item::FirstText(b) => (Some(true), b, false),
            actix_http::ws::Item::FirstBinary(b) => (Some(false), b, false),
            actix_http::ws::Item::Continue(b) => (None, b, false),
            actix_http::ws::Item::Last(b) => (None, b, true),
        };
        if let Some(text) = text {
            if self.partial.is_some() {
                return self.close(
                    ctx,
                    CloseCode::Protocol,
                    "new message inside a fragmented one",
                );
            }
            self.partial = Some((text, BytesMut::new()));
        }
        let Some((is_text, buf)) = &mut self.partial else {
            return self.close(
                ctx,
                CloseCode::Protocol,
                "continuation without a first fragment",
            );
        };
        if buf.len() + data.len() > self.max_frame_bytes {
            return self.close(ctx, CloseCode::Size, "message exceeds max_frame_bytes");
        }
        buf.extend_from_slice(&data);
        if last {
            let is_text = *is_text;
            let whole = buf.split().freeze();
            self.partial = None;
            match Frame::new(is_text, whole) {
                Some(frame) => self.on_request_frame(&frame, ctx),
                None => self.close(ctx, CloseCode::Invalid, "text message is not UTF-8"),
            }
        }
    }

    /// A `keys` reply is the one output a session makes afresh rather than
    /// shares (a list of the store's keys): read no more requests until the
    /// outbox is back within its budget, so that a client asking for the
    /// listing over and over without reading pins one listing at most.
    fn after_listing(&mut self, ctx: &mut WebsocketContext<Self>) {
        if self.session.outbox.is_over_budget() {
            self.pause(Until::UnderBudget, |_, _| {}, ctx);
        }
    }

    /// Drains the outbox once this thread has run its other ready tasks.
    fn drain_later(&mut self, ctx: &mut WebsocketContext<Self>) {
        ctx.spawn(
            tokio::task::yield_now()
                .into_actor(self)
                .map(|(), act, ctx| act.drain(ctx)),
        );
    }

    fn close(&mut self, ctx: &mut WebsocketContext<Self>, code: CloseCode, why: &str) {
        tracing::debug!(
            session = self.session.outbox.id(),
            ?code,
            why,
            "closing session"
        );
        if self.closing {
            return;
        }
        self.closing = true;
        ctx.close(Some(CloseReason {
            code,
            description: Some(why.to_owned()),
        }));
        ctx.stop();
    }
}

/// A whole request message.
enum Frame {
    Binary(Bytes),
    Text(bytestring::ByteString),
}

impl Frame {
    fn new(text: bool, bytes: Bytes) -> Option<Frame> {
        if text {
            bytestring::ByteString::try_from(bytes)
                .ok()
                .map(Frame::Text)
        } else {
            Some(Frame::Binary(bytes))
        }
    }
}

impl Actor for WsSession {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let _ = self.me.set(ctx.address());
        let session = uuid::Uuid::new_v4().to_string();
        let hello = ServerMsg::Hello {
            proto: PROTO_VERSION,
            server: Cow::Borrowed(crate::SERVER_NAME),
            session: Cow::Owned(session),
            store: Cow::Owned(self.store_id.clone()),
            max_value_bytes: Some(self.max_value_bytes as u64),
            max_frame_bytes: Some(self.max_frame_bytes as u64),
            subs: (!self.url_subs.is_empty()).then_some(self.url_subs.len() as u64),
        };
        self.write(&hello, None, ctx);
        self.buf = BytesMut::new();
        // Ids 1, 2, ... in order; their events follow `hello` through the outbox.
        for pattern in std::mem::take(&mut self.url_subs) {
            self.session.subscribe(None, pattern, None, false);
        }
        ctx.run_interval(self.heartbeat, |act, ctx| {
            if act.last_seen.elapsed() > act.client_timeout {
                act.close(ctx, CloseCode::Away, "heartbeat timeout");
            } else {
                ctx.ping(b"");
            }
        });
        let mut shutdown = self.shutdown.clone();
        let mut leases_lost = self.leases_lost.clone();
        leases_lost.mark_unchanged();
        ctx.spawn(
            async move {
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => {
                        (CloseCode::Away, "server shutting down")
                    }
                    // Only a backplane's feed moves it (docs/scaling.md §6).
                    Ok(()) = leases_lost.changed() => {
                        (CloseCode::Restart, "this server lost its backplane lease: reconnect")
                    }
                }
            }
            .into_actor(self)
            .map(|(code, why), act, ctx| act.close(ctx, code, why)),
        );
    }
}

impl Handler<Wake> for WsSession {
    type Result = ();

    /// Writes the outbox once this thread has run everything else it had
    /// to do (Tokio defers a yielded task until the runtime next polls for
    /// I/O). Whatever the other sessions and key actors of this thread
    /// queue meanwhile goes out in the same batch, so one write to the
    /// socket carries many events instead of a few.
    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.drain_later(ctx);
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        match msg {
            Ok(ws::Message::Binary(bytes)) => self.on_request_frame(&Frame::Binary(bytes), ctx),
            Ok(ws::Message::Text(text)) => self.on_request_frame(&Frame::Text(text), ctx),
            Ok(ws::Message::Continuation(item)) => self.on_fragment(item, ctx),
            Ok(ws::Message::Ping(bytes)) => ctx.pong(&bytes),
            Ok(ws::Message::Pong(_) | ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Err(ProtocolError::Overflow) => {
                self.close(ctx, CloseCode::Size, "message exceeds max_frame_bytes");
            }
            Err(_) if self.refused.get() => {
                self.close(ctx, CloseCode::Size, "frame exceeds max_frame_bytes");
            }
            Err(e) => self.close(ctx, CloseCode::Protocol, &e.to_string()),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
