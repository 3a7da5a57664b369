//! Hosts for the backplane's cluster tests (docs/scaling.md §10): network
//! namespaces joined by veth pairs to one bridge, so that each NATS node
//! and each ipcbus server sits on a host of its own, a few milliseconds
//! from the others, while the test itself (the clients) reaches every
//! host from the root namespace.
//!
//! ```text
//!   root namespace (the test) ─veth─┐
//!   host 1 (10.N.M.11) ─────veth────┤ bridge, in a namespace of its own
//!   host 2 (10.N.M.12) ─────veth────┤
//!   host 3 (10.N.M.13) ─────veth────┘
//! ```
//!
//! The delay is [`delay`]'s: each host holds every packet it sends on its
//! link for `delay`, so a round trip between two hosts takes `2 × delay`
//! more (`tc netem` would be simpler, but the kernels this runs on may
//! lack it). [`Hosts::new`] measures it and refuses hosts without it.
//!
//! Needs Linux, root, iproute2 (`ip`) and iptables (legacy). Everything is
//! removed on drop, a panicking test's too; what a killed test left, the
//! next one removes. [`hosts_or_loopback`] decides what a test runs on.

#[cfg(target_os = "linux")]
mod delay;

use anyhow::{bail, Context};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The delay each host adds to what it sends: 4 ms round trips between hosts.
pub const DELAY: Duration = Duration::from_millis(2);
/// Namespaces and the root's veth are named after this, the process id and
/// a counter.
const PREFIX: &str = "ipcbus-";
/// Round trips measured between two hosts.
const PINGS: usize = 20;

/// One host: a network namespace and its address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name (`ip netns exec <netns> …`).
    pub netns: String,
    /// Its address on the hosts' network.
    pub ip: Ipv4Addr,
}

/// Hosts on one bridge, with delay. Removed on drop.
#[derive(Debug)]
pub struct Hosts {
    hosts: Vec<Host>,
    /// Every namespace made so far, the hub's first.
    made: Vec<String>,
    /// The root namespace's end of its veth to the hub.
    root_link: Option<String>,
    #[cfg(target_os = "linux")]
    delayers: Vec<delay::Delayer>,
    rtt: Duration,
}

/// Whether namespaces are a must (`IPCBUS_NETNS=required`, as CI sets):
/// then a test that cannot have them fails instead of falling back.
pub fn required() -> bool {
    std::env::var("IPCBUS_NETNS").is_ok_and(|v| v == "required")
}

/// `n` hosts with [`DELAY`], or `None` (after saying why on stderr) where
/// they cannot be made, for the test to run on loopback instead. Panics
/// when they cannot be made and [`required`] is set.
pub fn hosts_or_loopback(n: usize) -> Option<Hosts> {
    match Hosts::new(n, DELAY) {
        Ok(hosts) => Some(hosts),
        Err(e) if required() => panic!("IPCBUS_NETNS=required, but no hosts: {e:#}"),
        Err(e) => {
            eprintln!("netns: no hosts ({e:#}); this test runs on the loopback cluster instead");
            None
        }
    }
}

