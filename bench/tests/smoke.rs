//! A fraction-of-a-second run of each benchmark, so that they cannot rot.
//! Figures are not checked: timing belongs in docs/benchmarks.md, not in tests.

use std::process::Command;

/// Runs `ipcbus-bench` with `args`; returns what it printed, once it succeeded.
fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ipcbus-bench"))
        .args(args)
        .output()
        .expect("run ipcbus-bench");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    table
}

#[test]
fn persist_prints_a_row_per_inflight_setting() {
    let table = bench(&[
        "persist",
        "--seconds",
        "0.2",
        "--inflight",
        "1,8",
        "--keys",
        "10",
    ]);
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 3, "{table}"); // header + one per setting
    for (row, inflight) in rows[1..].iter().zip(["1", "8"]) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[1], inflight, "{row}");
        let rate: f64 = cells[2].parse().expect("writes/s");
        assert!(rate > 0.0, "{row}");
    }
}

#[test]
fn footprint_measures_connections_and_keys() {
    let table = bench(&["footprint", "--connections", "20", "--keys", "200"]);
    for row in [
        "| idle server RSS |",
        "| per idle connection with one subscription (20 connections) |",
        "| per stored key (200 keys,",
    ] {
        assert!(table.contains(row), "no {row:?} in\n{table}");
    }
}
