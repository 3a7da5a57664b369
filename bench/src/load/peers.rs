//! The peers as `bench/brokers.sh` runs them: its `brokers.env` read into
//! [`Ports`], the [`Broker`](super::Broker) of each peer made from it, and
//! [`Brokers`], which starts the three and stops them (by PID) when
//! dropped.

use super::mqtt::MqttBroker;
use super::nats::NatsBroker;
use super::redis::RedisBroker;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// The script that installs, starts and stops the peers.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/brokers.sh");

/// The programs `brokers.sh start` runs.
const PROGRAMS: [&str; 3] = ["redis-server", "nats-server", "mosquitto"];

/// Where the peers listen (all on 127.0.0.1) and their processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ports {
    /// Redis's port.
    pub(crate) redis: u16,
    /// NATS's client port.
    pub(crate) nats: u16,
    /// Mosquitto's MQTT port.
    pub(crate) mqtt: u16,
    /// redis-server's PID.
    pub(crate) redis_pid: u32,
    /// nats-server's PID.
    pub(crate) nats_pid: u32,
    /// mosquitto's PID.
    pub(crate) mqtt_pid: u32,
}

impl Ports {
    /// Redis at its port.
    pub(crate) fn redis(&self) -> RedisBroker {
        RedisBroker {
            addr: format!("127.0.0.1:{}", self.redis),
        }
    }

    /// NATS at its port.
    pub(crate) fn nats(&self) -> NatsBroker {
        NatsBroker {
            url: format!("nats://127.0.0.1:{}", self.nats),
        }
    }

    /// Mosquitto at its port.
    pub(crate) fn mqtt(&self) -> MqttBroker {
        MqttBroker {
            host: "127.0.0.1".to_owned(),
            port: self.mqtt,
        }
    }
}

/// Reads `dir/brokers.env`, as `brokers.sh start dir` wrote it.
pub(crate) fn read_env(dir: &Path) -> anyhow::Result<Ports> {
    let path = dir.join("brokers.env");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_env(&text).with_context(|| format!("in {}", path.display()))
}

/// Parses the `NAME=value` lines of a `brokers.env`.
fn parse_env(text: &str) -> anyhow::Result<Ports> {
    let get = |name: &str| -> anyhow::Result<&str> {
        text.lines()
            .filter_map(|line| line.trim().split_once('='))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| value.trim())
            .with_context(|| format!("no {name}"))
    };
    let port = |name: &str| -> anyhow::Result<u16> {
        get(name)?
            .parse()
            .with_context(|| format!("{name} is not a port"))
    };
    let pid = |name: &str| -> anyhow::Result<u32> {
        get(name)?
            .parse()
            .with_context(|| format!("{name} is not a PID"))
    };
    Ok(Ports {
        redis: port("REDIS_PORT")?,
        nats: port("NATS_PORT")?,
        mqtt: port("MQTT_PORT")?,
        redis_pid: pid("REDIS_PID")?,
        nats_pid: pid("NATS_PID")?,
        mqtt_pid: pid("MQTT_PID")?,
    })
}

/// The three peers, started by `brokers.sh start` in a temporary directory
/// (their logs are there) and stopped by `brokers.sh stop` on drop.
pub(crate) struct Brokers {
    dir: TempDir,
    /// Where they listen.
    pub(crate) ports: Ports,
}

impl Brokers {
    /// Starts the three; fails, saying how to install them, if a program is
    /// missing.
    pub(crate) fn start() -> anyhow::Result<Brokers> {
        let missing: Vec<&str> = PROGRAMS
            .into_iter()
            .filter(|program| !on_path(program))
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} not found on PATH: run `bash bench/brokers.sh install` (as root)",
                missing.join(", ")
            );
        }
        let dir = tempfile::Builder::new().prefix("ipcbus-peers").tempdir()?;
        let out = Command::new("bash")
            .args([SCRIPT, "start"])
            .arg(dir.path())
            .output()
            .context("running brokers.sh")?;
        if !out.status.success() {
            bail!(
                "brokers.sh start failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // From here on, dropping `brokers` stops them.
        let brokers = Brokers {
            ports: read_env(dir.path())?,
            dir,
        };
        Ok(brokers)
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        let stopped = Command::new("bash")
            .args([SCRIPT, "stop"])
            .arg(self.dir.path())
            .status();
        if !matches!(stopped, Ok(status) if status.success()) {
            eprintln!(
                "brokers.sh stop {} failed; PIDs {}, {}, {} may still run",
                self.dir.path().display(),
                self.ports.redis_pid,
                self.ports.nats_pid,
                self.ports.mqtt_pid
            );
        }
    }
}

