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
//! # Revs across restarts
//! The store-wide rev counter is saved at every commit and at a clean
//! shutdown. After a crash, writes that were never persisted may have used
//! revs above the saved counter; clients could hold such revs as `since`
//! cursors. So a store that was not closed cleanly gets a new `store_id`,
//! which tells clients to replay instead of resuming.

use actix::prelude::*;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const KEYS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("keys");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
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

/// Tells a key actor that its writes up to `seq` are on disk (or failed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Durable {
    /// The job's sequence number.
    pub seq: u64,
    /// Set when the commit failed.
    pub error: Option<Arc<str>>,
}

enum Job {
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

/// A handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Unbounded, but bounded in practice: each job is a request that some
    /// session counts as in flight (at most `max_inflight` per session).
    jobs: mpsc::Sender<Job>,
    next_seq: Arc<AtomicU64>,
    rev: Arc<AtomicU64>,
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
        let db = open_db(&path)?;
        let storage = |e: redb::Error| classify(&path, e);
        let restored = restore(&db).map_err(|e| match e {
            Restore::Db(e) => storage(e),
            Restore::Record(key) => StoreError::Corrupt {
                path: path.clone(),
                why: format!("unreadable record for key {key:?}"),
            },
        })?;
        mark_open(&db, &restored).map_err(storage)?;
        let (jobs, rx) = mpsc::channel();
        let rev = Arc::new(AtomicU64::new(restored.rev));
        let saved = rev.clone();
        std::thread::Builder::new()
            .name("ipcbus-store".into())
            .spawn(move || write_loop(db, &rx, &saved))
            .map_err(|error| StoreError::Dir {
                path: dir.to_owned(),
                error,
            })?;
        let store = Store {
            jobs,
            next_seq: Arc::default(),
            rev,
        };
        Ok((store, restored))
    }

    /// The store-wide rev counter, starting where the last run left off.
    /// The registry hands out revs from it; every commit saves it.
    pub fn rev_counter(&self) -> Arc<AtomicU64> {
        self.rev.clone()
    }

    fn seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Queues a write of `key`; `done` gets [`Durable`] once it is on disk.
    /// Returns the job's sequence number.
    pub fn put(&self, key: Arc<str>, record: Record, done: Recipient<Durable>) -> u64 {
        let seq = self.seq();
        self.submit(Job::Put {
            key,
            record,
            seq,
            done,
        });
        seq
    }

    /// Queues the removal of `key`, like [`Store::put`].
    pub fn remove(&self, key: Arc<str>, done: Recipient<Durable>) -> u64 {
        let seq = self.seq();
        self.submit(Job::Remove { key, seq, done });
        seq
    }

    fn submit(&self, job: Job) {
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            // Only after `close`: answer so the key actor does not wait forever.
            let (seq, done) = match job {
                Job::Put { seq, done, .. } | Job::Remove { seq, done, .. } => (seq, done),
                Job::Close { .. } => return,
            };
            done.do_send(Durable {
                seq,
                error: Some("the store is closed".into()),
            });
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

/// Creates `dir` (and its parents) readable by the owner only: the data
/// file holds the users' values.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    // redb's debug builds assert on some impossible-for-redb states that a
    // damaged file can reach; a damaged file must give an error, not a crash.
    let opened = std::panic::catch_unwind(|| Database::create(path));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(classify(path, e.into())),
        Err(panic) => Err(StoreError::Corrupt {
            path: path.to_owned(),
            why: panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "redb could not read it".to_owned()),
        }),
    }
}

fn classify(path: &Path, e: redb::Error) -> StoreError {
    let path = path.to_owned();
    match e {
        redb::Error::DatabaseAlreadyOpen => StoreError::InUse(path),
        redb::Error::Corrupted(why) => StoreError::Corrupt { path, why },
        redb::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ) =>
        {
            StoreError::Corrupt {
                path,
                why: io.to_string(),
            }
        }
        e => StoreError::Storage {
            path,
            error: Box::new(e),
        },
    }
}

enum Restore {
    Db(redb::Error),
    Record(String),
}

impl<E: Into<redb::Error>> From<E> for Restore {
    fn from(e: E) -> Restore {
        Restore::Db(e.into())
    }
}

fn meta_u64(table: &impl ReadableTable<&'static str, &'static [u8]>, name: &str) -> Option<u64> {
    let v = table.get(name).ok()??;
    Some(u64::from_le_bytes(v.value().try_into().ok()?))
}

fn restore(db: &Database) -> Result<Restored, Restore> {
    let tx = db.begin_read()?;
    let (mut store_id, mut rev, mut clean) = (None, 0, true);
    match tx.open_table(META) {
        Ok(meta) => {
            if meta_u64(&meta, "format").is_some_and(|f| f != FORMAT) {
                return Err(Restore::Record("meta.format".into()));
            }
            store_id = meta
                .get("store_id")?
                .and_then(|v| String::from_utf8(v.value().to_vec()).ok());
            rev = meta_u64(&meta, "rev").unwrap_or(0);
            clean = meta_u64(&meta, "clean") == Some(1);
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let mut keys = Vec::new();
    let now = now_ms();
    match tx.open_table(KEYS) {
        Ok(table) => {
            for entry in table.iter()? {
                let (k, v) = entry?;
                let record =
                    Record::decode(v.value()).ok_or_else(|| Restore::Record(k.value().into()))?;
                rev = rev.max(record.rev);
                if record.expires_at_ms.is_none_or(|t| t > now) {
                    keys.push((k.value().to_owned(), record));
                }
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let fresh = store_id.is_none();
    let store_id = match store_id {
        Some(id) if clean => id,
        _ => uuid::Uuid::new_v4().to_string(),
    };
    Ok(Restored {
        store_id,
        rev,
        clean: clean || fresh,
        keys,
    })
}

/// Saves the store id and marks the store as in use (not cleanly closed).
fn mark_open(db: &Database, restored: &Restored) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let mut meta = tx.open_table(META)?;
        meta.insert("format", &FORMAT.to_le_bytes()[..])?;
        meta.insert("store_id", restored.store_id.as_bytes())?;
        meta.insert("rev", &restored.rev.to_le_bytes()[..])?;
        meta.insert("clean", &0u64.to_le_bytes()[..])?;
        tx.open_table(KEYS)?;
    }
    tx.commit()?;
    Ok(())
}

fn write_loop(db: Database, rx: &mpsc::Receiver<Job>, rev: &AtomicU64) {
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
