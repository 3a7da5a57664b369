//! A bounds-checked cursor over a MessagePack frame.

use crate::error::{DecodeError, ErrorBody, ErrorCode};
use crate::msg::{KeyRev, ValMeta};
use bytes::Bytes;
use rmp::Marker;
use std::borrow::Cow;

/// A cursor over a frame. Every read is bounds-checked; nothing recurses.
pub(super) struct Reader<'a> {
    all: &'a [u8],
    pub(super) rest: &'a [u8],
}

fn truncated() -> DecodeError {
    DecodeError::bad("truncated or malformed MessagePack")
}

impl<'a> Reader<'a> {
    pub(super) fn new(all: &'a [u8]) -> Reader<'a> {
        Reader { all, rest: all }
    }

    pub(super) fn pos(&self) -> usize {
        self.all.len() - self.rest.len()
    }

    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::bad("trailing bytes after the message"))
        }
    }

    pub(super) fn map_len(&mut self) -> Result<u32, DecodeError> {
        rmp::decode::read_map_len(&mut self.rest)
            .map_err(|_| DecodeError::bad("a message must be a MessagePack map"))
    }

    pub(super) fn str(&mut self) -> Result<&'a str, DecodeError> {
        match rmp::decode::read_str_from_slice(self.rest) {
            Ok((s, rest)) => {
                self.rest = rest;
                Ok(s)
            }
            Err(_) => Err(DecodeError::bad("expected a UTF-8 string")),
        }
    }

    pub(super) fn uint(&mut self, field: &str) -> Result<u64, DecodeError> {
        rmp::decode::read_int(&mut self.rest)
            .map_err(|_| DecodeError::bad(format!("'{field}' must be an unsigned integer")))
    }

    pub(super) fn bool(&mut self) -> Result<bool, DecodeError> {
        rmp::decode::read_bool(&mut self.rest).map_err(|_| DecodeError::bad("expected a boolean"))
    }

    /// The next value's bytes, as a slice of `frame` (which `self` reads).
    pub(super) fn raw(&mut self, frame: &Bytes) -> Result<Bytes, DecodeError> {
        let start = self.pos();
        self.skip()?;
        Ok(frame.slice(start..self.pos()))
    }

    pub(super) fn error(&mut self) -> Result<ErrorBody, DecodeError> {
        let mut e = ErrorBody::new(ErrorCode::Internal, "");
        for _ in 0..self.map_len()? {
            match self.str()? {
                "code" => e.code = ErrorCode::parse(self.str()?),
                "msg" => e.msg = self.str()?.to_owned().into(),
                "rev" => e.rev = Some(self.uint("rev")?),
                _ => self.skip()?,
            }
        }
        Ok(e)
    }

    pub(super) fn meta(&mut self) -> Result<ValMeta, DecodeError> {
        let mut m = ValMeta::default();
        for _ in 0..self.map_len()? {
            match self.str()? {
                "age_ms" => m.age_ms = Some(self.uint("age_ms")?),
                "ttl_ms" => m.ttl_ms = Some(self.uint("ttl_ms")?),
                "persist" => m.persist = self.bool()?,
                "ephemeral" => m.ephemeral = self.bool()?,
                _ => self.skip()?,
            }
        }
        Ok(m)
    }

    pub(super) fn keys(&mut self) -> Result<Vec<KeyRev<'a>>, DecodeError> {
        let n = rmp::decode::read_array_len(&mut self.rest)
            .map_err(|_| DecodeError::bad("'keys' must be an array"))?;
        let mut keys = Vec::with_capacity((n as usize).min(self.rest.len()));
        for _ in 0..n {
            let mut kr = KeyRev {
                key: Cow::Borrowed(""),
                rev: 0,
            };
            for _ in 0..self.map_len()? {
                match self.str()? {
                    "key" => kr.key = Cow::Borrowed(self.str()?),
                    "rev" => kr.rev = self.uint("rev")?,
                    _ => self.skip()?,
                }
            }
            keys.push(kr);
        }
        Ok(keys)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(n).map_err(|_| truncated())?;
        if n > self.rest.len() {
            return Err(truncated());
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn be(&mut self, n: u64) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// Skips one value of any depth, iteratively: a count of pending items
    /// replaces recursion, so deep nesting cannot overflow the stack.
    pub(super) fn skip(&mut self) -> Result<(), DecodeError> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let marker = rmp::decode::read_marker(&mut self.rest).map_err(|_| truncated())?;
            let (data, items) = match marker {
                Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null => (0, 0),
                Marker::True | Marker::False => (0, 0),
                Marker::U8 | Marker::I8 => (1, 0),
                Marker::U16 | Marker::I16 => (2, 0),
                Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
                Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
                Marker::FixStr(n) => (u64::from(n), 0),
                Marker::Str8 | Marker::Bin8 => (self.be(1)?, 0),
                Marker::Str16 | Marker::Bin16 => (self.be(2)?, 0),
                Marker::Str32 | Marker::Bin32 => (self.be(4)?, 0),
                Marker::FixArray(n) => (0, u64::from(n)),
                Marker::Array16 => (0, self.be(2)?),
                Marker::Array32 => (0, self.be(4)?),
                Marker::FixMap(n) => (0, 2 * u64::from(n)),
                Marker::Map16 => (0, 2 * self.be(2)?),
                Marker::Map32 => (0, 2 * self.be(4)?),
                Marker::FixExt1 => (2, 0),
                Marker::FixExt2 => (3, 0),
                Marker::FixExt4 => (5, 0),
                Marker::FixExt8 => (9, 0),
                Marker::FixExt16 => (17, 0),
                Marker::Ext8 => (self.be(1)? + 1, 0),
                Marker::Ext16 => (self.be(2)? + 1, 0),
                Marker::Ext32 => (self.be(4)? + 1, 0),
                Marker::Reserved => {
                    return Err(DecodeError::bad("reserved MessagePack marker 0xc1"))
                }
            };
            self.take(data)?;
            // Every item takes at least one byte, so more pending items than
            // bytes left means the frame is truncated.
            pending = pending.saturating_add(items);
            if pending > self.rest.len() as u64 {
                return Err(truncated());
            }
        }
        Ok(())
    }
}
