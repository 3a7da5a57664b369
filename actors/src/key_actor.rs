//! `KeyActor`: owns one key's last value, its subscribers, its expiry and
//! its place in the data file, while the key has something to do; at rest,
//! the key is a [`Passive`] entry of the registry instead.

use crate::hold::{Held, Hold};
use crate::messages::{Attach, Del, Detach, Get, Release, ReplyTo, Set, Subscriber};
use crate::outbox::{Done, Out};
use crate::passive::Passive;
use crate::registry::{KeyState, Registry};
use crate::store::{now_ms, Disk, Record};
use crate::update::{Update, Written};
use actix::prelude::*;
use bytes::Bytes;
use ipcbus_protocol::{ErrorBody, ErrorCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long an expiry that the data file refused waits before it is tried again.
const DISK_RETRY: Duration = Duration::from_secs(1);

/// A key's state before a write, to put back if the data file refuses it.
pub(crate) struct Snapshot {
    current: Option<Arc<Update>>,
    owner: Option<u64>,
    persisted: bool,
    expires_at_ms: Option<u64>,
}

/// The actor that owns one key. It stops itself once it has nothing to
/// do: no subscriber, no pending expiry, no output held for the data file
/// and no queued message. A key with a value then stays in the registry at
/// rest ([`Passive`]); a deleted one leaves it.
pub struct KeyActor {
    pub(crate) key: Arc<str>,
    pub(crate) state: Arc<KeyState>,
    pub(crate) registry: Registry,
    /// The last write: a value, or a deletion seen while subscribers remained.
    pub(crate) current: Option<Arc<Update>>,
    pub(crate) subscribers: Vec<Subscriber>,
    /// The session (outbox id) whose end deletes the key: an ephemeral `set`.
    pub(crate) owner: Option<u64>,
    /// Whether the data file holds this key.
    pub(crate) persisted: bool,
    /// When the live value expires, in ms since the Unix epoch.
    pub(crate) expires_at_ms: Option<u64>,
    pub(crate) expiry: Option<SpawnHandle>,
    pub(crate) hold: Hold,
}

impl Actor for KeyActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A key restored from the data file resumes its countdown.
        if let Some(at) = self.expires_at_ms {
            self.arm_expiry(Duration::from_millis(at.saturating_sub(now_ms())), ctx);
        }
    }
}

impl KeyActor {
    /// A key with no value yet, and the wildcard subscribers that match it.
    pub(crate) fn new(key: Arc<str>, registry: Registry, subscribers: Vec<Subscriber>) -> KeyActor {
        KeyActor {
            key,
            state: Arc::default(),
            registry,
            current: None,
            subscribers,
            owner: None,
            persisted: false,
            expires_at_ms: None,
            expiry: None,
            hold: Hold::default(),
        }
    }

    pub(crate) fn live_rev(&self) -> u64 {
        match &self.current {
            Some(u) if u.value.is_some() => u.rev,
            _ => 0,
        }
    }

    /// Bookkeeping at the start of every handler: one queued message fewer.
    pub(crate) fn received(&self) {
        self.state.queued.fetch_sub(1, Ordering::AcqRel);
    }

    /// Applies a write; with `persist`, the data file gets the new value
    /// (otherwise it loses any older one). Returns the rev and, when the data
    /// file changes, the job that output now waits for: the caller must
    /// hand it to [`KeyActor::await_disk`] once it has emitted its reply.
    fn write(&mut self, value: Option<Bytes>, persist: bool) -> (u64, Option<Disk>) {
        let rev = self.registry.next_rev();
        // Set has called set_owner and set_expiry already.
        let written = if value.is_some() {
            let persist = persist && self.registry.store().is_some();
            Written::new(now_ms(), self.expires_at_ms, persist, self.owner.is_some())
        } else {
            Written::default()
        };
        let disk = self.apply(Update::new(self.key.clone(), rev, value, written), persist);
        (rev, disk)
    }

