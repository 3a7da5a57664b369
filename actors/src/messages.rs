//! The messages a key actor takes, and where their outcomes go.

use crate::outbox::{Done, Out, Outbox};
use actix::prelude::*;
use bytes::Bytes;
use ipcbus_protocol::{ErrorBody, Life};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

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
    pub(crate) remaining: AtomicUsize,
    pub(crate) subscriber: Subscriber,
    /// Rung when only the last count is left (a walk waits for its
    /// `Attach`es to land before its next turn).
    settled: Notify,
}

impl SyncCountdown {
    pub(crate) fn new(remaining: usize, subscriber: Subscriber) -> Arc<SyncCountdown> {
        Arc::new(SyncCountdown {
            remaining: AtomicUsize::new(remaining),
            subscriber,
            settled: Notify::new(),
        })
    }

    /// One more replay to wait for.
    pub(crate) fn add(&self) {
        self.remaining.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn done(&self) {
        match self.remaining.fetch_sub(1, Ordering::AcqRel) {
            1 => {
                let s = &self.subscriber;
                s.outbox.push(Out::Synced { sub: s.sub });
            }
            2 => self.settled.notify_waiters(),
            _ => {}
        }
    }

    /// Resolves once at most one count is left.
    pub(crate) async fn settled(&self) {
        loop {
            let notified = self.settled.notified();
            if self.remaining.load(Ordering::Acquire) <= 1 {
                return;
            }
            notified.await;
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
    /// Persistence, session binding and expiry of the value.
    pub life: Life,
    /// Where the outcome goes.
    pub reply: ReplyTo,
}

/// The session with this outbox id has ended: delete the key if that
/// session's ephemeral `set` is still its last write.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    /// The ended session's outbox id.
    pub owner: u64,
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
    /// Sent by a wildcard's walk: the subscriber may be there already (an
    /// actor started meanwhile took it from the pattern index, and
    /// replayed), and then nothing is replayed or added.
    pub(crate) walked: bool,
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
