//! One write (a value or a deletion) of one key.

use bytes::Bytes;
use ipcbus_protocol::transcode::msgpack_to_json;
use ipcbus_protocol::{ErrorBody, ErrorCode};
use once_cell::race::OnceBox;
use serde_json::value::RawValue;
use std::sync::Arc;

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
    /// The value rendered as JSON, made once, on first need by a JSON
    /// session (a pointer until then: every key at rest keeps its `Update`).
    json: OnceBox<Result<Box<RawValue>, ErrorBody>>,
}

impl Update {
    /// A new write.
    pub fn new(key: Arc<str>, rev: u64, value: Option<Bytes>) -> Update {
        Update {
            key,
            rev,
            value,
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
