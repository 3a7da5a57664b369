//! MQTT 3.1.1 (Mosquitto) for the load generator, through `rumqttc`: an
//! async client, and its event loop in a task of its own that forwards what
//! arrives. Plain TCP, Nagle off. A topic is an MQTT topic; the '.' of our
//! topic names is a plain character to MQTT.
//!
//! Publishes and subscriptions are QoS 0, at most once: fire-and-forget,
//! like Redis's `PUBLISH`, core NATS and ipcbus's `set` without an id.
//! Stored values are retained messages, published at QoS 1 so that
//! [`Publish::store`] returns with the broker's `PUBACK`; a fetch subscribes
//! and takes the retained message.

use super::{Broker, Fetch, Publish, Subscribe};
use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Requests (publishes, subscribes) the client queues for its event loop
/// before `publish` waits: more than the 2000 messages a scenario keeps in
/// flight, so that a closed loop never waits on the client's queue.
const REQUEST_CAPACITY: usize = 4096;

/// QoS 1 and 2 publishes the event loop keeps unacknowledged before it
/// stops taking requests. Only [`Publish::store`] uses QoS 1, one at a time,
/// but a low limit here would stall everything queued behind it.
const MAX_INFLIGHT: u16 = 4096;

/// What the event loop task hands on before it waits for the connection's
/// owner to take some.
const EVENT_CAPACITY: usize = 4096;

/// The largest packet, either way: larger than any body a scenario sends.
const MAX_PACKET_BYTES: usize = 16 << 20;

/// MQTT's keep-alive; the event loop pings at this interval.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// A Mosquitto (or any MQTT 3.1.1) broker.
#[derive(Debug, Clone)]
pub(crate) struct MqttBroker {
    /// Its address, `127.0.0.1`.
    pub(crate) host: String,
    /// Its port.
    pub(crate) port: u16,
}

/// What the event loop task forwards.
enum Incoming {
    /// A message: its payload, and whether it is a retained one.
    Publish { payload: Bytes, retain: bool },
    /// A `SUBACK`, with one code per topic.
    SubAck(Vec<SubscribeReasonCode>),
    /// An `UNSUBACK`.
    UnsubAck,
    /// A `PUBACK`.
    PubAck,
}

/// One MQTT connection: the client, and what its event loop received.
struct Conn {
    client: AsyncClient,
    incoming: mpsc::Receiver<anyhow::Result<Incoming>>,
    /// The event loop task, ended when the connection is dropped.
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Conn {
    /// The next packet of interest, or the error that ended the event loop.
    async fn next(&mut self) -> anyhow::Result<Incoming> {
        self.incoming
            .recv()
            .await
            .unwrap_or_else(|| Err(anyhow!("the MQTT event loop has ended")))
    }

    /// Waits for a `SUBACK` and fails if it refuses a topic.
    async fn suback(&mut self) -> anyhow::Result<()> {
        loop {
            if let Incoming::SubAck(codes) = self.next().await? {
                if codes.contains(&SubscribeReasonCode::Failure) {
                    bail!("the broker refused a subscription");
                }
                return Ok(());
            }
        }
    }
}

impl MqttBroker {
    async fn connect(&self) -> anyhow::Result<Conn> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "ipcbus-bench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut options = MqttOptions::new(id, self.host.as_str(), self.port);
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_inflight(MAX_INFLIGHT);
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        // The first poll connects and returns the CONNACK.
        match eventloop
            .poll()
            .await
            .with_context(|| format!("connecting to mqtt at {}:{}", self.host, self.port))?
        {
            Event::Incoming(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => {}
            other => bail!("mqtt at {}:{}: {other:?}", self.host, self.port),
        }
        let (tx, incoming) = mpsc::channel(EVENT_CAPACITY);
        let task = tokio::spawn(run(eventloop, tx));
        Ok(Conn {
            client,
            incoming,
            task,
        })
    }
}

/// Polls the event loop, which sends what the client queued, answers
/// pings and reads; hands on the packets of interest, and the error that
/// ends the loop (polling again would reconnect, losing messages quietly).
async fn run(mut eventloop: EventLoop, tx: mpsc::Sender<anyhow::Result<Incoming>>) {
    loop {
        let incoming = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(publish))) => Incoming::Publish {
                payload: publish.payload,
                retain: publish.retain,
            },
            Ok(Event::Incoming(Packet::SubAck(ack))) => Incoming::SubAck(ack.return_codes),
            Ok(Event::Incoming(Packet::UnsubAck(_))) => Incoming::UnsubAck,
            Ok(Event::Incoming(Packet::PubAck(_))) => Incoming::PubAck,
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Err(anyhow!("mqtt connection: {e}"))).await;
                return;
            }
        };
        if tx.send(Ok(incoming)).await.is_err() {
            return;
        }
    }
}

