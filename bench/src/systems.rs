//! The systems a comparison runs side by side: ipcbus (a child process of
//! this program, see `ipcbus_tests::child`), the floor server, and the
//! peers started by `bench/brokers.sh`. Each server is pinned to core 0
//! and this program to the others, when the machine has two or more.

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
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            System::Ipcbus => "ipcbus",
            System::Floor => "floor",
        })
    }
}

/// A started system: how to reach it, and its server's process.
pub(crate) enum Running {
    /// ipcbus.
    Ipcbus(WsBroker, Server),
    /// The floor server.
    Floor(WsBroker, Owned),
}

impl Running {
    /// Starts `system`, with its data (if any) under `dir`.
    pub(crate) fn start(system: System, dir: &Path) -> anyhow::Result<Running> {
        let running = match system {
            System::Ipcbus => {
                let data = dir.join("ipcbus");
                std::fs::create_dir_all(&data)?;
                let mut launcher = Launcher::new(None, data)?;
                launcher.extra = ["--no-selftest", "--max-connections", "20000"]
                    .map(str::to_owned)
                    .to_vec();
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
        };
        Ok(running)
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        match self {
            Running::Ipcbus(_, server) => server.pid(),
            Running::Floor(_, child) => child.pid(),
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
        }
    };
}
pub(crate) use with_broker;
