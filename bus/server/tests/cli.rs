//! The real `ipcbus` binary: `serve` on port 0, the client commands against
//! it, and a graceful stop on SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ipcbus");
const WAIT: Duration = Duration::from_secs(20);

/// A running `ipcbus serve`; killed on drop if the test did not stop it.
struct Served {
    child: Child,
    url: String,
    log: mpsc::Receiver<String>,
}

impl Served {
    fn start() -> Served {
        let mut child = Command::new(BIN)
            .args(["serve", "--port", "0"])
            .env("IPCBUS_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ipcbus serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut served = Served {
            child,
            url: String::new(),
            log,
        };
        let line = served.wait_for("WebSocket at ");
        let url = line
            .split("WebSocket at ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next());
        served.url = url.expect("url in log").to_owned();
        served
    }

    fn wait_for(&self, needle: &str) -> String {
        loop {
            let line = self
                .log
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            assert!(
                !line.contains("\u{1b}["),
                "ANSI colours in a piped log: {line}"
            );
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut child = Command::new(BIN)
            .args(args)
            .env("IPCBUS_URL", &self.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn client command");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
        drop(input);
        let out = child.wait_with_output().expect("client output");
        let text = |b: Vec<u8>| String::from_utf8(b).expect("utf8");
        (
            out.status.code().unwrap_or(-1),
            text(out.stdout),
            text(out.stderr),
        )
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_and_client_commands() {
    let served = Served::start();
    served.wait_for("self-test passed");

    let (code, out, _) = served.run(&["set", "w.today", r#"{"temp": 21.5}"#], None);
    assert_eq!(
        (code, out.trim()),
        (0, r#"{"rev":3}"#),
        "self-test used revs 1 and 2"
    );
    let (code, out, _) = served.run(&["set", "w.note"], Some("\"from stdin\"\n"));
    assert_eq!((code, out.trim()), (0, r#"{"rev":4}"#));
    let (code, out, _) = served.run(&["get", "w.today"], None);
    assert_eq!((code, out.trim()), (0, r#"{"temp":21.5}"#));
    let (code, out, _) = served.run(&["keys", "w.*"], None);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            r#"{"key":"w.note","rev":4}"#,
            r#"{"key":"w.today","rev":3}"#
        ]
    );
    assert_eq!(code, 0);
    let (code, _, err) = served.run(&["set", "w.today", "1", "--if-rev", "1"], None);
    assert_eq!(code, 1);
    assert!(err.contains("rev_mismatch"), "{err}");
    let (code, _, err) = served.run(&["set", "w.bad", "not json"], None);
    assert!(code == 1 && err.contains("JSON"), "{err}");
    let (code, out, _) = served.run(&["del", "w.note"], None);
    assert_eq!((code, out.trim()), (0, r#"{"rev":5}"#));
    let (code, _, err) = served.run(&["get", "w.note"], None);
    assert!(code == 1 && err.contains("not_found"), "{err}");

    // watch prints replay, synced, then live events, one JSON line each.
    let mut watch = Command::new(BIN)
        .args(["watch", "w.>"])
        .stderr(Stdio::null())
        .env("IPCBUS_URL", &served.url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let (tx, lines) = mpsc::channel();
    let stdout = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || lines.recv_timeout(WAIT).expect("watch line");
    assert_eq!(
        next(),
        r#"{"ev":"val","key":"w.today","rev":3,"value":{"temp":21.5}}"#
    );
    assert_eq!(next(), r#"{"ev":"synced"}"#);
    served.run(&["set", "w.today", "22"], None);
    assert_eq!(next(), r#"{"ev":"val","key":"w.today","rev":6,"value":22}"#);
    served.run(&["del", "w.today"], None);
    assert_eq!(next(), r#"{"ev":"del","key":"w.today","rev":7}"#);

    // SIGTERM: the server closes sessions and exits cleanly; watch sees it.
    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status();
    assert!(status.expect("kill").success());
    served.wait_for("shutting down");
    let mut served = served;
    assert!(served.child.wait().expect("server exit").success());
    assert!(
        !watch.wait().expect("watch exit").success(),
        "watch reports the lost connection"
    );
}

#[test]
fn serve_rejects_bad_settings() {
    let out = Command::new(BIN)
        .args([
            "serve",
            "--port",
            "0",
            "--max-value-bytes",
            "100",
            "--max-frame-bytes",
            "10",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_frame_bytes must be >= max_value_bytes")
    );
    let dir = std::env::temp_dir().join(format!("ipcbus-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "prot = 1\n").expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid config file") && err.contains("prot"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
