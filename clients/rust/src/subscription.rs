//! `Subscription`: a stream of a key's or pattern's events.

use crate::client::Client;
use crate::error::Result;
use bytes::Bytes;
use futures_util::Stream;
use serde::de::DeserializeOwned;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

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
/// Events wait in a channel of [`crate::ClientOptions::subscription_capacity`]
/// events. When it is full the connection stops reading (the server then
/// keeps only the newest pending event per key), so a subscription that is
/// never polled eventually stalls the whole connection: poll it, or drop it.
#[derive(Debug)]
pub struct Subscription {
    pub(crate) id: u64,
    pub(crate) rx: mpsc::Receiver<Event>,
    pub(crate) client: Client,
}

impl Subscription {
    /// The server's id of this subscription.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Stream for Subscription {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.client.unsubscribe_later(self.id);
    }
}
