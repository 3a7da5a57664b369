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

    /// A str, in its shortest form, as `rmp::encode::write_str` writes it
    /// but straight into the buffer: every event's field names and key go
    /// through here (issue 17, the fan-out profile).
    pub(super) fn str(&mut self, s: &str) {
        let buf = &mut *self.0;
        let n = s.len();
        buf.reserve(5 + n);
        if let Ok(short) = u8::try_from(n) {
            if short < 32 {
                buf.put_u8(0xa0 | short);
            } else {
                buf.put_slice(&[0xd9, short]);
            }
        } else if let Ok(n) = u16::try_from(n) {
            buf.put_u8(0xda);
            buf.put_u16(n);
        } else {
            // No string we write comes near 4 GiB (frames are limited far below).
            buf.put_u8(0xdb);
            buf.put_u32(u32::try_from(n).unwrap_or(u32::MAX));
        }
        buf.put_slice(s.as_bytes());
    }

    /// A uint, in its shortest form, as `rmp::encode::write_uint` writes it.
    pub(super) fn uint(&mut self, v: u64) {
        let buf = &mut *self.0;
        if v < 0x80 {
            buf.put_u8(v as u8);
        } else if let Ok(v) = u8::try_from(v) {
            buf.put_slice(&[0xcc, v]);
        } else if let Ok(v) = u16::try_from(v) {
            buf.put_u8(0xcd);
            buf.put_u16(v);
        } else if let Ok(v) = u32::try_from(v) {
            buf.put_u8(0xce);
            buf.put_u32(v);
        } else {
            buf.put_u8(0xcf);
            buf.put_u64(v);
        }
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

#[cfg(test)]
mod tests {
    use super::Writer;
    use bytes::BytesMut;

    #[test]
    fn str_and_uint_are_what_rmp_writes() {
        for len in [0, 1, 31, 32, 255, 256, 65_535, 65_536] {
            let s = "x".repeat(len);
            let mut ours = BytesMut::new();
            Writer(&mut ours).str(&s);
            let mut theirs = Vec::new();
            rmp::encode::write_str(&mut theirs, &s).expect("rmp");
            assert_eq!(&ours[..], &theirs[..], "str of {len} bytes");
        }
        let uints = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, 0xffff_ffff];
        for v in uints.into_iter().chain([1 << 32, u64::MAX]) {
            let mut ours = BytesMut::new();
            Writer(&mut ours).uint(v);
            let mut theirs = Vec::new();
            rmp::encode::write_uint(&mut theirs, v).expect("rmp");
            assert_eq!(&ours[..], &theirs[..], "uint {v}");
        }
    }
}
