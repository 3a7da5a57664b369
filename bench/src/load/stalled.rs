//! Subscribers that stop reading, for scenario (g), for the peers: each
//! speaks just enough of its protocol over a plain socket to subscribe,
//! waits for the confirmation, and then never reads again, so that the
//! broker's sending backs up into its own buffers. (The peers' client
//! libraries would keep reading into queues of their own.)

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Duration};

/// How long a broker may take to confirm.
const CONFIRM: Duration = Duration::from_secs(10);

async fn connect(addr: &str) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads until what was read ends with `end`.
async fn read_until(stream: &mut TcpStream, end: &[u8]) -> anyhow::Result<()> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(end) {
        let n = timeout(CONFIRM, stream.read(&mut buf))
            .await
            .context("no confirmation of the subscription")??;
        if n == 0 {
            bail!("the broker closed the connection before confirming");
        }
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// Redis: `SUBSCRIBE topic`, confirmed by `:1` (one channel).
pub(crate) async fn redis(addr: &str, topic: &str) -> anyhow::Result<TcpStream> {
    let mut stream = connect(addr).await?;
    let cmd = format!("*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{topic}\r\n", topic.len());
    stream.write_all(cmd.as_bytes()).await?;
    read_until(&mut stream, b":1\r\n").await?;
    Ok(stream)
}

/// NATS: `CONNECT`, `SUB topic 1`, then `PING`, answered by `PONG` once
/// the subscription is in place.
pub(crate) async fn nats(addr: &str, topic: &str) -> anyhow::Result<TcpStream> {
    let mut stream = connect(addr).await?;
    read_until(&mut stream, b"\r\n").await?; // INFO
    let cmd = format!("CONNECT {{\"verbose\":false}}\r\nSUB {topic} 1\r\nPING\r\n");
    stream.write_all(cmd.as_bytes()).await?;
    read_until(&mut stream, b"PONG\r\n").await?;
    Ok(stream)
}

/// MQTT 3.1.1: CONNECT (clean session, keep-alive 60 s), then SUBSCRIBE
/// at QoS 0, confirmed by SUBACK.
pub(crate) async fn mqtt(addr: &str, topic: &str) -> anyhow::Result<TcpStream> {
    let mut stream = connect(addr).await?;
    // Unique: a broker drops the older of two connections with one id.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let client_id = format!("stalled-{}-{n}", std::process::id());
    let mut connect = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    put_str(&mut connect, &client_id);
    stream.write_all(&packet(0x10, &connect)).await?;
    let mut connack = [0u8; 4];
    timeout(CONFIRM, stream.read_exact(&mut connack)).await??;
    if connack != [0x20, 2, 0, 0] {
        bail!("the MQTT broker refused the connection: {connack:?}");
    }
    let mut subscribe = vec![0, 1];
    put_str(&mut subscribe, topic);
    subscribe.push(0); // QoS 0
    stream.write_all(&packet(0x82, &subscribe)).await?;
    let mut suback = [0u8; 5];
    timeout(CONFIRM, stream.read_exact(&mut suback)).await??;
    if suback != [0x90, 3, 0, 1, 0] {
        bail!("the MQTT broker refused the subscription: {suback:?}");
    }
    Ok(stream)
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// A fixed header (type and flags, remaining length) and the body.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}
