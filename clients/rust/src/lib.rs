//! Async Rust client for ipcbus, on tokio-tungstenite.
//!
//! # Layout
//! - [`Client`] (`client.rs`): connect, `set`/`get`/`del`/`keys` (typed with
//!   serde, or raw MessagePack bytes), `set_if`, `set_with` ([`SetOptions`]:
//!   persist, ephemeral, TTL), `subscribe`, `watch`.
//!
//! The client sends the access token the local server wrote (or
//! `$IPCBUS_TOKEN`, or [`ClientOptions::token`]) as `Authorization: Bearer`.
//! - [`Subscription`] and [`Event`] (`subscription.rs`): a subscription as a `Stream`.
//! - [`Watch`] (`watch.rs`): a local mirror of a pattern, kept current by push.
//! - `conn.rs`: the reader and writer tasks behind a connection.
//! - `queue.rs`: the bounded, conflating queue of each subscription.
//! - [`Error`] (`error.rs`).
//!
//! Requests are pipelined: any number may be in flight on one connection,
//! matched to replies by id. The wire protocol is `docs/protocol.md`.

mod client;
mod conn;
mod error;
mod queue;
mod subscription;
mod watch;

pub use client::{Client, ClientOptions, SetOptions};
pub use error::{Error, Result};
pub use ipcbus_protocol::ErrorCode;
pub use subscription::{Event, Subscription};
pub use watch::{Entry, Watch};