impl Broker for MqttBroker {
    type Pub = MqttPublisher;
    type Sub = MqttSubscriber;
    type Reader = MqttReader;
    type Stalled = tokio::net::TcpStream;

    async fn stalled(&self, topic: &str) -> anyhow::Result<tokio::net::TcpStream> {
        super::stalled::mqtt(&format!("{}:{}", self.host, self.port), topic).await
    }

    async fn publisher(&self) -> anyhow::Result<MqttPublisher> {
        Ok(MqttPublisher {
            conn: self.connect().await?,
        })
    }

    async fn subscriber(&self, topics: &[String]) -> anyhow::Result<MqttSubscriber> {
        let mut conn = self.connect().await?;
        let filters = topics
            .iter()
            .map(|topic| SubscribeFilter::new(topic.clone(), QoS::AtMostOnce));
        conn.client.subscribe_many(filters).await?;
        conn.suback().await?;
        Ok(MqttSubscriber { conn })
    }

    async fn reader(&self) -> anyhow::Result<MqttReader> {
        Ok(MqttReader {
            conn: self.connect().await?,
        })
    }
}

/// A publishing connection.
pub(crate) struct MqttPublisher {
    conn: Conn,
}

impl Publish for MqttPublisher {
    /// A QoS 0 publish, handed to the event loop, which writes it out at
    /// once.
    async fn publish(&mut self, topic: &str, body: &[u8]) -> anyhow::Result<()> {
        self.conn
            .client
            .publish_bytes(topic, QoS::AtMostOnce, false, Bytes::copy_from_slice(body))
            .await?;
        Ok(())
    }

    /// Nothing to do: rumqttc's event loop writes (and flushes) each
    /// request as it takes it from the client's queue, and has no way to
    /// tell when the queue is empty.
    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// A retained QoS 1 publish; returns with the broker's `PUBACK`.
    async fn store(&mut self, topic: &str, body: &[u8]) -> anyhow::Result<()> {
        self.conn
            .client
            .publish_bytes(topic, QoS::AtLeastOnce, true, Bytes::copy_from_slice(body))
            .await?;
        loop {
            if let Incoming::PubAck = self.conn.next().await? {
                return Ok(());
            }
        }
    }
}

/// A subscribing connection.
pub(crate) struct MqttSubscriber {
    conn: Conn,
}

impl Subscribe for MqttSubscriber {
    async fn next(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if let Incoming::Publish { payload, .. } = self.conn.next().await? {
                return Ok(payload);
            }
        }
    }
}

/// A reading connection.
pub(crate) struct MqttReader {
    conn: Conn,
}

impl Fetch for MqttReader {
    /// Subscribes to `topic` and unsubscribes right away: the broker sends
    /// the retained message (if any) after the `SUBACK` and before it
    /// handles the `UNSUBSCRIBE`, so the `UNSUBACK` says there is none.
    async fn fetch(&mut self, topic: &str) -> anyhow::Result<Bytes> {
        self.conn.client.subscribe(topic, QoS::AtMostOnce).await?;
        self.conn.client.unsubscribe(topic).await?;
        self.conn.suback().await?;
        let mut value = None;
        loop {
            match self.conn.next().await? {
                Incoming::Publish {
                    payload,
                    retain: true,
                } => value = value.or(Some(payload)),
                Incoming::UnsubAck => break,
                _ => {}
            }
        }
        value.with_context(|| format!("{topic} has no retained value"))
    }
}
