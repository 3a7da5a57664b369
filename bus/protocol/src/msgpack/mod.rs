//! The MessagePack codec: one map per binary frame.
//!
//! Values are never decoded: the decoder finds the span of the `value` field
//! and slices it out of the frame (zero-copy), and the encoder splices those
//! bytes back in. A subscriber therefore receives exactly the bytes the
//! publisher sent.

use crate::error::DecodeError;
use crate::msg::{Op, Request, RequestFields, ServerFields, ServerMsg};
use bytes::{Bytes, BytesMut};
use reader::Reader;
use std::borrow::Cow;
use writer::{Optional, Writer};

mod reader;
mod writer;

/// Decodes one request frame. `value` is a zero-copy slice of `frame`.
pub fn decode_request(frame: &Bytes) -> Result<Request<'_>, DecodeError> {
    let mut rd = Reader::new(frame);
    let mut f = RequestFields::default();
    let mut deferred = None;
    for _ in 0..rd.map_len()? {
        let name = rd.str().map_err(|e| DecodeError { id: f.id, ..e })?;
        // A field of the wrong type is skipped and reported after the whole
        // map was read, so that the error reply carries the id wherever it is.
        let before = rd.rest;
        if let Err(e) = request_field(&mut rd, name, frame, &mut f) {
            rd.rest = before;
            rd.skip().map_err(|e| DecodeError { id: f.id, ..e })?;
            deferred.get_or_insert(e);
        }
    }
    rd.finish().map_err(|e| DecodeError { id: f.id, ..e })?;
    match deferred {
        Some(e) => Err(DecodeError { id: f.id, ..e }),
        None => f.build(),
    }
}

fn request_field<'a>(
    rd: &mut Reader<'a>,
    name: &str,
    frame: &Bytes,
    f: &mut RequestFields<'a>,
) -> Result<(), DecodeError> {
    match name {
        "id" => f.id = Some(rd.uint("id")?),
        "op" => f.op = Some(Cow::Borrowed(rd.str()?)),
        "key" => f.key = Some(Cow::Borrowed(rd.str()?)),
        "pattern" => f.pattern = Some(Cow::Borrowed(rd.str()?)),
        "value" => f.value = Some(rd.raw(frame)?),
        "if_rev" => f.if_rev = Some(rd.uint("if_rev")?),
        "since" => f.since = Some(rd.uint("since")?),
        "sub" => f.sub = Some(rd.uint("sub")?),
        "persist" => f.persist = Some(rd.bool()?),
        "ephemeral" => f.ephemeral = Some(rd.bool()?),
        "ttl_ms" => f.ttl_ms = Some(rd.uint("ttl_ms")?),
        "meta" => f.meta = Some(rd.bool()?),
        _ => rd.skip()?,
    }
    Ok(())
}

/// Encodes a request (used by clients).
pub fn encode_request(req: &Request<'_>, buf: &mut BytesMut) {
    let mut w = Writer(buf);
    let none = [("", None), ("", None)];
    let mut flags = [("persist", false), ("ephemeral", false)];
    let (fields, key, pattern, value, uints): (u32, Option<&str>, Option<&str>, _, _) = match &req
        .op
    {
        Op::Set {
            key,
            value,
            if_rev,
            life,
        } => {
            flags = [("persist", life.persist), ("ephemeral", life.ephemeral)];
            let uints = [("if_rev", *if_rev), ("ttl_ms", life.ttl_ms)];
            (2, Some(&**key), None, Some(value), uints)
        }
        Op::Get { key } => (1, Some(&**key), None, None, none),
        Op::Del { key, if_rev } => (1, Some(&**key), None, None, [("if_rev", *if_rev), none[1]]),
        Op::Sub {
            pattern,
            since,
            meta,
        } => {
            flags[0] = ("meta", *meta);
            let uints = [("since", *since), none[1]];
            (1, None, Some(pattern.as_str()), None, uints)
        }
        Op::Unsub { sub } => (0, None, None, None, [("sub", Some(*sub)), none[1]]),
        Op::Keys { pattern } => {
            let p = pattern.as_ref().map(|p| p.as_str());
            (u32::from(p.is_some()), None, p, None, none)
        }
    };
    let optional = Optional { uints, flags };
    w.map(1 + fields + optional.count() + u32::from(req.id.is_some()));
    if let Some(id) = req.id {
        w.field_uint("id", id);
    }
    w.str("op");
    w.str(req.op.name());
    if let Some(key) = key {
        w.str("key");
        w.str(key);
    }
    if let Some(pattern) = pattern {
        w.str("pattern");
        w.str(pattern);
    }
    if let Some(value) = value {
        w.str("value");
        w.raw(value);
    }
    w.optional(&optional);
}

