//! The state of one client session and the dispatch of its requests,
//! independent of the socket transport (the `ws` module).

use crate::config::Config;
use crate::http::check_length;
use crate::sys::{check_writable, Sys};
use bytes::Bytes;
use ipcbus_actors::{Del, Done, Get, Outbox, Registry, ReplyTo, Set, Subscriber};
use ipcbus_protocol::{ErrorBody, ErrorCode, Op, Pattern, Request};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Limits a session enforces on its requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_value_bytes: usize,
    pub(crate) max_subs: usize,
    pub(crate) max_key_bytes: usize,
}

impl From<&Config> for Limits {
    fn from(c: &Config) -> Limits {
        Limits {
            max_value_bytes: c.max_value_bytes,
            max_subs: c.max_subs,
            max_key_bytes: c.max_key_bytes,
        }
    }
}

/// A `keys` request waiting for the session's writes in flight.
pub(crate) struct KeysLater {
    id: Option<u64>,
    pattern: Option<Pattern>,
}

/// One client's subscriptions and outbox.
pub(crate) struct Session {
    pub(crate) registry: Registry,
    pub(crate) outbox: Arc<Outbox>,
    limits: Limits,
    /// Each subscription's pattern, and whether it asked for `meta`.
    subs: HashMap<u64, (Pattern, bool)>,
    next_sub: u64,
    /// Counts the subscriptions that ask for `ipcbus.sys.stats`, and lists
    /// this session's outbox for its figures.
    sys: Arc<Sys>,
}

impl Session {
    /// A session for a slot already counted with `Stats::try_open_session`;
    /// dropping it frees the slot.
    pub(crate) fn new(
        registry: Registry,
        outbox: Arc<Outbox>,
        limits: Limits,
        sys: Arc<Sys>,
    ) -> Session {
        sys.session_started(&outbox);
        Session {
            registry,
            outbox,
            limits,
            subs: HashMap::new(),
            next_sub: 1,
            sys,
        }
    }

    /// Whether events for `sub` should still be written: `None` if not,
    /// else whether its `val` events carry `meta`.
    pub(crate) fn subscribed(&self, sub: u64) -> Option<bool> {
        self.subs.get(&sub).map(|(_, meta)| *meta)
    }

    /// Queues the reply to a request handled here rather than by a key actor.
    pub(crate) fn reply(&self, id: Option<u64>, result: Result<Done, ErrorBody>) {
        self.outbox.reply(id, result);
    }

    fn reply_to(&self, id: Option<u64>) -> ReplyTo {
        self.outbox.begin();
        ReplyTo {
            outbox: self.outbox.clone(),
            id,
        }
    }

    /// Carries out one request. Every reply and event goes through the
    /// outbox. A `keys` is handed back: start it with [`Session::keys`]
    /// once the outbox is idle (this session's writes are applied).
    #[must_use]
    pub(crate) fn handle(&mut self, req: Request<'_>) -> Option<KeysLater> {
        let id = req.id;
        match req.op {
            Op::Set {
                key,
                value,
                if_rev,
                life,
            } => {
                let checked = check_length(&key, self.limits.max_key_bytes, ErrorCode::BadKey)
                    .and_then(|()| check_writable(&key));
                if let Err(e) = checked {
                    self.reply(id, Err(e));
                    return None;
                }
                if value.len() > self.limits.max_value_bytes {
                    let msg = format!(
                        "value of {} bytes exceeds max_value_bytes ({})",
                        value.len(),
                        self.limits.max_value_bytes
                    );
                    self.reply(id, Err(ErrorBody::new(ErrorCode::TooLarge, msg)));
                    return None;
                }
                // The value is a slice of the socket's read buffer; a copy
                // keeps a stored value from pinning that whole buffer.
                let value = Bytes::copy_from_slice(&value);
                let reply = self.reply_to(id);
                let _created = self.registry.send(
                    &key,
                    true,
                    Set {
                        value,
                        if_rev,
                        life,
                        reply,
                    },
                );
            }
            Op::Get { key } => {
                let reply = self.reply_to(id);
                if let Err(Get { reply }) = self.registry.send(&key, false, Get { reply }) {
                    reply.send(Err(ErrorBody::not_found()));
                }
            }
            Op::Del { key, if_rev } => {
                if let Err(e) = check_writable(&key) {
                    self.reply(id, Err(e));
                    return None;
                }
                let reply = self.reply_to(id);
                if let Err(Del { reply, .. }) =
                    self.registry
                        .send(&key, self.registry.is_shared(&key), Del { if_rev, reply })
                {
                    reply.send(Err(ErrorBody::not_found()));
                }
            }
            Op::Sub {
                pattern,
                since,
                meta,
            } => self.subscribe(id, pattern, since, meta),
            Op::Unsub { sub } => {
                let Some((pattern, _)) = self.subs.remove(&sub) else {
                    let msg = format!("no subscription {sub}");
                    self.reply(id, Err(ErrorBody::new(ErrorCode::NotFound, msg)));
                    return None;
                };
                self.reply(id, Ok(Done::Empty));
                self.registry.unsubscribe(&pattern, &self.outbox, sub);
                self.sys.watchers.closed(&pattern);
                let stats = self.registry.stats();
                stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
            }
            Op::Keys { pattern } => return Some(KeysLater { id, pattern }),
        }
        None
    }

    /// Starts answering `keys`: the listing goes in turns (counted in
    /// flight until its reply is queued). Run only when no write of this
    /// session is in flight, so that it reflects the session's own writes.
    pub(crate) fn keys(&self, req: KeysLater) {
        let (registry, outbox) = (self.registry.clone(), self.outbox.clone());
        outbox.begin();
        actix::spawn(async move {
            let keys = registry.list(req.pattern.as_ref()).await;
            outbox.reply(req.id, Ok(Done::Keys(keys)));
            outbox.complete();
        });
    }

    pub(crate) fn subscribe(
        &mut self,
        id: Option<u64>,
        pattern: Pattern,
        since: Option<u64>,
        meta: bool,
    ) {
        let max = self.limits.max_key_bytes;
        if let Err(e) = check_length(pattern.as_str(), max, ErrorCode::BadPattern) {
            return self.reply(id, Err(e));
        }
        if self.subs.len() >= self.limits.max_subs {
            let msg = format!(
                "this session already has max_subs ({}) subscriptions",
                self.limits.max_subs
            );
            return self.reply(id, Err(ErrorBody::new(ErrorCode::Limit, msg)));
        }
        let sub = self.next_sub;
        self.next_sub += 1;
        // The reply is queued before any event of the subscription can be.
        self.reply(id, Ok(Done::Sub(sub)));
        let subscriber = Subscriber {
            outbox: self.outbox.clone(),
            sub,
        };
        self.registry.subscribe(&pattern, &subscriber, since);
        self.sys.watchers.opened(&pattern);
        self.subs.insert(sub, (pattern, meta));
        let stats = self.registry.stats();
        stats.subscriptions.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.outbox.close();
        self.sys.session_ended(&self.outbox);
        let subs: Vec<(Pattern, u64)> = self.subs.drain().map(|(sub, (p, _))| (p, sub)).collect();
        for (pattern, _) in &subs {
            self.sys.watchers.closed(pattern);
        }
        self.registry.unsubscribe_all(&self.outbox, &subs);
        // After `close`: no key can be claimed for this session any more.
        self.registry.release_owned(&self.outbox);
        let stats = self.registry.stats();
        stats.subscriptions.fetch_sub(subs.len(), Ordering::Relaxed);
        stats.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}
