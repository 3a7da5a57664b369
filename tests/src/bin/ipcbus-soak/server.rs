//! The server under test, as a child process of its own, so that it can be
//! killed with SIGKILL and its memory read from `/proc`: started on port 0
//! with the soak's data directory, its log kept in `server.log` there.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start the server: a program and the arguments before `serve`'s own.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    /// The program: `ipcbus`, or this soak binary, which runs the server
    /// itself when its first argument is [`crate::AS_SERVER`].
    pub(crate) program: PathBuf,
    /// Arguments before `serve`.
    pub(crate) prefix: Vec<String>,
    /// The data directory, kept across restarts.
    pub(crate) data_dir: PathBuf,
    /// Lines of the server's log that contain "panicked", over every run.
    pub(crate) panics: Arc<AtomicU64>,
}

/// A running server.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    /// `ws://127.0.0.1:<port>/ws`.
    pub(crate) url: String,
    /// `127.0.0.1:<port>`, for HTTP.
    pub(crate) addr: String,
    /// Read from the token file the server wrote.
    pub(crate) token: String,
}

impl Launcher {
    /// Starts `serve --port 0` and waits until it listens.
    pub(crate) fn start(&self) -> anyhow::Result<Server> {
        let mut child = Command::new(&self.program)
            .args(&self.prefix)
            .args(["serve", "--port", "0"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("IPCBUS_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let log_path = self.data_dir.join("server.log");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let (tx, rx) = mpsc::channel();
        let panics = self.panics.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("panicked") {
                    panics.fetch_add(1, Ordering::Relaxed);
                }
                let _ = writeln!(log, "{line}");
                if let Some(url) = line.split("WebSocket at ").nth(1) {
                    let _ = tx.send(url.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        let Ok(url) = rx.recv_timeout(START_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the server did not start; see {}", log_path.display());
        };
        let addr = url
            .trim_start_matches("ws://")
            .trim_end_matches("/ws")
            .to_owned();
        let token_file = self.data_dir.join(ipcbus_protocol::auth::TOKEN_FILE_NAME);
        let token = ipcbus_protocol::auth::read_token_file(&token_file)
            .with_context(|| format!("no token in {}", token_file.display()))?;
        Ok(Server {
            child,
            url,
            addr,
            token,
        })
    }
}

impl Server {
    /// The resident set size, in KiB, from `/proc/<pid>/status`.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        rss_kib(Path::new(&format!("/proc/{}/status", self.child.id())))
    }

    /// SIGKILL: no shutdown code runs.
    pub(crate) fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits for the exit.
    pub(crate) fn stop(mut self) -> anyhow::Result<ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("cannot run kill")?;
        Ok(self.child.wait()?)
    }

    /// `/health` as JSON.
    pub(crate) async fn health(&self) -> anyhow::Result<serde_json::Value> {
        let request = format!(
            "GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let (status, body) = ipcbus_tests::http_request(&self.addr, &request).await?;
        if status != 200 {
            bail!("/health answered {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(status: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(status).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
