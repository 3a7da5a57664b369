//! The messages of protocol v1, independent of their encoding.
//!
//! Both codecs decode into the same field sets ([`RequestFields`],
//! [`ServerFields`]) and build the typed messages here, so the rules about
//! which fields an op needs are written once.

use crate::error::{DecodeError, ErrorBody, ErrorCode};
use crate::key::{validate_key, Pattern};
use crate::MAX_ID;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A client request: an op and an optional id. With an id the server always
/// replies; without one it replies only on failure (as an `error` event).
#[derive(Debug, Clone, PartialEq)]
pub struct Request<'a> {
    /// Correlation id, below 2^53.
    pub id: Option<u64>,
    /// What to do.
    pub op: Op<'a>,
}

/// The operations of protocol v1.
#[derive(Debug, Clone, PartialEq)]
pub enum Op<'a> {
    /// Write a value; `if_rev` makes it a compare-and-set (0: must not exist).
    Set {
        /// The key, validated.
        key: Cow<'a, str>,
        /// One MessagePack value, exactly as the client sent it.
        value: Bytes,
        /// Required current rev of the key.
        if_rev: Option<u64>,
        /// How long the value lives and where it is kept.
        life: Life,
    },
    /// Read a key's value and rev.
    Get {
        /// The key, validated.
        key: Cow<'a, str>,
    },
    /// Delete a key.
    Del {
        /// The key, validated.
        key: Cow<'a, str>,
        /// Required current rev of the key.
        if_rev: Option<u64>,
    },
    /// Subscribe to a key or pattern: replay, then `synced`, then live changes.
    Sub {
        /// What to watch.
        pattern: Pattern,
        /// Replay only keys whose rev is greater.
        since: Option<u64>,
        /// Every `val` event of the subscription carries its [`ValMeta`].
        meta: bool,
    },
    /// End a subscription.
    Unsub {
        /// The id from the `sub` reply.
        sub: u64,
    },
    /// List keys (and their revs) matching a pattern, or all keys.
    Keys {
        /// Filter; all keys when absent.
        pattern: Option<Pattern>,
    },
}

impl Op<'_> {
    /// The op's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Set { .. } => "set",
            Op::Get { .. } => "get",
            Op::Del { .. } => "del",
            Op::Sub { .. } => "sub",
            Op::Unsub { .. } => "unsub",
            Op::Keys { .. } => "keys",
        }
    }
}

/// The lifetime options of a `set`. The default is a value that lives in
/// memory until it is overwritten or deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Life {
    /// Write the value to disk before acknowledging it; it survives restarts.
    pub persist: bool,
    /// Delete the key when the setting session ends.
    pub ephemeral: bool,
    /// Delete the key after this many milliseconds.
    pub ttl_ms: Option<u64>,
}

/// What a `val` event of a subscription made with `meta` says about the
/// write: its age and the options it was written with (protocol.md §4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValMeta {
    /// How long before the event was sent the value was written; `None`
    /// when the server does not know (a value restored from the data file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// The value is in the data file: it survives a restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub persist: bool,
    /// The value ends with the session that wrote it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
    /// Milliseconds left until the value expires (0 if due), when it has a TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// The largest `ttl_ms`: about 285 years, and exact as a JSON double.
pub const MAX_TTL_MS: u64 = crate::MAX_ID;

/// A key and its rev, as listed by `keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRev<'a> {
    /// The key.
    pub key: Cow<'a, str>,
    /// The rev of its last write.
    pub rev: u64,
}

/// The fields a successful reply may add to `{"id":N,"ok":true}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply<'a> {
    /// `set`, `get` and `del`: the rev.
    pub rev: Option<u64>,
    /// `get`: the value (MessagePack bytes).
    pub value: Option<Bytes>,
    /// `sub`: the subscription id.
    pub sub: Option<u64>,
    /// `keys`: the matching keys.
    pub keys: Option<Vec<KeyRev<'a>>>,
}

