//! Appending MessagePack to a buffer.

use crate::error::ErrorBody;
use bytes::{BufMut, BytesMut};

/// Appends MessagePack to a buffer. Writes to memory cannot fail, so the
/// `io::Result`s that `rmp` returns are discarded here, and only here.
pub(super) struct Writer<'a>(pub(super) &'a mut BytesMut);

impl Writer<'_> {
    pub(super) fn map(&mut self, n: u32) {
        let _ = rmp::encode::write_map_len(&mut (&mut *self.0).writer(), n);
    }

    pub(super) fn array(&mut self, n: u32) {
        let _ = rmp::encode::write_array_len(&mut (&mut *self.0).writer(), n);
    }

    pub(super) fn str(&mut self, s: &str) {
        let _ = rmp::encode::write_str(&mut (&mut *self.0).writer(), s);
    }

    pub(super) fn uint(&mut self, v: u64) {
        let _ = rmp::encode::write_uint(&mut (&mut *self.0).writer(), v);
    }

    pub(super) fn bool(&mut self, v: bool) {
        let _ = rmp::encode::write_bool(&mut (&mut *self.0).writer(), v);
    }

    pub(super) fn raw(&mut self, bytes: &[u8]) {
        self.0.put_slice(bytes);
    }

    pub(super) fn field_str(&mut self, name: &str, v: &str) {
        self.str(name);
        self.str(v);
    }

    pub(super) fn field_uint(&mut self, name: &str, v: u64) {
        self.str(name);
        self.uint(v);
    }

    pub(super) fn error(&mut self, e: &ErrorBody) {
        self.str("error");
        self.map(2 + u32::from(e.rev.is_some()));
        self.field_str("code", e.code.as_str());
        self.field_str("msg", &e.msg);
        if let Some(rev) = e.rev {
            self.field_uint("rev", rev);
        }
    }
}
