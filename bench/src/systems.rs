//! The systems a comparison runs side by side: ipcbus (a child process of
//! this program, see `ipcbus_tests::child`), the floor server, and the
//! peers started by `bench/brokers.sh` (`crate::load::peers`). When the
//! machine has two cores or more, every server is started on core 0 (and
//! so sizes its thread pool to one core) and this program then moves to
//! the others (`crate::compare`).

use crate::load::mqtt::MqttBroker;
use crate::load::nats::NatsBroker;
use crate::load::peers::Brokers;
use crate::load::redis::RedisBroker;
use crate::load::ws::WsBroker;
use crate::procs::{self, Owned};
use anyhow::Context;
use ipcbus_tests::child::{Launcher, Server};
use std::fmt;
use std::path::Path;

/// One of the systems measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum System {
    /// This project's server.
    Ipcbus,
    /// The plain tokio-tungstenite fan-out server (`crate::floor`).
    Floor,
    /// Redis 7 pub/sub.
    Redis,
    /// NATS core pub/sub (JetStream key-value for scenario e).
    Nats,
    /// Mosquitto, MQTT 3.1.1 at QoS 0.
    Mosquitto,
}

impl System {
    /// Whether `bench/brokers.sh` runs it.
    pub(crate) fn is_peer(self) -> bool {
        matches!(self, System::Redis | System::Nats | System::Mosquitto)
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            System::Ipcbus => "ipcbus",
            System::Floor => "floor",
            System::Redis => "redis",
            System::Nats => "nats",
            System::Mosquitto => "mosquitto",
        })
    }
}

/// A started system: how to reach it, and its server's process.
pub(crate) enum Running {
    /// ipcbus.
    Ipcbus(WsBroker, Server),
    /// The floor server.
    Floor(WsBroker, Owned),
    /// Redis, and its server's PID.
    Redis(RedisBroker, u32),
    /// NATS, and its server's PID.
    Nats(NatsBroker, u32),
    /// Mosquitto, and its PID.
    Mosquitto(MqttBroker, u32),
}

impl Running {
    /// Starts `system`, with its data (if any) under `dir`; a peer is
    /// taken from `brokers`, which must then be running.
    /// `server` is an ipcbus binary to run instead of this program's;
    /// `selftest` runs it with its startup self-test.
    pub(crate) fn start(
        system: System,
        dir: &Path,
        brokers: Option<&Brokers>,
        server: Option<&Path>,
        selftest: bool,
    ) -> anyhow::Result<Running> {
        let running = match system {
            System::Ipcbus => {
                let data = dir.join("ipcbus");
                std::fs::create_dir_all(&data)?;
                let mut launcher = Launcher::new(server.map(Path::to_owned), data)?;
                launcher.extra = ["--max-connections", "20000"].map(str::to_owned).to_vec();
                if !selftest {
                    launcher.extra.push("--no-selftest".to_owned());
                }
                let server = launcher.start().context("starting ipcbus")?;
                let broker = WsBroker {
                    url: server.url.clone(),
                    token: Some(server.token.clone()),
                };
                Running::Ipcbus(broker, server)
            }
            System::Floor => {
                let (child, url) = procs::start_floor()?;
                Running::Floor(WsBroker { url, token: None }, child)
            }
            peer => {
                let ports = &brokers.context("the peers are not running")?.ports;
                match peer {
                    System::Redis => Running::Redis(ports.redis(), ports.redis_pid),
                    System::Nats => Running::Nats(ports.nats(), ports.nats_pid),
                    _ => Running::Mosquitto(ports.mqtt(), ports.mqtt_pid),
                }
            }
        };
        Ok(running)
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        match self {
            Running::Ipcbus(_, server) => server.pid(),
            Running::Floor(_, child) => child.pid(),
            Running::Redis(_, pid) | Running::Nats(_, pid) | Running::Mosquitto(_, pid) => *pid,
        }
    }
}

/// Runs `$body` with `$b` bound to the broker of a [`Running`], whatever
/// its type: the scenarios are generic over [`crate::load::Broker`].
macro_rules! with_broker {
    ($running:expr, $b:ident => $body:expr) => {
        match $running {
            $crate::systems::Running::Ipcbus($b, _) => $body,
            $crate::systems::Running::Floor($b, _) => $body,
            $crate::systems::Running::Redis($b, _) => $body,
            $crate::systems::Running::Nats($b, _) => $body,
            $crate::systems::Running::Mosquitto($b, _) => $body,
        }
    };
}
pub(crate) use with_broker;
