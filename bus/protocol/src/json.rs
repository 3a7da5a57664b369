//! The JSON codec: one object per text frame. Values are transcoded to and
//! from MessagePack (see [`crate::transcode`] for the lossy cases).

use crate::error::{DecodeError, ErrorBody};
use crate::msg::{KeyRev, Op, Request, RequestFields, ServerFields, ServerMsg, ValMeta};
use crate::transcode::{json_to_msgpack, msgpack_to_json};
use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

#[derive(Deserialize)]
struct JsonRequest<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    op: Option<Cow<'a, str>>,
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pattern: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    if_rev: Option<u64>,
    since: Option<u64>,
    sub: Option<u64>,
    persist: Option<bool>,
    ephemeral: Option<bool>,
    ttl_ms: Option<u64>,
    meta: Option<bool>,
}

/// `Option<&RawValue>` that is `Some` for an explicit `null` too.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Decodes one request frame; the value is transcoded to MessagePack.
pub fn decode_request(frame: &str) -> Result<Request<'_>, DecodeError> {
    if !frame.trim_start().starts_with('{') {
        return Err(DecodeError::bad("a message must be a JSON object"));
    }
    let j: JsonRequest<'_> = serde_json::from_str(frame).map_err(|e| DecodeError {
        // On a wrong field type, still address the error to the request's id.
        id: serde_json::from_str::<serde_json::Value>(frame)
            .ok()
            .and_then(|v| v.get("id")?.as_u64())
            .filter(|id| *id <= crate::MAX_ID),
        ..DecodeError::bad(format!("malformed JSON request: {e}"))
    })?;
    let value = match j.value {
        Some(raw) => Some(json_to_msgpack(raw.get()).map_err(|e| DecodeError { id: j.id, ..e })?),
        None => None,
    };
    RequestFields {
        id: j.id,
        op: j.op,
        key: j.key,
        pattern: j.pattern,
        value,
        if_rev: j.if_rev,
        since: j.since,
        sub: j.sub,
        persist: j.persist,
        ephemeral: j.ephemeral,
        ttl_ms: j.ttl_ms,
        meta: j.meta,
    }
    .build()
}

/// The `meta` field: a flag in a `sub` request, a map in a `val` event.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonMeta {
    Asked(bool),
    Val(ValMeta),
}

#[derive(Serialize, Default)]
struct JsonOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ev: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    op: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proto: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_value_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_frame_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pattern: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rev: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<JsonMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    if_rev: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    persist: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ephemeral: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<Vec<JsonKeyRev<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorBody>,
}

#[derive(Serialize, Deserialize)]
struct JsonKeyRev<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    rev: u64,
}

fn write(out: &JsonOut<'_>, buf: &mut BytesMut) {
    // Serializing these plain structs into memory cannot fail.
    let _ = serde_json::to_writer((&mut *buf).writer(), out);
}

/// Encodes a request (used by JSON clients).
pub fn encode_request(req: &Request<'_>, buf: &mut BytesMut) -> Result<(), DecodeError> {
    let mut out = JsonOut {
        id: req.id,
        op: Some(req.op.name()),
        ..JsonOut::default()
    };
    let rendered;
    match &req.op {
        Op::Set {
            key,
            value,
            if_rev,
            life,
        } => {
            rendered = msgpack_to_json(value)?;
            (out.key, out.value, out.if_rev) = (Some(&**key), Some(&*rendered), *if_rev);
            (out.persist, out.ephemeral, out.ttl_ms) = (life.persist, life.ephemeral, life.ttl_ms);
        }
        Op::Get { key } => out.key = Some(&**key),
        Op::Del { key, if_rev } => (out.key, out.if_rev) = (Some(&**key), *if_rev),
        Op::Sub {
            pattern,
            since,
            meta,
        } => {
            (out.pattern, out.since) = (Some(pattern.as_str()), *since);
            out.meta = meta.then_some(JsonMeta::Asked(true));
        }
        Op::Unsub { sub } => out.sub = Some(*sub),
        Op::Keys { pattern } => out.pattern = pattern.as_ref().map(|p| p.as_str()),
    }
    write(&out, buf);
    Ok(())
}

