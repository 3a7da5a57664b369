//! The delay of a host's link, made in userspace: the kernels this runs on
//! may lack `sch_netem` (`tc qdisc add … netem`: "Specified qdisc kind is
//! unknown"), but have NFQUEUE. An iptables-legacy rule in the host's
//! namespace hands every packet the host sends on its link to a queue;
//! the [`Delayer`]'s thread, in that namespace, holds each one `delay`,
//! then accepts it. Packets leave in the order they came (one delay for
//! all, one verdict for every packet up to an id), nothing is copied but
//! the packet's id, and a queue nobody reads is passed by
//! (`--queue-bypass`), undelayed.
//!
//! It speaks NFQUEUE's netlink protocol itself, through rustix
//! (`linux/netfilter/nfnetlink_queue.h`): a bind, then packets in and
//! batch verdicts out.

use anyhow::{bail, Context};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::netlink::{SocketAddrNetlink, NETFILTER};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// NFQUEUE's messages: `(NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_*`.
const PACKET: u16 = 3 << 8;
const CONFIG: u16 = (3 << 8) | 2;
const VERDICT_BATCH: u16 = (3 << 8) | 3;
/// `NLMSG_ERROR`: an acknowledgement, or why a request failed.
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// The attributes used: `NFQA_CFG_*`, `NFQA_PACKET_HDR`, `NFQA_VERDICT_HDR`.
const CFG_CMD: u16 = 1;
const CFG_PARAMS: u16 = 2;
const CFG_QUEUE_MAXLEN: u16 = 3;
const CFG_FLAGS: u16 = 5;
const CFG_MASK: u16 = 4;
const PACKET_HDR: u16 = 1;
const VERDICT_HDR: u16 = 2;
/// `NFQNL_CFG_CMD_BIND`, `NFQNL_COPY_META`, `NF_ACCEPT`.
const CMD_BIND: u8 = 1;
const COPY_META: u8 = 1;
const NF_ACCEPT: u32 = 1;
/// `NFQA_CFG_F_FAIL_OPEN` (a full queue lets packets pass rather than drop
/// them) and `NFQA_CFG_F_GSO` (large packets are queued whole).
const FLAGS: u32 = 1 | 4;
/// Packets held at most; past it they pass undelayed (fail open).
const QUEUE_MAXLEN: u32 = 8192;
/// How often the thread looks whether it should stop, when idle.
const IDLE: Duration = Duration::from_millis(50);

/// A thread in a host's namespace that delays what its queue receives.
/// Stopped (and the queue unbound) on drop.
#[derive(Debug)]
pub(super) struct Delayer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Delayer {
    /// Binds NFQUEUE `queue` in namespace `netns` and holds each of its
    /// packets `delay`; returns once the queue is bound.
    pub(super) fn start(netns: &str, queue: u16, delay: Duration) -> anyhow::Result<Delayer> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = mpsc::channel();
        let (name, stopping) = (netns.to_owned(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("delay {netns}"))
            .spawn(move || {
                let fd = match super::enter(&name).and_then(|()| bind(queue)) {
                    Ok(fd) => fd,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                if let Err(e) = hold(&fd, queue, delay, &stopping) {
                    eprintln!("netns: the delay in {name} stopped: {e:#}");
                }
            })?;
        let delayer = Delayer {
            stop,
            thread: Some(thread),
        };
        ready.recv().context("the delay thread died")??;
        Ok(delayer)
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A netlink socket bound to NFQUEUE `queue`, copying only packet ids.
fn bind(queue: u16) -> anyhow::Result<OwnedFd> {
    let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, Some(NETFILTER))
        .context("netlink socket (NETLINK_NETFILTER)")?;
    rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0)).context("bind the netlink socket")?;
    // Room for bursts; without it a full socket lets packets pass (fail open).
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, 8 << 20);
    let mut params = 0u32.to_be_bytes().to_vec(); // copy_range
    params.push(COPY_META);
    let attrs: [(u16, &[u8]); 5] = [
        (CFG_CMD, &[CMD_BIND, 0, 0, 0]),
        (CFG_PARAMS, &params),
        (CFG_QUEUE_MAXLEN, &QUEUE_MAXLEN.to_be_bytes()),
        (CFG_FLAGS, &FLAGS.to_be_bytes()),
        (CFG_MASK, &FLAGS.to_be_bytes()),
    ];
    rustix::net::send(
        &fd,
        &message(CONFIG, NLM_F_ACK, queue, &attrs),
        SendFlags::empty(),
    )
    .context("send NFQUEUE's bind")?;
    let mut buf = vec![0u8; 4096];
    let n = rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty())
        .context("NFQUEUE's answer to the bind")?
        .0;
    for (kind, body) in messages(&buf[..n]) {
        if kind == NLMSG_ERROR {
            let code = body
                .get(..4)
                .map_or(-1, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            if code != 0 {
                bail!(
                    "binding NFQUEUE {queue} failed: {}",
                    Errno::from_raw_os_error(-code)
                );
            }
            return Ok(fd);
        }
    }
    bail!("NFQUEUE did not acknowledge the bind of queue {queue}")
}

