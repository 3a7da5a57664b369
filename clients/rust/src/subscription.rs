//! `Subscription`: a stream of a key's or pattern's events.

use crate::client::Client;
use crate::error::Result;
use crate::queue::EventQueue;
use bytes::Bytes;
use futures_util::Stream;
use serde::de::DeserializeOwned;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// One event of a subscription.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A key's value: replayed at subscribe time, or a live change.
    Value {
        /// The key.
        key: String,
        /// The rev of this write.
        rev: u64,
        /// The value, as MessagePack.
        value: Bytes,
    },
    /// A key was deleted.
    Deleted {
        /// The key.
        key: String,
        /// The rev of the deletion.
        rev: u64,
    },
    /// Every key that matched at subscribe time has been delivered; what
    /// follows is live.
    Synced,
}

impl Event {
    /// Decodes the value of a `Value` event; `None` for other events.
    pub fn decode<T: DeserializeOwned>(&self) -> Option<Result<T>> {
        match self {
            Event::Value { value, .. } => Some(rmp_serde::from_slice(value).map_err(Into::into)),
            _ => None,
        }
    }

    /// The key this event is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Event::Value { key, .. } | Event::Deleted { key, .. } => Some(key),
            Event::Synced => None,
        }
    }
}

/// The events of one subscription, as a `Stream`. Dropping it unsubscribes.
///
/// Events wait in a queue of [`crate::ClientOptions::subscription_capacity`]
/// events. A consumer that falls further behind than that skips
/// intermediate revs: each key keeps only its newest waiting event, so it
/// still ends with the latest state, and the connection never stalls for it.
/// [`Subscription::skipped`] counts what was skipped.
pub struct Subscription {
    pub(crate) id: u64,
    pub(crate) queue: Arc<EventQueue>,
    pub(crate) client: Client,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

impl Subscription {
    /// The server's id of this subscription.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Events replaced by newer ones of the same key because this consumer
    /// fell more than `subscription_capacity` events behind.
    pub fn skipped(&self) -> u64 {
        self.queue.skipped()
    }
}

impl Stream for Subscription {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.queue.poll_next(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.client.unsubscribe_later(self.id);
    }
}
