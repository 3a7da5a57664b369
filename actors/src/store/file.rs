//! Opening the data file: creating it, refusing a damaged one, reading
//! what it holds and marking it in use.

use super::{now_ms, Record, Restored, StoreError, FORMAT};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

pub(super) const KEYS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("keys");
pub(super) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

/// Creates `dir` (and its parents) readable by the owner only: the data
/// file holds the users' values.
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// redb's page cache. The store is read once, at startup, and only
/// written after, so a big cache buys nothing; redb's default (1 GiB)
/// lets it grow with every commit's pages.
const CACHE_BYTES: usize = 4 << 20;

/// Opens the data file; with `verify`, every page's checksum is checked
/// (at startup: the file may have been damaged since it was written).
pub(super) fn open_db(path: &Path, verify: bool) -> Result<Database, StoreError> {
    // redb would start a new, empty store in a zero-length file. Such a
    // file is what a crash while the file was first created leaves, but
    // also what a failed copy or a full disk leaves of a store that had
    // data: nothing tells them apart, so it is refused like any damage.
    if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            why: "the file is empty (0 bytes): a crash while it was created, an incomplete \
                  copy or a full disk"
                .to_owned(),
        });
    }
    // Every page's checksum is verified at open, not only after a crash:
    // redb otherwise trusts a cleanly closed file, and serves (or panics
    // on) pages damaged since. A panic is still caught, so that a damaged
    // file gives the documented error whatever redb does with it.
    let opened = catch_panic(path, || {
        redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(verify)
            .create(path)
            .map_err(|e| classify(path, e.into()))
    })?;
    restrict_to_owner(path).map_err(|error| StoreError::Dir {
        path: path.to_owned(),
        error,
    })?;
    Ok(opened)
}

/// Runs `f`, turning a panic into [`StoreError::Corrupt`].
pub(super) fn catch_panic<T>(
    path: &Path,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(StoreError::Corrupt {
            path: path.to_owned(),
            why: panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "redb could not read it".to_owned()),
        })
    })
}

/// The data file is the owner's alone (it is created with the umask's mode).
#[cfg(unix)]
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_to_owner(_: &Path) -> std::io::Result<()> {
    Ok(())
}

pub(super) fn classify(path: &Path, e: redb::Error) -> StoreError {
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

pub(super) enum Restore {
    Db(redb::Error),
    Record(String),
}

impl<E: Into<redb::Error>> From<E> for Restore {
    fn from(e: E) -> Restore {
        Restore::Db(e.into())
    }
}

pub(super) fn meta_u64(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Option<u64> {
    let v = table.get(name).ok()??;
    Some(u64::from_le_bytes(v.value().try_into().ok()?))
}

pub(super) fn restore(db: &Database) -> Result<Restored, Restore> {
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
pub(super) fn mark_open(db: &Database, restored: &Restored) -> Result<(), redb::Error> {
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
