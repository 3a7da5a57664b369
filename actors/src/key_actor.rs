//! `KeyActor`: owns one key's last value and its subscribers.

use crate::outbox::{Done, Out, Outbox};
use crate::registry::{KeyState, Registry};
use crate::update::Update;
use actix::prelude::*;
use bytes::Bytes;
use ipcbus_protocol::ErrorBody;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Where a request's outcome goes.
#[derive(Debug, Clone)]
pub struct ReplyTo {
    /// The requesting session's outbox.
    pub outbox: Arc<Outbox>,
    /// The request id; without one, only failures are reported.
    pub id: Option<u64>,
}

impl ReplyTo {
    /// Delivers the outcome and marks the request finished.
    pub fn send(self, result: Result<Done, ErrorBody>) {
        self.outbox.reply(self.id, result);
        self.outbox.complete();
    }
}

/// One subscription of one session, as a key actor sees it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The session's outbox.
    pub outbox: Arc<Outbox>,
    /// The subscription id, local to the session.
    pub sub: u64,
}

/// Counts down the key actors still replaying to a new subscription; the
/// last one queues `synced`, after its own replay and everyone else's.
#[derive(Debug)]
pub(crate) struct SyncCountdown {
    pub(crate) remaining: std::sync::atomic::AtomicUsize,
    pub(crate) subscriber: Subscriber,
}

impl SyncCountdown {
    fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let s = &self.subscriber;
            s.outbox.push(Out::Synced { sub: s.sub });
        }
    }
}

/// Write a value.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Set {
    /// One MessagePack value.
    pub value: Bytes,
    /// Compare-and-set: the rev the key must have (0: must not exist).
    pub if_rev: Option<u64>,
    /// Where the outcome goes.
    pub reply: ReplyTo,
}

/// Read the value.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Get {
    /// Where the outcome goes.
    pub reply: ReplyTo,
}

/// Delete the key.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Del {
    /// Compare-and-set: the rev the key must have.
    pub if_rev: Option<u64>,
    /// Where the outcome goes.
    pub reply: ReplyTo,
}

/// Add a subscriber: replay the current value, then send every change.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    /// Who subscribes.
    pub subscriber: Subscriber,
    /// Replay only if the key's rev is greater than this.
    pub since: Option<u64>,
    /// Set when the subscription waits for `synced`.
    pub(crate) sync: Option<Arc<SyncCountdown>>,
}

/// Remove a subscriber.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    /// The session's outbox.
    pub outbox: Arc<Outbox>,
    /// The subscription id.
    pub sub: u64,
}

/// The actor that owns one key. It stops itself (and leaves the registry)
/// once the key is deleted and nobody subscribes to it.
pub struct KeyActor {
    pub(crate) key: Arc<str>,
    pub(crate) state: Arc<KeyState>,
    pub(crate) registry: Registry,
    /// The last write: a value, or a deletion seen while subscribers remained.
    pub(crate) current: Option<Arc<Update>>,
    pub(crate) subscribers: Vec<Subscriber>,
}

impl Actor for KeyActor {
    type Context = Context<Self>;
}

impl KeyActor {
    fn live_rev(&self) -> u64 {
        match &self.current {
            Some(u) if u.value.is_some() => u.rev,
            _ => 0,
        }
    }

    /// Bookkeeping at the start of every handler: one queued message fewer.
    fn received(&self) {
        self.state.queued.fetch_sub(1, Ordering::AcqRel);
    }

    fn write(&mut self, value: Option<Bytes>) -> u64 {
        let was_live = self.live_rev() != 0;
        let rev = self.registry.next_rev();
        let update = Arc::new(Update::new(self.key.clone(), rev, value));
        let live = update.value.is_some();
        self.state
            .live_rev
            .store(if live { rev } else { 0 }, Ordering::Release);
        self.registry.count_live(was_live, live);
        self.subscribers.retain(|s| {
            if s.outbox.is_closed() {
                return false;
            }
            s.outbox.push(Out::Event {
                sub: s.sub,
                update: update.clone(),
            });
            true
        });
        self.current = Some(update);
        rev
    }

    fn check(&self, if_rev: Option<u64>) -> Result<(), ErrorBody> {
        let current = self.live_rev();
        match if_rev {
            Some(want) if want != current => Err(ErrorBody::rev_mismatch(current)),
            _ => Ok(()),
        }
    }

    fn retire_if_idle(&mut self, ctx: &mut Context<Self>) {
        if self.live_rev() == 0
            && self.subscribers.is_empty()
            && self.registry.retire(&self.key, &self.state)
        {
            ctx.stop();
        }
    }
}

impl Handler<Set> for KeyActor {
    type Result = ();

    fn handle(&mut self, msg: Set, ctx: &mut Context<Self>) {
        self.received();
        let result = self
            .check(msg.if_rev)
            .map(|()| Done::Rev(self.write(Some(msg.value))));
        msg.reply.send(result);
        self.retire_if_idle(ctx);
    }
}

impl Handler<Get> for KeyActor {
    type Result = ();

    fn handle(&mut self, msg: Get, ctx: &mut Context<Self>) {
        self.received();
        let result = match &self.current {
            Some(u) if u.value.is_some() => Ok(Done::Value(u.clone())),
            _ => Err(ErrorBody::not_found()),
        };
        msg.reply.send(result);
        self.retire_if_idle(ctx);
    }
}

impl Handler<Del> for KeyActor {
    type Result = ();

    fn handle(&mut self, msg: Del, ctx: &mut Context<Self>) {
        self.received();
        let result = if self.live_rev() == 0 {
            Err(ErrorBody::not_found())
        } else {
            self.check(msg.if_rev).map(|()| Done::Rev(self.write(None)))
        };
        msg.reply.send(result);
        self.retire_if_idle(ctx);
    }
}

impl Handler<Attach> for KeyActor {
    type Result = ();

    fn handle(&mut self, msg: Attach, _: &mut Context<Self>) {
        self.received();
        let s = msg.subscriber;
        if let Some(update) = &self.current {
            // A deletion is replayed only to a resuming subscriber (`since`):
            // a fresh one never saw the key, so it has nothing to forget.
            let wanted = update.value.is_some() || msg.since.is_some();
            if wanted && update.rev > msg.since.unwrap_or(0) {
                s.outbox.push(Out::Event {
                    sub: s.sub,
                    update: update.clone(),
                });
            }
        }
        s.outbox.complete();
        self.subscribers.push(s);
        if let Some(sync) = msg.sync {
            sync.done();
        }
    }
}

impl Handler<Detach> for KeyActor {
    type Result = ();

    fn handle(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        self.received();
        let id = msg.outbox.id();
        self.subscribers
            .retain(|s| !(s.outbox.is_closed() || s.sub == msg.sub && s.outbox.id() == id));
        msg.outbox.complete();
        self.retire_if_idle(ctx);
    }
}
