//! Redis for the load generator, through the `redis` crate (tokio, plain
//! TCP, Nagle off on every connection). A topic is a channel: publishes are
//! `PUBLISH`es, queued in a pipeline and sent together on
//! [`Publish::flush`], which returns when Redis has answered them all
//! (fire-and-forget as far as delivery goes: the answer is only the number
//! of subscribers it reached). Subscribers `SUBSCRIBE`; stored values are
//! `SET` and fetched with `GET`.

use super::{Broker, Fetch, Publish, Subscribe};
use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::io::tcp::TcpSettings;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo};
use std::time::Duration;

/// How long a command may wait for its answer: long, since a loaded
/// broker is what is measured, not a reason to give up.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// A Redis server at `addr`.
#[derive(Debug, Clone)]
pub(crate) struct RedisBroker {
    /// `127.0.0.1:<port>`.
    pub(crate) addr: String,
}

impl RedisBroker {
    fn client(&self) -> anyhow::Result<redis::Client> {
        let (host, port) = self
            .addr
            .rsplit_once(':')
            .with_context(|| format!("{}: not host:port", self.addr))?;
        let port = port
            .parse()
            .with_context(|| format!("{}: not host:port", self.addr))?;
        let info = ConnectionAddr::Tcp(host.to_owned(), port)
            .into_connection_info()?
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        Ok(redis::Client::open(info)?)
    }

    async fn connection(&self) -> anyhow::Result<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
        self.client()?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .with_context(|| format!("connecting to redis at {}", self.addr))
    }
}

impl Broker for RedisBroker {
    type Pub = RedisPublisher;
    type Sub = RedisSubscriber;
    type Reader = RedisReader;
    type Stalled = tokio::net::TcpStream;

    async fn stalled(&self, topic: &str) -> anyhow::Result<tokio::net::TcpStream> {
        super::stalled::redis(&self.addr, topic).await
    }

    async fn publisher(&self) -> anyhow::Result<RedisPublisher> {
        Ok(RedisPublisher {
            conn: self.connection().await?,
            pipe: redis::pipe(),
        })
    }

    async fn subscriber(&self, topics: &[String]) -> anyhow::Result<RedisSubscriber> {
        let pubsub = self
            .client()?
            .get_async_pubsub()
            .await
            .with_context(|| format!("connecting to redis at {}", self.addr))?;
        let (mut sink, stream) = pubsub.split();
        // Returns once Redis has confirmed every channel.
        sink.subscribe(topics).await?;
        Ok(RedisSubscriber {
            _sink: sink,
            stream,
        })
    }

    async fn reader(&self) -> anyhow::Result<RedisReader> {
        Ok(RedisReader {
            conn: self.connection().await?,
        })
    }
}

/// A publishing connection.
pub(crate) struct RedisPublisher {
    conn: MultiplexedConnection,
    /// The `PUBLISH`es not sent yet.
    pipe: redis::Pipeline,
}

impl Publish for RedisPublisher {
    async fn publish(&mut self, topic: &str, body: &[u8]) -> anyhow::Result<()> {
        self.pipe.cmd("PUBLISH").arg(topic).arg(body).ignore();
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pipe.is_empty() {
            return Ok(());
        }
        let sent = self.pipe.exec_async(&mut self.conn).await;
        self.pipe.clear();
        Ok(sent?)
    }

    async fn store(&mut self, topic: &str, body: &[u8]) -> anyhow::Result<()> {
        redis::cmd("SET")
            .arg(topic)
            .arg(body)
            .exec_async(&mut self.conn)
            .await?;
        Ok(())
    }
}

/// A subscribing connection.
pub(crate) struct RedisSubscriber {
    /// Kept so that the connection stays open.
    _sink: PubSubSink,
    stream: PubSubStream,
}

impl Subscribe for RedisSubscriber {
    async fn next(&mut self) -> anyhow::Result<Bytes> {
        match self.stream.next().await {
            Some(msg) => Ok(Bytes::copy_from_slice(msg.get_payload_bytes())),
            None => bail!("redis closed the subscription"),
        }
    }
}

/// A reading connection.
pub(crate) struct RedisReader {
    conn: MultiplexedConnection,
}

impl Fetch for RedisReader {
    async fn fetch(&mut self, topic: &str) -> anyhow::Result<Bytes> {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(topic)
            .query_async(&mut self.conn)
            .await?;
        match value {
            Some(value) => Ok(Bytes::from(value)),
            None => bail!("{topic} has no value"),
        }
    }
}
