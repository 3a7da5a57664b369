//! One soak run: start the server, fill every key, take the memory
//! baseline, run the load (killing and restarting the server on schedule,
//! checking after each restart), then stop the load and check everything:
//! acknowledged data, sessions, last wills, TTLs, memory, and a clean
//! restart.

use crate::load::{self, Phase, Shared, MAX_TTL};
use crate::model::{self, Moment, State};
use crate::Args;
use anyhow::Context;
use ipcbus_client::{Client, ClientOptions, SetOptions};
use ipcbus_tests::child::{Launcher, Server};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{watch, RwLock};

/// How often the server's RSS is sampled during the load.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How long the server may take to close every session and delete every
/// last will once the clients are gone.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for the server's RSS to settle.
const RSS_RETURN_TIMEOUT: Duration = Duration::from_secs(30);
/// The RSS has settled when it has not fallen for this long.
const SETTLED_FOR: Duration = Duration::from_secs(3);
/// Violations printed in the report; the rest are counted.
const MAX_LISTED: usize = 20;

/// What a run found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    seed: u64,
    seconds: f64,
    clients: String,
    sets: u64,
    dels: u64,
    gets: u64,
    lost_answers: u64,
    connects: u64,
    disconnects: u64,
    events: u64,
    skipped: u64,
    restarts: u32,
    /// Keys compared at the end, and how many of them held a value.
    keys_checked: (usize, usize),
    rss_kib: [Option<u64>; 3],
    /// How long the RSS took to settle after the load (without restarts).
    rss_return: Option<Duration>,
    panics: u64,
    /// Everything that went wrong; empty for a pass.
    pub(crate) violations: Vec<String>,
}

/// Runs the soak described by `args`. Unless `--data-dir` names one, the
/// data directory is a temporary one, kept (and named) if the run fails.
pub(crate) async fn run(args: Args) -> anyhow::Result<Report> {
    let temp = tempfile::tempdir()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temp.path().into());
    std::fs::create_dir_all(&data_dir)?;
    let result = soak(&args, data_dir).await;
    let failed = result.as_ref().map_or(true, |r| !r.violations.is_empty());
    if failed && args.data_dir.is_none() {
        let kept = temp.keep();
        eprintln!(
            "ipcbus-soak: the data and the server's log are kept in {}",
            kept.display()
        );
    }
    result
}

