//! `Subscription`: a stream of a key's or pattern's events.

use crate::client::Client;
use crate::error::Result;
use crate::resync::SubShared;
use crate::Meta;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
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
/// For a subscription made with [`crate::SubscribeOptions::meta`], read
/// the events with [`Subscription::next_with_meta`] or
/// [`Subscription::with_meta`] to get each value event's [`crate::Meta`]
/// too (the `Stream` of `Event`s passes it over).
///
/// It survives reconnects: the client subscribes again and passes on only
/// what changed while the connection was down (values with a new rev, and
/// an [`Event::Deleted`] with rev 0 for keys that went away; `Synced` is
/// not repeated; if the server's store changed, every value again). The
/// stream ends only when it is dropped or the client is closed.
///
/// Events wait in a queue of [`crate::ClientOptions::subscription_capacity`]
/// events. A consumer that falls further behind than that skips
/// intermediate revs: each key keeps only its newest waiting event, so it
/// still ends with the latest state, and the connection never stalls for it.
/// [`Subscription::skipped`] counts what was skipped.
pub struct Subscription {
    pub(crate) sub: Arc<SubShared>,
    pub(crate) client: Client,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id())
            .finish()
    }
}

impl Subscription {
    /// The server's id of this subscription on the current connection
    /// (another after a reconnect; 0 while it is being made again).
    pub fn id(&self) -> u64 {
        self.sub.attached().map_or(0, |(id, _)| id)
    }

    /// Events replaced by newer ones of the same key because this consumer
    /// fell more than `subscription_capacity` events behind.
    pub fn skipped(&self) -> u64 {
        self.sub.queue.skipped()
    }

    /// The events, each with what the server said of its write: for an
    /// [`Event::Value`] of a subscription made with
    /// [`crate::SubscribeOptions::meta`], its [`crate::Meta`]; `None` for
    /// other events, without `meta`, and from a server older than `meta`
    /// (which sends none: "not known", not "no options"). It takes the
    /// events from the same queue as the `Stream` of `Event`s.
    pub fn with_meta(&mut self) -> impl Stream<Item = (Event, Option<Meta>)> + Unpin + '_ {
        futures_util::stream::poll_fn(move |cx| self.sub.queue.poll_next(cx))
    }

    /// The next event and its meta, as [`Subscription::with_meta`] gives them;
    /// `None` when the subscription has ended.
    pub async fn next_with_meta(&mut self) -> Option<(Event, Option<Meta>)> {
        self.with_meta().next().await
    }
}

impl Stream for Subscription {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.sub
            .queue
            .poll_next(cx)
            .map(|item| item.map(|(event, _)| event))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.client.unsubscribe_later(&self.sub);
    }
}
