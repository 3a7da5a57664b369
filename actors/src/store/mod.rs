//! `Store`: persisted keys in an embedded redb file, written by one thread
//! that commits in batches (group commit) and tells each key actor when its
//! write is on disk.
//!
//! # Durability
//! Every batch is one redb transaction committed with
//! `Durability::Immediate`, i.e. fsync'd before any write in it is
//! acknowledged. Writes that arrive while a commit runs wait for the next
//! batch, so under load one fsync covers many writes.
//!
//! # When the disk is full
//! A failed commit leaves nothing of its batch on disk, and every job in it
//! is answered with the error; the key actors then undo those writes, so
//! memory and disk agree. redb refuses to go on after a failed write, so
//! the writer reopens the file, and until a commit succeeds again it says
//! why in [`Store::trouble`] (shown by `/health`) and tries a commit of its
//! own every [`writer::RETRY`], so that it recovers by itself once space
//! is back.
//!
//! # Revs across restarts
//! The store-wide rev counter is saved at every commit and at a clean
//! shutdown. After a crash, writes that were never persisted may have used
//! revs above the saved counter; clients could hold such revs as `since`
//! cursors. So a store that was not closed cleanly gets a new `store_id`,
//! which tells clients to replay instead of resuming.
//!
//! # Layout
//! - this file: [`Store`], [`Record`], [`Restored`], [`Disk`], [`StoreError`].
//! - `file`: opening the redb file, refusing a damaged one, reading it back.
//! - `writer`: the writer thread and its batches.

mod file;
mod writer;

use file::{catch_panic, classify, create_private_dir, mark_open, open_db, restore, Restore};
pub use writer::CommitHook;
use writer::{Job, Writer};

use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The data file's name inside the data directory.
pub const DATA_FILE: &str = "ipcbus.redb";
/// Jobs committed in one transaction at most.
const MAX_BATCH: usize = 4096;
/// Layout of records and meta entries; bumped on incompatible changes.
const FORMAT: u64 = 1;

/// One persisted key.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Rev of the write.
    pub rev: u64,
    /// When the key expires, in ms since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// The MessagePack value.
    pub value: Bytes,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.value.len());
        out.extend_from_slice(&self.rev.to_le_bytes());
        out.extend_from_slice(&self.expires_at_ms.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Record> {
        let rev = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let expires = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Record {
            rev,
            expires_at_ms: (expires != 0).then_some(expires),
            value: Bytes::copy_from_slice(bytes.get(16..)?),
        })
    }
}

/// Milliseconds since the Unix epoch, for expiry times that survive restarts.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why the store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is damaged; the server refuses to start empty over it.
    #[error(
        "the data file {path} is damaged ({why}). The server will not start over it, \
         so no data is lost silently. Move the file away (or restore a backup) and start \
         again to begin with an empty store."
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What redb or the record decoder said.
        why: String,
    },
    /// Another process has the file open.
    #[error(
        "the data file {0} is in use by another process (is another ipcbus running with \
         this data directory?)"
    )]
    InUse(PathBuf),
    /// Any other failure of the storage layer.
    #[error("data file {path}: {error}")]
    Storage {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: Box<redb::Error>,
    },
    /// The data directory could not be created.
    #[error("data directory {path}: {error}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// What a start finds in the store.
#[derive(Debug)]
pub struct Restored {
    /// Identifies the store (and its revs) to clients.
    pub store_id: String,
    /// The rev counter to continue from.
    pub rev: u64,
    /// Whether the last run ended with a clean shutdown.
    pub clean: bool,
    /// Persisted keys that have not expired.
    pub keys: Vec<(String, Record)>,
}

/// Resolves when a job is on disk, or with why it could not be written
/// (then nothing of it is on disk).
pub type Disk = tokio::sync::oneshot::Receiver<Result<(), Arc<str>>>;

