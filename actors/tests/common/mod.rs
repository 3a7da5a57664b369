//! Helpers of the actor tests: an inbox (an outbox the test reads) and
//! requests to key actors that wait for their outcome.

#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use ipcbus_actors::{
    Del, Done, Get, Out, Outbox, OutboxConfig, Registry, ReplyTo, Set, Subscriber, Update,
};
use ipcbus_protocol::{ErrorBody, Life};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::Notify;

/// An outbox, the bell it rings when it has items, and what was taken
/// from it but not yet looked at.
pub struct Inbox {
    pub outbox: Arc<Outbox>,
    bell: Arc<Notify>,
    taken: RefCell<VecDeque<Out>>,
}

impl Inbox {
    pub fn new(id: u64, registry: &Registry) -> Inbox {
        let bell = Arc::new(Notify::new());
        let ring = bell.clone();
        let outbox = Outbox::new(
            id,
            OutboxConfig::default(),
            registry.stats().clone(),
            move || {
                ring.notify_one();
            },
        );
        Inbox {
            outbox: Arc::new(outbox),
            bell,
            taken: RefCell::default(),
        }
    }

    /// Waits for the next item.
    pub async fn next(&self) -> Out {
        loop {
            if let Some(out) = self.taken.borrow_mut().pop_front() {
                return out;
            }
            self.outbox.take_all(&mut self.taken.borrow_mut());
            if self.taken.borrow().is_empty() {
                // A regression fails the test instead of hanging it.
                tokio::time::timeout(WAIT, self.bell.notified())
                    .await
                    .expect("nothing arrived in the inbox");
            }
        }
    }

    pub fn reply_to(&self) -> ReplyTo {
        self.outbox.begin();
        ReplyTo {
            outbox: self.outbox.clone(),
            id: Some(1),
        }
    }

    pub fn subscriber(&self, sub: u64) -> Subscriber {
        Subscriber {
            outbox: self.outbox.clone(),
            sub,
        }
    }
}

/// The longest wait for an item in an inbox.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn value(byte: u8) -> Bytes {
    Bytes::copy_from_slice(&[byte])
}

/// The outcome of the request the inbox is waiting for.
pub async fn outcome(inbox: &Inbox) -> Result<Done, ErrorBody> {
    match inbox.next().await {
        Out::Reply { result, .. } => result,
        other => panic!("expected a reply, got {other:?}"),
    }
}

pub async fn set(registry: &Registry, inbox: &Inbox, key: &str, byte: u8, life: Life) -> u64 {
    let msg = Set {
        value: value(byte),
        if_rev: None,
        life,
        reply: inbox.reply_to(),
    };
    assert!(registry.send(key, true, msg).is_ok());
    match outcome(inbox).await {
        Ok(Done::Rev(rev)) => rev,
        other => panic!("set failed: {other:?}"),
    }
}

pub async fn del(registry: &Registry, inbox: &Inbox, key: &str) {
    let msg = Del {
        if_rev: None,
        reply: inbox.reply_to(),
    };
    assert!(registry.send(key, false, msg).is_ok());
    assert!(outcome(inbox).await.is_ok(), "del failed");
}

/// The `get` reply itself: the write it shares.
pub async fn get_shared(registry: &Registry, inbox: &Inbox, key: &str) -> Arc<Update> {
    let msg = Get {
        reply: inbox.reply_to(),
    };
    assert!(registry.send(key, false, msg).is_ok());
    match outcome(inbox).await {
        Ok(Done::Value(u)) => u,
        other => panic!("get failed: {other:?}"),
    }
}

pub async fn get(registry: &Registry, inbox: &Inbox, key: &str) -> Option<(u64, Bytes)> {
    let msg = Get {
        reply: inbox.reply_to(),
    };
    if let Err(Get { reply }) = registry.send(key, false, msg) {
        reply.send(Err(ErrorBody::not_found()));
    }
    match outcome(inbox).await {
        Ok(Done::Value(u)) => Some((u.rev, u.value.clone().expect("a value"))),
        _ => None,
    }
}

/// Lets the actors run until `key` has no actor (or `tries` turns pass).
pub async fn at_rest(registry: &Registry, key: &str) -> bool {
    for _ in 0..1000 {
        if registry.has_actor(key) == Some(false) {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

pub fn event(out: &Out) -> (u64, String, u64, Option<Bytes>) {
    match out {
        Out::Event { sub, update } => (
            *sub,
            update.key.to_string(),
            update.rev,
            update.value.clone(),
        ),
        other => panic!("expected an event, got {other:?}"),
    }
}
