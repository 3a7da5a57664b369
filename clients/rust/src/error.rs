//! The client's error type.

use ipcbus_protocol::{ErrorBody, ErrorCode};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The WebSocket could not be opened or failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server refused the request.
    #[error("server refused: {0}")]
    Server(ErrorBody),
    /// The server refused the connection (HTTP status of the upgrade):
    /// 401 without the right token, 403 for a browser origin it does not
    /// allow, 503 at `max_connections`.
    #[error("server refused the connection ({status}): {msg}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// What the server said.
        msg: String,
    },
    /// The connection is closed; no reply will come.
    #[error("connection closed")]
    Closed,
    /// A value could not be encoded as MessagePack.
    #[error("cannot encode value: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// A value could not be decoded into the requested type.
    #[error("cannot decode value: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The server sent something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl Error {
    /// The server's error code, when the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server(e) => Some(e.code),
            _ => None,
        }
    }

    /// The key's current rev, on `rev_mismatch`.
    pub fn current_rev(&self) -> Option<u64> {
        match self {
            Error::Server(e) => e.rev,
            _ => None,
        }
    }
}

/// Result of client calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;
