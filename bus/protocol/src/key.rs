//! Key and pattern rules: `.`-separated tokens; `*` matches one token and a
//! final `>` matches one or more.

use crate::error::ErrorCode;
use std::fmt;
use std::sync::Arc;

/// Longest key or pattern, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 256;

/// Why a key or pattern was refused. The message is sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub &'static str);

/// Checks a key: 1 to 256 bytes, non-empty `.`-separated tokens, with no
/// whitespace, control characters, `*` or `>`.
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    check_shape(key)?;
    for token in key.split('.') {
        check_token(token)?;
        if token.contains(['*', '>']) {
            return Err(KeyError("keys may not contain '*' or '>'"));
        }
    }
    Ok(())
}

fn check_shape(s: &str) -> Result<(), KeyError> {
    if s.is_empty() {
        return Err(KeyError("empty"));
    }
    if s.len() > MAX_KEY_BYTES {
        return Err(KeyError("longer than 256 bytes"));
    }
    Ok(())
}

fn check_token(token: &str) -> Result<(), KeyError> {
    if token.is_empty() {
        return Err(KeyError("empty token (leading, trailing or double '.')"));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(KeyError("whitespace or control character"));
    }
    Ok(())
}

/// A validated subscription pattern. An exact key is also a pattern.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: Arc<str>,
    exact: bool,
}

impl Pattern {
    /// Parses a pattern: key syntax, where a whole token may be `*`, and the
    /// last token may be `>`.
    pub fn parse(text: &str) -> Result<Pattern, KeyError> {
        check_shape(text)?;
        let mut exact = true;
        let mut tokens = text.split('.').peekable();
        while let Some(token) = tokens.next() {
            check_token(token)?;
            match token {
                "*" => exact = false,
                ">" if tokens.peek().is_none() => exact = false,
                ">" => return Err(KeyError("'>' may only be the last token")),
                _ if token.contains(['*', '>']) => {
                    return Err(KeyError("'*' and '>' must be whole tokens"))
                }
                _ => {}
            }
        }
        Ok(Pattern {
            text: text.into(),
            exact,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key, if the pattern has no wildcard.
    pub fn exact_key(&self) -> Option<&str> {
        self.exact.then_some(&*self.text)
    }

    /// The pattern's tokens, wildcards included.
    pub fn tokens(&self) -> std::str::Split<'_, char> {
        self.text.split('.')
    }

    /// What every matching key starts with: the tokens before the first
    /// wildcard, each followed by its `.` (empty when the first token is a
    /// wildcard; the whole key for an exact pattern).
    pub fn literal_prefix(&self) -> &str {
        if self.exact {
            return &self.text;
        }
        let mut end = 0;
        for token in self.text.split('.') {
            if token == "*" || token == ">" {
                break;
            }
            end += token.len() + 1;
        }
        &self.text[..end]
    }

    /// Whether `key` (a valid key) matches. Allocation-free.
    pub fn matches(&self, key: &str) -> bool {
        if self.exact {
            return *self.text == *key;
        }
        let mut keys = key.split('.');
        for token in self.text.split('.') {
            match token {
                ">" => return keys.next().is_some(),
                "*" => {
                    if keys.next().is_none() {
                        return false;
                    }
                }
                literal => {
                    if keys.next() != Some(literal) {
                        return false;
                    }
                }
            }
        }
        keys.next().is_none()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl KeyError {
    /// The wire error for a refused key.
    pub fn for_key(&self) -> crate::ErrorBody {
        crate::ErrorBody::new(ErrorCode::BadKey, format!("bad key: {}", self.0))
    }

    /// The wire error for a refused pattern.
    pub fn for_pattern(&self) -> crate::ErrorBody {
        crate::ErrorBody::new(ErrorCode::BadPattern, format!("bad pattern: {}", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in ["a", "a.b", "svc.weather.online", "ü.日本", "a-b_c:d"] {
            assert_eq!(validate_key(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(257);
        for bad in [
            "", ".", "a.", ".a", "a..b", "a b", "a\tb", "a*", "a.>", "*", &long,
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(validate_key(&"a".repeat(256)), Ok(()));
    }

    #[test]
    fn patterns() {
        let p = |s| Pattern::parse(s).expect(s);
        assert!(p("a.*.c").matches("a.b.c"));
        assert!(!p("a.*.c").matches("a.b.d"));
        assert!(!p("a.*").matches("a"));
        assert!(!p("a.*").matches("a.b.c"));
        assert!(p("a.>").matches("a.b"));
        assert!(p("a.>").matches("a.b.c.d"));
        assert!(!p("a.>").matches("a"));
        assert!(p(">").matches("x"));
        assert!(p("*").matches("x") && !p("*").matches("x.y"));
        assert!(p("a.b").matches("a.b") && !p("a.b").matches("a.b.c"));
        assert_eq!(p("a.b").exact_key(), Some("a.b"));
        assert_eq!(p("a.*").exact_key(), None);
        assert_eq!(p("a.b.>").literal_prefix(), "a.b.");
        assert_eq!(p("a.*.c").literal_prefix(), "a.");
        assert_eq!(p("*.c").literal_prefix(), "");
        assert_eq!(p(">").literal_prefix(), "");
        assert_eq!(p("a.b").literal_prefix(), "a.b");
        for bad in ["", "a.>.b", "a*", "a.b>", "a..b", "> "] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
