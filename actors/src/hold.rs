//! `Hold`: a key actor's output, held back while its write is on its way to
//! the data file, so that nobody (neither the writer nor a subscriber)
//! hears of a write before it would survive a crash. If the data file
//! cannot take it, the write is undone: its events are dropped and its
//! reply says why.
//!
//! A key actor handles nothing else while one of its writes is on its way
//! (`KeyActor::await_disk`), so what is held is the output of that one write.

use crate::messages::{ReplyTo, SyncCountdown};
use crate::outbox::{Done, Out, Outbox};
use crate::registry::KeyState;
use ipcbus_protocol::{ErrorBody, ErrorCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One output of a key actor.
pub(crate) enum Held {
    /// An event for a subscriber.
    Push(Arc<Outbox>, Out),
    /// A request's outcome.
    Reply {
        reply: ReplyTo,
        result: Result<Done, ErrorBody>,
    },
    /// A subscriber's `Attach` or `Detach` is finished.
    Complete(Arc<Outbox>),
    /// A new subscription's replay from this key is queued.
    Synced(Arc<SyncCountdown>),
    /// The rev `keys` lists for the key (0: not listed).
    Listed(Arc<KeyState>, u64),
}

impl Held {
    fn run(self) {
        match self {
            Held::Push(outbox, out) => outbox.push(out),
            Held::Reply { reply, result } => reply.send(result),
            Held::Complete(outbox) => outbox.complete(),
            Held::Synced(sync) => sync.done(),
            Held::Listed(state, rev) => state.live_rev.store(rev, Ordering::Release),
        }
    }
}

/// Outputs waiting for the data file: those of one write (its events, one
/// per subscriber, its reply and its listing).
#[derive(Default)]
pub(crate) struct Hold {
    holding: bool,
    queue: Vec<Held>,
}

impl Hold {
    /// Whether outputs are being held.
    pub(crate) fn is_holding(&self) -> bool {
        self.holding
    }

    /// Holds outputs from now until [`Hold::release`] or [`Hold::fail`].
    pub(crate) fn start(&mut self) {
        self.holding = true;
    }

    /// Runs `item` now, or holds it.
    pub(crate) fn emit(&mut self, item: Held) {
        if self.holding {
            self.queue.push(item);
        } else {
            item.run();
        }
    }

    /// The write is on disk: runs what was held.
    pub(crate) fn release(&mut self) {
        self.holding = false;
        self.queue.drain(..).for_each(Held::run);
    }

    /// The write could not be made durable and is undone: its events and
    /// its listing are dropped, and a successful reply becomes `storage`.
    pub(crate) fn fail(&mut self, why: &str) {
        self.holding = false;
        for item in self.queue.drain(..) {
            match item {
                Held::Push(..) | Held::Listed(..) => {}
                Held::Reply {
                    reply,
                    result: Ok(_),
                } => reply.send(Err(ErrorBody::new(
                    ErrorCode::Storage,
                    format!("not done, the key is as it was: the data file could not be written ({why})"),
                ))),
                other => other.run(),
            }
        }
    }
}
