//! Property tests of the key and pattern rules: `Pattern::matches` against a
//! reference written the obvious way on token lists, and `validate_key` and
//! `Pattern::parse` against the rules of docs/protocol.md restated per token.

use ipcbus_protocol::{validate_key, Pattern, MAX_KEY_BYTES};
use proptest::prelude::*;
use proptest::sample::select;

/// A small alphabet, so that random keys and patterns often match.
const TOKENS: &[&str] = &["a", "b", "ab", "é"];

/// `*` is exactly one token, a final `>` is one or more, anything else must
/// be equal.
fn reference_matches(pattern: &str, key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    match pattern.split_last() {
        Some((&">", fixed)) => key.len() > fixed.len() && same_prefix(fixed, &key),
        _ => key.len() == pattern.len() && same_prefix(&pattern, &key),
    }
}

fn same_prefix(pattern: &[&str], key: &[&str]) -> bool {
    pattern.iter().zip(key).all(|(p, k)| *p == "*" || p == k)
}

/// The rules both share: 1 to 256 bytes, no empty token, no whitespace or
/// control character anywhere.
fn reference_shape(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_KEY_BYTES
        && s.split('.').all(|t| !t.is_empty())
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn reference_key(s: &str) -> bool {
    reference_shape(s) && !s.contains(['*', '>'])
}

fn reference_pattern(s: &str) -> bool {
    let tokens: Vec<&str> = s.split('.').collect();
    let last = tokens.len() - 1;
    reference_shape(s)
        && tokens
            .iter()
            .enumerate()
            .all(|(i, t)| *t == "*" || (*t == ">" && i == last) || !t.contains(['*', '>']))
}

fn key() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(select(TOKENS), 1..=5)
}

/// A pattern made from a key, so that it often matches: each token kept,
/// turned into `*` or swapped for another, then perhaps cut short by `>` or
/// grown by a token.
fn pattern_near(key: Vec<&'static str>) -> impl Strategy<Value = String> {
    let n = key.len();
    (
        prop::collection::vec((0..4u8, select(TOKENS)), n),
        prop::option::of(0..=n),
        prop::option::of(select(TOKENS)),
    )
        .prop_map(move |(edits, cut, grow)| {
            let mut tokens: Vec<&str> = key
                .iter()
                .zip(edits)
                .map(|(k, (edit, other))| match edit {
                    0 | 1 => k,
                    2 => "*",
                    _ => other,
                })
                .collect();
            if let Some(extra) = grow {
                tokens.push(extra);
            }
            if let Some(cut) = cut {
                tokens.truncate(cut);
                tokens.push(">");
            }
            tokens.join(".")
        })
}

/// A key and a pattern: near each other most of the time, independent otherwise.
fn key_and_pattern() -> impl Strategy<Value = (String, String)> {
    let near = key().prop_flat_map(|k| (Just(k.join(".")), pattern_near(k)));
    let independent =
        (key(), key()).prop_flat_map(|(k, other)| (Just(k.join(".")), pattern_near(other)));
    prop_oneof![3 => near, 1 => independent]
}

/// Strings near the rules' edges: wildcards in and out of place, empty
/// tokens, whitespace, control characters, and lengths around 256 bytes.
fn edgy() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        4 => select(TOKENS).prop_map(str::to_owned),
        2 => select(&["*", ">", "a*", ">b", "", " ", "a\tb", "\u{0}", "\u{a0}", "\u{7f}"][..])
            .prop_map(str::to_owned),
        1 => "[a-cé]{40,90}",
    ];
    prop::collection::vec(token, 1..=8).prop_map(|tokens| tokens.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn matches_agrees_with_the_reference((key, pattern) in key_and_pattern()) {
        prop_assert!(validate_key(&key).is_ok(), "{key:?}");
        let p = Pattern::parse(&pattern).map_err(|e| TestCaseError::fail(format!("{pattern:?}: {e}")))?;
        prop_assert_eq!(p.matches(&key), reference_matches(&pattern, &key), "{} vs {}", pattern, key);
        // The key index walks only the keys that start with the prefix.
        if p.matches(&key) {
            prop_assert!(key.starts_with(p.literal_prefix()), "{} vs {}", pattern, key);
        }
    }

    #[test]
    fn accepts_and_rejects_by_the_rules(s in edgy()) {
        prop_assert_eq!(validate_key(&s).is_ok(), reference_key(&s), "key {:?}", s);
        let parsed = Pattern::parse(&s);
        prop_assert_eq!(parsed.is_ok(), reference_pattern(&s), "pattern {:?}", s);
        if let Ok(p) = parsed {
            prop_assert_eq!(p.as_str(), s.as_str());
            // A pattern is exact exactly when it is also a valid key.
            prop_assert_eq!(p.exact_key(), validate_key(&s).ok().map(|()| s.as_str()));
            if p.exact_key().is_some() {
                prop_assert!(p.matches(&s));
            }
        }
    }
}