/// A handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Unbounded, but bounded in practice: each job is a request that some
    /// session counts as in flight (at most `max_inflight` per session),
    /// and its key actor handles nothing else until the job is done.
    jobs: mpsc::Sender<Job>,
    rev: Arc<AtomicU64>,
    /// Why the last commit failed, until one succeeds again.
    trouble: Arc<Mutex<Option<Arc<str>>>>,
    on_commit: Arc<OnceLock<CommitHook>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) `dir/ipcbus.redb`, reads what it holds, marks it
    /// in use, and starts the writer thread.
    pub fn open(dir: &Path) -> Result<(Store, Restored), StoreError> {
        create_private_dir(dir).map_err(|error| StoreError::Dir {
            path: dir.to_owned(),
            error,
        })?;
        let path = dir.join(DATA_FILE);
        let db = open_db(&path, true)?;
        let storage = |e: redb::Error| classify(&path, e);
        let restored = catch_panic(&path, || {
            restore(&db).map_err(|e| match e {
                Restore::Db(e) => storage(e),
                Restore::Record(key) => StoreError::Corrupt {
                    path: path.clone(),
                    why: format!("unreadable record for key {key:?}"),
                },
            })
        })?;
        mark_open(&db, &restored).map_err(storage)?;
        let (jobs, rx) = mpsc::channel();
        let rev = Arc::new(AtomicU64::new(restored.rev));
        let trouble: Arc<Mutex<Option<Arc<str>>>> = Arc::default();
        let on_commit: Arc<OnceLock<CommitHook>> = Arc::default();
        let writer = Writer::new(db, path, rev.clone(), trouble.clone(), on_commit.clone());
        std::thread::Builder::new()
            .name("ipcbus-store".into())
            .spawn(move || writer.run(&rx))
            .map_err(|error| StoreError::Dir {
                path: dir.to_owned(),
                error,
            })?;
        let store = Store {
            jobs,
            rev,
            trouble,
            on_commit,
        };
        Ok((store, restored))
    }

    /// The store-wide rev counter, starting where the last run left off.
    /// The registry hands out revs from it; every commit saves it.
    pub fn rev_counter(&self) -> Arc<AtomicU64> {
        self.rev.clone()
    }

    /// Why the data file cannot be written at the moment (the disk is full,
    /// say); `None` while it can. The writer tries again by itself.
    pub fn trouble(&self) -> Option<Arc<str>> {
        self.trouble
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets what is told the duration of every commit (for metrics); only
    /// the first hook set is kept.
    pub fn on_commit(&self, hook: CommitHook) {
        let _ = self.on_commit.set(hook);
    }

    /// Queues a write of `key`.
    pub fn put(&self, key: Arc<str>, record: Record) -> Disk {
        let (done, disk) = tokio::sync::oneshot::channel();
        self.submit(Job::Put { key, record, done });
        disk
    }

    /// Queues the removal of `key`.
    pub fn remove(&self, key: Arc<str>) -> Disk {
        let (done, disk) = tokio::sync::oneshot::channel();
        self.submit(Job::Remove { key, done });
        disk
    }

    fn submit(&self, job: Job) {
        // Only after `close`: answer so the key actor does not wait forever.
        if let Err(mpsc::SendError(Job::Put { done, .. } | Job::Remove { done, .. })) =
            self.jobs.send(job)
        {
            let _ = done.send(Err("the store is closed".into()));
        }
    }

    /// Writes what is queued, records a clean shutdown, and stops the writer.
    pub async fn close(&self) {
        let (done, closed) = tokio::sync::oneshot::channel();
        if self.jobs.send(Job::Close { done }).is_ok() {
            let _ = closed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let r = Record {
            rev: 7,
            expires_at_ms: Some(99),
            value: Bytes::from_static(&[0x91, 0x01]),
        };
        assert_eq!(Record::decode(&r.encode()), Some(r));
        assert_eq!(Record::decode(&[1, 2, 3]), None);
    }
}
