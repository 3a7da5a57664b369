//! Writing a session's outbox to its socket, in the session's codec.

use super::WsSession;
use actix_web_actors::ws::{CloseCode, WebsocketContext};
use bytes::BytesMut;
use ipcbus_actors::store::now_ms;
use ipcbus_actors::{Done, Out};
use ipcbus_protocol::{json, msgpack, Codec, ErrorBody, Reply, ServerMsg};
use std::borrow::Cow;
use std::sync::atomic::Ordering;

impl WsSession {
    pub(super) fn write(
        &mut self,
        msg: &ServerMsg<'_>,
        value_json: Option<&serde_json::value::RawValue>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        match self.codec {
            Codec::MsgPack => {
                msgpack::encode_server(msg, &mut self.buf);
                ctx.binary(self.buf.split().freeze());
            }
            Codec::Json => {
                if let Err(e) = json::encode_server(msg, value_json, &mut self.buf) {
                    self.buf.clear();
                    return self.write(&ServerMsg::Error(e.error), None, ctx);
                }
                let frame = self.buf.split().freeze();
                // The JSON encoder only writes UTF-8.
                match bytestring::ByteString::try_from(frame) {
                    Ok(text) => ctx.text(text),
                    Err(_) => tracing::error!("JSON encoder produced invalid UTF-8"),
                }
            }
        }
    }

    /// Writes what the outbox holds, up to [`super::DRAIN_BYTES`] per turn.
    /// When more is left, the next turn is scheduled after a yield: the
    /// actor runs only when the connection can take more output, so a
    /// client that stops reading leaves its events in the outbox (shared,
    /// and conflated there), not copied into frames.
    pub(super) fn drain(&mut self, ctx: &mut WebsocketContext<Self>) {
        if self.session.outbox.is_overflowed() {
            let why = format!(
                "too far behind: more than outbox_events ({}) events waited for this client; \
                 reconnect to get the current state",
                self.outbox_events
            );
            return self.close(ctx, CloseCode::Policy, &why);
        }
        if self.closing {
            return;
        }
        let more = self
            .session
            .outbox
            .take(&mut self.batch, super::DRAIN_BYTES);
        let mut batch = std::mem::take(&mut self.batch);
        self.buf.reserve(super::ENCODE_BUF_BYTES);
        let mut delivered = 0;
        for out in batch.drain(..) {
            delivered += u64::from(self.write_out(out, ctx));
        }
        self.batch = batch;
        if delivered > 0 {
            // Once per batch, not per event: the counter is shared by every session.
            let stats = self.session.registry.stats();
            stats.deliveries.fetch_add(delivered, Ordering::Relaxed);
        }
        // The frames written keep the buffer's memory until they are sent;
        // between batches the session holds none of it.
        self.buf = BytesMut::new();
        if more {
            self.drain_later(ctx);
        }
    }

    /// Writes one item; true when it was an event delivered to a subscriber.
    fn write_out(&mut self, out: Out, ctx: &mut WebsocketContext<Self>) -> bool {
        match out {
            Out::Event { sub, update } => {
                let Some(with_meta) = self.session.subscribed(sub) else {
                    return false;
                };
                let key = Cow::Borrowed(&*update.key);
                let (msg, json) = match &update.value {
                    Some(value) => {
                        // Rendered (once per write) only for JSON sessions.
                        let json = match self.codec {
                            Codec::MsgPack => None,
                            Codec::Json => match update.json() {
                                Ok(json) => json,
                                Err(e) => {
                                    let msg =
                                        format!("key {} rev {}: {}", update.key, update.rev, e.msg);
                                    let e = ErrorBody::new(e.code, msg);
                                    self.write(&ServerMsg::Error(e), None, ctx);
                                    return false;
                                }
                            },
                        };
                        let msg = ServerMsg::Val {
                            sub,
                            key,
                            value: value.clone(),
                            rev: update.rev,
                            // As old as it is when written to the socket.
                            meta: with_meta.then(|| update.written.meta(now_ms())),
                        };
                        (msg, json)
                    }
                    None => (
                        ServerMsg::Del {
                            sub,
                            key,
                            rev: update.rev,
                        },
                        None,
                    ),
                };
                self.write(&msg, json, ctx);
                return true;
            }
            Out::Synced { sub } => {
                if self.session.subscribed(sub).is_some() {
                    self.write(&ServerMsg::Synced { sub }, None, ctx);
                }
            }
            Out::Reply {
                id: None,
                result: Err(e),
            } => self.write(&ServerMsg::Error(e), None, ctx),
            Out::Reply {
                id: None,
                result: Ok(_),
            } => {}
            Out::Reply {
                id: Some(id),
                result,
            } => {
                self.timer.replied(id, &self.request_seconds);
                self.write_reply(id, result, ctx);
            }
        }
        false
    }

    fn write_reply(
        &mut self,
        id: u64,
        result: Result<Done, ErrorBody>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let done = match result {
            Ok(done) => done,
            Err(e) => return self.write(&ServerMsg::Reply { id, result: Err(e) }, None, ctx),
        };
        let mut reply = Reply::default();
        let mut got = None;
        match done {
            Done::Rev(rev) => reply.rev = Some(rev),
            Done::Sub(sub) => reply.sub = Some(sub),
            Done::Keys(keys) => reply.keys = Some(keys),
            Done::Empty => {}
            Done::Value(update) => {
                (reply.rev, reply.value) = (Some(update.rev), update.value.clone());
                got = Some(update);
            }
        }
        // A `get` value is rendered as JSON (once per write) for JSON sessions.
        let value_json = match (self.codec, &got) {
            (Codec::Json, Some(update)) => match update.json() {
                Ok(json) => json,
                Err(e) => {
                    let result = Err(e.clone());
                    return self.write(&ServerMsg::Reply { id, result }, None, ctx);
                }
            },
            _ => None,
        };
        let result = Ok(reply);
        self.write(&ServerMsg::Reply { id, result }, value_json, ctx);
    }
}
