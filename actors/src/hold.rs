//! `Hold`: a key actor's output, held back while a persisted write of the
//! key is not yet on disk, so that nobody (neither the writer nor a
//! subscriber) hears of a persisted write before it would survive a crash,
//! and every later output of the key stays in order behind it.

use crate::messages::{ReplyTo, SyncCountdown};
use crate::outbox::{Done, Out, Outbox};
use crate::registry::KeyState;
use ipcbus_protocol::{ErrorBody, ErrorCode};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One output of a key actor.
pub(crate) enum Held {
    /// An event for a subscriber.
    Push(Arc<Outbox>, Out),
    /// A request's outcome; `seq` is set on the persisted write it answers.
    Reply {
        reply: ReplyTo,
        result: Result<Done, ErrorBody>,
        seq: Option<u64>,
    },
    /// A subscriber's `Attach` or `Detach` is finished.
    Complete(Arc<Outbox>),
    /// A new subscription's replay from this key is queued.
    Synced(Arc<SyncCountdown>),
    /// The rev `keys` lists for the key (0: not listed).
    Listed(Arc<KeyState>, u64),
}

impl Held {
    fn run(self, failed: Option<(u64, &str)>) {
        match self {
            Held::Push(outbox, out) => outbox.push(out),
            Held::Reply { reply, result, seq } => {
                let result = match failed {
                    Some((bad, why)) if seq == Some(bad) && result.is_ok() => Err(ErrorBody::new(
                        ErrorCode::Internal,
                        format!("applied in memory, but not written to disk: {why}"),
                    )),
                    _ => result,
                };
                reply.send(result);
            }
            Held::Complete(outbox) => outbox.complete(),
            Held::Synced(sync) => sync.done(),
            Held::Listed(state, rev) => state.live_rev.store(rev, Ordering::Release),
        }
    }
}

/// Outputs waiting for the data file. Bounded by the writes in flight: each
/// held item belongs to a request some session counts against its
/// `max_inflight`, or is an event of such a write (one per subscriber).
#[derive(Default)]
pub(crate) struct Hold {
    /// Sequence number of the last persisted job of this key.
    until: u64,
    /// Highest sequence number known to be on disk.
    released: u64,
    /// Each item with the job it waits for.
    queue: VecDeque<(u64, Held)>,
}

impl Hold {
    /// Whether outputs are being held.
    pub(crate) fn is_holding(&self) -> bool {
        self.until > self.released
    }

    /// Holds outputs from now until job `seq` is on disk.
    pub(crate) fn wait_for(&mut self, seq: u64) {
        self.until = self.until.max(seq);
    }

    /// Runs `item` now, or queues it behind the pending jobs.
    pub(crate) fn emit(&mut self, item: Held) {
        if self.is_holding() {
            self.queue.push_back((self.until, item));
        } else {
            item.run(None);
        }
    }

    /// Job `seq` is on disk (or failed with `error`): runs what waited for it.
    pub(crate) fn release(&mut self, seq: u64, error: Option<&str>) {
        self.released = self.released.max(seq);
        let failed = error.map(|why| (seq, why));
        while self
            .queue
            .front()
            .is_some_and(|(needs, _)| *needs <= self.released)
        {
            if let Some((_, item)) = self.queue.pop_front() {
                item.run(failed);
            }
        }
    }
}