    /// Makes `update` the key's state: counts, the data file, the listing
    /// and the events to subscribers. See [`KeyActor::write`].
    pub(crate) fn apply(&mut self, update: Update, persist: bool) -> Option<Disk> {
        let was_live = self.live_rev() != 0;
        let rev = update.rev;
        let update = Arc::new(update);
        let live = update.value.is_some();
        if !live {
            // Writes are not counted: every write and delete takes a rev,
            // so writes are the revs taken less the deletes (`Stats::writes`).
            let stats = self.registry.stats();
            stats.deletes.fetch_add(1, Ordering::Relaxed);
        }
        if was_live && !live {
            self.registry.remove_live_key();
        }
        let disk = self.save(&update, persist && live);
        // What `keys` lists, published in order with the rest of the output.
        let listed = if live { rev } else { 0 };
        let hold = &mut self.hold;
        // The fast path, without holding, clones no outbox handle: fan-out
        // is the hot path.
        if hold.is_holding() {
            hold.emit(Held::Listed(self.state.clone(), listed));
        } else {
            self.state.live_rev.store(listed, Ordering::Release);
        }
        self.subscribers.retain(|s| {
            if s.outbox.is_closed() {
                return false;
            }
            let out = Out::Event {
                sub: s.sub,
                update: update.clone(),
            };
            if hold.is_holding() {
                hold.emit(Held::Push(s.outbox.clone(), out));
            } else {
                s.outbox.push(out);
            }
            true
        });
        self.current = Some(update);
        disk
    }

    /// Brings the data file in line with `update`; output is held from now
    /// until the returned job is done.
    fn save(&mut self, update: &Update, persist: bool) -> Option<Disk> {
        let store = self.registry.store()?;
        let disk = match (persist, &update.value) {
            (true, Some(value)) => {
                let record = Record {
                    rev: update.rev,
                    expires_at_ms: self.expires_at_ms,
                    value: value.clone(),
                };
                store.put(self.key.clone(), record)
            }
            _ if self.persisted => store.remove(self.key.clone()),
            _ => return None,
        };
        self.persisted = persist;
        self.hold.start();
        Some(disk)
    }

