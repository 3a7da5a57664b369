//! Scenario (e): many new clients each get the current value of one key.
//! Timed twice: from nothing (connect, subscribe or read, receive), with
//! [`CONCURRENCY`] clients connecting at a time, and with the clients
//! already connected, all asking at once.

use crate::load::{Broker, Fetch, Publish, VALUE_BYTES};
use anyhow::bail;
use futures_util::stream::{self, FuturesUnordered, StreamExt, TryStreamExt};
use std::time::{Duration, Instant};

/// Clients connecting at once: well below every server's listen backlog,
/// so that no connection waits out a SYN retry.
pub(crate) const CONCURRENCY: usize = 64;

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fresh {
    /// Connect included.
    pub(crate) connect: Duration,
    /// Already connected.
    pub(crate) connected: Duration,
}

/// `clients` clients get the value of one key, twice.
pub(crate) async fn run<B: Broker>(
    broker: &B,
    clients: usize,
    prefix: &str,
) -> anyhow::Result<Fresh> {
    let topic = format!("{prefix}.fresh");
    let body: Vec<u8> = (0..VALUE_BYTES).map(|i| i as u8).collect();
    let mut publ = broker.publisher().await?;
    publ.store(&topic, &body).await?;
    let check = |value: &[u8]| {
        if value != body.as_slice() {
            bail!(
                "a client got {} bytes that are not the stored value",
                value.len()
            );
        }
        Ok(())
    };

    let started = Instant::now();
    let readers: Vec<B::Reader> = stream::iter(0..clients)
        .map(|_| async {
            let (reader, value) = broker.reader_of(&topic).await?;
            check(&value)?;
            anyhow::Ok(reader)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let connect = started.elapsed();
    drop(readers);

    let mut readers: Vec<B::Reader> = stream::iter(0..clients)
        .map(|_| broker.reader())
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let started = Instant::now();
    let mut asking: FuturesUnordered<_> = readers.iter_mut().map(|r| r.fetch(&topic)).collect();
    while let Some(value) = asking.next().await {
        check(&value?)?;
    }
    let connected = started.elapsed();
    drop(asking);
    drop(publ);
    Ok(Fresh { connect, connected })
}
