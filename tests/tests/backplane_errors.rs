//! What the backplane reports when NATS says no (docs/scaling.md §8):
//! refused credentials stop the server at once with an error that names
//! the settings to check (they were retried for ever as "unreachable");
//! so does a TLS handshake that fails (it was a panic: rustls had no crypto
//! provider), while TLS with the CA given works;
//! a write the bucket refuses outright (it is full) is `storage`, not
//! applied, where it was `unavailable` ("may have been applied").
//!
//! Each test runs one standalone `nats-server` with JetStream and a token,
//! started and killed by PID.

use async_nats::jetstream::{self, kv, stream::StorageType};
use ipcbus::backplane::BackplaneConfig;
use ipcbus_protocol::ErrorCode;
use ipcbus_tests::standalone::Standalone;
use ipcbus_tests::{http_request, test_config, TestServer};
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret-nats-token";

/// A `nats-server` that takes only [`TOKEN`], with more `options`.
fn nats(options: &[&str]) -> Standalone {
    nats_in(tempfile::tempdir().expect("temp dir"), options)
}

fn nats_in(dir: tempfile::TempDir, options: &[&str]) -> Standalone {
    let options: Vec<&str> = ["--auth", TOKEN].iter().chain(options).copied().collect();
    Standalone::start(dir, &options)
}

/// A server on `nats`'s backplane, with `token`.
fn config(nats: &Standalone, token: &str) -> ipcbus::Config {
    ipcbus::Config {
        backplane: Some(BackplaneConfig {
            replicas: 1,
            token: Some(token.to_owned()),
            write_timeout_ms: 2_000,
            ..BackplaneConfig::default().with_servers(nats.url())
        }),
        ..test_config()
    }
}

/// The error `serve` stops with, within 30 s (it would otherwise retry for
/// as long as it runs).
fn serve_error(config: ipcbus::Config) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let serve = ipcbus::serve(listener, config, std::future::pending());
    let outcome = actix_web::rt::System::new()
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), serve).await });
    outcome
        .expect("an error, not retries until the timeout")
        .expect_err("the server must not start")
        .to_string()
}

/// A set and a get through a server on the backplane.
fn serves(config: ipcbus::Config) {
    let server = TestServer::with_config(config);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = server.client().await;
        let rev = client.set("k", &1).await.expect("set");
        assert_eq!(client.get_raw("k").await.expect("get").1, rev);
        assert_eq!(client.get::<i32>("k").await.expect("get"), 1);
    });
}

#[test]
fn refused_credentials_stop_the_server_with_what_to_check() {
    let nats = nats(&[]);
    let started = Instant::now();
    let error = serve_error(config(&nats, "not-the-token"));
    println!("refused after {:?}: {error}", started.elapsed());
    assert!(
        error.contains("refused the credentials") && error.contains("[backplane]"),
        "{error}"
    );
    // With the right token the same server starts and serves.
    serves(config(&nats, TOKEN));
}

#[test]
fn tls_to_nats_works_with_its_ca_and_fails_clearly_without() {
    // A CA, and a certificate it signed for 127.0.0.1.
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write");
        path
    };
    let ca_file = file("ca.pem", ca_cert.pem());
    let cert_file = file("cert.pem", cert.pem());
    let key_file = file("key.pem", key.serialize_pem());
    let (cert_arg, key_arg) = (
        cert_file.display().to_string(),
        key_file.display().to_string(),
    );
    let nats = nats_in(
        dir,
        &["--tls", "--tlscert", &cert_arg, "--tlskey", &key_arg],
    );
    // The server requires TLS: without the CA the handshake fails, once.
    let started = Instant::now();
    let error = serve_error(config(&nats, TOKEN));
    println!("refused after {:?}: {error}", started.elapsed());
    assert!(
        error.contains("TLS with NATS") && error.contains("tls_ca"),
        "{error}"
    );
    // With it, through the same nats:// URL (upgraded) and through tls://.
    let with_ca = |url: String| {
        let mut config = config(&nats, TOKEN);
        let backplane = config.backplane.as_mut().expect("backplane");
        backplane.servers = vec![url];
        backplane.tls_ca = Some(ca_file.clone());
        config
    };
    let host_port = nats.url().split_once("://").expect("a URL").1;
    serves(with_ca(format!("nats://{host_port}")));
    serves(with_ca(format!("tls://{host_port}")));
}

#[tokio::test]
async fn a_write_the_full_bucket_refuses_is_storage_and_not_applied() {
    let nats = nats(&[]);
    // The bucket, made beforehand as an operator might, with a size limit
    // (and the per-message TTL and markers ipcbus needs).
    let client = async_nats::ConnectOptions::with_token(TOKEN.to_owned())
        .connect(nats.url())
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
    let mut config = config(&nats, TOKEN);
    if let Some(backplane) = config.backplane.as_mut() {
        backplane.lease_ttl_ms = 1_000;
    }
    let server = TestServer::with_config(config);
    let client = server.client().await;
    let mut states = client.state();
    states.mark_unchanged();
    let ephemeral = ipcbus_client::SetOptions {
        ephemeral: true,
        ..Default::default()
    };
    let online = client
        .set_with("me.online", &true, ephemeral)
        .await
        .expect("set");
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
    // Full to the byte: smaller and smaller values until one byte is too
    // many.
    for size in [200, 50, 10, 1] {
        let mut n = 0;
        while client
            .set(&format!("fill.{size}.{n}"), &vec![7u8; size])
            .await
            .is_ok()
        {
            n += 1;
            assert!(n < 100, "the bucket is not full");
        }
    }
    // It still takes the server's lease, each write of which is no larger
    // than the one it replaces, four times per second here: the lease never
    // runs out, so the ephemeral key stays and the session is not closed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(client.get_raw("me.online").await.expect("get").1, online);
    assert!(
        !states.has_changed().expect("client open"),
        "the connection was closed: {:?}",
        *states.borrow()
    );
}

#[test]
fn a_bucket_made_again_under_a_running_server_stops_it_with_why() {
    let nats = nats(&[]);
    let mut config = config(&nats, TOKEN);
    if let Some(backplane) = config.backplane.as_mut() {
        backplane.lease_ttl_ms = 1_000;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let serve = ipcbus::serve(listener, config, std::future::pending());
        let ended = actix_web::rt::System::new()
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), serve).await });
        let _ = done.send(ended);
    });
    // Serving (its mirror loaded): the bucket goes, and one is made again,
    // as an operator (or a server starting on the empty account) would.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let health = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(http_request(&addr.to_string(), health).await, Ok((200, _))) {
            assert!(Instant::now() < deadline, "the server never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let client = async_nats::ConnectOptions::with_token(TOKEN.to_owned())
            .connect(nats.url())
            .await
            .expect("connect");
        let js = jetstream::new(client);
        js.delete_key_value("ipcbus")
            .await
            .expect("delete the bucket");
        js.create_key_value(kv::Config {
            bucket: "ipcbus".to_owned(),
            history: 1,
            limit_markers: Some(Duration::from_secs(3600)),
            ..Default::default()
        })
        .await
        .expect("make it again");
    });
    let started = Instant::now();
    let ended = outcome
        .recv_timeout(Duration::from_secs(90))
        .expect("serve ended");
    let error = ended
        .expect("stopped by itself, before the timeout")
        .expect_err("with an error")
        .to_string();
    println!("stopped {:?} after: {error}", started.elapsed());
    assert!(error.contains("deleted and made again"), "{error}");
}
