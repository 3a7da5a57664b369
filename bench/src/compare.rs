//! `ipcbus-bench compare`: every scenario against every system, in
//! interleaved rounds (each round runs each scenario on every system in
//! turn, starting one system later each round), then medians, spreads and
//! ratios as markdown, and charts as SVG.

use crate::load::peers::Brokers;
use crate::procs::{self, CpuUse};
use crate::report::{Metric, Results};
use crate::scenario::{durable, fresh, latency, stall, throughput};
use crate::systems::{with_broker, Running, System};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `ipcbus-bench compare`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Rounds; each runs every scenario on every system.
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// Seconds measured per throughput, latency and stall run.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) seconds: f64,
    /// Systems to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ipcbus,floor,redis,nats,mosquitto"
    )]
    pub(crate) systems: Vec<System>,
    /// Scenarios to run (a, b, c, d, e, g, h).
    #[arg(long, value_delimiter = ',', default_value = "a,b,c,d,e,g,h")]
    pub(crate) scenarios: Vec<char>,
    /// Subscribers in scenario (b).
    #[arg(long, default_value_t = 100)]
    pub(crate) fanout: usize,
    /// New clients in scenario (e).
    #[arg(long, default_value_t = 1000)]
    pub(crate) clients: usize,
    /// Messages per second in scenario (d).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) rate: u64,
    /// Run this ipcbus binary (e.g. one built from another commit) instead
    /// of the server built into this program.
    #[arg(long)]
    pub(crate) server: Option<PathBuf>,
    /// Do not pin the servers and this program to separate cores.
    #[arg(long)]
    pub(crate) no_pin: bool,
    /// Replace the generated part of this markdown file with the results.
    #[arg(long)]
    pub(crate) write: Option<PathBuf>,
    /// Write the charts to this directory.
    #[arg(long)]
    pub(crate) charts: Option<PathBuf>,
    /// A run of seconds: one short round, 10 clients in (e); for CI.
    #[arg(long)]
    pub(crate) smoke: bool,
}

/// Runs the comparison; returns the markdown report.
pub(crate) async fn run(mut args: Args) -> anyhow::Result<String> {
    if args.smoke {
        (args.rounds, args.seconds, args.clients, args.fanout) = (1, 0.3, 10, 10);
    }
    let dir = tempfile::tempdir()?;
    let cores = procs::cores();
    let pinned = !args.no_pin && cores >= 2;
    let me = std::process::id();
    if pinned {
        // The servers start from here on core 0 and inherit it, so that
        // each sizes itself (worker threads, GOMAXPROCS) to the one core
        // it gets, as it would if started with `taskset -c 0`.
        procs::pin(me, "0")?;
    }
    let brokers = match args.systems.iter().any(|s| s.is_peer()) {
        true => Some(Brokers::start()?),
        false => None,
    };
    let mut running = Vec::new();
    for &system in &args.systems {
        let started = Running::start(
            system,
            dir.path(),
            brokers.as_ref(),
            args.server.as_deref(),
            false,
        )?;
        running.push((system, started));
    }
    if pinned {
        procs::pin(me, &format!("1-{}", cores - 1))?;
    }
    let mut results = Results::default();
    for round in 0..args.rounds {
        for &scenario in &args.scenarios {
            for i in 0..running.len() {
                let (system, server) = &running[(i + round) % running.len()];
                eprintln!(
                    "round {} of {}: ({scenario}) {system}",
                    round + 1,
                    args.rounds
                );
                let prefix = format!("bench.r{round}.{scenario}");
                let run = Run {
                    args: &args,
                    system: *system,
                    server,
                    prefix: &prefix,
                    dir: dir.path(),
                };
                scenario_once(&run, scenario, &mut results).await?;
            }
        }
    }
    let report = results.markdown(&args, pinned);
    if let Some(path) = &args.write {
        crate::report::splice(path, &report)?;
    }
    if let Some(dir) = &args.charts {
        crate::chart::write(dir, &results)?;
    }
    Ok(report)
}

/// One system in one round.
struct Run<'a> {
    args: &'a Args,
    system: System,
    server: &'a Running,
    /// Makes the keys of this run its own.
    prefix: &'a str,
    /// For data files.
    dir: &'a Path,
}