/// Encodes a server message. `Val` and `get` values are spliced in as is.
pub fn encode_server(msg: &ServerMsg<'_>, buf: &mut BytesMut) {
    let mut w = Writer(buf);
    match msg {
        ServerMsg::Hello {
            proto,
            server,
            session,
            store,
            max_value_bytes,
            max_frame_bytes,
            subs,
        } => {
            let limits = [
                ("max_value_bytes", max_value_bytes),
                ("max_frame_bytes", max_frame_bytes),
                ("subs", subs),
            ];
            w.map(5 + limits.iter().filter(|(_, v)| v.is_some()).count() as u32);
            w.field_str("ev", "hello");
            w.field_uint("proto", u64::from(*proto));
            w.field_str("server", server);
            w.field_str("session", session);
            w.field_str("store", store);
            for (name, v) in limits {
                if let Some(v) = v {
                    w.field_uint(name, *v);
                }
            }
        }
        ServerMsg::Reply { id, result: Ok(r) } => {
            let n = [
                r.rev.is_some(),
                r.value.is_some(),
                r.sub.is_some(),
                r.keys.is_some(),
            ];
            w.map(2 + n.iter().filter(|b| **b).count() as u32);
            w.field_uint("id", *id);
            w.str("ok");
            w.bool(true);
            if let Some(value) = &r.value {
                w.str("value");
                w.raw(value);
            }
            if let Some(rev) = r.rev {
                w.field_uint("rev", rev);
            }
            if let Some(sub) = r.sub {
                w.field_uint("sub", sub);
            }
            if let Some(keys) = &r.keys {
                w.str("keys");
                w.array(keys.len() as u32);
                for k in keys {
                    w.map(2);
                    w.field_str("key", &k.key);
                    w.field_uint("rev", k.rev);
                }
            }
        }
        ServerMsg::Reply { id, result: Err(e) } => {
            w.map(3);
            w.field_uint("id", *id);
            w.str("ok");
            w.bool(false);
            w.error(e);
        }
        ServerMsg::Error(e) => {
            w.map(2);
            w.field_str("ev", "error");
            w.error(e);
        }
        ServerMsg::Val {
            sub,
            key,
            value,
            rev,
            meta,
        } => {
            w.map(5 + u32::from(meta.is_some()));
            w.field_str("ev", "val");
            w.field_uint("sub", *sub);
            w.field_str("key", key);
            w.str("value");
            w.raw(value);
            w.field_uint("rev", *rev);
            if let Some(meta) = meta {
                w.meta(meta);
            }
        }
        ServerMsg::Del { sub, key, rev } => {
            w.map(4);
            w.field_str("ev", "del");
            w.field_uint("sub", *sub);
            w.field_str("key", key);
            w.field_uint("rev", *rev);
        }
        ServerMsg::Synced { sub } => {
            w.map(2);
            w.field_str("ev", "synced");
            w.field_uint("sub", *sub);
        }
    }
}