async fn soak(args: &Args, data_dir: std::path::PathBuf) -> anyhow::Result<Report> {
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let launcher = Launcher::new(args.server_bin.clone(), data_dir)?;
    let mut server = launcher.start()?;
    let (phase_tx, phase_rx) = watch::channel(Some(phase(&server, 0)));
    let shared = Arc::new(Shared {
        phase: phase_rx,
        gate: RwLock::new(()),
        stop: Default::default(),
        counts: Default::default(),
        violations: Mutex::new(Vec::new()),
        keys: (0..args.writers)
            .map(|w| Arc::new(Mutex::new(model::keys(w, args.keys))))
            .collect(),
        value_bytes: args.value_bytes,
        disconnect_rate: args.disconnect_rate,
    });
    let mut report = Report {
        seed,
        clients: format!("{} writers, {} subscribers", args.writers, args.subscribers),
        ..Report::default()
    };

    fill(&shared, &server).await?;
    // A first, short load brings every buffer and table to its working
    // size; the baseline is taken after it, so that what the check finds
    // is what the long run kept, not what any first use allocates.
    let warm_up = Duration::from_secs(args.warmup_seconds);
    spawn_load(&shared, args, &mut rng)
        .run_for(warm_up, &shared)
        .await;
    settle(&shared, &server).await;
    let baseline = match args.restarts {
        0 => settled_rss(&server).await.0,
        _ => server.rss_kib(),
    };
    let mut peak = baseline;

    let load = spawn_load(&shared, args, &mut rng);
    let started = Instant::now();
    let run_for = Duration::from_secs(args.seconds);
    let mut kills: Vec<Duration> = (0..args.restarts)
        .map(|_| run_for.mul_f64(0.1 + 0.8 * rng.f64()))
        .collect();
    kills.sort();
    kills.reverse();
    while started.elapsed() < run_for {
        tokio::time::sleep(SAMPLE_EVERY).await;
        peak = peak.max(server.rss_kib());
        if kills.last().is_some_and(|&at| started.elapsed() >= at) {
            kills.pop();
            report.restarts += 1;
            let _ = phase_tx.send(None);
            server.kill9();
            // Writers with a request in flight get an error; once they all
            // have, none writes until the restarted server is checked.
            let gate = shared.gate.write().await;
            server = launcher.start()?;
            check(&shared, &server, Moment::Restarted).await?;
            let _ = phase_tx.send(Some(phase(&server, u64::from(report.restarts))));
            drop(gate);
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    load.stop(&shared).await;
    settle(&shared, &server).await;
    report.keys_checked = check(&shared, &server, Moment::Live).await?;
    if report.keys_checked.1 == 0 {
        shared.violation("no key held a value at the end: nothing was checked".to_owned());
    }
    tokio::time::sleep(MAX_TTL).await;
    check(&shared, &server, Moment::Expired).await?;
    settle(&shared, &server).await;
    let (after, waited) = if args.restarts == 0 {
        settled_rss(&server).await
    } else {
        (server.rss_kib(), Duration::ZERO)
    };
    report.rss_kib = [baseline, peak, after];
    report.rss_return = (args.restarts == 0).then_some(waited);
    if args.restarts == 0 && (baseline.is_none() || after.is_none()) {
        shared.violation("the server's RSS could not be read from /proc".to_owned());
    }
    if let (0, Some(base), Some(after)) = (args.restarts, baseline, after) {
        if after > base + base * args.rss_slack_percent / 100 {
            shared.violation(format!(
                "RSS settled at {after} KiB after the load, over the baseline {base} KiB + {}%",
                args.rss_slack_percent
            ));
        }
    }

    // A clean restart keeps exactly the persisted keys.
    let status = server.stop()?;
    if !status.success() {
        shared.violation(format!("the server exited with {status} on SIGTERM"));
    }
    let server = launcher.start()?;
    check(&shared, &server, Moment::Restarted).await?;
    server.stop()?;

    let c = &shared.counts;
    report.sets = c.sets.load(Ordering::Relaxed);
    report.dels = c.dels.load(Ordering::Relaxed);
    report.gets = c.gets.load(Ordering::Relaxed);
    report.lost_answers = c.lost_answers.load(Ordering::Relaxed);
    report.connects = c.connects.load(Ordering::Relaxed);
    report.disconnects = c.disconnects.load(Ordering::Relaxed);
    report.events = c.events.load(Ordering::Relaxed);
    report.skipped = c.skipped.load(Ordering::Relaxed);
    report.panics = launcher.panics.load(Ordering::Relaxed);
    if report.panics > 0 {
        shared.violation(format!("{} panics in the server's log", report.panics));
    }
    report.violations = std::mem::take(
        &mut *shared
            .violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    Ok(report)
}

/// The server's RSS once it has stopped falling: the allocator (jemalloc,
/// with its background thread) hands freed pages back over about 10 s.
/// Sampled until no new low for [`SETTLED_FOR`], for at most
/// [`RSS_RETURN_TIMEOUT`]; returns the low and how long it took.
async fn settled_rss(server: &Server) -> (Option<u64>, Duration) {
    let started = Instant::now();
    let mut low = server.rss_kib();
    let mut low_at = Instant::now();
    while low_at.elapsed() < SETTLED_FOR && started.elapsed() < RSS_RETURN_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(250)).await;
        // A failed read of /proc (None) is not a new low.
        if let Some(now) = server.rss_kib() {
            if low.is_none_or(|low| now < low) {
                low = Some(now);
                low_at = Instant::now();
            }
        }
    }
    (low, low_at.duration_since(started))
}

/// The writers and subscribers of one load phase.
struct Load(tokio::task::JoinSet<()>);

fn spawn_load(shared: &Arc<Shared>, args: &Args, rng: &mut fastrand::Rng) -> Load {
    shared.stop.store(false, Ordering::Relaxed);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..args.writers {
        tasks.spawn(load::writer(shared.clone(), w, rng.u64(..)));
    }
    for s in 0..args.subscribers {
        tasks.spawn(load::subscriber(
            shared.clone(),
            s,
            rng.u64(..),
            args.writers,
        ));
    }
    Load(tasks)
}

impl Load {
    async fn run_for(self, duration: Duration, shared: &Shared) {
        tokio::time::sleep(duration).await;
        self.stop(shared).await;
    }

    /// Tells every client to stop and waits for them; a violation if one hangs.
    async fn stop(mut self, shared: &Shared) {
        shared.stop.store(true, Ordering::Relaxed);
        let joined = tokio::time::timeout(load::OP_TIMEOUT * 2, async {
            while self.0.join_next().await.is_some() {}
        })
        .await;
        if joined.is_err() {
            shared.violation("clients did not stop: a request hung".to_owned());
        }
    }
}

fn phase(server: &Server, generation: u64) -> Phase {
    Phase {
        url: server.url.clone(),
        token: server.token.clone(),
        generation,
    }
}

async fn connect(server: &Server) -> anyhow::Result<Client> {
    let options = ClientOptions {
        token: Some(server.token.clone()),
        ..ClientOptions::default()
    };
    Ok(Client::connect_with(&server.url, options).await?)
}

/// Writes every key once, so that the memory baseline holds them all.
async fn fill(shared: &Shared, server: &Server) -> anyhow::Result<()> {
    let client = connect(server).await?;
    for keys in &shared.keys {
        let keys = keys.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let writes = keys.iter().map(|k| {
            let options = SetOptions {
                persist: k.class == model::Class::Persisted,
                ttl: (k.class == model::Class::Ttl).then_some(MAX_TTL),
                ..SetOptions::default()
            };
            client.set_raw_with(&k.name, model::value(0, shared.value_bytes), options)
        });
        for result in futures_util::future::join_all(writes).await {
            result?;
        }
    }
    for keys in &shared.keys {
        for k in keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter_mut()
        {
            k.acked = State::Seq(0);
        }
    }
    Ok(())
}

/// Waits until the server has closed every session and deleted every last
/// will; a violation if it does not within [`SETTLE_TIMEOUT`].
async fn settle(shared: &Shared, server: &Server) {
    let mut last = String::new();
    let settled = tokio::time::timeout(SETTLE_TIMEOUT, async {
        loop {
            match server.health().await {
                Ok(h) if h["sessions"] == 0 => match connect(server).await {
                    Ok(client) => match client.keys(Some("soak.online.>")).await {
                        Ok(wills) if wills.is_empty() => return,
                        Ok(wills) => last = format!("last wills still set: {wills:?}"),
                        Err(e) => last = format!("keys failed: {e}"),
                    },
                    Err(e) => last = format!("cannot connect: {e}"),
                },
                Ok(h) => last = format!("{} sessions still open", h["sessions"]),
                Err(e) => last = format!("/health failed: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if settled.is_err() {
        shared.violation(format!(
            "the server did not settle in {SETTLE_TIMEOUT:?}: {last}"
        ));
    }
}

/// Reads every soak key from the server, through a subscription and
/// through `keys`, and checks both against the writers' records.
/// Returns how many keys were checked, and how many of them held a value.
async fn check(shared: &Shared, server: &Server, moment: Moment) -> anyhow::Result<(usize, usize)> {
    let client = connect(server).await?;
    let watch = client.watch("soak.>").await?;
    tokio::time::timeout(load::OP_TIMEOUT, watch.synced())
        .await
        .context("the snapshot subscription did not sync")??;
    let mut seen = HashMap::new();
    let mut violations = Vec::new();
    for key in watch.keys().into_iter().filter(|k| k.starts_with("soak.w")) {
        let Some(entry) = watch.get_raw(&key) else {
            continue;
        };
        match model::seq_of(&entry.value) {
            Some(seq) => {
                seen.insert(key, seq);
            }
            None => violations.push(format!("{key}: a value the soak did not write")),
        }
    }
    // TTL keys may expire between the two reads, so they are left out.
    let lasting = |k: &String| k.starts_with("soak.w") && !model::is_ttl(k);
    let listed: Vec<String> = client
        .keys(Some("soak.>"))
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .filter(lasting)
        .collect();
    let replayed = seen.keys().filter(|k| lasting(k)).count();
    if listed.len() != replayed || listed.iter().any(|k| !seen.contains_key(k)) {
        violations.push(format!(
            "{moment:?}: `keys` lists {} keys without a TTL, the subscription replayed {replayed}",
            listed.len(),
        ));
    }
    let mut checked = 0;
    for keys in &shared.keys {
        let mut keys = keys.lock().unwrap_or_else(PoisonError::into_inner);
        checked += keys.len();
        model::check(&mut keys, &seen, moment, &mut violations);
    }
    for v in violations {
        shared.violation(v);
    }
    Ok((checked, seen.len()))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops = self.sets + self.dels + self.gets;
        let kib = |v: Option<u64>| {
            v.map_or("n/a".to_owned(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0)
            })
        };
        writeln!(f, "| soak | |")?;
        writeln!(f, "|---|---|")?;
        writeln!(f, "| seed | {} |", self.seed)?;
        writeln!(f, "| load | {:.1} s, {} |", self.seconds, self.clients)?;
        writeln!(
            f,
            "| requests | {ops} ({:.0}/s): {} set, {} del, {} get |",
            ops as f64 / self.seconds.max(1e-9),
            self.sets,
            self.dels,
            self.gets
        )?;
        writeln!(
            f,
            "| events received | {} ({} skipped by conflation) |",
            self.events, self.skipped
        )?;
        writeln!(
            f,
            "| connections | {} opened, {} closed by the clients |",
            self.connects, self.disconnects
        )?;
        writeln!(
            f,
            "| SIGKILL restarts | {} ({} answers lost in flight) |",
            self.restarts, self.lost_answers
        )?;
        let (checked, present) = self.keys_checked;
        writeln!(
            f,
            "| keys checked | {checked} ({present} holding a value) |"
        )?;
        let back = self.rss_return.map_or(String::new(), |d| {
            format!(" (settled {:.1} s after the load)", d.as_secs_f64())
        });
        writeln!(
            f,
            "| server RSS | baseline {}, peak {}, after {}{back} |",
            kib(self.rss_kib[0]),
            kib(self.rss_kib[1]),
            kib(self.rss_kib[2])
        )?;
        writeln!(f, "| panics | {} |", self.panics)?;
        writeln!(f, "| violations | {} |", self.violations.len())?;
        if !self.violations.is_empty() {
            writeln!(f)?;
        }
        for v in self.violations.iter().take(MAX_LISTED) {
            writeln!(f, "- {v}")?;
        }
        if self.violations.len() > MAX_LISTED {
            writeln!(f, "- ... and {} more", self.violations.len() - MAX_LISTED)?;
        }
        Ok(())
    }
}
