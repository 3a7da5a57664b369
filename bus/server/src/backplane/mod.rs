//! The NATS backplane (`serve --backplane`): several servers share one
//! keyspace through a NATS JetStream key-value bucket (docs/scaling.md).
//! The key actors write through it (`ipcbus_actors::Backplane`) and the
//! feed keeps each server's mirror.
//!
//! - [`config`]: `[backplane]` of the TOML file.
//! - `subject`: keys as NATS subjects, token by token.
//! - [`nats`]: [`NatsBackplane`], the connection, the bucket, writes.
//! - [`feed`]: [`Feed`], the bucket's changes in stream order.
//! - [`lease`]: this server's lease (and the check that the bucket is
//!   still the one it mirrors), and [`Owners`]: whose ephemeral keys go
//!   when a lease runs out.
//! - `follow`: the feed into the mirror.

pub mod config;
pub mod feed;
mod follow;
pub mod lease;
pub mod nats;
mod subject;

pub use config::BackplaneConfig;
pub use feed::{Change, Feed};
pub(crate) use follow::Follower;
pub use ipcbus_actors::backplane::{Expect, Put, WriteError};
pub use lease::Owners;
pub use nats::{ConnectError, NatsBackplane};

use std::time::Duration;

/// Connects, trying again with backoff (0.5 s doubling to 10 s) while NATS
/// cannot be reached; settings NATS cannot work with fail at once.
pub(crate) async fn connect(config: &BackplaneConfig, node: &str) -> anyhow::Result<NatsBackplane> {
    let mut pause = Duration::from_millis(500);
    loop {
        match NatsBackplane::connect(config, node).await {
            Ok(backplane) => return Ok(backplane),
            Err(ConnectError::Unusable(e)) => return Err(e),
            Err(ConnectError::Unreachable(e)) => {
                tracing::warn!("backplane: {e:#}; trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
}
