//! `Passive`: a key at rest, kept in the registry's map without an actor,
//! and [`KeyMessage`], which lets such a key answer some messages itself.
//!
//! A key actor costs about a kilobyte (mailbox, context, task, state), too
//! much for the many keys that just hold a value. So an actor with nothing
//! to do (no subscriber, no pending expiry, no output held for the data
//! file, no queued message) hands its value back to the registry and stops;
//! the next message that needs an actor starts a new one from it.

use crate::messages::{Attach, Del, Detach, Get, Release, Set};
use crate::outbox::Done;
use crate::update::Update;
use actix::prelude::*;
use bytes::Bytes;
use std::sync::Arc;

/// A key with a live value and no actor: all that an actor needs to take
/// it up again. Keys with subscribers, a pending expiry (`ttl_ms`) or a
/// write not yet on disk always have an actor.
#[derive(Debug)]
pub struct Passive {
    /// The value, as MessagePack (boxed rather than `Bytes`: 16 bytes less per key).
    pub(crate) value: Box<[u8]>,
    /// The rev of the value.
    pub(crate) rev: u64,
    /// The session (outbox id) whose end deletes the key: an ephemeral `set`.
    pub(crate) owner: Option<u64>,
    /// Whether the data file holds the key.
    pub(crate) persisted: bool,
}

impl Passive {
    /// Takes the value out of the actor's last write, without copying it
    /// when nobody else holds that write any more.
    pub(crate) fn new(update: Arc<Update>, owner: Option<u64>, persisted: bool) -> Option<Passive> {
        let (rev, value) = match Arc::try_unwrap(update) {
            Ok(update) => (update.rev, update.value?),
            Err(shared) => (shared.rev, shared.value.clone()?),
        };
        Some(Passive {
            value: Vec::from(value).into_boxed_slice(),
            rev,
            owner,
            persisted,
        })
    }

    /// The value as a write of `key`, for an actor or a `get` reply.
    pub(crate) fn update(&self, key: &Arc<str>) -> Update {
        let value = Bytes::copy_from_slice(&self.value);
        Update::new(key.clone(), self.rev, Some(value))
    }

    /// The value as a write of `key`, moved rather than copied.
    pub(crate) fn into_update(self, key: &Arc<str>) -> Update {
        Update::new(key.clone(), self.rev, Some(Bytes::from(self.value)))
    }
}

/// A message for a key actor. A key at rest ([`Passive`]) may answer it
/// without starting an actor; the default is to start one.
pub trait KeyMessage: Message<Result = ()> + Send + Sized + 'static {
    /// Handles the message for a key at rest, or hands it back when the
    /// key needs its actor. Called under the registry's lock, so nothing
    /// else touches the key meanwhile.
    fn at_rest(self, _key: &Arc<str>, _rest: &Passive) -> Result<(), Self> {
        Err(self)
    }
}

impl KeyMessage for Set {}
impl KeyMessage for Del {}
impl KeyMessage for Attach {}

impl KeyMessage for Get {
    fn at_rest(self, key: &Arc<str>, rest: &Passive) -> Result<(), Self> {
        let update = Arc::new(rest.update(key));
        self.reply.send(Ok(Done::Value(update)));
        Ok(())
    }
}

impl KeyMessage for Detach {
    /// A key at rest has no subscriber to remove.
    fn at_rest(self, _key: &Arc<str>, _rest: &Passive) -> Result<(), Self> {
        self.outbox.complete();
        Ok(())
    }
}

impl KeyMessage for Release {
    /// Only the owner's end deletes the key; that needs the actor.
    fn at_rest(self, _key: &Arc<str>, rest: &Passive) -> Result<(), Self> {
        if rest.owner == Some(self.owner) {
            Err(self)
        } else {
            Ok(())
        }
    }
}
