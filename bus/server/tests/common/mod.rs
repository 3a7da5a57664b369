//! Runs the real `ipcbus` binary for the binary's tests: `serve` on port 0
//! with a data directory of its own, and client commands against it.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_ipcbus");
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `ipcbus serve`; killed on drop if the test did not stop it.
pub struct Served {
    pub child: Child,
    pub url: String,
    pub data_dir: std::path::PathBuf,
    log: mpsc::Receiver<String>,
    /// Every line read so far, so a line that came before the one waited
    /// for can still be found.
    seen: std::cell::RefCell<Vec<String>>,
}

impl Served {
    /// `ipcbus serve --port 0` with `data_dir`, plus `extra` arguments.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Served {
        let mut child = Command::new(BIN)
            .args(["serve", "--port", "0"])
            .args(extra)
            .env("IPCBUS_LOG", "info")
            .env("IPCBUS_DATA_DIR", data_dir)
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
            data_dir: data_dir.to_owned(),
            log,
            seen: Default::default(),
        };
        let line = served.wait_for("WebSocket at ");
        let url = line
            .split("WebSocket at ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next());
        served.url = url.expect("url in log").to_owned();
        served
    }

    /// The first log line containing `needle`, waiting up to [`WAIT`].
    pub fn wait_for(&self, needle: &str) -> String {
        if let Some(line) = self.seen.borrow().iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            let line = self
                .log
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            assert!(
                !line.contains("\u{1b}["),
                "ANSI colours in a piped log: {line}"
            );
            self.seen.borrow_mut().push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Runs a client command against this server, which finds the token
    /// through `IPCBUS_DATA_DIR` as a local user would through the default.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut child = Command::new(BIN)
            .args(args)
            .env("IPCBUS_URL", &self.url)
            .env("IPCBUS_DATA_DIR", &self.data_dir)
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

    /// SIGTERM, then waits for a graceful exit and asserts it succeeded.
    pub fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        assert!(status.expect("kill").success());
        self.wait_for("shutting down");
        assert!(self.child.wait().expect("server exit").success());
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