/// Whether `program` is an executable file in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir: PathBuf| {
        let file = dir.join(program);
        std::fs::metadata(&file).is_ok_and(|m| m.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::VALUE_BYTES;
    use crate::load::{now_ns, Broker, Fetch, Payload, Publish, Subscribe, HEADER_BYTES};
    use anyhow::ensure;
    use std::time::Duration;
    use tokio::time::timeout;

    #[test]
    fn env_parses() {
        let text =
            "REDIS_PORT=1\nREDIS_PID=10\nNATS_PORT=2\nNATS_PID=20\nMQTT_PORT=3\nMQTT_PID=30\n";
        let ports = parse_env(text).expect("parses");
        assert_eq!(
            ports,
            Ports {
                redis: 1,
                nats: 2,
                mqtt: 3,
                redis_pid: 10,
                nats_pid: 20,
                mqtt_pid: 30,
            }
        );
        assert!(parse_env("REDIS_PORT=1\n").is_err());
        assert!(parse_env(&text.replace("MQTT_PORT=3", "MQTT_PORT=x")).is_err());
    }

    /// Messages per topic in [`pub_sub_in_order`].
    const MESSAGES: u64 = 1000;

    /// How long any one step may take before the test fails.
    const STEP: Duration = Duration::from_secs(10);

    /// The body of message `seq` to topic `topic`: the header (with the
    /// topic's index as the publisher) and filler that depends on both.
    fn body(seq: u64, topic: u16) -> Vec<u8> {
        let mut body = vec![0; VALUE_BYTES];
        Payload {
            seq,
            sent_ns: now_ns(),
            publisher: topic,
        }
        .write(&mut body);
        for (i, b) in body[HEADER_BYTES..].iter_mut().enumerate() {
            *b = (seq as usize + i * 7 + usize::from(topic) * 31) as u8;
        }
        body
    }

    /// A subscriber on two topics gets the messages published to them, in
    /// order, with their bodies intact.
    async fn pub_sub_in_order<B: Broker>(name: &str, broker: &B) -> anyhow::Result<()> {
        let topics = [format!("bench.{name}.a"), format!("bench.{name}.b")];
        let mut sub = timeout(STEP, broker.subscriber(&topics)).await??;
        // A subscriber that never reads (scenario g) confirms its
        // subscription and does not hold up the healthy one.
        let _stalled = timeout(STEP, broker.stalled(&topics[0]))
            .await?
            .context("the stalled subscriber")?;
        let mut publisher = timeout(STEP, broker.publisher()).await??;
        let sender = async move {
            for seq in 0..MESSAGES {
                for (index, topic) in (0..).zip(&topics) {
                    publisher.publish(topic, &body(seq, index)).await?;
                }
                if seq % 100 == 99 {
                    publisher.flush().await?;
                }
            }
            publisher.flush().await?;
            anyhow::Ok(publisher)
        };
        let receiver = async {
            let mut next = [0u64; 2];
            for _ in 0..2 * MESSAGES {
                let got = timeout(STEP, sub.next())
                    .await
                    .with_context(|| format!("{name}: got {next:?} messages, then none"))??;
                let header = Payload::read(&got)?;
                let topic = usize::from(header.publisher);
                ensure!(topic < 2, "{name}: no topic {topic}");
                ensure!(
                    header.seq == next[topic],
                    "{name}: topic {topic}: got {} after {}",
                    header.seq,
                    next[topic]
                );
                let mut want = body(header.seq, header.publisher);
                want[8..16].copy_from_slice(&got[8..16]);
                ensure!(got == want, "{name}: message {} is altered", header.seq);
                next[topic] += 1;
            }
            anyhow::Ok(())
        };
        let (sent, received) = tokio::join!(sender, receiver);
        sent?;
        received
    }

    /// A stored value is what a reader fetches, and a newer one replaces it.
    async fn store_fetch<B: Broker>(name: &str, broker: &B) -> anyhow::Result<()> {
        let topic = format!("bench.{name}.stored");
        let mut publisher = timeout(STEP, broker.publisher()).await??;
        let first = body(1, 0);
        timeout(STEP, publisher.store(&topic, &first)).await??;
        let mut reader = timeout(STEP, broker.reader()).await??;
        let got = timeout(STEP, reader.fetch(&topic)).await??;
        ensure!(got == first, "{name}: fetched {got:?}");
        // Two stores, then two fetches on the same connection.
        timeout(STEP, publisher.store(&topic, b"second")).await??;
        timeout(STEP, publisher.store(&topic, b"third")).await??;
        for _ in 0..2 {
            let got = timeout(STEP, reader.fetch(&topic)).await??;
            ensure!(got == b"third"[..], "{name}: fetched {got:?}");
        }
        let missing = timeout(STEP, reader.fetch(&format!("bench.{name}.never"))).await?;
        ensure!(missing.is_err(), "{name}: a topic never stored has a value");
        Ok(())
    }

    async fn check<B: Broker>(name: &str, broker: &B) -> anyhow::Result<()> {
        pub_sub_in_order(name, broker)
            .await
            .with_context(|| format!("{name}: publish and subscribe"))?;
        store_fetch(name, broker)
            .await
            .with_context(|| format!("{name}: store and fetch"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peers_publish_subscribe_store_and_fetch() {
        let brokers = Brokers::start().expect("start the peers");
        let ports = brokers.ports;
        let results = [
            check("redis", &ports.redis()).await,
            check("nats", &ports.nats()).await,
            check("mqtt", &ports.mqtt()).await,
        ];
        drop(brokers);
        let failures: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(|e| format!("{e:#}")))
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
