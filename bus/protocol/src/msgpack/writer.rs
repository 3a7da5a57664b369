//! Appending MessagePack to a buffer.

use crate::error::ErrorBody;
use crate::msg::ValMeta;
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

    /// The `meta` field of a `val`: only the fields that say something.
    pub(super) fn meta(&mut self, m: &ValMeta) {
        let fields = Optional {
            uints: [("age_ms", m.age_ms), ("ttl_ms", m.ttl_ms)],
            flags: [("persist", m.persist), ("ephemeral", m.ephemeral)],
        };
        self.str("meta");
        self.map(fields.count());
        self.optional(&fields);
    }

    /// The fields of `o` that are present: uints that are set, flags that are true.
    pub(super) fn optional(&mut self, o: &Optional) {
        for (name, v) in o.uints {
            if let Some(v) = v {
                self.field_uint(name, v);
            }
        }
        for (name, v) in o.flags {
            if v {
                self.str(name);
                self.bool(true);
            }
        }
    }
}

/// Fields written only when they say something: two uints and two flags.
pub(super) struct Optional {
    pub(super) uints: [(&'static str, Option<u64>); 2],
    pub(super) flags: [(&'static str, bool); 2],
}

impl Optional {
    /// How many of them are written.
    pub(super) fn count(&self) -> u32 {
        let n = self.uints.iter().filter(|(_, v)| v.is_some()).count()
            + self.flags.iter().filter(|(_, v)| *v).count();
        n as u32
    }
}
