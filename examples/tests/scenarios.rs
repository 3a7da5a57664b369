//! The examples, run as the real binaries against a real server.

use ipcbus_tests::restart::Restartable;
use ipcbus_tests::TestServer;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn spawn(bin: &str, url: &str, env: &[(&str, &str)]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(bin)
        .env("IPCBUS_URL", url)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn example");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Runs the hotkey example once, successfully.
fn hotkey(url: &str) {
    let hotkey = Command::new(env!("CARGO_BIN_EXE_hotkey"))
        .env("IPCBUS_URL", url)
        .output()
        .expect("hotkey");
    assert!(hotkey.status.success());
}

fn line(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(WAIT).expect("a line of output in time")
}

/// Publisher scrapes, a plugin started later shows it at once, a hotkey
/// makes the publisher scrape again, and the plugin follows.
#[test]
fn publisher_plugin_hotkey() {
    let server = TestServer::start();
    let url = server.url();
    let (mut publisher, published) =
        spawn(env!("CARGO_BIN_EXE_publisher"), &url, &[("SCRAPES", "2")]);
    assert_eq!(
        line(&published),
        "published scrape 1 as rev 2",
        "rev 1 was svc.weather.online"
    );

    let (mut plugin, shown) = spawn(env!("CARGO_BIN_EXE_plugin"), &url, &[("UPDATES", "1")]);
    assert_eq!(line(&shown), "Oslo: -2.5 °C (scrape 1)", "replayed at once");

    hotkey(&url);
    assert_eq!(
        line(&published),
        "published scrape 2 as rev 4",
        "the refresh was pushed to the service"
    );
    assert_eq!(line(&shown), "Oslo: -2.0 °C (scrape 2)");
    assert!(plugin.wait().expect("plugin").success());
    assert!(publisher.wait().expect("publisher").success());
}

/// Four processes want the same slow result: one gathers it, all get it.
#[test]
fn shared_result_is_gathered_once() {
    let server = TestServer::start();
    let runs: Vec<_> = (0..4)
        .map(|_| spawn(env!("CARGO_BIN_EXE_shared_result"), &server.url(), &[]))
        .collect();
    let mut roles = Vec::new();
    for (mut child, out) in runs {
        let said = line(&out);
        assert!(child.wait().expect("shared_result").success());
        let (role, days) = said.split_once(' ').expect("role and result");
        assert_eq!(days, r#"["sun", "rain", "sun"]"#);
        roles.push(role.to_owned());
    }
    roles.sort();
    assert_eq!(roles, ["gathered", "shared", "shared", "shared"]);
}

/// The publisher and a plugin keep running through a bus restart: the
/// plugin sees the unpersisted weather go with the old bus, then a hotkey
/// run after the restart reaches the publisher, and the plugin follows.
#[test]
fn publisher_and_plugin_ride_out_a_restart() {
    let mut server = Restartable::start();
    let url = server.url();
    let (mut publisher, published) =
        spawn(env!("CARGO_BIN_EXE_publisher"), &url, &[("SCRAPES", "2")]);
    assert_eq!(line(&published), "published scrape 1 as rev 2");
    let (mut plugin, shown) = spawn(env!("CARGO_BIN_EXE_plugin"), &url, &[("UPDATES", "2")]);
    assert_eq!(line(&shown), "Oslo: -2.5 °C (scrape 1)");

    server.stop_blocking();
    server.start_again();
    assert_eq!(line(&shown), "no weather yet", "the new bus has no weather");
    hotkey(&url);
    let said = line(&published);
    assert!(said.starts_with("published scrape 2 as rev "), "{said}");
    assert_eq!(line(&shown), "Oslo: -2.0 °C (scrape 2)");
    assert!(plugin.wait().expect("plugin").success());
    assert!(publisher.wait().expect("publisher").success());
}
