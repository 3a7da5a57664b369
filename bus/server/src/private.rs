//! The data directory and the files in it are the user's own: checked at
//! startup as ssh checks its keys. A directory or file owned by another
//! user is refused (someone else could have planted a token, or could read
//! the values); looser modes on our own are fixed, with a warning; a
//! symlinked token file is refused. docs/security.md gives the rules.

use std::path::{Path, PathBuf};

/// Why a private path is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrivateError {
    /// Owned by another user.
    #[error(
        "{path} belongs to user id {owner}, not to this user (id {me}); another user could \
         have planted a token there or could read the values. Use a data directory of your \
         own (--data-dir), or give it to this user: chown -R {me} {path}"
    )]
    #[cfg_attr(not(unix), allow(dead_code))] // Windows has no owner check
    NotOurs {
        /// The directory or file.
        path: PathBuf,
        /// Its owner's user id.
        owner: u32,
        /// Ours.
        me: u32,
    },
    /// A symlink where a file of our own must be.
    #[error(
        "{0} is a symlink; the token and data files must be regular files of their own \
         (a link could point at a file others can read or write). Replace it with a copy: \
         cp --remove-destination \"$(readlink -f {0})\" {0}"
    )]
    Symlink(PathBuf),
    /// Could not be read or changed.
    #[error("{path}: {error}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// Creates `dir` (mode 0700) if needed, refuses it if another user owns
/// it, and takes group and other permissions away from it if it has any.
pub(crate) fn secure_dir(dir: &Path) -> Result<(), PrivateError> {
    create_dir(dir)?;
    let meta = std::fs::metadata(dir).map_err(|error| PrivateError::Io {
        path: dir.to_owned(),
        error,
    })?;
    check_owner(dir, &meta)?;
    restrict(dir, &meta, 0o700)
}

/// Creates `dir` and its parents, mode 0700, if missing.
pub(crate) fn create_dir(dir: &Path) -> Result<(), PrivateError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|error| PrivateError::Io {
        path: dir.to_owned(),
        error,
    })
}

/// Checks an existing file of the data directory: refused if another user
/// owns it, made 0600 if it is open to others. `Ok(false)` if it does not
/// exist.
pub(crate) fn secure_file(path: &Path) -> Result<bool, PrivateError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => {
            return Err(PrivateError::Io {
                path: path.to_owned(),
                error,
            })
        }
    };
    if meta.file_type().is_symlink() {
        return Err(PrivateError::Symlink(path.to_owned()));
    }
    check_owner(path, &meta)?;
    restrict(path, &meta, 0o600)?;
    Ok(true)
}

#[cfg(unix)]
fn check_owner(path: &Path, meta: &std::fs::Metadata) -> Result<(), PrivateError> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(PrivateError::NotOurs {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner(_: &Path, _: &std::fs::Metadata) -> Result<(), PrivateError> {
    Ok(())
}

/// Sets `mode` if the current one gives anything to group or others.
#[cfg(unix)]
fn restrict(path: &Path, meta: &std::fs::Metadata, mode: u32) -> Result<(), PrivateError> {
    use std::os::unix::fs::PermissionsExt;
    let current = meta.permissions().mode() & 0o777;
    if current & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|error| {
        PrivateError::Io {
            path: path.to_owned(),
            error,
        }
    })?;
    tracing::warn!(
        "{} was open to other users (mode {current:o}); changed it to {mode:o}",
        path.display()
    );
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_: &Path, _: &std::fs::Metadata, _: u32) -> Result<(), PrivateError> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn loose_modes_of_our_own_are_fixed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        secure_dir(&dir).expect("our dir");
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("f");
        assert!(!secure_file(&file).expect("absent"));
        std::fs::write(&file, b"x").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(secure_file(&file).expect("our file"));
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn a_symlink_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let target = tmp.path().join("target");
        std::fs::write(&target, b"x").expect("write");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = secure_file(&link).expect_err("symlink refused");
        assert!(err.to_string().contains("is a symlink"), "{err}");
    }
}
