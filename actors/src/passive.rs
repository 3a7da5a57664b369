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
use std::sync::Arc;

/// A key with a live value and no actor: all that an actor needs to take
/// it up again. Keys with subscribers, a pending expiry (`ttl_ms`) or a
/// write not yet on disk always have an actor.
#[derive(Debug)]
pub struct Passive {
    /// The last write, always with a value. Shared, never copied, by every
    /// `get` reply and replay, so its JSON rendering is made at most once.
    pub(crate) update: Arc<Update>,
    /// The session (outbox id) whose end deletes the key: an ephemeral `set`.
    pub(crate) owner: Option<u64>,
    /// Whether the data file holds the key.
    pub(crate) persisted: bool,
}

impl Passive {
    /// Keeps the actor's last write, if it has a value.
    pub(crate) fn new(update: Arc<Update>, owner: Option<u64>, persisted: bool) -> Option<Passive> {
        update.value.as_ref()?;
        Some(Passive {
            update,
            owner,
            persisted,
        })
    }

    /// The rev of the value.
    pub(crate) fn rev(&self) -> u64 {
        self.update.rev
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

impl KeyMessage for crate::backplane::Mirror {
    /// A change no newer than the key at rest (the echo of this server's
    /// own write) changes nothing, and needs no actor.
    fn at_rest(self, _key: &Arc<str>, rest: &Passive) -> Result<(), Self> {
        if self.rev <= rest.rev() {
            return Ok(());
        }
        Err(self)
    }
}
impl KeyMessage for Del {}
impl KeyMessage for Attach {}

impl KeyMessage for Get {
    fn at_rest(self, _key: &Arc<str>, rest: &Passive) -> Result<(), Self> {
        self.reply.send(Ok(Done::Value(rest.update.clone())));
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
