//! Wire protocol v1 of ipcbus: the messages, the key and pattern rules, and
//! the two codecs (MessagePack and JSON). `docs/protocol.md` is the normative
//! text; this crate is its one implementation, shared by the server and the
//! Rust client so that the codec is never written twice.
//!
//! # Layout
//! - [`auth`]: where the access token lives (data directory, token file, environment).
//! - [`key`]: key validation and subscription patterns (`*`, `>`).
//! - [`index`]: [`PatternIndex`], entries filed under patterns, found by a key's tokens.
//! - [`error`]: error codes sent on the wire and decode errors.
//! - [`msg`]: requests (client to server) and server messages.
//! - [`msgpack`]: the MessagePack codec; values travel as raw bytes, never re-encoded.
//! - [`json`]: the JSON codec for clients without MessagePack.
//! - [`transcode`]: MessagePack value to JSON and back, with the documented lossy cases.
//!
//! This crate has no async runtime and no actor dependency.

pub mod auth;
pub mod error;
pub mod index;
pub mod json;
pub mod key;
pub mod msg;
pub mod msgpack;
pub mod transcode;

pub use error::{DecodeError, ErrorBody, ErrorCode};
pub use index::PatternIndex;
pub use key::{validate_key, Pattern, MAX_KEY_BYTES};
pub use msg::{KeyRev, Life, Op, Reply, Request, ServerMsg, ValMeta, MAX_TTL_MS};

/// The protocol version announced in `hello`.
pub const PROTO_VERSION: u32 = 1;

/// WebSocket subprotocol for MessagePack (binary frames).
pub const SUBPROTOCOL_MSGPACK: &str = "ipcbus.v1.msgpack";
/// WebSocket subprotocol for JSON (text frames).
pub const SUBPROTOCOL_JSON: &str = "ipcbus.v1.json";

/// Largest request id a client may use: ids must stay exact in JSON doubles.
pub const MAX_ID: u64 = (1 << 53) - 1;

/// Which encoding a session speaks. Chosen once, at the WebSocket upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// One MessagePack map per binary frame (the default).
    #[default]
    MsgPack,
    /// One JSON object per text frame.
    Json,
}

impl Codec {
    /// The subprotocol name that selects this codec.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Codec::MsgPack => SUBPROTOCOL_MSGPACK,
            Codec::Json => SUBPROTOCOL_JSON,
        }
    }

    /// The codec named by a subprotocol, if it is one of ours.
    pub fn from_subprotocol(name: &str) -> Option<Codec> {
        match name.trim() {
            SUBPROTOCOL_MSGPACK => Some(Codec::MsgPack),
            SUBPROTOCOL_JSON => Some(Codec::Json),
            _ => None,
        }
    }
}
