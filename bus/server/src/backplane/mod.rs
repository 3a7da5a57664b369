//! The NATS backplane: several servers share one keyspace through a NATS
//! JetStream key-value bucket (docs/scaling.md). Being built in slices:
//! the settings, the mapping of keys to subjects, writes, and the feed
//! are here and tested against a real cluster; the key actors do not use
//! them yet, so `serve` has no `--backplane` flag yet.
//!
//! - [`config`]: `[backplane]` of the TOML file.
//! - `subject`: keys as NATS subjects, token by token.
//! - [`nats`]: [`NatsBackplane`], the connection, the bucket, writes.
//! - [`feed`]: [`Feed`], the bucket's changes in stream order.
//! - [`lease`]: this server's lease, and [`Owners`]: whose ephemeral keys
//!   go when a lease runs out.

pub mod config;
pub mod feed;
pub mod lease;
pub mod nats;
mod subject;

pub use config::BackplaneConfig;
pub use feed::{Change, Feed};
pub use lease::Owners;
pub use nats::{Expect, NatsBackplane, Put, WriteError};
