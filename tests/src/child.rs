//! The server as a child process of its own, for the soak test and the
//! benchmarks: so that it can be killed with SIGKILL and its memory read
//! from `/proc` apart from the load's. Started on port 0 with a data
//! directory of the caller's, its log kept in `server.log` there.
//!
//! The program is `ipcbus`, or the calling program itself: a binary whose
//! `main` hands its arguments to [`serve_main`] when the first one is
//! [`AS_SERVER`] needs no other binary to be built.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How long a server may take to exit after SIGTERM (its graceful
/// shutdown allows connections 5 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a `/health` request may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start the server: a program and the arguments before `serve`'s own.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The program: `ipcbus`, or one that calls [`serve_main`].
    pub program: PathBuf,
    /// Arguments before `serve`.
    pub prefix: Vec<String>,
    /// The data directory, kept across restarts.
    pub data_dir: PathBuf,
    /// Lines of the server's log that contain "panicked", over every run.
    pub panics: Arc<AtomicU64>,
    /// More arguments for `serve`.
    pub extra: Vec<String>,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `ws://127.0.0.1:<port>/ws`.
    pub url: String,
    /// `127.0.0.1:<port>`, for HTTP.
    pub addr: String,
    /// Read from the token file the server wrote.
    pub token: String,
}

/// The first argument that makes a program that calls [`serve_main`] run
/// the server (`<program> __serve serve --port 0 ...`).
pub const AS_SERVER: &str = "__serve";

/// For the `main` of a program that runs the server itself: if its first
/// argument is [`AS_SERVER`], runs `ipcbus` with the rest (logging to
/// stderr as `ipcbus` does) and returns its exit code; otherwise `None`.
pub fn serve_main() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    if args.nth(1).is_none_or(|a| a != AS_SERVER) {
        return None;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("IPCBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let cli = <ipcbus::cli::Cli as clap::Parser>::parse_from(
        std::iter::once("ipcbus".into()).chain(args),
    );
    Some(match ipcbus::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcbus: error: {e}");
            ExitCode::FAILURE
        }
    })
}

impl Launcher {
    /// Runs the server as this program (see [`serve_main`]), or as
    /// `server_bin` when given, with its data in `data_dir`.
    pub fn new(server_bin: Option<PathBuf>, data_dir: PathBuf) -> anyhow::Result<Launcher> {
        let (program, prefix) = match server_bin {
            Some(p) => (p, vec![]),
            None => (
                std::env::current_exe().context("cannot find this program")?,
                vec![AS_SERVER.to_owned()],
            ),
        };
        Ok(Launcher {
            program,
            prefix,
            data_dir,
            panics: Default::default(),
            extra: Vec::new(),
        })
    }

    /// Starts `serve --port 0` and waits until it listens.
    pub fn start(&self) -> anyhow::Result<Server> {
        let mut child = Command::new(&self.program)
            .args(&self.prefix)
            .args(["serve", "--port", "0"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra)
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
            // The log's last lines: the directory may be gone by the time
            // anyone looks.
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the server did not start; {}:\n{}",
                log_path.display(),
                tail.join("\n")
            );
        };
        let addr = url
            .trim_start_matches("ws://")
            .trim_end_matches("/ws")
            .to_owned();
        let mut server = Server {
            child,
            url,
            addr,
            token: String::new(),
        };
        // On error, `server` is dropped, which kills the child.
        let token_file = self.data_dir.join(ipcbus_protocol::auth::TOKEN_FILE_NAME);
        server.token = ipcbus_protocol::auth::read_token_file(&token_file)
            .with_context(|| format!("no token in {}", token_file.display()))?;
        Ok(server)
    }
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The resident set size, in KiB, from `/proc/<pid>/status`.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(Path::new(&format!("/proc/{}/status", self.child.id())))
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits for the exit, up to [`STOP_TIMEOUT`]; a server
    /// still running then is killed and reported as an error.
    pub fn stop(mut self) -> anyhow::Result<ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("cannot run kill")?;
        if !sent.success() {
            bail!("kill -TERM {} failed: {sent}", self.child.id());
        }
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() >= deadline {
                bail!("the server did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed it");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `/health` as JSON.
    pub async fn health(&self) -> anyhow::Result<serde_json::Value> {
        let request = format!(
            "GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let (status, body) =
            tokio::time::timeout(HEALTH_TIMEOUT, crate::http_request(&self.addr, &request))
                .await
                .context("/health did not answer")??;
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