/// Everything the server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMsg<'a> {
    /// First message of every session.
    Hello {
        /// Protocol version (1).
        proto: u32,
        /// `ipcbus/<version>`.
        server: Cow<'a, str>,
        /// The session's UUID.
        session: Cow<'a, str>,
        /// Identifies the store whose revs this server hands out. A client
        /// that reconnects and finds another `store` must not resume with
        /// `since`: the revs it saw belong to a store that is gone.
        store: Cow<'a, str>,
        /// The largest `set` value the server takes (`max_value_bytes`);
        /// `None` from a server that does not announce it.
        max_value_bytes: Option<u64>,
        /// The largest message the server reads (`max_frame_bytes`); a
        /// larger one closes the session with 1009.
        max_frame_bytes: Option<u64>,
        /// How many subscriptions the upgrade request named (`?sub=`):
        /// they have ids 1 to `subs`, in the request's order. `None` when
        /// it named none, or from a server that does not take them.
        subs: Option<u64>,
    },
    /// The reply to a request that had an id.
    Reply {
        /// The request's id.
        id: u64,
        /// Success fields or the error.
        result: Result<Reply<'a>, ErrorBody>,
    },
    /// A failure of a request without id, or of an unparseable frame.
    Error(ErrorBody),
    /// A key's value, during replay or live.
    Val {
        /// Subscription id.
        sub: u64,
        /// The key.
        key: Cow<'a, str>,
        /// The value (MessagePack bytes).
        value: Bytes,
        /// Rev of this write.
        rev: u64,
        /// The write's age and options, for a subscription made with `meta`.
        meta: Option<ValMeta>,
    },
    /// A key was deleted.
    Del {
        /// Subscription id.
        sub: u64,
        /// The key.
        key: Cow<'a, str>,
        /// Rev of the deletion.
        rev: u64,
    },
    /// Every key that matched at subscribe time has been delivered.
    Synced {
        /// Subscription id.
        sub: u64,
    },
}

/// The fields of a request, as either codec found them.
#[derive(Debug, Default)]
pub(crate) struct RequestFields<'a> {
    pub(crate) id: Option<u64>,
    pub(crate) op: Option<Cow<'a, str>>,
    pub(crate) key: Option<Cow<'a, str>>,
    pub(crate) pattern: Option<Cow<'a, str>>,
    pub(crate) value: Option<Bytes>,
    pub(crate) if_rev: Option<u64>,
    pub(crate) since: Option<u64>,
    pub(crate) sub: Option<u64>,
    pub(crate) persist: Option<bool>,
    pub(crate) ephemeral: Option<bool>,
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) meta: Option<bool>,
}

impl<'a> RequestFields<'a> {
    /// Checks the fields an op needs and builds the request.
    pub(crate) fn build(self) -> Result<Request<'a>, DecodeError> {
        let id = self.id;
        let with_id = |mut e: DecodeError| {
            e.id = id;
            e
        };
        if id.is_some_and(|id| id > MAX_ID) {
            return Err(DecodeError::bad("id must be below 2^53"));
        }
        self.op_fields()
            .map(|op| Request { id, op })
            .map_err(with_id)
    }

    fn op_fields(self) -> Result<Op<'a>, DecodeError> {
        let op = self
            .op
            .ok_or_else(|| DecodeError::bad("missing field 'op'"))?;
        Ok(match &*op {
            "set" => Op::Set {
                key: key(self.key)?,
                value: self
                    .value
                    .ok_or_else(|| DecodeError::bad("missing field 'value'"))?,
                if_rev: self.if_rev,
                life: life(self.persist, self.ephemeral, self.ttl_ms)?,
            },
            "get" => Op::Get {
                key: key(self.key)?,
            },
            "del" => Op::Del {
                key: key(self.key)?,
                if_rev: self.if_rev,
            },
            "sub" => Op::Sub {
                pattern: pattern(self.pattern)?
                    .ok_or_else(|| DecodeError::bad("missing field 'pattern'"))?,
                since: self.since,
                meta: self.meta.unwrap_or(false),
            },
            "unsub" => Op::Unsub {
                sub: self
                    .sub
                    .ok_or_else(|| DecodeError::bad("missing field 'sub'"))?,
            },
            "keys" => Op::Keys {
                pattern: pattern(self.pattern)?,
            },
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(DecodeError::new(
                    ErrorCode::UnknownOp,
                    format!("unknown op {shown:?}"),
                ));
            }
        })
    }
}

