//! `ipcbus-bench`: measures the ipcbus server.
//!
//!     cargo run --release -p ipcbus-bench -- compare
//!     cargo run --release -p ipcbus-bench -- persist
//!     cargo run --release -p ipcbus-bench -- footprint
//!     cargo run --release -p ipcbus-bench -- abuse
//!     cargo run --release -p ipcbus-bench -- backplane
//!
//! # Layout
//! - `compare`: the side-by-side comparison (scenarios a to e and g) over
//!   `systems`, in interleaved rounds; `report` and `chart` turn its results
//!   into markdown and SVG, and `about` says where and with what.
//! - `load`: the load generator's interface and one implementation per
//!   protocol; `scenario`: the scenarios, written once over it.
//! - `floor`: the floor server, a plain fan-out server to measure against.
//! - `procs`: CPU time, RSS and core pinning of processes, from `/proc`.
//! - `persist`: what durability costs: acknowledged writes per second,
//!   persisted (fsync'd) and in memory, by requests in flight.
//! - `footprint`: server memory per idle connection and per stored key.
//! - `abuse`: what one abusive session's wildcard subscriptions cost a
//!   bystander's round trips.
//! - `backplane`: the NATS backplane (latency and throughput across
//!   servers, fan-out, replay) beside one server and raw NATS KV.

mod about;
mod abuse;
mod backplane;
mod chart;
mod compare;
mod floor;
mod footprint;
mod load;
mod persist;
mod procs;
mod report;
mod scenario;
mod systems;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Benchmarks of the ipcbus server.
#[derive(Debug, Parser)]
#[command(name = "ipcbus-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every scenario on every system, side by side, in interleaved rounds.
    Compare(compare::Args),
    /// Persisted and in-memory writes per second, by requests in flight.
    Persist(persist::Args),
    /// Server memory per idle connection and per stored key.
    Footprint(footprint::Args),
    /// A bystander's round trips while one session abuses wildcard subscriptions.
    Abuse(abuse::Args),
    /// The NATS backplane beside one server and beside raw NATS KV.
    Backplane(backplane::Args),
}

/// The server's allocator, as in `ipcbus` (see its `main.rs`), since this
/// program runs the server for `footprint`.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    if let Some(code) = ipcbus_tests::child::serve_main() {
        return code;
    }
    if let Some(code) = floor::floor_main() {
        return code;
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ipcbus-bench: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Compare(args) => runtime.block_on(compare::run(args)),
        Command::Persist(args) => runtime.block_on(persist::run(args)),
        Command::Footprint(args) => runtime.block_on(footprint::run(args)),
        Command::Abuse(args) => runtime.block_on(abuse::run(args)),
        Command::Backplane(args) => runtime.block_on(backplane::run(args)),
    };
    match result {
        Ok(table) => {
            println!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ipcbus-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