    /// What a write may have to undo, taken before it changes anything.
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            current: self.current.clone(),
            owner: self.owner,
            persisted: self.persisted,
            expires_at_ms: self.expires_at_ms,
        }
    }

    /// Handles nothing else until `disk` is done: then sends the held
    /// output, or, if the data file could not take the write, undoes it
    /// back to `before`, so that memory and disk agree.
    fn await_disk(&mut self, disk: Disk, before: Snapshot, ctx: &mut Context<Self>) {
        ctx.wait(disk.into_actor(self).map(move |outcome, act, ctx| {
            match outcome.unwrap_or_else(|_| Err("the store has stopped".into())) {
                Ok(()) => act.hold.release(),
                Err(why) => {
                    act.hold.fail(&why);
                    act.undo(before, ctx);
                }
            }
            act.retire_if_idle(ctx);
        }));
    }

    /// Puts the key back as it was before a write the data file refused.
    /// Its listing and events were held, so only the actor's own state
    /// and the registry's counts change back.
    fn undo(&mut self, before: Snapshot, ctx: &mut Context<Self>) {
        let live_before = before.current.as_ref().is_some_and(|u| u.value.is_some());
        match (live_before, self.live_rev() != 0) {
            (true, false) => self.registry.restore_live_key(),
            (false, true) => self.registry.remove_live_key(),
            _ => {}
        }
        if before.owner != self.owner {
            self.set_owner(before.owner);
            if let Some(owner) = before.owner {
                self.registry.reclaim(&self.key, owner);
            }
        }
        self.current = before.current;
        self.persisted = before.persisted;
        if let Some(handle) = self.expiry.take() {
            ctx.cancel_future(handle);
        }
        self.expires_at_ms = before.expires_at_ms;
        if let Some(at) = before.expires_at_ms {
            // An expiry the disk refused is tried again a little later.
            let left = at.saturating_sub(now_ms());
            let after = if left == 0 {
                DISK_RETRY
            } else {
                Duration::from_millis(left)
            };
            self.arm_expiry(after, ctx);
        }
    }

    /// Makes `owner` the session whose end deletes the key.
    pub(crate) fn set_owner(&mut self, owner: Option<u64>) {
        if let Some(old) = self.owner.filter(|&old| Some(old) != owner) {
            self.registry.unclaim(&self.key, old);
        }
        self.owner = owner;
    }

    /// Deletes the live value: subscribers get a `del` and the rev advances.
    fn delete(&mut self, ctx: &mut Context<Self>) -> (u64, Option<Disk>) {
        self.set_expiry(None, ctx);
        self.set_owner(None);
        self.write(None, false)
    }

    pub(crate) fn set_expiry(&mut self, ttl_ms: Option<u64>, ctx: &mut Context<Self>) {
        if let Some(handle) = self.expiry.take() {
            ctx.cancel_future(handle);
        }
        self.expires_at_ms = ttl_ms.map(|t| now_ms().saturating_add(t));
        if let Some(t) = ttl_ms {
            self.arm_expiry(Duration::from_millis(t), ctx);
        }
    }

    fn arm_expiry(&mut self, after: Duration, ctx: &mut Context<Self>) {
        self.expiry = Some(ctx.run_later(after, |act, ctx| {
            act.expiry = None;
            if let Some(backplane) = act.registry.backplane(&act.key).cloned() {
                // Deleted through the backplane, unless written since.
                let rev = act.live_rev();
                if rev != 0 {
                    return act.expire_through(&*backplane, rev, ctx);
                }
            } else if act.live_rev() != 0 {
                let before = act.snapshot();
                if let (_, Some(disk)) = act.delete(ctx) {
                    return act.await_disk(disk, before, ctx);
                }
            }
            act.retire_if_idle(ctx);
        }));
    }

    fn check(&self, if_rev: Option<u64>) -> Result<(), ErrorBody> {
        let current = self.live_rev();
        match if_rev {
            Some(want) if want != current => Err(ErrorBody::rev_mismatch(current)),
            _ => Ok(()),
        }
    }

    /// Sends a request's outcome, after the data file has its write when
    /// `disk` is set.
    pub(crate) fn finish(
        &mut self,
        reply: ReplyTo,
        result: Result<Done, ErrorBody>,
        disk: Option<(Disk, Snapshot)>,
        ctx: &mut Context<Self>,
    ) {
        self.hold.emit(Held::Reply { reply, result });
        match disk {
            Some((disk, before)) => self.await_disk(disk, before, ctx),
            None => self.retire_if_idle(ctx),
        }
    }

    /// Stops the actor if it has nothing to do, leaving the key at rest
    /// (or gone, without a value).
    pub(crate) fn retire_if_idle(&mut self, ctx: &mut Context<Self>) {
        if !self.subscribers.is_empty()
            || self.hold.is_holding()
            || self.expiry.is_some()
            || self.state.queued.load(Ordering::Acquire) != 0
        {
            return;
        }
        let (current, owner, persisted) = (&mut self.current, self.owner, self.persisted);
        let rest = || {
            let update = current.take()?;
            Passive::new(update, owner, persisted)
        };
        if self.registry.retire(&self.key, &self.state, rest) {
            ctx.stop();
        }
    }
}

impl Handler<Set> for KeyActor {
    type Result = ();