/// Decodes a server message (used by clients). Values are zero-copy slices.
pub fn decode_server(frame: &Bytes) -> Result<ServerMsg<'_>, DecodeError> {
    let mut rd = Reader::new(frame);
    let mut f = ServerFields::default();
    for _ in 0..rd.map_len()? {
        match rd.str()? {
            "ev" => f.ev = Some(Cow::Borrowed(rd.str()?)),
            "id" => f.id = Some(rd.uint("id")?),
            "ok" => f.ok = Some(rd.bool()?),
            "error" => f.error = Some(rd.error()?),
            "proto" => f.proto = Some(rd.uint("proto")?),
            "server" => f.server = Some(Cow::Borrowed(rd.str()?)),
            "session" => f.session = Some(Cow::Borrowed(rd.str()?)),
            "store" => f.store = Some(Cow::Borrowed(rd.str()?)),
            "max_value_bytes" => f.max_value_bytes = Some(rd.uint("max_value_bytes")?),
            "max_frame_bytes" => f.max_frame_bytes = Some(rd.uint("max_frame_bytes")?),
            "subs" => f.subs = Some(rd.uint("subs")?),
            "sub" => f.sub = Some(rd.uint("sub")?),
            "key" => f.key = Some(Cow::Borrowed(rd.str()?)),
            "value" => f.value = Some(rd.raw(frame)?),
            "rev" => f.rev = Some(rd.uint("rev")?),
            "keys" => f.keys = Some(rd.keys()?),
            "meta" => f.meta = Some(rd.meta()?),
            _ => rd.skip()?,
        }
    }
    rd.finish()?;
    f.build()
}

