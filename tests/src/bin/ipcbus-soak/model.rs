//! What the soak's writers know about their keys, and the check of a
//! server's contents against it.
//!
//! Each writer owns its keys, so it knows what each one must hold: the
//! last acknowledged write, or, when the answer to a write was lost (the
//! server was killed while it was in flight), either that or the write.

use std::collections::HashMap;

/// The state of a key as the soak writes it: absent, or holding the value
/// of the writer's write number `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// No value.
    Absent,
    /// The value written by write number `seq`.
    Seq(u64),
}

/// How a key is written; fixed per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// `persist: true`: must survive SIGKILL once acknowledged.
    Persisted,
    /// In memory only: gone after a restart.
    Memory,
    /// With a short `ttl_ms`: may vanish at any time.
    Ttl,
}

impl Class {
    const ALL: [Class; 3] = [Class::Persisted, Class::Memory, Class::Ttl];

    fn tag(self) -> &'static str {
        match self {
            Class::Persisted => "p",
            Class::Memory => "m",
            Class::Ttl => "t",
        }
    }
}

/// One key of a writer.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    /// The key's name.
    pub(crate) name: String,
    /// How it is written.
    pub(crate) class: Class,
    /// The state after the last acknowledged write.
    pub(crate) acked: State,
    /// The state a write whose answer was lost would have left.
    pub(crate) maybe: Option<State>,
}

impl Key {
    /// Whether `seen` is a state this key may be in.
    fn allows(&self, seen: State) -> bool {
        seen == self.acked
            || Some(seen) == self.maybe
            || (self.class == Class::Ttl && seen == State::Absent)
    }
}

/// The keys of writer `writer`: `soak.w<writer>.<class>.<i>`, `per_class` of each class.
pub(crate) fn keys(writer: usize, per_class: usize) -> Vec<Key> {
    let mut keys = Vec::with_capacity(per_class * Class::ALL.len());
    for class in Class::ALL {
        for i in 0..per_class {
            keys.push(Key {
                name: format!("soak.w{writer}.{}.{i}", class.tag()),
                class,
                acked: State::Absent,
                maybe: None,
            });
        }
    }
    keys
}

/// Whether `name` is one of the soak's TTL keys.
pub(crate) fn is_ttl(name: &str) -> bool {
    name.split('.').nth(2) == Some(Class::Ttl.tag())
}

/// When a check is made, which decides what may have been lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moment {
    /// The server has run throughout.
    Live,
    /// The server was restarted (killed or stopped): only persisted keys remain.
    Restarted,
    /// Every TTL has passed: TTL keys must be gone.
    Expired,
}

/// Checks `keys` against what the server holds (`seen`: key name → seq of
/// its value), pushes a line per difference to `violations`, and makes what
/// was seen the new acknowledged state.
pub(crate) fn check(
    keys: &mut [Key],
    seen: &HashMap<String, u64>,
    moment: Moment,
    violations: &mut Vec<String>,
) {
    for key in keys {
        let state = seen
            .get(&key.name)
            .map_or(State::Absent, |&s| State::Seq(s));
        let gone = matches!(
            (moment, key.class),
            (Moment::Restarted, Class::Memory | Class::Ttl) | (Moment::Expired, Class::Ttl)
        );
        let mut expected = key.clone();
        if gone {
            expected.acked = State::Absent;
            expected.maybe = None;
        }
        if !expected.allows(state) {
            violations.push(format!(
                "{} ({:?}, {moment:?}): server has {state:?}, acknowledged {:?}{}",
                key.name,
                key.class,
                key.acked,
                key.maybe
                    .map(|m| format!(", or {m:?} if the lost write arrived"))
                    .unwrap_or_default()
            ));
        }
        key.acked = state;
        key.maybe = None;
    }
}

/// The value of write number `seq`, `len` bytes of text (at least 16),
/// encoded as MessagePack.
pub(crate) fn value(seq: u64, len: usize) -> bytes::Bytes {
    let mut text = format!("{seq:016x}");
    text.extend(std::iter::repeat_n('.', len.saturating_sub(16)));
    bytes::Bytes::from(rmp_serde::to_vec(&text).unwrap_or_default())
}

/// The write number in a value made by [`value`].
pub(crate) fn seq_of(value: &[u8]) -> Option<u64> {
    let text: String = rmp_serde::from_slice(value).ok()?;
    u64::from_str_radix(text.get(..16)?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_keys_are_known_by_name() {
        let keys = keys(3, 1);
        let ttl: Vec<bool> = keys.iter().map(|k| is_ttl(&k.name)).collect();
        assert_eq!(ttl, [false, false, true]);
    }

    #[test]
    fn values_carry_their_seq() {
        assert_eq!(seq_of(&value(0xabc, 100)), Some(0xabc));
        assert_eq!(seq_of(&value(7, 0)), Some(7));
        assert_eq!(seq_of(b"\xc0"), None);
    }

    #[test]
    fn a_lost_persisted_write_is_a_violation_and_a_lost_answer_is_not() {
        let mut keys = keys(0, 1);
        keys[0].acked = State::Seq(5);
        keys[0].maybe = Some(State::Seq(6));
        let mut v = Vec::new();
        let seen: HashMap<_, _> = [("soak.w0.p.0".to_owned(), 6)].into();
        check(&mut keys[..1], &seen, Moment::Restarted, &mut v);
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(keys[0].acked, State::Seq(6));
        check(&mut keys[..1], &HashMap::new(), Moment::Restarted, &mut v);
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn a_lost_write_to_a_deleted_persisted_key_may_have_arrived() {
        let mut keys = keys(0, 1);
        keys[0].maybe = Some(State::Seq(3));
        let seen: HashMap<_, _> = [("soak.w0.p.0".to_owned(), 3)].into();
        let mut v = Vec::new();
        check(&mut keys[..1], &seen, Moment::Restarted, &mut v);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn memory_keys_must_be_gone_after_a_restart_and_ttl_keys_after_expiry() {
        let mut keys = keys(1, 1);
        for k in &mut keys {
            k.acked = State::Seq(1);
        }
        let seen: HashMap<_, _> = keys.iter().map(|k| (k.name.clone(), 1)).collect();
        let mut v = Vec::new();
        check(&mut keys, &seen, Moment::Live, &mut v);
        assert!(v.is_empty(), "{v:?}");
        check(&mut keys, &seen, Moment::Restarted, &mut v);
        assert_eq!(v.len(), 2, "{v:?}"); // memory and ttl still there
        let mut v = Vec::new();
        check(&mut keys, &seen, Moment::Expired, &mut v);
        assert_eq!(v.len(), 1, "{v:?}"); // only the ttl key
    }
}
