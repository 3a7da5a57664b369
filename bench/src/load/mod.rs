//! The load generator: one interface over every system measured, so that
//! each scenario is written once and runs the same against all of them.
//!
//! A [`Broker`] opens connections: a [`Publish`] sends messages to topics,
//! a [`Subscribe`] receives the messages of the topics it was opened with.
//! A topic is an ipcbus key, a Redis channel, a NATS subject or an MQTT
//! topic. Every message carries a [`Payload`] header (sequence number,
//! send time, publisher) so that subscribers can count, order and time
//! what they receive.
//!
//! # Layout
//! - `ws`: ipcbus's protocol (tokio-tungstenite and MessagePack), for the
//!   ipcbus server and the floor server alike.
//! - `redis`, `nats`, `mqtt`: the peers, through their usual Rust clients
//!   (`redis`, `async-nats`, `rumqttc`).
//! - `peers`: the peers as `bench/brokers.sh` runs them: where they listen
//!   (`brokers.env`), a [`Broker`] for each, and a guard that starts and
//!   stops them.

pub(crate) mod mqtt;
pub(crate) mod nats;
pub(crate) mod peers;
pub(crate) mod redis;
pub(crate) mod stalled;
pub(crate) mod ws;

use bytes::Bytes;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

/// Bytes of every message body unless a scenario says otherwise.
pub(crate) const VALUE_BYTES: usize = 100;

/// Opens connections to one running system.
pub(crate) trait Broker: Send + Sync + 'static {
    /// A publishing connection.
    type Pub: Publish;
    /// A subscribing connection.
    type Sub: Subscribe;
    /// Opens a connection for publishing.
    fn publisher(&self) -> impl Future<Output = anyhow::Result<Self::Pub>> + Send;
    /// Opens a connection and subscribes it to `topics`; returns once every
    /// subscription is in place, so that nothing published later is missed.
    fn subscriber(
        &self,
        topics: &[String],
    ) -> impl Future<Output = anyhow::Result<Self::Sub>> + Send;
    /// A reading connection.
    type Reader: Fetch;
    /// Opens a connection for [`Fetch::fetch`].
    fn reader(&self) -> impl Future<Output = anyhow::Result<Self::Reader>> + Send;
    /// A new client's first read: opens a connection and fetches `topic`,
    /// by default with [`Broker::reader`] and then [`Fetch::fetch`]. A
    /// system that can ask in the connection's opening overrides it
    /// (ipcbus: `?sub=` in the upgrade request).
    fn reader_of(
        &self,
        topic: &str,
    ) -> impl Future<Output = anyhow::Result<(Self::Reader, Bytes)>> + Send {
        async move {
            let mut reader = self.reader().await?;
            let value = reader.fetch(topic).await?;
            Ok((reader, value))
        }
    }
    /// A connection that subscribes to `topic` and then never reads again,
    /// so that what the server sends it backs up: scenario (g).
    type Stalled: Send + 'static;
    /// Opens a [`Broker::Stalled`] connection; returns once its
    /// subscription is in place.
    fn stalled(&self, topic: &str) -> impl Future<Output = anyhow::Result<Self::Stalled>> + Send;
}

/// A connection that publishes.
pub(crate) trait Publish: Send + 'static {
    /// Queues one message; it may stay buffered until [`Publish::flush`].
    fn publish(
        &mut self,
        topic: &str,
        body: &[u8],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Sends everything queued.
    fn flush(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Writes a value that later readers get ([`Fetch::fetch`]) and returns
    /// once the system has it.
    fn store(
        &mut self,
        topic: &str,
        body: &[u8],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A connection that reads current values: scenario (e).
pub(crate) trait Fetch: Send + 'static {
    /// The value `topic` holds now, written before with [`Publish::store`].
    fn fetch(&mut self, topic: &str) -> impl Future<Output = anyhow::Result<Bytes>> + Send;
}

/// A connection that receives.
pub(crate) trait Subscribe: Send + 'static {
    /// The next message's body.
    fn next(&mut self) -> impl Future<Output = anyhow::Result<Bytes>> + Send;
}

/// The header every message body starts with, little-endian:
/// sequence number (8 bytes), send time in ns since [`epoch`] (8 bytes),
/// publisher index (2 bytes). The rest of the body is filler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Payload {
    /// Per publisher and topic, from 0.
    pub(crate) seq: u64,
    /// When it was sent, in ns since [`epoch`].
    pub(crate) sent_ns: u64,
    /// Which publisher sent it.
    pub(crate) publisher: u16,
}

/// Bytes of the header.
pub(crate) const HEADER_BYTES: usize = 18;

impl Payload {
    /// Writes the header into the start of `body`, which must be at least
    /// [`HEADER_BYTES`] long.
    pub(crate) fn write(&self, body: &mut [u8]) {
        body[0..8].copy_from_slice(&self.seq.to_le_bytes());
        body[8..16].copy_from_slice(&self.sent_ns.to_le_bytes());
        body[16..18].copy_from_slice(&self.publisher.to_le_bytes());
    }

    /// Reads the header of a received body.
    pub(crate) fn read(body: &[u8]) -> anyhow::Result<Payload> {
        let header = body
            .get(..HEADER_BYTES)
            .ok_or_else(|| anyhow::anyhow!("a message of {} bytes has no header", body.len()))?;
        let u64_at = |at: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(b)
        };
        Ok(Payload {
            seq: u64_at(0),
            sent_ns: u64_at(8),
            publisher: u16::from_le_bytes([header[16], header[17]]),
        })
    }
}

/// The instant send times are measured from, the same for every task of
/// this process.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub(crate) fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_header_round_trips() {
        let p = Payload {
            seq: 0x0102_0304_0506_0708,
            sent_ns: 99,
            publisher: 513,
        };
        let mut body = vec![0xAA; VALUE_BYTES];
        p.write(&mut body);
        assert_eq!(Payload::read(&body).ok(), Some(p));
        assert!(Payload::read(&body[..HEADER_BYTES - 1]).is_err());
    }
}
