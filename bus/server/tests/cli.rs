//! The real `ipcbus` binary: `serve` on port 0, the client commands against
//! it, and a graceful stop on SIGTERM.

mod common;

use common::{Served, BIN, WAIT};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

#[test]
fn serve_and_client_commands() {
    let dir = tempfile::tempdir().expect("data dir");
    let served = Served::start(dir.path(), &[]);
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
    // dump prints each matching key once, with its rev and value, and exits.
    let (code, out, _) = served.run(&["dump", "w.>"], None);
    let mut lines: Vec<_> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        (code, lines),
        (
            0,
            vec![
                r#"{"key":"w.note","rev":4,"value":"from stdin"}"#,
                r#"{"key":"w.today","rev":3,"value":{"temp":21.5}}"#
            ]
        )
    );
    let (code, out, _) = served.run(&["dump", "nothing.here"], None);
    assert_eq!((code, out.as_str()), (0, ""));
    let (code, out, _) = served.run(&["del", "w.note"], None);
    assert_eq!((code, out.trim()), (0, r#"{"rev":5}"#));
    let (code, _, err) = served.run(&["get", "w.note"], None);
    assert!(code == 1 && err.contains("not_found"), "{err}");

    // watch prints replay, synced, then live events, one JSON line each.
    let mut watch = Command::new(BIN)
        .args(["watch", "w.>"])
        .stderr(Stdio::null())
        .env("IPCBUS_URL", &served.url)
        .env("IPCBUS_DATA_DIR", dir.path())
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
    served.terminate();
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

#[test]
fn the_first_start_makes_a_private_token_and_clients_find_it() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("ipcbus");
    let served = Served::start(&data, &["--no-selftest"]);
    let line = served.wait_for("clients find it");
    let file = data.join("token");
    // Not the platform's data directory: the log says what clients need.
    assert!(
        line.contains(&format!(
            "clients find it only when told: IPCBUS_TOKEN_FILE={}",
            file.display()
        )),
        "{line}"
    );
    let mode = std::fs::metadata(&file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
    let token = std::fs::read_to_string(&file).expect("read");
    assert_eq!(token.trim().len(), 64, "256 bits in hex: {token:?}");
    let dir_mode = std::fs::metadata(&data).expect("dir").permissions().mode();
    assert_eq!(dir_mode & 0o077, 0, "data dir mode {dir_mode:o}");

    // With the token found through IPCBUS_DATA_DIR, commands work...
    let (code, out, _) = served.run(&["set", "t.k", "1", "--persist", "--ttl-ms", "60000"], None);
    assert_eq!((code, out.trim()), (0, r#"{"rev":1}"#));
    // ...and with another data dir (no token) they are refused, clearly.
    let other = tempfile::tempdir().expect("other dir");
    let (ok, _, err) = client(&["get", "t.k"], &served.url, other.path());
    assert!(!ok);
    let missing = other.path().join("token").display().to_string();
    assert!(
        err.contains("refused the connection (401")
            && err.contains(&format!("no token was sent: {missing} does not exist")),
        "{err}"
    );
}

#[test]
fn in_the_platform_data_directory_the_token_needs_no_setting_and_the_log_says_so() {
    let home = tempfile::tempdir().expect("home");
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--no-selftest"])
        .env_remove("IPCBUS_DATA_DIR")
        .env_remove("IPCBUS_TOKEN_FILE")
        .env("XDG_DATA_HOME", home.path())
        .env("IPCBUS_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let file = home
        .path()
        .join("ipcbus")
        .join("token")
        .display()
        .to_string();
    let lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let line = lines
        .map_while(Result::ok)
        .find(|l| l.contains("clients of this user"))
        .expect("the token line");
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(
        line.contains(&format!(
            "access token in {file} (clients of this user on this machine read it from there by themselves)"
        )),
        "{line}"
    );
}

/// A client command run with `args`, no token in the environment and the
/// data directory `data`: (success, stdout, stderr).
fn client(args: &[&str], url: &str, data: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(["--url", url])
        .args(args)
        .env_remove("IPCBUS_TOKEN")
        .env_remove("IPCBUS_TOKEN_FILE")
        .env("IPCBUS_DATA_DIR", data)
        .output()
        .expect("run");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn client_commands_say_what_went_wrong_and_take_a_token() {
    let nowhere = tempfile::tempdir().expect("dir");
    // Nothing listens: said once, with the URL and what to check.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port(); // the listener is gone again: connections are refused
    let closed = format!("ws://127.0.0.1:{port}/ws");
    let (ok, _, err) = client(&["get", "k"], &closed, nowhere.path());
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "cannot connect to {closed}: connection refused; is `ipcbus serve` running"
        )) && err.matches("refused").count() == 1,
        "{err}"
    );

    let data = tempfile::tempdir().expect("data dir");
    let served = Served::start(data.path(), &["--no-selftest"]);
    let token_file = data.path().join("token");
    let token = std::fs::read_to_string(&token_file).expect("token");
    // A wrong --token: where it came from, and the ways to give another.
    let (ok, _, err) = client(
        &["--token", "not-the-token-of-this-bus", "get", "k"],
        &served.url,
        nowhere.path(),
    );
    assert!(!ok);
    assert!(
        err.contains("refused the connection (401")
            && err.contains("the token came from --token")
            && err.contains("--token-file, IPCBUS_TOKEN, or IPCBUS_DATA_DIR"),
        "{err}"
    );
    // The right one, given either way, with no data directory to find it in.
    let file = token_file.display().to_string();
    let (ok, out, err) = client(
        &["--token-file", &file, "set", "t.k", "1"],
        &served.url,
        nowhere.path(),
    );
    assert!(ok && out.trim() == r#"{"rev":1}"#, "{out}{err}");
    let (ok, out, err) = client(
        &["--token", token.trim(), "get", "t.k"],
        &served.url,
        nowhere.path(),
    );
    assert!(ok && out.trim() == "1", "{out}{err}");
    // A --token-file that cannot be read.
    let absent = nowhere.path().join("absent").display().to_string();
    let (ok, _, err) = client(
        &["--token-file", &absent, "get", "t.k"],
        &served.url,
        nowhere.path(),
    );
    assert!(
        !ok && err.contains(&format!("cannot read a token from {absent} (--token-file)")),
        "{err}"
    );
}

/// The signal handlers are in place before the server says it listens:
/// a SIGTERM sent the moment the line appears is a clean shutdown (it was
/// a kill in about one start in three, and the next start got a new store).
#[cfg(unix)]
#[test]
fn a_sigterm_right_after_startup_is_a_clean_shutdown() {
    use rustix::process::{kill_process, Pid, Signal};
    for _ in 0..10 {
        let data = tempfile::tempdir().expect("data dir");
        let mut child = Command::new(BIN)
            .args(["serve", "--port", "0", "--no-selftest"])
            .env("IPCBUS_LOG", "info")
            .env("IPCBUS_DATA_DIR", data.path())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ipcbus serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let pid = Pid::from_raw(child.id() as i32).expect("pid");
        // In this thread, at once: as close to the line as a test can get.
        for line in lines.by_ref().map_while(Result::ok) {
            if line.contains("WebSocket at ") {
                kill_process(pid, Signal::TERM).expect("SIGTERM");
                break;
            }
        }
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        assert!(child.wait().expect("exit").success(), "{rest:?}");
        assert!(rest.iter().any(|l| l.contains("shutting down")), "{rest:?}");
    }
}

#[test]
fn a_value_over_the_limit_is_too_large_not_a_closed_connection() {
    let data = tempfile::tempdir().expect("data dir");
    let served = Served::start(data.path(), &["--no-selftest", "--max-value-bytes", "1000"]);
    let big = format!("\"{}\"", "x".repeat(3000));
    let (ok, _, err) = client(&["set", "t.big", &big], &served.url, data.path());
    assert!(
        !ok && err.contains("too large: value of 3003 bytes exceeds the server's max_value_bytes (1000); nothing was sent"),
        "{err}"
    );
}

/// `ipcbus serve` with `args` and a data directory of its own, which must
/// fail at startup: its stderr.
fn serve_refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("data dir");
    let out = Command::new(BIN)
        .arg("serve")
        .args(args)
        .env("IPCBUS_DATA_DIR", dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn no_auth_off_loopback_is_refused() {
    let err = serve_refused(&["--port", "0", "--host", "0.0.0.0", "--no-auth"]);
    assert!(
        err.contains("--no-auth is allowed only on a loopback address"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_says_so_and_how_to_get_around_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let err = serve_refused(&["--port", &port]);
    assert!(
        err.contains(&format!("cannot bind 127.0.0.1:{port}"))
            && err.contains("another program (or another ipcbus) listens there")
            && err.contains("--port"),
        "{err}"
    );
}

#[test]
fn a_kodi_url_that_is_not_ws_is_refused_at_startup() {
    let dir = tempfile::tempdir().expect("data dir");
    for (url, says) in [
        ("http://127.0.0.1:9090/jsonrpc", "the scheme must be ws://"),
        ("wss://kodi.lan:9090/jsonrpc", "wss:// is not supported"),
        ("127.0.0.1:9090", "ws://"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--port", "0", "--kodi", url])
            .env("IPCBUS_DATA_DIR", dir.path())
            .output()
            .expect("run");
        assert!(!out.status.success(), "{url} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("invalid kodi URL") && err.contains(url) && err.contains(says),
            "{url}: {err}"
        );
    }
    // The same check for IPCBUS_KODI and the config file's `kodi`.
    let out = Command::new(BIN)
        .args(["serve", "--port", "0"])
        .env("IPCBUS_DATA_DIR", dir.path())
        .env("IPCBUS_KODI", "ftp://kodi")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid kodi URL"));
}
