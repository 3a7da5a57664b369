//! A key actor with a backplane (docs/scaling.md §5): a `set` or `del` is
//! handed to the [`Backplane`], and the actor handles nothing else until it
//! answers (as it waits for the data file on the single-machine path).
//! Then the write is applied to the key at the rev the backplane gave, and
//! the request answered. [`Mirror`] messages from the backplane's feed
//! apply the writes of every server, this one's included, if newer than
//! what the key has: the feed's message of a write this actor applied on
//! its acknowledgement waits in the mailbox behind it, and finds it done.

use crate::backplane::{Backplane, Expect, Mirror, Put, WriteError};
use crate::key_actor::KeyActor;
use crate::messages::{Del, Release, Set};
use crate::outbox::Done;
use crate::store::now_ms;
use crate::update::{Update, Written};
use actix::prelude::*;
use bytes::Bytes;
use ipcbus_protocol::{ErrorBody, ErrorCode};
use std::time::Duration;

/// How long a deletion the backplane did not take waits to be tried again
/// (the end of an ephemeral key's session, an expiry).
const DELETE_RETRY: Duration = Duration::from_secs(1);

impl KeyActor {
    /// The rev of the key's last write, value or deletion (0: none known).
    fn last_rev(&self) -> u64 {
        self.current.as_ref().map_or(0, |u| u.rev)
    }

    /// Applies a write the backplane numbered `rev`, if it is newer.
    fn apply_shared(&mut self, rev: u64, value: Option<Bytes>, written: Written) {
        if rev <= self.last_rev() || (value.is_none() && self.live_rev() == 0) {
            return;
        }
        if value.is_some() && self.live_rev() == 0 {
            // Counted as applied: `max_keys` was checked before the write
            // went out, and other servers' writes are there already.
            self.registry.restore_live_key();
        }
        self.registry.saw_rev(rev);
        let _no_disk = self.apply(Update::new(self.key.clone(), rev, value, written), false);
    }

    /// A `set` through the backplane.
    pub(crate) fn set_through(
        &mut self,
        backplane: &dyn Backplane,
        msg: Set,
        ctx: &mut Context<Self>,
    ) {
        let (life, reply) = (msg.life, msg.reply);
        let id = reply.outbox.id();
        let owned_before = self.owner == Some(id);
        if life.ephemeral && !self.registry.claim(&self.key, &reply.outbox) {
            let e = ErrorBody::new(ErrorCode::Internal, "the session has ended");
            return self.finish(reply, Err(e), None, ctx);
        }
        let undo_claim = move |act: &mut KeyActor| {
            if life.ephemeral && !owned_before && act.owner != Some(id) {
                act.registry.unclaim(&act.key, id);
            }
        };
        if self.live_rev() == 0 && self.registry.is_full() {
            undo_claim(self);
            let why = format!(
                "the store holds max_keys ({}) keys; delete some first",
                self.registry.max_keys()
            );
            return self.finish(reply, Err(ErrorBody::new(ErrorCode::Limit, why)), None, ctx);
        }
        let expect = match msg.if_rev {
            None => Expect::Any,
            Some(0) => Expect::Absent,
            Some(rev) => Expect::Rev(rev),
        };
        let put = Put {
            value: msg.value.clone(),
            expect,
            ttl_ms: life.ttl_ms,
            ephemeral: life.ephemeral,
        };
        let pending = backplane.put(self.key.clone(), put, self.live_rev());
        let value = msg.value;
        ctx.wait(
            fut::wrap_future(pending).map(move |result, act: &mut KeyActor, ctx| {
                let result = match result {
                    Ok(rev) if rev > act.last_rev() => {
                        act.set_owner(life.ephemeral.then_some(id));
                        act.set_expiry(life.ttl_ms, ctx);
                        let written =
                            Written::new(now_ms(), act.expires_at_ms, true, life.ephemeral);
                        act.apply_shared(rev, Some(value), written);
                        Ok(Done::Rev(rev))
                    }
                    Ok(rev) => {
                        undo_claim(act);
                        Ok(Done::Rev(rev))
                    }
                    Err(e) => {
                        undo_claim(act);
                        Err(body(&e))
                    }
                };
                act.finish(reply, result, None, ctx);
            }),
        );
    }

    /// A `del` through the backplane.
    pub(crate) fn del_through(
        &mut self,
        backplane: &dyn Backplane,
        msg: Del,
        ctx: &mut Context<Self>,
    ) {
        let pending = backplane.delete(self.key.clone(), msg.if_rev, self.live_rev());
        ctx.wait(
            fut::wrap_future(pending).map(move |result, act: &mut KeyActor, ctx| {
                let result = result.map(|rev| {
                    act.delete_acked(rev, ctx);
                    Done::Rev(rev)
                });
                act.finish(msg.reply, result.map_err(|e| body(&e)), None, ctx);
            }),
        );
    }

