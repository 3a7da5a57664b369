//! Error codes carried on the wire, and the decoder's own errors.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// The `code` of an error reply. Lowercase on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a well-formed request (not a map, wrong field type, missing field).
    BadRequest,
    /// The `op` is not one this server knows.
    UnknownOp,
    /// The key breaks the key rules.
    BadKey,
    /// The pattern breaks the pattern rules.
    BadPattern,
    /// The value is larger than `max_value_bytes`. (A message over
    /// `max_frame_bytes` closes the connection with 1009 instead.)
    TooLarge,
    /// The key does not exist.
    NotFound,
    /// `if_rev` did not match; the error carries the current `rev`.
    RevMismatch,
    /// A server limit was reached (for example subscriptions per session).
    Limit,
    /// The server could not carry out a valid request (for example, a value
    /// that a JSON session cannot be shown).
    Internal,
    /// The data file could not be written (the disk is full, or failing):
    /// the write was not applied, and the key is as it was.
    Storage,
    /// The shared store of a backplane (docs/scaling.md) did not confirm the
    /// write in time: it may or may not have been applied.
    Unavailable,
}

impl ErrorCode {
    /// The code as it is spelled on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::BadKey => "bad_key",
            ErrorCode::BadPattern => "bad_pattern",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RevMismatch => "rev_mismatch",
            ErrorCode::Limit => "limit",
            ErrorCode::Internal => "internal",
            ErrorCode::Storage => "storage",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// Parses a wire code; unknown codes (from a newer server) map to `Internal`.
    pub fn parse(code: &str) -> ErrorCode {
        match code {
            "bad_request" => ErrorCode::BadRequest,
            "unknown_op" => ErrorCode::UnknownOp,
            "bad_key" => ErrorCode::BadKey,
            "bad_pattern" => ErrorCode::BadPattern,
            "too_large" => ErrorCode::TooLarge,
            "not_found" => ErrorCode::NotFound,
            "rev_mismatch" => ErrorCode::RevMismatch,
            "limit" => ErrorCode::Limit,
            "storage" => ErrorCode::Storage,
            "unavailable" => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` map of a failed reply or an `error` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub msg: Cow<'static, str>,
    /// The key's current rev, on `rev_mismatch` (0 when the key does not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<u64>,
}

impl ErrorBody {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, msg: impl Into<Cow<'static, str>>) -> ErrorBody {
        ErrorBody {
            code,
            msg: msg.into(),
            rev: None,
        }
    }

    /// A `rev_mismatch` error carrying the key's current rev.
    pub fn rev_mismatch(current: u64) -> ErrorBody {
        ErrorBody {
            code: ErrorCode::RevMismatch,
            msg: format!("if_rev does not match the current rev {current}").into(),
            rev: Some(current),
        }
    }

    /// A `not_found` error.
    pub fn not_found() -> ErrorBody {
        ErrorBody::new(ErrorCode::NotFound, "no such key")
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.msg)
    }
}

impl std::error::Error for ErrorBody {}

/// Why a frame could not be decoded into a request. The `id`, when it could
/// be read, lets the server address its error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The request id, if the frame got that far.
    pub id: Option<u64>,
    /// The error to send back.
    pub error: ErrorBody,
}

impl DecodeError {
    pub(crate) fn new(code: ErrorCode, msg: impl Into<Cow<'static, str>>) -> DecodeError {
        DecodeError {
            id: None,
            error: ErrorBody::new(code, msg),
        }
    }

    pub(crate) fn bad(msg: impl Into<Cow<'static, str>>) -> DecodeError {
        DecodeError::new(ErrorCode::BadRequest, msg)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for DecodeError {}
