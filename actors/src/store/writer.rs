//! The writer thread: commits queued jobs in batches, one fsync each, and
//! tells each job's key actor when it is on disk.

use super::file::{KEYS, META};
use super::{Durable, Record, MAX_BATCH};
use actix::prelude::*;
use redb::Database;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

pub(super) enum Job {
    Put {
        key: Arc<str>,
        record: Record,
        seq: u64,
        done: Recipient<Durable>,
    },
    Remove {
        key: Arc<str>,
        seq: u64,
        done: Recipient<Durable>,
    },
    Close {
        done: tokio::sync::oneshot::Sender<()>,
    },
}

pub(super) fn write_loop(db: Database, rx: &mpsc::Receiver<Job>, rev: &AtomicU64) {
    let mut batch = Vec::with_capacity(64);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let close = commit(&db, &mut batch, rev.load(Ordering::Acquire));
        if let Some(done) = close {
            // Release the file (and its lock) before saying it is closed,
            // so a new server can open it at once.
            drop(db);
            let _ = done.send(());
            return;
        }
    }
}

/// Commits one batch and answers its jobs. Returns the closer, if the batch
/// ended with `Close`.
fn commit(
    db: &Database,
    batch: &mut Vec<Job>,
    rev: u64,
) -> Option<tokio::sync::oneshot::Sender<()>> {
    let mut close = None;
    let result = (|| -> Result<(), redb::Error> {
        let tx = db.begin_write()?;
        {
            let mut keys = tx.open_table(KEYS)?;
            let mut meta = tx.open_table(META)?;
            for job in batch.iter() {
                match job {
                    Job::Put { key, record, .. } => {
                        keys.insert(&**key, &record.encode()[..])?;
                    }
                    Job::Remove { key, .. } => {
                        keys.remove(&**key)?;
                    }
                    Job::Close { .. } => {
                        meta.insert("clean", &1u64.to_le_bytes()[..])?;
                    }
                }
            }
            // Revs are handed out before their jobs are queued, so the
            // counter is at least every rev in this batch.
            meta.insert("rev", &rev.to_le_bytes()[..])?;
        }
        tx.commit()?;
        Ok(())
    })();
    let error: Option<Arc<str>> = result.err().map(|e| {
        tracing::error!("cannot write the data file: {e}");
        e.to_string().into()
    });
    for job in batch.drain(..) {
        match job {
            Job::Put { seq, done, .. } | Job::Remove { seq, done, .. } => done.do_send(Durable {
                seq,
                error: error.clone(),
            }),
            Job::Close { done, .. } => close = Some(done),
        }
    }
    close
}
