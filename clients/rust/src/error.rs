//! The client's error type.

use ipcbus_protocol::{ErrorBody, ErrorCode};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The WebSocket could not be opened or failed (a fail-fast connect).
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server refused the request; or the subscriptions named in the
    /// upgrade request of [`crate::Client::connect_subscribed`] (HTTP 400
    /// `bad_pattern`, 429 `limit`), which is not retried. A pattern the
    /// client finds bad itself gives `bad_pattern` too, before sending.
    #[error("server refused: {0}")]
    Server(ErrorBody),
    /// A value or a request over the limits the server announced in its
    /// `hello`, found before anything was sent; or a connection the server
    /// closed with 1009 (frame too big) under the request. `code()` is
    /// `too_large`, as for the server's own refusal.
    #[error("too large: {0}")]
    TooLarge(String),
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
    /// No answer: the bus could not be reached within the call's timeout,
    /// the connection was lost under a write, or the client was closed.
    /// Nothing else: a call made while a reconnect is under way waits.
    #[error("unavailable: {reason}{}", applied_note(*.maybe_applied))]
    Unavailable {
        /// What happened.
        reason: String,
        /// A `set` or `del` was sent and its reply lost: it may have been
        /// applied. It is not resent; read the key, or retry with `if_rev`.
        maybe_applied: bool,
    },
    /// A value could not be encoded as MessagePack; the message names the
    /// value's type. Nothing was sent.
    #[error("cannot encode value: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// A value could not be decoded into the requested type.
    #[error("cannot decode value: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The server sent something this client does not understand; or a
    /// URL or token the client cannot use as given (a token that is not a
    /// valid header value, a URL with `sub=` parameters of its own), found
    /// before anything was sent and not retried.
    #[error("protocol: {0}")]
    Protocol(String),
}

fn applied_note(maybe_applied: bool) -> &'static str {
    if maybe_applied {
        " (the write may have been applied)"
    } else {
        ""
    }
}

impl Error {
    /// The server's error code, when the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server(e) => Some(e.code),
            Error::TooLarge(_) => Some(ErrorCode::TooLarge),
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

    /// True when a write's reply was lost, or a server with a backplane
    /// could not confirm it (code `unavailable`, docs/scaling.md): it may
    /// or may not have landed.
    pub fn maybe_applied(&self) -> bool {
        match self {
            Error::Unavailable { maybe_applied, .. } => *maybe_applied,
            Error::Server(body) => body.code == ErrorCode::Unavailable,
            _ => false,
        }
    }

    pub(crate) fn unavailable(reason: impl Into<String>) -> Error {
        Error::Unavailable {
            reason: reason.into(),
            maybe_applied: false,
        }
    }

    pub(crate) fn too_large(msg: String) -> Error {
        Error::TooLarge(msg)
    }
}

/// Result of client calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_a_backplane_could_not_confirm_may_have_been_applied() {
        let unconfirmed = Error::Server(ErrorBody::new(ErrorCode::Unavailable, "no quorum"));
        assert!(unconfirmed.maybe_applied());
        assert_eq!(unconfirmed.code(), Some(ErrorCode::Unavailable));
        assert!(!Error::Server(ErrorBody::not_found()).maybe_applied());
    }
}
