//! What a report says about where it was made: the command, the date, the
//! machine, and the version of every system measured.

use crate::systems::System;
use std::path::Path;
use std::process::Command;

/// First line of a command's output (stdout, else stderr), or "unknown".
fn first_line(program: &str, args: &[&str]) -> String {
    let Ok(out) = Command::new(program).args(args).output() else {
        return "unknown".to_owned();
    };
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or("unknown")
        .trim()
        .to_owned()
}

/// The CPU model, from `/proc/cpuinfo`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split(':').nth(1)?.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The version of `system`, as its program reports it.
fn version(system: System, server: Option<&Path>) -> String {
    match (system, server) {
        (System::Ipcbus, Some(path)) => format!(
            "{} ({})",
            first_line(&path.to_string_lossy(), &["--version"]),
            path.display()
        ),
        (System::Ipcbus, None) => format!(
            "ipcbus {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            first_line("git", &["rev-parse", "--short", "HEAD"])
        ),
        (System::Floor, _) => "floor (bench/src/floor.rs)".to_owned(),
        (System::Redis, _) => first_line("redis-server", &["--version"]),
        (System::Nats, _) => format!("nats-server {}", first_line("nats-server", &["--version"])),
        (System::Mosquitto, _) => first_line("mosquitto", &["-h"]),
    }
}

/// A markdown paragraph: command, date, machine, versions.
pub(crate) fn describe(systems: &[System], server: Option<&Path>) -> String {
    let command: Vec<String> = std::env::args().skip(1).collect();
    let versions: Vec<String> = systems.iter().map(|&s| version(s, server)).collect();
    format!(
        "Made by `cargo run --release -p ipcbus-bench -- {}` on {}.\n\
         Machine: {}, {} cores, Linux {}. Versions: {}; clients: redis-rs, async-nats, rumqttc (see Cargo.lock).\n",
        command.join(" "),
        first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        cpu_model(),
        std::fs::read_to_string("/proc/cpuinfo")
            .map_or(0, |info| info.lines().filter(|l| l.starts_with("processor")).count()),
        first_line("uname", &["-r"]),
        versions.join("; "),
    )
}
