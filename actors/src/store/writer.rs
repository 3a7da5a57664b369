//! The writer thread: commits queued jobs in batches, one fsync each, tells
//! each job's key actor when it is on disk, and recovers from a failed
//! commit (a full disk) by reopening the file.

use super::file::{open_db, KEYS, META};
use super::{Record, MAX_BATCH};
use redb::Database;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often a writer in trouble tries again while no job comes.
pub(crate) const RETRY: Duration = Duration::from_secs(1);

/// Where a job's outcome goes.
type Done = tokio::sync::oneshot::Sender<Result<(), Arc<str>>>;

pub(super) enum Job {
    Put {
        key: Arc<str>,
        record: Record,
        done: Done,
    },
    Remove {
        key: Arc<str>,
        done: Done,
    },
    Close {
        done: tokio::sync::oneshot::Sender<()>,
    },
}

pub(super) struct Writer {
    /// `None` after a failure, until the file could be opened again.
    db: Option<Database>,
    path: PathBuf,
    rev: Arc<AtomicU64>,
    trouble: Arc<Mutex<Option<Arc<str>>>>,
    on_commit: Arc<OnceLock<CommitHook>>,
}

/// Told how long each commit of a batch took (`Store::on_commit`).
pub type CommitHook = Box<dyn Fn(Duration) + Send + Sync>;

impl Writer {
    pub(super) fn new(
        db: Database,
        path: PathBuf,
        rev: Arc<AtomicU64>,
        trouble: Arc<Mutex<Option<Arc<str>>>>,
        on_commit: Arc<OnceLock<CommitHook>>,
    ) -> Writer {
        Writer {
            db: Some(db),
            path,
            rev,
            trouble,
            on_commit,
        }
    }

    pub(super) fn run(mut self, rx: &mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(64);
        loop {
            // Only a writer in trouble wakes up by itself (to find out
            // whether space is back); otherwise it sleeps until a job comes,
            // so an idle server's writer never runs.
            let next = match self.in_trouble() {
                true => rx.recv_timeout(RETRY),
                false => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            };
            let first = match next {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if self.in_trouble() {
                        // Nothing to write, but find out whether space is back.
                        let _ = self.commit(&[]);
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            let outcome = self.commit(&batch).map_err(|e| -> Arc<str> { e.into() });
            if let Some(hook) = self.on_commit.get() {
                hook(started.elapsed());
            }
            let mut close = None;
            for job in batch.drain(..) {
                match job {
                    Job::Put { done, .. } | Job::Remove { done, .. } => {
                        let _ = done.send(outcome.clone());
                    }
                    Job::Close { done } => close = Some(done),
                }
            }
            if let Some(done) = close {
                // Release the file (and its lock) before saying it is
                // closed, so a new server can open it at once.
                drop(self.db.take());
                let _ = done.send(());
                return;
            }
        }
    }

    fn in_trouble(&self) -> bool {
        self.trouble
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn set_trouble(&self, trouble: Option<Arc<str>>) {
        *self.trouble.lock().unwrap_or_else(|p| p.into_inner()) = trouble;
    }

    /// Commits `batch` in one transaction; on failure nothing of it is on
    /// disk, and the file is reopened for the next try.
    fn commit(&mut self, batch: &[Job]) -> Result<(), String> {
        let result = match &self.db {
            Some(db) => {
                write(db, batch, self.rev.load(Ordering::Acquire)).map_err(|e| e.to_string())
            }
            // Our own file, just written: no need to read all of it again
            // (redb recovers from the failed commit by itself).
            None => match open_db(&self.path, false) {
                Ok(db) => {
                    let result = write(&db, batch, self.rev.load(Ordering::Acquire))
                        .map_err(|e| e.to_string());
                    self.db = Some(db);
                    result
                }
                Err(e) => Err(e.to_string()),
            },
        };
        match &result {
            Ok(()) => {
                if self.in_trouble() {
                    tracing::info!("the data file can be written again");
                    self.set_trouble(None);
                }
            }
            Err(why) => {
                if !self.in_trouble() {
                    tracing::error!("cannot write the data file: {why}");
                }
                self.set_trouble(Some(why.as_str().into()));
                // redb refuses every later write after a failed one: start
                // afresh from what is on disk.
                self.db = None;
            }
        }
        result
    }
}

/// One transaction with every job of `batch` and the rev counter.
fn write(db: &Database, batch: &[Job], rev: u64) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let mut keys = tx.open_table(KEYS)?;
        let mut meta = tx.open_table(META)?;
        for job in batch {
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
}