/// Encodes a server message. `value_json` is the value already rendered as
/// JSON, when the caller caches it (one rendering per write, shared by every
/// JSON subscriber); without it the value is transcoded here.
pub fn encode_server(
    msg: &ServerMsg<'_>,
    value_json: Option<&RawValue>,
    buf: &mut BytesMut,
) -> Result<(), DecodeError> {
    let raw = match msg {
        ServerMsg::Val { value, .. } => Some(value),
        ServerMsg::Reply { result: Ok(r), .. } => r.value.as_ref(),
        _ => None,
    };
    let rendered = match (raw, value_json) {
        (Some(bytes), None) => Some(msgpack_to_json(bytes)?),
        _ => None,
    };
    let value = value_json.or(rendered.as_deref());
    let mut out = JsonOut::default();
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
            out.ev = Some("hello");
            (out.proto, out.server) = (Some(*proto), Some(&**server));
            (out.session, out.store) = (Some(&**session), Some(&**store));
            (out.max_value_bytes, out.max_frame_bytes) = (*max_value_bytes, *max_frame_bytes);
            out.subs = *subs;
        }
        ServerMsg::Reply { id, result: Ok(r) } => {
            (out.id, out.ok, out.rev, out.sub) = (Some(*id), Some(true), r.rev, r.sub);
            out.value = value;
            out.keys = r.keys.as_ref().map(|keys| {
                keys.iter()
                    .map(|k| JsonKeyRev {
                        key: Cow::Borrowed(&k.key),
                        rev: k.rev,
                    })
                    .collect()
            });
        }
        ServerMsg::Reply { id, result: Err(e) } => {
            (out.id, out.ok, out.error) = (Some(*id), Some(false), Some(e));
        }
        ServerMsg::Error(e) => (out.ev, out.error) = (Some("error"), Some(e)),
        ServerMsg::Val {
            sub,
            key,
            rev,
            meta,
            ..
        } => {
            (out.ev, out.sub, out.key, out.rev) =
                (Some("val"), Some(*sub), Some(&**key), Some(*rev));
            (out.value, out.meta) = (value, meta.map(JsonMeta::Val));
        }
        ServerMsg::Del { sub, key, rev } => {
            (out.ev, out.sub, out.key, out.rev) =
                (Some("del"), Some(*sub), Some(&**key), Some(*rev));
        }
        ServerMsg::Synced { sub } => (out.ev, out.sub) = (Some("synced"), Some(*sub)),
    }
    write(&out, buf);
    Ok(())
}

#[derive(Deserialize)]
struct JsonServer<'a> {
    #[serde(borrow)]
    ev: Option<Cow<'a, str>>,
    id: Option<u64>,
    ok: Option<bool>,
    error: Option<ErrorBody>,
    proto: Option<u64>,
    #[serde(borrow)]
    server: Option<Cow<'a, str>>,
    #[serde(borrow)]
    session: Option<Cow<'a, str>>,
    #[serde(borrow)]
    store: Option<Cow<'a, str>>,
    max_value_bytes: Option<u64>,
    max_frame_bytes: Option<u64>,
    subs: Option<u64>,
    sub: Option<u64>,
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    rev: Option<u64>,
    #[serde(borrow)]
    keys: Option<Vec<JsonKeyRev<'a>>>,
    meta: Option<ValMeta>,
}

