//! Keys as NATS subjects (docs/scaling.md §4). A NATS KV key allows only
//! `[-/_=.a-zA-Z0-9]`, an ipcbus key any UTF-8 but whitespace, controls,
//! `*` and `>`. Each token is escaped on its own, so dots stay token
//! separators and a pattern maps one to one onto a subject filter. User
//! keys live under the token `k`, apart from the server's own entries.

use ipcbus_protocol::key::validate_key;
#[cfg(test)]
use ipcbus_protocol::key::Pattern;
use std::fmt::Write;

/// The first token of every key's subject.
const KEYS: &str = "k";

/// The subject of `key` (a valid key): `k.` and the escaped tokens.
pub(crate) fn key_subject(key: &str) -> String {
    let mut out = String::with_capacity(KEYS.len() + 1 + key.len());
    out.push_str(KEYS);
    for token in key.split('.') {
        out.push('.');
        escape_token(token, &mut out);
    }
    out
}

/// The subject filter that matches the subjects of the keys `pattern`
/// matches: wildcard tokens kept, the others escaped. (The feed takes the
/// whole bucket; this shows the mapping keeps matching as it is.)
#[cfg(test)]
fn pattern_filter(pattern: &Pattern) -> String {
    let mut out = String::with_capacity(KEYS.len() + 1 + pattern.as_str().len());
    out.push_str(KEYS);
    for token in pattern.tokens() {
        out.push('.');
        match token {
            "*" | ">" => out.push_str(token),
            _ => escape_token(token, &mut out),
        }
    }
    out
}

/// The key whose subject this is; `None` for a subject that is not one a
/// key maps to (another prefix, an escape that [`key_subject`] would not
/// write, or no valid key).
pub(crate) fn subject_key(subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(KEYS)?.strip_prefix('.')?;
    let mut bytes = Vec::with_capacity(rest.len());
    for (i, token) in rest.split('.').enumerate() {
        if i > 0 {
            bytes.push(b'.');
        }
        unescape_token(token, &mut bytes)?;
    }
    let key = String::from_utf8(bytes).ok()?;
    validate_key(&key).ok()?;
    // One to one: only the escaping that `key_subject` writes decodes.
    (key_subject(&key) == subject).then_some(key)
}

fn kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_')
}

fn escape_token(token: &str, out: &mut String) {
    for &b in token.as_bytes() {
        if kept(b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "={b:02X}");
        }
    }
}

fn unescape_token(token: &str, out: &mut Vec<u8>) -> Option<()> {
    let mut bytes = token.as_bytes().iter();
    while let Some(&b) = bytes.next() {
        if b == b'=' {
            let hex = [*bytes.next()?, *bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else if kept(b) {
            out.push(b);
        } else {
            return None;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// NATS's own rule for a KV key.
    fn nats_kv_key(subject: &str) -> bool {
        !subject.is_empty()
            && !subject.starts_with('.')
            && !subject.ends_with('.')
            && subject
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
    }

    /// NATS's subject matching: `*` one token, a last `>` one or more.
    fn nats_matches(filter: &str, subject: &str) -> bool {
        let mut s = subject.split('.');
        for f in filter.split('.') {
            match (f, s.next()) {
                (">", Some(_)) => return true,
                ("*", Some(_)) => {}
                (f, Some(t)) if f == t => {}
                _ => return false,
            }
        }
        s.next().is_none()
    }

    #[test]
    fn examples_from_the_docs() {
        assert_eq!(key_subject("svc.weather.online"), "k.svc.weather.online");
        assert_eq!(key_subject("a:b"), "k.a=3Ab");
        assert_eq!(key_subject("ü"), "k.=C3=BC");
        assert_eq!(key_subject("x=1"), "k.x=3D1");
        let p = Pattern::parse("svc.*.status").expect("pattern");
        assert_eq!(pattern_filter(&p), "k.svc.*.status");
        let p = Pattern::parse("kodi.>").expect("pattern");
        assert_eq!(pattern_filter(&p), "k.kodi.>");
        assert_eq!(
            pattern_filter(&Pattern::parse(">").expect("pattern")),
            "k.>"
        );
    }

    #[test]
    fn subjects_that_are_no_key_are_refused() {
        for subject in [
            "n.server", // the server's own entries
            "k",        // no key
            "k.",       // empty token
            "k.a..b",   // empty token
            "k.=3a",    // lower-case hex is not what key_subject writes
            "k.=41",    // "A" is written as itself
            "k.=2",     // cut escape
            "k.=ZZ",    // not hex
            "k.=20",    // a space: no key
            "k.=2A",    // `*`: no key
            "k.=FF",    // not UTF-8
            "k.a=2Eb",  // a dot inside a token would split it
        ] {
            assert_eq!(subject_key(subject), None, "{subject}");
        }
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        let token = prop::string::string_regex("[a-zA-Z0-9_=:/ü日\\-]{1,6}").expect("regex");
        prop::collection::vec(token, 1..5).prop_map(|t| t.join("."))
    }

    proptest! {
        #[test]
        fn every_key_round_trips_through_a_valid_kv_key(key in key_strategy()) {
            prop_assume!(validate_key(&key).is_ok());
            let subject = key_subject(&key);
            prop_assert!(nats_kv_key(&subject), "{subject}");
            prop_assert_eq!(subject_key(&subject), Some(key));
        }

        #[test]
        fn patterns_match_as_their_filters_do(
            key in key_strategy(),
            other in key_strategy(),
            cut in 0usize..5,
            wild in prop::sample::select(vec!["*", ">", ""]),
        ) {
            prop_assume!(validate_key(&key).is_ok() && validate_key(&other).is_ok());
            // A pattern from `other` (or `key`), with one token made a wildcard.
            let base = if cut % 2 == 0 { &key } else { &other };
            let mut tokens: Vec<&str> = base.split('.').collect();
            let at = cut.min(tokens.len() - 1);
            if wild == ">" {
                tokens.truncate(at + 1);
            }
            if !wild.is_empty() {
                tokens[at] = wild;
            }
            let pattern = Pattern::parse(&tokens.join(".")).expect("pattern");
            let filter = pattern_filter(&pattern);
            prop_assert_eq!(
                pattern.matches(&key),
                nats_matches(&filter, &key_subject(&key)),
                "{} vs {}", filter, key
            );
        }
    }
}
