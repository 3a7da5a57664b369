//! The checks each fuzz target runs on one input, shared with the test
//! `bus/protocol/tests/fuzz_regressions.rs` (which includes this file), so
//! that inputs saved under `fuzz/regressions/` replay under plain `cargo test`.
//!
//! A check panics when a property breaks. An input the codec refuses is fine:
//! refusing is the decoder's job; panicking or losing data on the way back is not.

pub mod http;

use bytes::{Bytes, BytesMut};
use ipcbus_protocol::{json, msgpack, validate_key, Pattern, PatternIndex};
use std::collections::BTreeSet;

/// MessagePack frames: decoding never panics, and whatever decodes, as a
/// request or as a server message, re-encodes to a frame that decodes to the
/// same message. Values travel as raw bytes, so this holds exactly.
pub fn frame_msgpack(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    if let Ok(req) = msgpack::decode_request(&frame) {
        let mut buf = BytesMut::new();
        msgpack::encode_request(&req, &mut buf);
        let again = buf.freeze();
        assert_eq!(
            msgpack::decode_request(&again),
            Ok(req),
            "request round trip"
        );
    }
    if let Ok(msg) = msgpack::decode_server(&frame) {
        let mut buf = BytesMut::new();
        msgpack::encode_server(&msg, &mut buf);
        let again = buf.freeze();
        assert_eq!(msgpack::decode_server(&again), Ok(msg), "server round trip");
    }
}

/// JSON frames (text, so only UTF-8 inputs are tried): decoding never
/// panics, and whatever decodes re-encodes to text that decodes to the same
/// message. Values become MessagePack on the way in and JSON on the way out;
/// the lossy cases of that mapping (`transcode`) concern MessagePack-only
/// types, which a value that came from JSON cannot hold, so this holds
/// exactly too, value bytes included.
pub fn frame_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(req) = json::decode_request(text) {
        let mut buf = BytesMut::new();
        if let Err(e) = json::encode_request(&req, &mut buf) {
            panic!("a decoded request must encode: {e}");
        }
        assert_eq!(
            json::decode_request(utf8(&buf)),
            Ok(req),
            "request round trip"
        );
    }
    if let Ok(msg) = json::decode_server(text) {
        let mut buf = BytesMut::new();
        if let Err(e) = json::encode_server(&msg, None, &mut buf) {
            panic!("a decoded server message must encode: {e}");
        }
        assert_eq!(
            json::decode_server(utf8(&buf)),
            Ok(msg),
            "server round trip"
        );
    }
}

fn utf8(buf: &[u8]) -> &str {
    match std::str::from_utf8(buf) {
        Ok(text) => text,
        Err(e) => panic!("the JSON encoder wrote invalid UTF-8: {e}"),
    }
}

/// Keys and patterns: validation never panics; a valid key is also a valid
/// pattern that matches exactly itself; and a pattern agrees with
/// [`reference_matches`] on keys made from it.
pub fn pattern(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Pattern::parse(text);
    if validate_key(text).is_ok() {
        let Ok(p) = &parsed else {
            panic!("valid key {text:?} is not a valid pattern");
        };
        assert_eq!(p.exact_key(), Some(text), "a key is an exact pattern");
        assert!(p.matches(text), "{text:?} does not match itself");
    }
    let Ok(p) = parsed else {
        return;
    };
    assert_eq!(p.as_str(), text);
    let filled = fill(text, "x", "x");
    if validate_key(&filled).is_ok() {
        assert!(p.matches(&filled), "{text:?} does not match {filled:?}");
    }
    for key in derived_keys(text) {
        // Any string must be safe to test; only keys have a right answer.
        let got = p.matches(&key);
        if validate_key(&key).is_ok() {
            let want = reference_matches(text, &key);
            assert_eq!(got, want, "pattern {text:?}, key {key:?}");
        }
    }
}

/// The pattern with `*` replaced by `one` and `>` by `rest`.
fn fill(pattern: &str, one: &str, rest: &str) -> String {
    let tokens: Vec<&str> = pattern
        .split('.')
        .map(|t| match t {
            "*" => one,
            ">" => rest,
            t => t,
        })
        .collect();
    tokens.join(".")
}

/// Keys near the edge of what a pattern matches: filled in, one token short,
/// one token long, with a two-token `>`, and some that are not keys at all.
fn derived_keys(pattern: &str) -> Vec<String> {
    let filled = fill(pattern, "x", "x");
    let mut keys = vec![
        fill(pattern, "x", "x.y"),
        fill(pattern, "*", ">"),
        format!("{filled}.z"),
        format!("z.{filled}"),
        String::new(),
        ".".to_owned(),
        format!("{filled}."),
    ];
    if let Some((head, _)) = filled.rsplit_once('.') {
        keys.push(head.to_owned());
    }
    keys.push(filled);
    keys
}

/// Matching written the obvious way, on token lists: `*` is exactly one
/// token, a final `>` is one or more, anything else must be equal.
pub fn reference_matches(pattern: &str, key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    let (fixed, rest_ok) = match pattern.split_last() {
        Some((&">", head)) => (head, key.len() > head.len()),
        _ => (&pattern[..], key.len() == pattern.len()),
    };
    rest_ok && fixed.iter().zip(&key).all(|(p, k)| *p == "*" || p == k)
}

/// The server's two indexes, driven by lines: `+pattern` files a
/// subscription, `-pattern` takes one out, any other line is a key. The
/// pattern index must find exactly the filed patterns that match each key
/// (against `Pattern::matches`), taking out must take out what was filed,
/// and every key a pattern matches must lie in the ordered range of its
/// literal prefix (what the server's walks visit).
pub fn index(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut index = PatternIndex::default();
    let mut filed: Vec<(Pattern, u32)> = Vec::new();
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for (n, line) in (0u32..).zip(text.lines().take(256)) {
        if let Some(p) = line.strip_prefix('+') {
            if let Ok(p) = Pattern::parse(p) {
                index.insert(&p, n);
                filed.push((p, n));
            }
        } else if let Some(p) = line.strip_prefix('-') {
            let Ok(p) = Pattern::parse(p) else { continue };
            let first = filed.iter().position(|(f, _)| *f == p);
            let want = first.map(|i| filed.remove(i).1);
            let got = index.remove(&p, |&e| Some(e) == want);
            assert_eq!(got, want, "removing {p:?}");
        } else if validate_key(line).is_ok() {
            keys.insert(line);
            let mut got = Vec::new();
            index.for_each_match(line, |&e| got.push(e));
            got.sort_unstable();
            let mut want: Vec<u32> = filed
                .iter()
                .filter(|(p, _)| p.matches(line))
                .map(|(_, e)| *e)
                .collect();
            want.sort_unstable();
            assert_eq!(got, want, "patterns matching {line:?}");
        }
    }
    for (p, _) in &filed {
        let prefix = p.literal_prefix();
        let walked: BTreeSet<&str> = keys
            .range(prefix..)
            .take_while(|k| k.starts_with(prefix))
            .copied()
            .collect();
        for key in keys.iter().filter(|k| p.matches(k)) {
            assert!(
                walked.contains(key),
                "{p:?} matches {key:?}, outside its walk"
            );
        }
    }
}
