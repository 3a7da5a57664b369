//! The processes of a comparison, seen from `/proc`: a process's CPU time
//! and RSS, the whole machine's busy time (to tell how much CPU other
//! programs took during a run), and pinning to cores with `taskset`.

use anyhow::{bail, Context};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// Clock ticks per second of `/proc`'s CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime of a process, in ticks, all its threads included.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces; utime and stime are fields 14 and 15 of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Busy ticks of the whole machine, all cores together, from `/proc/stat`.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let n: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    Some(n.first()? + n.get(1)? + n.get(2)? + n.get(5)? + n.get(6)? + n.get(7)?)
}

/// The resident set size of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU counters at one instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSample {
    at: Instant,
    server: u64,
    own: u64,
    machine: u64,
}

/// CPU used between two samples, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuUse {
    /// Wall-clock time.
    pub(crate) wall: f64,
    /// By the server's process.
    pub(crate) server: f64,
    /// By this program (the load generator).
    pub(crate) own: f64,
    /// By every other process on the machine.
    pub(crate) others: f64,
}

impl CpuSample {
    /// Reads the counters of the server `server_pid`, this process and the
    /// machine.
    pub(crate) fn take(server_pid: u32) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            server: cpu_ticks(server_pid).unwrap_or(0),
            own: cpu_ticks(std::process::id()).unwrap_or(0),
            machine: machine_busy_ticks().unwrap_or(0),
        }
    }

    /// What was used from `earlier` to this sample.
    pub(crate) fn since(&self, earlier: &CpuSample) -> CpuUse {
        let secs = |t: u64| t as f64 / TICKS_PER_SECOND;
        let server = self.server.saturating_sub(earlier.server);
        let own = self.own.saturating_sub(earlier.own);
        let machine = self.machine.saturating_sub(earlier.machine);
        CpuUse {
            wall: self.at.duration_since(earlier.at).as_secs_f64(),
            server: secs(server),
            own: secs(own),
            others: secs(machine.saturating_sub(server + own)),
        }
    }
}

/// Pins every thread of process `pid` (and the threads it starts later)
/// to the cores in `cpus` (`taskset`'s list syntax, e.g. "0" or "1-3").
pub(crate) fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let out = Command::new("taskset")
        .args(["-a", "-c", "-p", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .output()
        .context("cannot run taskset (util-linux)")?;
    if !out.status.success() {
        bail!(
            "taskset -a -c -p {cpus} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The number of cores this process may run on.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A child process that is killed (SIGKILL, by its PID) when dropped.
#[derive(Debug)]
pub(crate) struct Owned(pub(crate) Child);

impl Owned {
    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this program as the floor server and returns it with its URL.
pub(crate) fn start_floor() -> anyhow::Result<(Owned, String)> {
    use std::io::BufRead;
    let exe = std::env::current_exe().context("cannot find this program")?;
    let mut child = Owned(
        Command::new(exe)
            .arg(crate::floor::AS_FLOOR)
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the floor server")?,
    );
    let stdout = child.0.stdout.take().context("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("ws://") {
        bail!("the floor server did not start");
    }
    Ok((child, line.trim().to_owned()))
}

/// One thread's context switches so far, voluntary and not, and its name.
#[derive(Debug, Clone)]
pub(crate) struct ThreadSwitches {
    pub(crate) tid: u32,
    pub(crate) name: String,
    pub(crate) switches: u64,
}

/// Every thread of process `pid` with its context switches so far, from
/// `/proc/<pid>/task/*/status`; by thread id.
pub(crate) fn thread_switches(pid: u32) -> Vec<ThreadSwitches> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut threads: Vec<ThreadSwitches> = tasks
        .filter_map(|task| {
            let task = task.ok()?;
            let tid: u32 = task.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            let field = |name: &str| -> Option<u64> {
                let line = status.lines().find(|l| l.starts_with(name))?;
                line.split_whitespace().nth(1)?.parse().ok()
            };
            let name = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .map_or_else(String::new, |n| n.trim().to_owned());
            Some(ThreadSwitches {
                tid,
                name,
                switches: field("voluntary_ctxt_switches:")?
                    + field("nonvoluntary_ctxt_switches:")?,
            })
        })
        .collect();
    threads.sort_unstable_by_key(|t| t.tid);
    threads
}

/// Each thread's context switches from `before` to `after` (a thread that
/// started meanwhile counts from 0; one that ended is left out).
pub(crate) fn switches_between(
    before: &[ThreadSwitches],
    after: &[ThreadSwitches],
) -> Vec<ThreadSwitches> {
    after
        .iter()
        .map(|now| {
            let then = before
                .iter()
                .find(|t| t.tid == now.tid)
                .map_or(0, |t| t.switches);
            ThreadSwitches {
                switches: now.switches.saturating_sub(then),
                ..now.clone()
            }
        })
        .collect()
}