async fn scenario_once(run: &Run<'_>, scenario: char, results: &mut Results) -> anyhow::Result<()> {
    let Run {
        args,
        system,
        server,
        prefix,
        ..
    } = *run;
    let pid = server.pid();
    let seconds = Duration::from_secs_f64(args.seconds);
    let warmup = Duration::from_secs_f64((args.seconds / 6.0).min(0.5));
    let shape = |pubs, subs| throughput::Shape { pubs, subs };
    let [rate, cpu_per, server_use, load_use] = match scenario {
        'a' => [
            Metric::A_RATE,
            Metric::A_CPU,
            Metric::A_SERVER,
            Metric::A_LOAD,
        ],
        'b' => [
            Metric::B_RATE,
            Metric::B_CPU,
            Metric::B_SERVER,
            Metric::B_LOAD,
        ],
        _ => [
            Metric::C_RATE,
            Metric::C_CPU,
            Metric::C_SERVER,
            Metric::C_LOAD,
        ],
    };
    match scenario {
        'a' | 'b' | 'c' => {
            let shape = match scenario {
                'a' => shape(1, 1),
                'b' => shape(1, args.fanout),
                _ => shape(10, 10),
            };
            let t = with_broker!(server, b => throughput::run(b, shape, pid, warmup, seconds, prefix).await)?;
            let noisy = noisy(&t.cpu);
            results.add(rate, system, t.per_second, noisy);
            results.add(
                cpu_per,
                system,
                t.cpu.server * 1e9 / t.deliveries.max(1) as f64,
                noisy,
            );
            results.add(server_use, system, 100.0 * t.cpu.server / t.cpu.wall, noisy);
            results.add(load_use, system, 100.0 * t.cpu.own / t.cpu.wall, noisy);
        }
        'd' => {
            let l =
                with_broker!(server, b => latency::run(b, args.rate, pid, seconds, prefix).await)?;
            let noisy = noisy(&l.cpu);
            results.add(Metric::D_P50, system, l.p50, noisy);
            results.add(Metric::D_P99, system, l.p99, noisy);
            results.add(Metric::D_P999, system, l.p999, noisy);
        }
        'e' => {
            let f = with_broker!(server, b => fresh::run(b, args.clients, prefix).await)?;
            results.add(
                Metric::E_CONNECT,
                system,
                f.connect.as_secs_f64() * 1000.0,
                false,
            );
            results.add(
                Metric::E_CONNECTED,
                system,
                f.connected.as_secs_f64() * 1000.0,
                false,
            );
        }
        'g' => {
            let s = with_broker!(server, b => stall::run(b, pid, seconds, prefix).await)?;
            results.add(
                Metric::G_KEPT,
                system,
                100.0 * s.loaded / s.unloaded.max(1.0),
                false,
            );
            results.add(Metric::G_LOST, system, s.lost as f64, false);
            let growth = s.rss_peak.saturating_sub(s.rss_before) as f64 / 1024.0;
            results.add(Metric::G_RSS, system, growth, false);
            results.rss_trace(system, s.rss);
        }
        'h' => durable(run, seconds, results).await?,
        other => anyhow::bail!("no scenario ({other}); the scenarios are a, b, c, d, e, g, h"),
    }
    Ok(())
}

/// Scenario (h), for ipcbus and Redis only: the others keep no data on disk.
async fn durable(run: &Run<'_>, seconds: Duration, results: &mut Results) -> anyhow::Result<()> {
    let depths = [
        (1, Metric::H_1, Metric::H_1_EVERYSEC),
        (64, Metric::H_64, Metric::H_64_EVERYSEC),
    ];
    match run.server {
        Running::Ipcbus(ws, _) => {
            let token = ws.token.as_deref().unwrap_or_default();
            for (inflight, metric, _) in depths {
                let rate = durable::ipcbus(&ws.url, token, inflight, seconds, run.prefix).await?;
                results.add(metric, run.system, rate, false);
            }
        }
        Running::Redis(..) => {
            let always = durable::AofRedis::start(run.dir, "always").await?;
            let everysec = durable::AofRedis::start(run.dir, "everysec").await?;
            for (inflight, metric, relaxed) in depths {
                results.add(
                    metric,
                    run.system,
                    always.writes(inflight, seconds).await?,
                    false,
                );
                results.add(
                    relaxed,
                    run.system,
                    everysec.writes(inflight, seconds).await?,
                    false,
                );
            }
        }
        _ => {}
    }
    Ok(())
}

/// A run is noisy when other processes took more than a fifth of a core.
fn noisy(cpu: &CpuUse) -> bool {
    cpu.others > 0.2 * cpu.wall
}
