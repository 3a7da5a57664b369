//! Where the access token lives, so that the server and every client agree
//! without configuration. `docs/security.md` describes the scheme; the
//! Python and JavaScript clients implement the same lookup.
//!
//! - The data directory is `$IPCBUS_DATA_DIR`, else the platform's data
//!   directory plus `ipcbus` (`$XDG_DATA_HOME/ipcbus` or
//!   `~/.local/share/ipcbus` on Linux).
//! - The token file is `$IPCBUS_TOKEN_FILE`, else `<data dir>/token`.
//! - A client uses, in order: a token it is given, `$IPCBUS_TOKEN`, the
//!   token file if it can read it, else no token.

use std::path::{Path, PathBuf};

/// Environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "IPCBUS_DATA_DIR";
/// Environment variable naming the token file.
pub const TOKEN_FILE_ENV: &str = "IPCBUS_TOKEN_FILE";
/// Environment variable holding the token itself.
pub const TOKEN_ENV: &str = "IPCBUS_TOKEN";
/// The token file's name inside the data directory.
pub const TOKEN_FILE_NAME: &str = "token";

/// The default data directory, or `None` when the platform has none (no
/// home directory) and `$IPCBUS_DATA_DIR` is unset.
pub fn default_data_dir() -> Option<PathBuf> {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => platform_data_dir(),
    }
}

/// The platform's data directory plus `ipcbus`, whatever the environment says.
fn platform_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("ipcbus"))
}

/// The token file a client finds with no setting at all: `token` in
/// [`platform_data_dir`].
pub fn platform_token_file() -> Option<PathBuf> {
    platform_data_dir().map(|d| d.join(TOKEN_FILE_NAME))
}

/// The token file a client reads by default.
pub fn default_token_file() -> Option<PathBuf> {
    match std::env::var_os(TOKEN_FILE_ENV) {
        Some(file) if !file.is_empty() => Some(PathBuf::from(file)),
        _ => default_data_dir().map(|d| d.join(TOKEN_FILE_NAME)),
    }
}

/// Reads a token file: its first line, trimmed. `None` if the file cannot
/// be read or holds no token.
pub fn read_token_file(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let token = text.lines().next()?.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// The token a client should send when it was not given one:
/// `$IPCBUS_TOKEN`, else the default token file's content.
pub fn discover_token() -> Option<String> {
    match std::env::var(TOKEN_ENV) {
        Ok(token) if !token.trim().is_empty() => Some(token.trim().to_owned()),
        _ => default_token_file().and_then(|f| read_token_file(&f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_first_line_trimmed() {
        let dir = std::env::temp_dir().join(format!("ipcbus-auth-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, "  abc123 \nignored\n").expect("write");
        assert_eq!(read_token_file(&file).as_deref(), Some("abc123"));
        std::fs::write(&file, "\n").expect("write");
        assert_eq!(read_token_file(&file), None);
        assert_eq!(read_token_file(&dir.join("absent")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
