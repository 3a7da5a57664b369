//! Async Rust client for ipcbus, on tokio-tungstenite.
//!
//! # Layout
//! - [`Client`] (`client.rs`): connect (`connect_subscribed` and
//!   `connect_watching` with subscriptions named in the upgrade request,
//!   protocol.md §5.1), `set`/`get`/`del`/`keys` (typed with
//!   serde, or raw MessagePack bytes), `set_if`, `set_with` ([`SetOptions`]:
//!   persist, ephemeral, TTL), `subscribe`, `subscribe_with`
//!   ([`SubscribeOptions`]: since, meta), `watch`, `state`, `close`.
//! - [`ClientOptions`], [`SetOptions`], [`SubscribeOptions`] (`options.rs`).
//! - [`State`], [`StateKind`] (`state.rs`): connecting, open, reconnecting, closed.
//! - [`Subscription`] and [`Event`] (`subscription.rs`): a subscription as a
//!   `Stream`; [`Meta`]: what a value event of a subscription made with
//!   `meta` says of its write.
//! - [`Watch`] (`watch.rs`): a local mirror of a pattern, kept current by push.
//! - `reconnect.rs`: the task that owns the connection: connects with
//!   backoff (`backoff.rs`), writes requests, and after a lost connection
//!   reconnects, sets ephemeral keys again (`ephemeral.rs`), resubscribes.
//! - `dial.rs`: one connection attempt and its `hello`; the `sub`
//!   parameters of the first one's URL.
//! - `conn.rs`: requests, the routing table and the reader task.
//! - `resync.rs`: a subscription across reconnects, and the filter that
//!   reduces the replay after a reconnect to what changed.
//! - `queue.rs`: the bounded, conflating queue of each subscription.
//! - [`Error`] (`error.rs`).
//!
//! The client sends the access token the local server wrote (or
//! `$IPCBUS_TOKEN`, or [`ClientOptions::token`]) as `Authorization: Bearer`.
//!
//! Requests are pipelined: any number may be in flight on one connection,
//! matched to replies by id. The wire protocol is `docs/protocol.md`; the
//! reconnect contract this client keeps is in `docs/clients.md`.

mod backoff;
mod client;
mod conn;
mod dial;
mod ephemeral;
mod error;
mod options;
mod queue;
mod reconnect;
mod resync;
mod state;
mod subscription;
mod watch;

pub use client::Client;
pub use error::{Error, Result};
pub use ipcbus_protocol::ErrorCode;
/// What the server says of the write a value event carries, for a
/// subscription made with [`SubscribeOptions::meta`] (protocol.md §4):
/// `age_ms` (`None` when the server does not know, as for a value restored
/// from its data file), `persist`, `ephemeral`, and `ttl_ms` (what was left
/// of its TTL when the event was sent). Both times count from when the
/// server sent the event.
pub use ipcbus_protocol::ValMeta as Meta;
pub use options::{ClientOptions, SetOptions, SubscribeOptions};
pub use state::{State, StateKind};
pub use subscription::{Event, Subscription};
pub use watch::{Entry, Watch};