impl Hosts {
    /// Makes `n` hosts whose links each delay what they send by `delay`,
    /// then measures a round trip between the first two.
    pub fn new(n: usize, delay: Duration) -> anyhow::Result<Hosts> {
        check_tools()?;
        remove_stale();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        // One at a time in this process: each takes a subnet no route has.
        static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _making = MAKING.lock().unwrap_or_else(|e| e.into_inner());
        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let subnet = free_subnet()?;
        let mut hosts = Hosts {
            hosts: Vec::new(),
            made: Vec::new(),
            root_link: None,
            #[cfg(target_os = "linux")]
            delayers: Vec::new(),
            rtt: Duration::ZERO,
        };
        // The hub: a bridge; the root namespace's veth is its first port.
        let hub = format!("{PREFIX}{id}-hub");
        ip(&["netns", "add", &hub])?;
        hosts.made.push(hub.clone());
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        let root_link = format!("ib{}", id.replace('-', "x"));
        ip(&[
            "link", "add", &root_link, "type", "veth", "peer", "name", "root", "netns", &hub,
        ])?;
        hosts.root_link = Some(root_link.clone());
        ip(&["-n", &hub, "link", "set", "root", "master", "br0", "up"])?;
        let root_ip = Ipv4Addr::from(u32::from(subnet) + 1);
        ip(&["addr", "add", &format!("{root_ip}/24"), "dev", &root_link])?;
        ip(&["link", "set", &root_link, "up"])?;
        for i in 0..n {
            let netns = format!("{PREFIX}{id}-h{}", i + 1);
            ip(&["netns", "add", &netns])?;
            hosts.made.push(netns.clone());
            let port = format!("h{}", i + 1);
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", &netns, "link", "add", "eth0", "type", "veth", "peer", "name", &port,
                "netns", &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            let addr = Ipv4Addr::from(u32::from(subnet) + 11 + u32::try_from(i)?);
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
            hosts.delay(&netns, delay)?;
            hosts.hosts.push(Host { netns, ip: addr });
        }
        if n >= 2 {
            let (min, median) = hosts.round_trips(0, 1)?;
            eprintln!(
                "netns: {n} hosts on {subnet}/24, {delay:?} each way; TCP round trip \
                 host 1 ⇄ host 2: min {min:?}, median {median:?} ({PINGS} round trips)"
            );
            if min < delay * 2 {
                bail!("round trips of {min:?} between hosts: the delay of {delay:?} is not there");
            }
            hosts.rtt = median;
        }
        Ok(hosts)
    }

    /// Host `i`.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// How many hosts there are.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The median TCP round trip measured between hosts 1 and 2.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// Delays what `netns` sends on `eth0` by `delay`.
    #[cfg(target_os = "linux")]
    fn delay(&mut self, netns: &str, delay: Duration) -> anyhow::Result<()> {
        if delay.is_zero() {
            return Ok(());
        }
        self.delayers.push(delay::Delayer::start(netns, 0, delay)?);
        let rule = [
            "-A",
            "OUTPUT",
            "-o",
            "eth0",
            "-j",
            "NFQUEUE",
            "--queue-num",
            "0",
            "--queue-bypass",
        ];
        run(Command::new("ip")
            .args(["netns", "exec", netns, iptables()?])
            .args(rule))
    }

    #[cfg(not(target_os = "linux"))]
    fn delay(&mut self, _: &str, _: Duration) -> anyhow::Result<()> {
        bail!("network namespaces are Linux's")
    }

    /// TCP round trips of one byte from host `from` to host `to`: the
    /// fastest and the median.
    pub fn round_trips(&self, from: usize, to: usize) -> anyhow::Result<(Duration, Duration)> {
        use std::io::{Read, Write};
        let (server, client) = (self.hosts[to].clone(), self.hosts[from].clone());
        let listening = in_netns(&server.netns, move || {
            Ok(std::net::TcpListener::bind((server.ip, 0))?)
        })?;
        let addr = listening.local_addr()?;
        let echo = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut s, _) = listening.accept()?;
            s.set_nodelay(true)?;
            let mut b = [0u8];
            while s.read(&mut b)? == 1 {
                s.write_all(&b)?;
            }
            Ok(())
        });
        let mut times = in_netns(&client.netns, move || {
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            let mut b = [0u8];
            let mut times = Vec::with_capacity(PINGS);
            for _ in 0..PINGS {
                let started = Instant::now();
                s.write_all(&b)?;
                s.read_exact(&mut b)?;
                times.push(started.elapsed());
            }
            Ok(times)
        })?;
        let _ = echo.join();
        times.sort();
        Ok((times[0], times[PINGS / 2]))
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        self.delayers.clear();
        if let Some(link) = self.root_link.take() {
            let _ = ip(&["link", "del", &link]);
        }
        for netns in self.made.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &netns]) {
                eprintln!("netns: {e:#}");
            }
        }
    }
}

