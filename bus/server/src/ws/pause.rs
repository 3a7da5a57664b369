//! Pausing a session's input without pausing its output. While an actix
//! context waits (`ctx.wait`) it reads no frames, but it handles no `Wake`
//! either; a pause that did not write meanwhile could wait forever on work
//! that waits for the client (a replay goes at the pace the client reads).
//! So each pause also wakes when the outbox has items, writes a turn, and
//! goes on waiting.

use super::WsSession;
use actix::prelude::*;
use actix_web_actors::ws::WebsocketContext;
use ipcbus_actors::Outbox;
use std::sync::Arc;

/// What a pause waits for.
#[derive(Clone, Copy)]
pub(super) enum Until {
    /// No request of the session in flight (`keys` reads its own writes).
    Idle,
    /// Fewer than `max_inflight` requests in flight.
    Room,
    /// The outbox within its byte budget (after a `keys` reply).
    UnderBudget,
}

impl Until {
    async fn reached(self, outbox: &Outbox) {
        match self {
            Until::Idle => outbox.idle().await,
            Until::Room => outbox.room().await,
            Until::UnderBudget => outbox.under_budget().await,
        }
    }
}

impl WsSession {
    /// Reads no request until `until`, writing output meanwhile; then runs `then`.
    pub(super) fn pause<F>(&mut self, until: Until, then: F, ctx: &mut WebsocketContext<Self>)
    where
        F: FnOnce(&mut Self, &mut WebsocketContext<Self>) + 'static,
    {
        let outbox: Arc<Outbox> = self.session.outbox.clone();
        ctx.wait(
            async move {
                tokio::select! {
                    biased;
                    () = until.reached(&outbox) => true,
                    () = async {
                        outbox.ready().await;
                        // As `drain_later` does: the turn runs once the
                        // connection has taken the last one.
                        tokio::task::yield_now().await;
                    } => false,
                }
            }
            .into_actor(self)
            .map(move |reached, act, ctx| {
                if reached {
                    then(act, ctx);
                } else {
                    act.drain(ctx);
                    if !act.closing {
                        act.pause(until, then, ctx);
                    }
                }
            }),
        );
    }
}
