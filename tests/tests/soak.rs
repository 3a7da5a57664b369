//! A seconds-long run of the soak program (`ipcbus-soak`), so that it
//! cannot rot: once with SIGKILL restarts (acknowledged persisted writes
//! survive them), once without (the memory check applies).

use std::process::Command;

fn soak(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipcbus-soak"))
        .args(["--seconds", "2", "--writers", "4", "--subscribers", "4"])
        .args([
            "--keys",
            "20",
            "--disconnect-rate",
            "0.05",
            "--warmup-seconds",
            "1",
        ])
        .args(args)
        .output()
        .expect("run ipcbus-soak");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "soak failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("| violations | 0 |"), "{report}");
    // 4 writers × 20 keys × 3 kinds, some of them holding a value.
    let present: usize = report
        .split("| keys checked | 240 (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no keys checked line in\n{report}"));
    assert!(present > 0, "{report}");
}

#[test]
fn soak_with_sigkill_restarts_loses_nothing_acknowledged() {
    soak(&["--restarts", "2"]);
}

#[test]
fn soak_without_restarts_returns_memory_to_baseline() {
    soak(&[]);
}
