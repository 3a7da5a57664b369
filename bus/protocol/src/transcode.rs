//! MessagePack values to JSON and back, for JSON sessions.
//!
//! JSON cannot say everything MessagePack can. The lossy cases, also listed
//! in docs/protocol.md:
//! - `bin` becomes an array of byte numbers;
//! - `ext` becomes `{"ext": TYPE, "data": [bytes]}`;
//! - a map key that is not a string becomes its JSON text (`1` -> `"1"`);
//! - NaN and infinite floats become `null`;
//! - a string that is not valid UTF-8 is repaired with U+FFFD.

use crate::error::{DecodeError, ErrorCode};
use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value as Js};

/// Depth budget when a value must be decoded (JSON sessions). `rmpv` spends
/// two units per array or map level, so this allows about 127 levels, as
/// many as `serde_json` accepts from a JSON publisher.
pub const MAX_DEPTH: usize = 256;

/// Renders a MessagePack value as JSON text.
pub fn msgpack_to_json(bytes: &[u8]) -> Result<Box<RawValue>, DecodeError> {
    let value = msgpack_to_json_value(bytes)?;
    serde_json::value::to_raw_value(&value)
        .map_err(|e| DecodeError::new(ErrorCode::Internal, format!("json render: {e}")))
}

/// Decodes a MessagePack value into a `serde_json::Value`.
pub fn msgpack_to_json_value(bytes: &[u8]) -> Result<Js, DecodeError> {
    let mut rd = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)
        .map_err(|e| DecodeError::bad(format!("bad MessagePack value: {e}")))?;
    Ok(to_json(value))
}

/// Encodes JSON text as one MessagePack value.
pub fn json_to_msgpack(json: &str) -> Result<Bytes, DecodeError> {
    let value: Js =
        serde_json::from_str(json).map_err(|e| DecodeError::bad(format!("bad JSON value: {e}")))?;
    Ok(json_value_to_msgpack(&value))
}

/// Encodes a `serde_json::Value` as one MessagePack value.
pub fn json_value_to_msgpack(value: &Js) -> Bytes {
    let mut out = Vec::with_capacity(64);
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &from_json(value));
    out.into()
}

fn to_json(v: Mp) -> Js {
    match v {
        Mp::Nil => Js::Null,
        Mp::Boolean(b) => Js::Bool(b),
        Mp::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Js::from(u),
            (_, Some(s)) => Js::from(s),
            _ => Js::Null,
        },
        Mp::F32(f) => float(f64::from(f)),
        Mp::F64(f) => float(f),
        Mp::String(s) => Js::String(lossy(s)),
        Mp::Binary(b) => bytes(&b),
        Mp::Array(a) => Js::Array(a.into_iter().map(to_json).collect()),
        Mp::Map(m) => Js::Object(
            m.into_iter()
                .map(|(k, v)| (map_key(k), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
        Mp::Ext(t, data) => {
            let mut m = Map::new();
            m.insert("ext".into(), Js::from(t));
            m.insert("data".into(), bytes(&data));
            Js::Object(m)
        }
    }
}

fn lossy(s: rmpv::Utf8String) -> String {
    String::from_utf8(s.into_bytes())
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn float(f: f64) -> Js {
    Number::from_f64(f).map_or(Js::Null, Js::Number)
}

fn bytes(b: &[u8]) -> Js {
    Js::Array(b.iter().map(|x| Js::from(*x)).collect())
}

fn map_key(k: Mp) -> String {
    match k {
        Mp::String(s) => lossy(s),
        other => to_json(other).to_string(),
    }
}

fn from_json(v: &Js) -> Mp {
    match v {
        Js::Null => Mp::Nil,
        Js::Bool(b) => Mp::Boolean(*b),
        Js::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Mp::from(u),
            (_, Some(i), _) => Mp::from(i),
            (_, _, Some(f)) => Mp::F64(f),
            _ => Mp::Nil,
        },
        Js::String(s) => Mp::from(s.as_str()),
        Js::Array(a) => Mp::Array(a.iter().map(from_json).collect()),
        Js::Object(m) => Mp::Map(
            m.iter()
                .map(|(k, v)| (Mp::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp(v: &Mp) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).expect("encode");
        out
    }

    #[test]
    fn round_trip_of_json_types() {
        let text = r#"{"a":[1,-2,3.5,"x",null,true],"b":{"c":18446744073709551615}}"#;
        let packed = json_to_msgpack(text).expect("pack");
        assert_eq!(msgpack_to_json(&packed).expect("unpack").get(), text);
    }

    #[test]
    fn lossy_cases() {
        let v = Mp::Map(vec![
            (Mp::from(1), Mp::Binary(vec![1, 2])),
            (Mp::from("e"), Mp::Ext(5, vec![9])),
            (Mp::from("n"), Mp::F64(f64::NAN)),
        ]);
        let json = msgpack_to_json(&mp(&v)).expect("json");
        assert_eq!(
            json.get(),
            r#"{"1":[1,2],"e":{"ext":5,"data":[9]},"n":null}"#
        );
    }

    #[test]
    fn too_deep_is_an_error_not_a_crash() {
        let mut v = vec![0x91u8; 100_000];
        v.push(0xc0);
        assert!(msgpack_to_json(&v).is_err());
    }
}