/// Checks that `bytes` hold exactly one well-formed MessagePack value.
pub fn check_value(bytes: &[u8]) -> Result<(), DecodeError> {
    let mut rd = Reader::new(bytes);
    rd.skip()?;
    rd.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorBody, ErrorCode, KeyRev, Life, Pattern, Reply, ValMeta};

    fn mp(v: &rmpv::Value) -> Bytes {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).expect("encode");
        out.into()
    }

    #[test]
    fn request_round_trip_keeps_value_bytes() {
        let value = mp(&rmpv::Value::Map(vec![("t".into(), 21.5.into())]));
        let reqs = [
            Op::Set {
                key: "a.b".into(),
                value: value.clone(),
                if_rev: Some(3),
                life: Life::default(),
            },
            Op::Set {
                key: "a.b".into(),
                value: value.clone(),
                if_rev: None,
                life: Life {
                    persist: true,
                    ephemeral: false,
                    ttl_ms: Some(5000),
                },
            },
            Op::Set {
                key: "a.b".into(),
                value,
                if_rev: Some(0),
                life: Life {
                    persist: false,
                    ephemeral: true,
                    ttl_ms: None,
                },
            },
            Op::Get { key: "a".into() },
            Op::Del {
                key: "a".into(),
                if_rev: None,
            },
            Op::Sub {
                pattern: Pattern::parse("a.>").expect("p"),
                since: Some(9),
                meta: false,
            },
            Op::Sub {
                pattern: Pattern::parse("a.*").expect("p"),
                since: None,
                meta: true,
            },
            Op::Unsub { sub: 4 },
            Op::Keys { pattern: None },
        ];
        for op in reqs {
            let req = Request { id: Some(7), op };
            let mut buf = BytesMut::new();
            encode_request(&req, &mut buf);
            let frame = buf.freeze();
            assert_eq!(decode_request(&frame).expect("decode"), req);
        }
    }

    #[test]
    fn errors_keep_the_id_and_code() {
        let frame = mp(&rmpv::Value::Map(vec![
            ("op".into(), "nope".into()),
            ("id".into(), 5.into()),
        ]));
        let e = decode_request(&frame).expect_err("unknown op");
        assert_eq!((e.id, e.error.code), (Some(5), ErrorCode::UnknownOp));
        let frame = mp(&rmpv::Value::Map(vec![
            ("key".into(), 1.into()),
            ("id".into(), 6.into()),
        ]));
        let e = decode_request(&frame).expect_err("bad type");
        assert_eq!((e.id, e.error.code), (Some(6), ErrorCode::BadRequest));
        for junk in [
            &b""[..],
            b"\xc1",
            b"\x81",
            b"\xdf\xff\xff\xff\xff",
            b"\x91\x01",
            b"\x80\x80",
        ] {
            let e = decode_request(&Bytes::copy_from_slice(junk)).expect_err("junk");
            assert_eq!(e.error.code, ErrorCode::BadRequest);
        }
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let mut v = vec![0x91u8; 1_000_000];
        v.push(0xc0);
        check_value(&v).expect("deep but valid");
        v.pop();
        assert!(check_value(&v).is_err());
    }

    #[test]
    fn server_round_trip() {
        let msgs = [
            ServerMsg::Hello {
                proto: 1,
                server: "ipcbus/0.1.0".into(),
                session: "u".into(),
                store: "s".into(),
                max_value_bytes: Some(1 << 20),
                max_frame_bytes: None,
                subs: Some(2),
            },
            ServerMsg::Val {
                sub: 1,
                key: "k".into(),
                value: mp(&"v".into()),
                rev: 3,
                meta: None,
            },
            ServerMsg::Val {
                sub: 1,
                key: "k".into(),
                value: mp(&"v".into()),
                rev: 3,
                meta: Some(ValMeta {
                    age_ms: Some(12),
                    persist: true,
                    ephemeral: false,
                    ttl_ms: Some(0),
                }),
            },
            ServerMsg::Val {
                sub: 1,
                key: "k".into(),
                value: mp(&"v".into()),
                rev: 3,
                meta: Some(ValMeta::default()),
            },
            ServerMsg::Del {
                sub: 1,
                key: "k".into(),
                rev: 4,
            },
            ServerMsg::Synced { sub: 1 },
            ServerMsg::Error(ErrorBody::new(ErrorCode::BadKey, "bad key: empty")),
            ServerMsg::Reply {
                id: 2,
                result: Err(ErrorBody::rev_mismatch(8)),
            },
            ServerMsg::Reply {
                id: 3,
                result: Ok(Reply {
                    keys: Some(vec![KeyRev {
                        key: "a".into(),
                        rev: 1,
                    }]),
                    ..Reply::default()
                }),
            },
            ServerMsg::Reply {
                id: 4,
                result: Ok(Reply {
                    value: Some(mp(&1.into())),
                    rev: Some(2),
                    ..Reply::default()
                }),
            },
        ];
        for msg in msgs {
            let mut buf = BytesMut::new();
            encode_server(&msg, &mut buf);
            let frame = buf.freeze();
            assert_eq!(decode_server(&frame).expect("decode"), msg);
        }
    }

    fn server_frame(msg: &ServerMsg<'_>) -> rmpv::Value {
        let mut buf = BytesMut::new();
        encode_server(msg, &mut buf);
        rmpv::decode::read_value(&mut &buf[..]).expect("one value")
    }

    #[test]
    fn val_without_meta_is_the_same_five_fields_as_ever() {
        let val = |meta| ServerMsg::Val {
            sub: 2,
            key: "k".into(),
            value: mp(&1.into()),
            rev: 9,
            meta,
        };
        let plain = rmpv::Value::Map(vec![
            ("ev".into(), "val".into()),
            ("sub".into(), 2.into()),
            ("key".into(), "k".into()),
            ("value".into(), 1.into()),
            ("rev".into(), 9.into()),
        ]);
        assert_eq!(server_frame(&val(None)), plain);
        let meta = ValMeta {
            age_ms: None,
            persist: false,
            ephemeral: true,
            ttl_ms: Some(500),
        };
        let rmpv::Value::Map(mut fields) = plain else {
            unreachable!()
        };
        let shown = vec![
            ("ttl_ms".into(), 500.into()),
            ("ephemeral".into(), true.into()),
        ];
        fields.push(("meta".into(), rmpv::Value::Map(shown)));
        assert_eq!(server_frame(&val(Some(meta))), rmpv::Value::Map(fields));
    }

    #[test]
    fn meta_must_be_a_bool() {
        let frame = mp(&rmpv::Value::Map(vec![
            ("id".into(), 3.into()),
            ("op".into(), "sub".into()),
            ("pattern".into(), "a".into()),
            ("meta".into(), 1.into()),
        ]));
        let e = decode_request(&frame).expect_err("meta: 1");
        assert_eq!((e.id, e.error.code), (Some(3), ErrorCode::BadRequest));
        let frame = mp(&rmpv::Value::Map(vec![
            ("op".into(), "sub".into()),
            ("pattern".into(), "a".into()),
        ]));
        let req = decode_request(&frame).expect("no meta");
        assert!(matches!(req.op, Op::Sub { meta: false, .. }));
    }
}
