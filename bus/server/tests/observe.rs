//! The real binary's observability: `ipcbus stats` against a real server,
//! and `IPCBUS_LOG_FORMAT=json` (every stderr line is a JSON object).

mod common;

use common::{Served, BIN, WAIT};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

#[test]
fn stats_prints_a_header_and_a_line_a_second() {
    let dir = tempfile::tempdir().expect("data dir");
    let served = Served::start(dir.path(), &["--no-selftest"]);
    let (code, _, err) = served.run(&["set", "st.a", "1"], None);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = served.run(&["stats", "--count", "3"], None);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three lines: {out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header[..4], ["conns", "subs", "keys", "writes/s"], "{out}");
    for line in &lines[1..] {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        // The key set above (`set`'s own session may still be closing).
        assert_eq!(cells[2], "1", "{line}");
    }
    // Rates from the second line on.
    assert_eq!(lines[1].split_whitespace().nth(3), Some("-"));
    assert_eq!(lines[2].split_whitespace().nth(3), Some("0"));
}

#[test]
fn stats_says_when_the_server_is_unreachable_or_the_token_is_wrong() {
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ws://{}/ws", nobody.local_addr().expect("addr"));
    drop(nobody);
    let (ok, err) = stats_fails(&url, "x");
    assert!(!ok);
    assert!(err.contains("cannot reach 127.0.0.1:"), "{err}");
    assert!(err.contains("is `ipcbus serve` running"), "{err}");

    let dir = tempfile::tempdir().expect("data dir");
    let served = Served::start(dir.path(), &["--no-selftest"]);
    let (ok, err) = stats_fails(&served.url, "wrong");
    assert!(!ok);
    assert!(err.contains("refused the token (401)"), "{err}");
    assert!(err.contains("the token came from --token"), "{err}");
}

/// `ipcbus --url URL --token TOKEN stats`: (success, stderr).
fn stats_fails(url: &str, token: &str) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["--url", url, "--token", token, "stats"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), err)
}

#[test]
fn json_logs_are_one_object_a_line() {
    let dir = tempfile::tempdir().expect("data dir");
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0"])
        .env("IPCBUS_LOG", "info")
        .env("IPCBUS_LOG_FORMAT", "json")
        .env("IPCBUS_DATA_DIR", dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ipcbus serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Every line must parse; returns the first whose message has `needle`.
    let until = |needle: &str| loop {
        let line = lines.recv_timeout(WAIT).expect("a log line");
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if value["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(needle))
        {
            return value;
        }
    };
    // Where it listens: the address is a field of its own.
    let listening = until("listening");
    assert_eq!(listening["level"], "INFO");
    assert!(listening["fields"]["addr"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));
    // Once the self-test passed, the server waits for signals (a SIGTERM
    // before that would end it without its shutdown lines).
    until("self-test passed");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(status.expect("kill").success());
    until("shutting down");
    assert!(child.wait().expect("exit").success());
}