    fn handle(&mut self, msg: Set, ctx: &mut Context<Self>) {
        self.received();
        if let Some(backplane) = self.registry.backplane(&self.key).cloned() {
            return self.set_through(&*backplane, msg, ctx);
        }
        if let Err(e) = self.check(msg.if_rev) {
            return self.finish(msg.reply, Err(e), None, ctx);
        }
        let before = self.snapshot();
        let life = msg.life;
        // An ephemeral key of a session that has ended is not written: the
        // end of its session would have deleted it at once.
        if life.ephemeral && !self.registry.claim(&self.key, &msg.reply.outbox) {
            let e = ErrorBody::new(ErrorCode::Internal, "the session has ended");
            return self.finish(msg.reply, Err(e), None, ctx);
        }
        if self.live_rev() == 0 && !self.registry.add_live_key() {
            if life.ephemeral {
                // A key without a value has no owner: the claim was this set's.
                self.registry.unclaim(&self.key, msg.reply.outbox.id());
            }
            let msg_ = format!(
                "the store holds max_keys ({}) keys; delete some first",
                self.registry.max_keys()
            );
            let e = ErrorBody::new(ErrorCode::Limit, msg_);
            return self.finish(msg.reply, Err(e), None, ctx);
        }
        self.set_owner(life.ephemeral.then(|| msg.reply.outbox.id()));
        self.set_expiry(life.ttl_ms, ctx);
        let persist = !life.ephemeral && (life.persist || self.registry.persist_all());
        let (rev, disk) = self.write(Some(msg.value), persist);
        let disk = disk.map(|d| (d, before));
        self.finish(msg.reply, Ok(Done::Rev(rev)), disk, ctx);
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
        self.finish(msg.reply, result, None, ctx);
    }
}

impl Handler<Del> for KeyActor {
    type Result = ();

    fn handle(&mut self, msg: Del, ctx: &mut Context<Self>) {
        self.received();
        if let Some(backplane) = self.registry.backplane(&self.key).cloned() {
            return self.del_through(&*backplane, msg, ctx);
        }
        let (result, disk) = if self.live_rev() == 0 {
            (Err(ErrorBody::not_found()), None)
        } else if let Err(e) = self.check(msg.if_rev) {
            (Err(e), None)
        } else {
            let before = self.snapshot();
            let (rev, disk) = self.delete(ctx);
            (Ok(Done::Rev(rev)), disk.map(|d| (d, before)))
        };
        self.finish(msg.reply, result, disk, ctx);
    }
}

impl Handler<Release> for KeyActor {
    type Result = ();

    fn handle(&mut self, msg: Release, ctx: &mut Context<Self>) {
        self.received();
        if let Some(backplane) = self.registry.backplane(&self.key).cloned() {
            return self.release_through(&*backplane, &msg, ctx);
        }
        if self.owner == Some(msg.owner) && self.live_rev() != 0 {
            let before = self.snapshot();
            if let (_, Some(disk)) = self.delete(ctx) {
                return self.await_disk(disk, before, ctx);
            }
        }
        self.retire_if_idle(ctx);
    }
}

impl Handler<Attach> for KeyActor {
    type Result = ();

    fn handle(&mut self, msg: Attach, _: &mut Context<Self>) {
        self.received();
        let s = msg.subscriber;
        let there = msg.walked
            && self
                .subscribers
                .iter()
                .any(|x| x.sub == s.sub && Arc::ptr_eq(&x.outbox, &s.outbox));
        let join = !there && !s.outbox.is_closed();
        if let (true, Some(update)) = (join, &self.current) {
            // A deletion is replayed only to a resuming subscriber (`since`):
            // a fresh one never saw the key, so it has nothing to forget.
            let wanted = update.value.is_some() || msg.since.is_some();
            if wanted && update.rev > msg.since.unwrap_or(0) {
                let out = Out::Event {
                    sub: s.sub,
                    update: update.clone(),
                };
                self.hold.emit(Held::Push(s.outbox.clone(), out));
            }
        }
        // `synced` (if this key is the last to replay) is queued before the
        // request counts as finished: a `keys` waiting for the session to be
        // idle must find it already queued.
        if let Some(sync) = msg.sync {
            self.hold.emit(Held::Synced(sync));
        }
        self.hold.emit(Held::Complete(s.outbox.clone()));
        if join {
            self.subscribers.push(s);
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
        self.hold.emit(Held::Complete(msg.outbox));
        self.retire_if_idle(ctx);
    }
}
