//! The `ipcbus` binary: parses arguments and hands them to the library.

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// jemalloc, with its background thread, gives freed memory back to the
/// system within seconds of a burst (a subscriber's replay, a slow
/// reader's outbox); glibc's malloc keeps that high-water mark for the
/// life of the process. docs/reliability.md has the soak figures.
#[cfg(not(windows))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `json` for JSON log lines; anything else, or nothing, for text.
const LOG_FORMAT_ENV: &str = "IPCBUS_LOG_FORMAT";

fn main() -> ExitCode {
    let filter = EnvFilter::try_from_env("IPCBUS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `json`: one JSON object a line, for journald, Loki and the like.
    if std::env::var(LOG_FORMAT_ENV).is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    let cli = ipcbus::cli::Cli::parse();
    match ipcbus::cli::run(cli).map_err(anyhow::Error::from) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcbus: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