fn life(
    persist: Option<bool>,
    ephemeral: Option<bool>,
    ttl_ms: Option<u64>,
) -> Result<Life, DecodeError> {
    let life = Life {
        persist: persist.unwrap_or(false),
        ephemeral: ephemeral.unwrap_or(false),
        ttl_ms,
    };
    if life.persist && life.ephemeral {
        return Err(DecodeError::bad(
            "'persist' and 'ephemeral' exclude each other: an ephemeral key ends with its session",
        ));
    }
    if ttl_ms.is_some_and(|t| t == 0 || t > MAX_TTL_MS) {
        return Err(DecodeError::bad("'ttl_ms' must be 1 to 2^53-1"));
    }
    Ok(life)
}

fn key(key: Option<Cow<'_, str>>) -> Result<Cow<'_, str>, DecodeError> {
    let key = key.ok_or_else(|| DecodeError::bad("missing field 'key'"))?;
    validate_key(&key).map_err(|e| DecodeError {
        id: None,
        error: e.for_key(),
    })?;
    Ok(key)
}

fn pattern(pattern: Option<Cow<'_, str>>) -> Result<Option<Pattern>, DecodeError> {
    pattern
        .map(|p| {
            Pattern::parse(&p).map_err(|e| DecodeError {
                id: None,
                error: e.for_pattern(),
            })
        })
        .transpose()
}

/// The fields of a server message, as either codec found them.
#[derive(Debug, Default)]
pub(crate) struct ServerFields<'a> {
    pub(crate) ev: Option<Cow<'a, str>>,
    pub(crate) id: Option<u64>,
    pub(crate) ok: Option<bool>,
    pub(crate) error: Option<ErrorBody>,
    pub(crate) proto: Option<u64>,
    pub(crate) server: Option<Cow<'a, str>>,
    pub(crate) session: Option<Cow<'a, str>>,
    pub(crate) store: Option<Cow<'a, str>>,
    pub(crate) max_value_bytes: Option<u64>,
    pub(crate) max_frame_bytes: Option<u64>,
    pub(crate) subs: Option<u64>,
    pub(crate) sub: Option<u64>,
    pub(crate) key: Option<Cow<'a, str>>,
    pub(crate) value: Option<Bytes>,
    pub(crate) rev: Option<u64>,
    pub(crate) keys: Option<Vec<KeyRev<'a>>>,
    pub(crate) meta: Option<ValMeta>,
}

impl<'a> ServerFields<'a> {
    /// Builds the server message these fields describe.
    pub(crate) fn build(self) -> Result<ServerMsg<'a>, DecodeError> {
        let missing = |name: &str| DecodeError::bad(format!("server message lacks '{name}'"));
        if let Some(id) = self.id {
            let result = if self.ok == Some(true) {
                Ok(Reply {
                    rev: self.rev,
                    value: self.value,
                    sub: self.sub,
                    keys: self.keys,
                })
            } else {
                Err(self.error.ok_or_else(|| missing("error"))?)
            };
            return Ok(ServerMsg::Reply { id, result });
        }
        let ev = self.ev.ok_or_else(|| missing("ev or id"))?;
        let sub = || self.sub.ok_or_else(|| missing("sub"));
        Ok(match &*ev {
            "hello" => ServerMsg::Hello {
                proto: self.proto.unwrap_or(0).try_into().unwrap_or(u32::MAX),
                server: self.server.unwrap_or_default(),
                session: self.session.unwrap_or_default(),
                store: self.store.unwrap_or_default(),
                max_value_bytes: self.max_value_bytes,
                max_frame_bytes: self.max_frame_bytes,
                subs: self.subs,
            },
            "error" => ServerMsg::Error(self.error.ok_or_else(|| missing("error"))?),
            "synced" => ServerMsg::Synced { sub: sub()? },
            "val" => ServerMsg::Val {
                sub: sub()?,
                rev: self.rev.ok_or_else(|| missing("rev"))?,
                value: self.value.ok_or_else(|| missing("value"))?,
                key: self.key.ok_or_else(|| missing("key"))?,
                meta: self.meta,
            },
            "del" => ServerMsg::Del {
                sub: sub()?,
                rev: self.rev.ok_or_else(|| missing("rev"))?,
                key: self.key.ok_or_else(|| missing("key"))?,
            },
            other => return Err(DecodeError::bad(format!("unknown event {other:?}"))),
        })
    }
}
