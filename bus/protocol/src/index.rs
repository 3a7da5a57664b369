//! [`PatternIndex`]: entries filed under patterns, in a trie by token, so
//! that the entries whose pattern matches a key are found by walking the
//! key's tokens (a literal child, the `*` child and the `>` entries at each
//! level) instead of testing every pattern. The server seeds each key actor
//! it starts from one (its wildcard subscriptions), which happens on any
//! write to a key at rest.

use crate::Pattern;
use std::collections::HashMap;

/// Entries of type `T` filed under their patterns.
///
/// ```
/// use ipcbus_protocol::{Pattern, PatternIndex};
/// let mut index = PatternIndex::default();
/// index.insert(&Pattern::parse("sensor.*.temp").unwrap(), 1);
/// index.insert(&Pattern::parse("sensor.>").unwrap(), 2);
/// let mut found = Vec::new();
/// index.for_each_match("sensor.kitchen.temp", |&n| found.push(n));
/// found.sort();
/// assert_eq!(found, [1, 2]);
/// ```
#[derive(Debug)]
pub struct PatternIndex<T> {
    root: Node<T>,
}

#[derive(Debug)]
struct Node<T> {
    literal: HashMap<Box<str>, Node<T>>,
    star: Option<Box<Node<T>>>,
    /// Entries whose pattern ends at this node.
    here: Vec<T>,
    /// Entries whose pattern ends with `>` after this node.
    rest: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            literal: HashMap::new(),
            star: None,
            here: Vec::new(),
            rest: Vec::new(),
        }
    }
}

impl<T> Default for PatternIndex<T> {
    fn default() -> Self {
        PatternIndex {
            root: Node::default(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.star.is_none()
            && self.here.is_empty()
            && self.rest.is_empty()
    }
}

impl<T> PatternIndex<T> {
    /// Files `entry` under `pattern`.
    pub fn insert(&mut self, pattern: &Pattern, entry: T) {
        let mut node = &mut self.root;
        for token in pattern.tokens() {
            node = match token {
                ">" => {
                    node.rest.push(entry);
                    return;
                }
                "*" => node.star.get_or_insert_with(Box::default),
                literal => node.literal.entry(literal.into()).or_default(),
            };
        }
        node.here.push(entry);
    }

    /// Takes out the first entry under `pattern` for which `is` holds,
    /// pruning the nodes it leaves empty.
    pub fn remove(&mut self, pattern: &Pattern, is: impl Fn(&T) -> bool) -> Option<T> {
        let tokens: Vec<&str> = pattern.tokens().collect();
        remove_at(&mut self.root, &tokens, &is)
    }

    /// Calls `f` with every entry whose pattern matches `key`.
    pub fn for_each_match(&self, key: &str, mut f: impl FnMut(&T)) {
        visit(&self.root, Some(key), &mut f);
    }
}

fn remove_at<T>(node: &mut Node<T>, tokens: &[&str], is: &impl Fn(&T) -> bool) -> Option<T> {
    let take = |list: &mut Vec<T>| list.iter().position(is).map(|i| list.swap_remove(i));
    let (first, rest) = match tokens.split_first() {
        None => return take(&mut node.here),
        Some((&">", _)) => return take(&mut node.rest),
        Some(split) => split,
    };
    if *first == "*" {
        let child = node.star.as_mut()?;
        let removed = remove_at(child, rest, is);
        if child.is_empty() {
            node.star = None;
        }
        removed
    } else {
        let child = node.literal.get_mut(*first)?;
        let removed = remove_at(child, rest, is);
        if child.is_empty() {
            node.literal.remove(*first);
        }
        removed
    }
}

/// Visits the entries under `node` that match `rest`, the tokens of the
/// key still to match (`None`: all of them matched).
fn visit<T>(node: &Node<T>, rest: Option<&str>, f: &mut impl FnMut(&T)) {
    let Some(rest) = rest else {
        node.here.iter().for_each(&mut *f);
        return;
    };
    // `>` needs one token or more, and there is one.
    node.rest.iter().for_each(&mut *f);
    let (first, tail) = match rest.split_once('.') {
        Some((first, tail)) => (first, Some(tail)),
        None => (rest, None),
    };
    if let Some(child) = node.literal.get(first) {
        visit(child, tail, f);
    }
    if let Some(child) = &node.star {
        visit(child, tail, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).expect(s)
    }

    fn matching(index: &PatternIndex<u32>, key: &str) -> Vec<u32> {
        let mut got = Vec::new();
        index.for_each_match(key, |&n| got.push(n));
        got.sort_unstable();
        got
    }

    #[test]
    fn agrees_with_pattern_matches_and_prunes_on_removal() {
        let patterns = [
            "a.>", "a.*", "a.b.c", "*.b.*", ">", "*", "a.*.c", "b.>", "a.b.>", "*.*.c",
        ];
        let keys = [
            "a", "a.b", "a.b.c", "a.x.c", "b.b.b", "c", "a.b.c.d", "x.y.c",
        ];
        let mut index = PatternIndex::default();
        for (n, pattern) in (0u32..).zip(patterns) {
            index.insert(&p(pattern), n);
        }
        for key in keys {
            let want: Vec<u32> = (0u32..)
                .zip(patterns)
                .filter(|(_, pat)| p(pat).matches(key))
                .map(|(n, _)| n)
                .collect();
            assert_eq!(matching(&index, key), want, "{key}");
        }
        for (n, pattern) in (0u32..).zip(patterns) {
            assert_eq!(index.remove(&p(pattern), |&e| e == n), Some(n));
            assert_eq!(index.remove(&p(pattern), |&e| e == n), None);
        }
        assert!(index.root.is_empty(), "empty nodes are pruned");
    }
}