/// Runs `f` on a thread of its own in namespace `netns` and returns what
/// it returns. A socket it makes stays in that namespace.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let netns = netns.to_owned();
    std::thread::spawn(move || enter(&netns).and_then(|()| f()))
        .join()
        .map_err(|_| anyhow::anyhow!("a thread in a namespace panicked"))?
}

/// Moves the calling thread into namespace `netns` (`setns(2)`): the
/// sockets it makes then, and the threads it starts, are that host's.
#[cfg(target_os = "linux")]
pub fn enter(netns: &str) -> anyhow::Result<()> {
    use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
    use std::os::fd::AsFd;
    let path = format!("/run/netns/{netns}");
    let file = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
        .with_context(|| format!("setns into {netns}"))
}

#[cfg(not(target_os = "linux"))]
pub fn enter(_: &str) -> anyhow::Result<()> {
    bail!("network namespaces are Linux's")
}

/// Refuses early, saying what is missing: root, `ip`, iptables.
fn check_tools() -> anyhow::Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("network namespaces are Linux's");
    }
    #[cfg(target_os = "linux")]
    if !rustix::process::geteuid().is_root() {
        bail!("network namespaces need root");
    }
    run(Command::new("ip").arg("-V"))
        .context("iproute2's `ip` is needed: apt-get install iproute2")?;
    iptables()?;
    Ok(())
}

/// The iptables that talks to the kernel's legacy tables: NFQUEUE is
/// there (`CONFIG_NETFILTER_XT_TARGET_NFQUEUE`), while nftables' queue
/// (`CONFIG_NFT_QUEUE`) may be missing.
fn iptables() -> anyhow::Result<&'static str> {
    for program in ["iptables-legacy", "iptables"] {
        let legacy = Command::new(program)
            .arg("-V")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("legacy"));
        if legacy {
            return Ok(program);
        }
    }
    bail!("iptables-legacy is needed for the hosts' delay: apt-get install iptables")
}

/// Removes the namespaces (and so the veths) of test processes that are
/// gone, killed before their hosts' drop, and kills what runs in them
/// still (their nats-servers).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|r| r.split('-').next()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("netns: removing {name}, left by process {pid}");
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                for left in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", left]).status();
                }
            }
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// The words `ip route` may put before a route's destination.
const ROUTE_TYPES: [&str; 10] = [
    "unicast",
    "local",
    "broadcast",
    "multicast",
    "anycast",
    "blackhole",
    "unreachable",
    "prohibit",
    "throw",
    "nat",
];

/// The first `10.77.M.0/24` that no route of the root namespace overlaps.
fn free_subnet() -> anyhow::Result<Ipv4Addr> {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()?;
    let routes: Vec<(u32, u32)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // `[type] destination …`; a default route covers nothing here.
            let mut words = line.split_whitespace();
            let mut dest = words.next()?;
            if ROUTE_TYPES.contains(&dest) {
                dest = words.next()?;
            }
            let (addr, len) = dest.split_once('/').unwrap_or((dest, "32"));
            let len: u32 = len.parse().ok()?;
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            Some((u32::from(addr.parse::<Ipv4Addr>().ok()?) & mask, mask))
        })
        .collect();
    for m in 0..=255u8 {
        let subnet = u32::from(Ipv4Addr::new(10, 77, m, 0));
        let overlaps = routes
            .iter()
            .any(|&(net, mask)| (subnet & mask) == net || (net & 0xffff_ff00) == subnet);
        if !overlaps {
            return Ok(Ipv4Addr::from(subnet));
        }
    }
    bail!("every subnet 10.77.*.0/24 is taken by a route")
}

/// Runs `ip` with `args`; its stderr in the error.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args))
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
