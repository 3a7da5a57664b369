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
    let table = bench(&[
        "footprint",
        "--connections",
        "20",
        "--keys",
        "200",
        "--systems",
        "ipcbus,floor",
    ]);
    assert!(table.starts_with("| measure | ipcbus | floor |"), "{table}");
    for (row, unit) in [
        ("| idle server RSS |", "MiB"),
        (
            "| per idle connection with one subscription (20 connections) |",
            "KiB",
        ),
        ("| per stored key (200 keys,", "B"),
    ] {
        let line = table
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no {row:?} in\n{table}"));
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "", the measure, ipcbus, floor, ""
        assert_eq!(cells.len(), 5, "{line}");
        for cell in &cells[2..4] {
            let (figure, got) = cell.split_once(' ').expect("figure and unit");
            assert_eq!(got, unit, "{line}");
            figure.parse::<f64>().expect("a figure");
        }
    }
}

#[test]
fn compare_runs_every_scenario_and_writes_the_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let md = dir.path().join("benchmarks.md");
    std::fs::write(
        &md,
        "# Before\n<!-- compare:begin -->\nold\n<!-- compare:end -->\nAfter\n",
    )
    .expect("write markdown");
    let charts = dir.path().join("charts");
    let table = bench(&[
        "compare",
        "--smoke",
        "--systems",
        "ipcbus,floor",
        "--write",
        md.to_str().expect("utf-8 path"),
        "--charts",
        charts.to_str().expect("utf-8 path"),
    ]);
    for measure in [
        "(a) 1 publisher → 1 subscriber, deliveries/s",
        "(b) 1 publisher → N subscribers, deliveries/s",
        "(c) 10 publishers × 10 subscribers, deliveries/s",
        "(d) latency p99 ",
        "(e) new clients get the current value, connect included",
        "(g) messages the healthy subscriber lost",
    ] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| {measure}")))
            .unwrap_or_else(|| panic!("no {measure:?} row in\n{table}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 5, "{row}"); // measure, ipcbus, floor
        assert!(cells[2..4].iter().all(|c| *c != "—"), "{row}");
    }
    assert!(table.contains("| measure | vs floor |"), "{table}");
    // (h) is measured for ipcbus only of these two: the floor keeps no data.
    let durable = table
        .lines()
        .find(|l| l.starts_with("| (h) durable writes/s"))
        .unwrap_or_else(|| {
            panic!(
                "no (h) row in
{table}"
            )
        });
    let cells: Vec<&str> = durable.split('|').map(str::trim).collect();
    assert!(cells[2] != "—" && cells[3] == "—", "{durable}");
    let written = std::fs::read_to_string(&md).expect("read markdown");
    assert!(
        written.starts_with("# Before\n<!-- compare:begin -->\nMade by `cargo run"),
        "{written}"
    );
    assert!(
        written.ends_with("<!-- compare:end -->\nAfter\n") && !written.contains("old"),
        "{written}"
    );
    for chart in ["throughput.svg", "stall.svg"] {
        let svg = std::fs::read_to_string(charts.join(chart)).expect("chart written");
        assert!(svg.starts_with("<svg") && svg.contains("ipcbus"), "{chart}");
    }
}

#[test]
fn abuse_measures_a_bystander_in_every_phase() {
    let table = bench(&[
        "abuse",
        "--keys",
        "2000",
        "--subs",
        "10",
        "--baseline-seconds",
        "0.2",
    ]);
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 5, "{table}"); // header + quiet, subs, replay, hang-up
    for row in &rows[1..] {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let trips: u64 = cells[3].parse().expect("round trips");
        assert!(trips > 0, "{row}");
    }
}

#[test]
fn backplane_measures_one_server_the_backplane_and_raw_nats() {
    let table = bench(&[
        "backplane",
        "--rounds",
        "1",
        "--puts",
        "50",
        "--writes",
        "320",
        "--fanout",
        "2",
        "--keys",
        "200",
    ]);
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 6, "{table}"); // header + five measures
    for row in &rows[1..] {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for cell in &cells[2..5] {
            let figure: f64 = cell.parse().expect("a figure");
            assert!(figure > 0.0, "{row}");
        }
    }
}
