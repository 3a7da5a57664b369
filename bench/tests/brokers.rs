//! `bench/brokers.sh` starts the three peers on free loopback ports, each
//! answers its own protocol, and `stop` ends them.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/brokers.sh");

fn brokers(action: &str, dir: &Path) {
    let out = Command::new("bash")
        .args([SCRIPT, action])
        .arg(dir)
        .output()
        .expect("run brokers.sh");
    assert!(
        out.status.success(),
        "brokers.sh {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `request` to 127.0.0.1:`port` and returns the first bytes of the answer.
fn exchange(port: &str, request: &[u8]) -> Vec<u8> {
    let mut s =
        TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("port"))).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request).expect("write");
    let mut buf = vec![0; 64];
    let n = s.read(&mut buf).expect("read");
    buf.truncate(n);
    buf
}

#[test]
fn brokers_start_answer_and_stop() {
    let dir = tempfile::tempdir().expect("temp dir");
    brokers("start", dir.path());
    let env: HashMap<String, String> = std::fs::read_to_string(dir.path().join("brokers.env"))
        .expect("brokers.env")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let result = std::panic::catch_unwind(|| {
        assert_eq!(exchange(&env["REDIS_PORT"], b"PING\r\n"), b"+PONG\r\n");
        assert!(exchange(&env["NATS_PORT"], b"").starts_with(b"INFO {"));
        // MQTT 3.1.1 CONNECT, clean session, client id "t": CONNACK, accepted.
        let connect = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01t";
        assert_eq!(exchange(&env["MQTT_PORT"], connect), b"\x20\x02\x00\x00");
    });
    brokers("stop", dir.path());
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    for port in ["REDIS_PORT", "NATS_PORT", "MQTT_PORT"] {
        let port: u16 = env[port].parse().expect("port");
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "{port} still open"
        );
    }
}