/// Until `stop`: takes the queue's packets and accepts each `delay` after
/// it came.
fn hold(fd: &OwnedFd, queue: u16, delay: Duration, stop: &AtomicBool) -> anyhow::Result<()> {
    let mut held: VecDeque<(u32, Instant)> = VecDeque::new();
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let mut due = None;
        while let Some(&(id, at)) = held.front() {
            if at > now {
                break;
            }
            due = Some(id);
            held.pop_front();
        }
        if let Some(id) = due {
            // Accepts every packet up to `id` (ids grow in arrival order).
            let mut verdict = NF_ACCEPT.to_be_bytes().to_vec();
            verdict.extend(id.to_be_bytes());
            let msg = message(VERDICT_BATCH, 0, queue, &[(VERDICT_HDR, &verdict)]);
            rustix::net::send(fd, &msg, SendFlags::empty()).context("send a verdict")?;
        }
        let wait = held
            .front()
            .map_or(IDLE, |&(_, at)| at.saturating_duration_since(now));
        let timeout = Timespec::try_from(wait).unwrap_or_default();
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        loop {
            let n = match rustix::net::recv(fd, &mut buf[..], RecvFlags::DONTWAIT) {
                Ok((n, _)) => n,
                Err(Errno::AGAIN) => break,
                // The socket overflowed: those packets passed (fail open).
                Err(Errno::NOBUFS | Errno::INTR) => continue,
                Err(e) => return Err(e).context("recv"),
            };
            let at = Instant::now() + delay;
            for (kind, body) in messages(&buf[..n]) {
                if kind == PACKET {
                    if let Some(id) = packet_id(body) {
                        held.push_back((id, at));
                    }
                }
            }
        }
    }
    Ok(())
}

/// A netlink message of NFQUEUE: header, `nfgenmsg` naming the queue,
/// then the attributes.
fn message(kind: u16, flags: u16, queue: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut msg = vec![0u8; 16];
    msg.extend([0, 0]); // nfgen_family AF_UNSPEC, version NFNETLINK_V0
    msg.extend(queue.to_be_bytes());
    for (kind, value) in attrs {
        let len = u16::try_from(4 + value.len()).expect("a small attribute");
        msg.extend(len.to_ne_bytes());
        msg.extend(kind.to_ne_bytes());
        msg.extend(*value);
        msg.resize(msg.len().next_multiple_of(4), 0);
    }
    let len = u32::try_from(msg.len()).expect("a small message");
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&kind.to_ne_bytes());
    msg[6..8].copy_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    msg
}

/// The netlink messages in `buf`: (type, what follows the header).
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        if len < 16 || len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let body = &buf[16..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((kind, body))
    })
}

/// The packet id in a packet message's body (past its `nfgenmsg`).
fn packet_id(body: &[u8]) -> Option<u32> {
    let mut attrs = body.get(4..)?;
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == PACKET_HDR {
            return Some(u32::from_be_bytes(attrs.get(4..8)?.try_into().ok()?));
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}
