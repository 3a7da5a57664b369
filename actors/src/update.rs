//! One write (a value or a deletion) of one key.

use bytes::Bytes;
use ipcbus_protocol::transcode::msgpack_to_json;
use ipcbus_protocol::{ErrorBody, ErrorCode, ValMeta};
use once_cell::race::OnceBox;
use serde_json::value::RawValue;
use std::sync::Arc;

/// When and how a value was written: what a `val` event of a subscription
/// made with `meta` tells (protocol.md §4). Every key at rest keeps one,
/// so it is packed into 16 bytes: the write time and the two flags share
/// a word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Bits 0–61: when, in ms since the Unix epoch (0: not known); bit 62:
    /// persisted; bit 63: ephemeral.
    stamp: u64,
    /// When the value expires, in ms since the Unix epoch; 0 for never.
    expires_at_ms: u64,
}

const PERSIST: u64 = 1 << 62;
const EPHEMERAL: u64 = 1 << 63;

impl Written {
    /// A write made at `at_ms` (ms since the Unix epoch; 0 when not known,
    /// as for a value restored from the data file, which keeps no write
    /// times), expiring at `expires_at_ms`, persisted or tied to its session.
    pub fn new(at_ms: u64, expires_at_ms: Option<u64>, persist: bool, ephemeral: bool) -> Written {
        let flags = if persist { PERSIST } else { 0 } | if ephemeral { EPHEMERAL } else { 0 };
        Written {
            stamp: at_ms.min(PERSIST - 1) | flags,
            expires_at_ms: expires_at_ms.unwrap_or(0),
        }
    }

    /// When, in ms since the Unix epoch; `None` when not known.
    pub fn at_ms(&self) -> Option<u64> {
        Some(self.stamp & (PERSIST - 1)).filter(|&at| at != 0)
    }

    /// When the value expires, in ms since the Unix epoch.
    pub fn expires_at_ms(&self) -> Option<u64> {
        Some(self.expires_at_ms).filter(|&at| at != 0)
    }

    /// The data file holds the value.
    pub fn persist(&self) -> bool {
        self.stamp & PERSIST != 0
    }

    /// The value ends with the session that wrote it.
    pub fn ephemeral(&self) -> bool {
        self.stamp & EPHEMERAL != 0
    }

    /// The `meta` of an event written to the socket at `now_ms`: the age
    /// and the time left are relative, so the client needs no clock sync.
    pub fn meta(&self, now_ms: u64) -> ValMeta {
        ValMeta {
            age_ms: self.at_ms().map(|at| now_ms.saturating_sub(at)),
            persist: self.persist(),
            ephemeral: self.ephemeral(),
            ttl_ms: self.expires_at_ms().map(|at| at.saturating_sub(now_ms)),
        }
    }
}

/// A key's state after one write. Shared (behind an `Arc`) by the key actor
/// and by every pending delivery, so fan-out copies no value bytes.
#[derive(Debug)]
pub struct Update {
    /// The key.
    pub key: Arc<str>,
    /// The store-wide rev of this write.
    pub rev: u64,
    /// The value as MessagePack, exactly as the publisher sent it; `None` for a deletion.
    pub value: Option<Bytes>,
    /// When and how the value was written; the default for a deletion.
    pub written: Written,
    /// The value rendered as JSON, made once, on first need by a JSON
    /// session (a pointer until then: every key at rest keeps its `Update`).
    json: OnceBox<Result<Box<RawValue>, ErrorBody>>,
}

impl Update {
    /// A new write.
    pub fn new(key: Arc<str>, rev: u64, value: Option<Bytes>, written: Written) -> Update {
        Update {
            key,
            rev,
            value,
            written,
            json: OnceBox::new(),
        }
    }

    /// The value as JSON text (`None` for a deletion), rendered at most once.
    /// A value JSON cannot show (nested deeper than the transcoder allows)
    /// is an `internal` error: the server cannot serve a valid request.
    pub fn json(&self) -> Result<Option<&RawValue>, &ErrorBody> {
        let Some(value) = &self.value else {
            return Ok(None);
        };
        match self.json.get_or_init(|| {
            Box::new(msgpack_to_json(value).map_err(|e| {
                let msg = format!("the value cannot be shown as JSON: {}", e.error.msg);
                ErrorBody::new(ErrorCode::Internal, msg)
            }))
        }) {
            Ok(raw) => Ok(Some(raw)),
            Err(e) => Err(e),
        }
    }

    /// Bytes this update stands for in an outbox's budget.
    pub fn cost(&self) -> usize {
        const OVERHEAD: usize = 64;
        OVERHEAD + self.key.len() + self.value.as_ref().map_or(0, Bytes::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_is_relative_to_the_time_of_sending() {
        let written = Written::new(1_000, Some(6_000), true, false);
        let meta = written.meta(1_250);
        assert_eq!((meta.age_ms, meta.ttl_ms), (Some(250), Some(4_750)));
        assert!(meta.persist && !meta.ephemeral);
        // Due already, or sent by a clock that went back: never negative.
        assert_eq!(written.meta(7_000).ttl_ms, Some(0));
        assert_eq!(written.meta(500).age_ms, Some(0));
        // Restored from the data file, without expiry: no age, no TTL.
        let restored = Written::new(0, None, true, false).meta(1_250);
        assert_eq!((restored.age_ms, restored.ttl_ms), (None, None));
        let tied = Written::new(u64::MAX, None, false, true);
        assert!(tied.ephemeral() && !tied.persist());
        assert_eq!(tied.at_ms(), Some(PERSIST - 1), "the flags keep their bits");
    }
}