/// Decodes a server message (used by JSON clients); values become MessagePack.
pub fn decode_server(frame: &str) -> Result<ServerMsg<'_>, DecodeError> {
    let j: JsonServer<'_> = serde_json::from_str(frame)
        .map_err(|e| DecodeError::bad(format!("malformed JSON message: {e}")))?;
    ServerFields {
        ev: j.ev,
        id: j.id,
        ok: j.ok,
        error: j.error,
        proto: j.proto,
        server: j.server,
        session: j.session,
        store: j.store,
        max_value_bytes: j.max_value_bytes,
        max_frame_bytes: j.max_frame_bytes,
        subs: j.subs,
        sub: j.sub,
        key: j.key,
        value: j.value.map(|v| json_to_msgpack(v.get())).transpose()?,
        rev: j.rev,
        keys: j.keys.map(|keys| {
            keys.into_iter()
                .map(|k| KeyRev {
                    key: k.key,
                    rev: k.rev,
                })
                .collect()
        }),
        meta: j.meta,
    }
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, Life, Pattern, ValMeta};

    #[test]
    fn request_round_trip() {
        let value = json_to_msgpack(r#"{"t":21.5,"tags":["a"]}"#).expect("pack");
        let ops = [
            Op::Set {
                key: "a.b".into(),
                value: value.clone(),
                if_rev: Some(0),
                life: Life::default(),
            },
            Op::Set {
                key: "a.b".into(),
                value,
                if_rev: None,
                life: Life {
                    persist: false,
                    ephemeral: true,
                    ttl_ms: Some(1),
                },
            },
            Op::Sub {
                pattern: Pattern::parse("a.*").expect("p"),
                since: None,
                meta: false,
            },
            Op::Sub {
                pattern: Pattern::parse("a.*").expect("p"),
                since: Some(4),
                meta: true,
            },
            Op::Keys { pattern: None },
        ];
        for op in ops {
            let req = Request { id: Some(1), op };
            let mut buf = BytesMut::new();
            encode_request(&req, &mut buf).expect("encode");
            let text = std::str::from_utf8(&buf).expect("utf8");
            assert_eq!(decode_request(text).expect("decode"), req);
        }
    }

    #[test]
    fn life_options_are_checked() {
        for (frame, why) in [
            (
                r#"{"id":3,"op":"set","key":"k","value":1,"persist":true,"ephemeral":true}"#,
                "exclude",
            ),
            (
                r#"{"id":3,"op":"set","key":"k","value":1,"ttl_ms":0}"#,
                "ttl_ms",
            ),
            (
                r#"{"id":3,"op":"set","key":"k","value":1,"persist":1}"#,
                "malformed",
            ),
        ] {
            let e = decode_request(frame).expect_err(frame);
            assert_eq!((e.id, e.error.code), (Some(3), ErrorCode::BadRequest));
            assert!(e.error.msg.contains(why), "{frame}: {}", e.error.msg);
        }
    }

    #[test]
    fn null_value_is_a_value() {
        let req = decode_request(r#"{"op":"set","key":"k","value":null}"#).expect("decode");
        assert!(matches!(req.op, Op::Set { value, .. } if value[..] == [0xc0]));
    }

    #[test]
    fn malformed_and_unknown() {
        let e = decode_request("{nope").expect_err("malformed");
        assert_eq!(e.error.code, ErrorCode::BadRequest);
        let e = decode_request(r#"{"id":2,"op":"get","key":5}"#).expect_err("wrong type");
        assert_eq!((e.id, e.error.code), (Some(2), ErrorCode::BadRequest));
        let e = decode_request(r#"[1,"get","k",null,null,null,null,null]"#).expect_err("array");
        assert_eq!((e.id, e.error.code), (None, ErrorCode::BadRequest));
        let e = decode_request(r#"{"id":3,"op":"frob"}"#).expect_err("unknown");
        assert_eq!((e.id, e.error.code), (Some(3), ErrorCode::UnknownOp));
        let e = decode_request(r#"{"id":4,"op":"get","key":"a..b"}"#).expect_err("bad key");
        assert_eq!((e.id, e.error.code), (Some(4), ErrorCode::BadKey));
        let e = decode_request(r#"{"id":9007199254740992,"op":"keys"}"#).expect_err("big id");
        assert_eq!(e.error.code, ErrorCode::BadRequest);
    }

    #[test]
    fn server_round_trip() {
        let msg = ServerMsg::Val {
            sub: 2,
            key: "k".into(),
            value: json_to_msgpack("[1,2]").expect("pack"),
            rev: 5,
            meta: None,
        };
        let mut buf = BytesMut::new();
        encode_server(&msg, None, &mut buf).expect("encode");
        let text = std::str::from_utf8(&buf).expect("utf8");
        assert_eq!(
            text,
            r#"{"ev":"val","sub":2,"key":"k","value":[1,2],"rev":5}"#
        );
        assert_eq!(decode_server(text).expect("decode"), msg);
    }

    #[test]
    fn hello_round_trip() {
        let msg = ServerMsg::Hello {
            proto: 1,
            server: "ipcbus/0.1.0".into(),
            session: "u".into(),
            store: "s".into(),
            max_value_bytes: Some(10),
            max_frame_bytes: Some(20),
            subs: Some(2),
        };
        let mut buf = BytesMut::new();
        encode_server(&msg, None, &mut buf).expect("encode");
        let text = std::str::from_utf8(&buf).expect("utf8");
        assert_eq!(
            text,
            r#"{"ev":"hello","proto":1,"server":"ipcbus/0.1.0","session":"u","store":"s","max_value_bytes":10,"max_frame_bytes":20,"subs":2}"#
        );
        assert_eq!(decode_server(text).expect("decode"), msg);
    }

    #[test]
    fn val_meta_round_trip() {
        let msg = ServerMsg::Val {
            sub: 2,
            key: "k".into(),
            value: json_to_msgpack("1").expect("pack"),
            rev: 5,
            meta: Some(ValMeta {
                age_ms: Some(30),
                persist: false,
                ephemeral: true,
                ttl_ms: Some(900),
            }),
        };
        let mut buf = BytesMut::new();
        encode_server(&msg, None, &mut buf).expect("encode");
        let text = std::str::from_utf8(&buf).expect("utf8");
        assert_eq!(
            text,
            r#"{"ev":"val","sub":2,"key":"k","value":1,"rev":5,"meta":{"age_ms":30,"ephemeral":true,"ttl_ms":900}}"#
        );
        assert_eq!(decode_server(text).expect("decode"), msg);
        let restored =
            r#"{"ev":"val","sub":2,"key":"k","value":1,"rev":5,"meta":{"persist":true}}"#;
        let want = ValMeta {
            persist: true,
            ..ValMeta::default()
        };
        assert!(matches!(
            decode_server(restored).expect("decode"),
            ServerMsg::Val { meta: Some(m), .. } if m == want
        ));
    }

    #[test]
    fn sub_meta_is_a_bool() {
        let req = decode_request(r#"{"id":1,"op":"sub","pattern":"a","meta":true}"#).expect("sub");
        assert!(matches!(req.op, Op::Sub { meta: true, .. }));
        let e = decode_request(r#"{"id":2,"op":"sub","pattern":"a","meta":"yes"}"#)
            .expect_err("meta must be a bool");
        assert_eq!((e.id, e.error.code), (Some(2), ErrorCode::BadRequest));
    }
}