    /// Deletes the key's value through the backplane, if it is still at
    /// `rev`: the end of an ephemeral key's session, an expiry. Nobody
    /// waits for the outcome; a key written since stays.
    pub(crate) fn expire_through(
        &mut self,
        backplane: &dyn Backplane,
        rev: u64,
        ctx: &mut Context<Self>,
    ) {
        let pending = backplane.delete(self.key.clone(), Some(rev), rev);
        let key = self.key.clone();
        ctx.wait(
            fut::wrap_future(pending).map(move |result, act: &mut KeyActor, ctx| {
                match result {
                    Ok(rev) => act.delete_acked(rev, ctx),
                    Err(WriteError::Conflict { .. } | WriteError::NotFound) => {}
                    Err(e) => {
                        // Tried again, as long as the key still has that value.
                        tracing::warn!("backplane: cannot delete {key} yet: {e}");
                        // Any countdown of the value is moot: it is being deleted.
                        if let Some(handle) = act.expiry.take() {
                            ctx.cancel_future(handle);
                        }
                        act.expiry = Some(ctx.run_later(DELETE_RETRY, move |act, ctx| {
                            act.expiry = None;
                            let shared = act.registry.backplane(&act.key).cloned();
                            match shared {
                                Some(backplane) if act.live_rev() == rev => {
                                    act.expire_through(&*backplane, rev, ctx);
                                }
                                _ => act.retire_if_idle(ctx),
                            }
                        }));
                    }
                }
                act.retire_if_idle(ctx);
            }),
        );
    }

    /// Applies a deletion of this server's that the backplane acknowledged
    /// at `rev`. The feed may not have brought the key's earlier writes
    /// yet; once the key has left the registry (no subscriber keeps its
    /// deletion), one of them would bring back a value that is gone, so
    /// the registry holds the deletion's rev until the feed reaches it.
    fn delete_acked(&mut self, rev: u64, ctx: &mut Context<Self>) {
        if rev > self.last_rev() {
            // Also when this server never had the value: the bucket had it.
            self.registry.deleted_ahead(&self.key, rev);
        }
        self.delete_shared(rev, ctx);
    }

    /// Applies a deletion the backplane numbered `rev`.
    fn delete_shared(&mut self, rev: u64, ctx: &mut Context<Self>) {
        if rev > self.last_rev() && self.live_rev() != 0 {
            self.set_expiry(None, ctx);
            self.set_owner(None);
            self.apply_shared(rev, None, Written::default());
        }
    }

    /// The end of the session that owns the key, with a backplane.
    pub(crate) fn release_through(
        &mut self,
        backplane: &dyn Backplane,
        msg: &Release,
        ctx: &mut Context<Self>,
    ) {
        if self.owner == Some(msg.owner) && self.live_rev() != 0 {
            let rev = self.live_rev();
            return self.expire_through(backplane, rev, ctx);
        }
        self.retire_if_idle(ctx);
    }
}

/// What a client is told when the backplane did not take a write.
fn body(e: &WriteError) -> ErrorBody {
    match *e {
        WriteError::Conflict { current } => ErrorBody::rev_mismatch(current),
        WriteError::NotFound => ErrorBody::not_found(),
        WriteError::Refused(_) => ErrorBody::new(ErrorCode::Storage, e.to_string()),
        WriteError::Unavailable(_) => ErrorBody::new(ErrorCode::Unavailable, e.to_string()),
    }
}

impl Handler<Mirror> for KeyActor {
    type Result = ();

    fn handle(&mut self, msg: Mirror, ctx: &mut Context<Self>) {
        self.received();
        match msg.value {
            Some(value) if msg.rev > self.last_rev() => {
                // This server's ephemeral write that the key did not apply
                // on its acknowledgement (its `set` timed out): the live
                // session that holds the key made it, or no session holds it.
                let held = msg.own
                    && self
                        .owner
                        .is_some_and(|session| self.registry.owns(session, &self.key));
                if !held {
                    // Another server's write: this server's tie goes.
                    self.set_owner(None);
                }
                self.set_expiry(None, ctx);
                let written = Written::new(msg.at_ms, msg.expires_at_ms, true, msg.ephemeral);
                self.apply_shared(msg.rev, Some(value), written);
                if msg.own && !held {
                    if let Some(backplane) = self.registry.backplane(&self.key).cloned() {
                        self.expire_through(&*backplane, msg.rev, ctx);
                    }
                }
            }
            Some(_) => {}
            None => self.delete_shared(msg.rev, ctx),
        }
        self.retire_if_idle(ctx);
    }
}
