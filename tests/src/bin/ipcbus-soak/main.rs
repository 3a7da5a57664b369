//! `ipcbus-soak`: runs the real server under mixed load for a set time, with
//! random disconnects and, optionally, SIGKILLs, then checks that nothing
//! acknowledged was lost and that the server's memory came back down.
//! Not part of CI, beyond a seconds-long smoke run; docs/reliability.md
//! gives its figures.
//!
//!     cargo run --release -p ipcbus-tests --bin ipcbus-soak -- --seconds 600 --restarts 5
//!
//! # Layout
//! - `model`: what each writer acknowledged, and the check against the server.
//! - `load`: the writers and subscribers.
//! - `run`: one soak run, from the first start to the report.

mod load;
mod model;
mod run;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// The server's allocator, as in `ipcbus` (see its `main.rs`), since this
/// program runs the server.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Soak test of the ipcbus server.
#[derive(Debug, Parser)]
#[command(name = "ipcbus-soak")]
pub(crate) struct Args {
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) seconds: u64,
    /// Seconds of load before the memory baseline is taken.
    #[arg(long, default_value_t = 5)]
    pub(crate) warmup_seconds: u64,
    /// Writer connections; each owns its keys.
    #[arg(long, default_value_t = 16)]
    pub(crate) writers: usize,
    /// Keys per writer of each kind (persisted, in memory, with a TTL).
    #[arg(long, default_value_t = 100)]
    pub(crate) keys: usize,
    /// Subscriber connections.
    #[arg(long, default_value_t = 16)]
    pub(crate) subscribers: usize,
    /// Times to SIGKILL and restart the server during the run. With
    /// restarts, the memory check is skipped (each restart drops the
    /// in-memory keys, so there is no common baseline).
    #[arg(long, default_value_t = 0)]
    pub(crate) restarts: u32,
    /// Chance that a writer drops its connection after a request.
    #[arg(long, default_value_t = 0.01)]
    pub(crate) disconnect_rate: f64,
    /// Bytes of text per value.
    #[arg(long, default_value_t = 100)]
    pub(crate) value_bytes: usize,
    /// How far the server's RSS after the load may exceed its baseline, in percent.
    #[arg(long, default_value_t = 20)]
    pub(crate) rss_slack_percent: u64,
    /// Random seed; printed, so that a run can be repeated.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// The server binary to test; by default this program runs the server.
    #[arg(long)]
    pub(crate) server_bin: Option<PathBuf>,
    /// Keep the data directory and the server's log here (default: a
    /// temporary directory, removed unless the run fails).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    // The soak runs the server as this program (`ipcbus_tests::child`).
    if let Some(code) = ipcbus_tests::child::serve_main() {
        return code;
    }
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ipcbus-soak: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(args)) {
        Ok(report) => {
            println!("{report}");
            if report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("ipcbus-soak: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
