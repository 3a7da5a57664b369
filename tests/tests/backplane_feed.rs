//! The feed gets going again by itself (docs/scaling.md §7), against one
//! standalone NATS server:
//! - a feed that stalls is started again. After a NATS stream leader was
//!   killed mid-election, async-nats may retry for ever to recreate an
//!   ordered consumer under a name NATS no longer answers for. Here that is
//!   made certain: each feed's consumer is deleted after a consumer of
//!   another kind took the name async-nats recreates it under. A server's
//!   watchdog sees its own acknowledged lease go undelivered, and starts
//!   its feed again;
//! - a feed started again forgets a key deleted while it was stalled
//!   whose deletion has left the bucket since (as a marker does after an
//!   hour), and keeps the others;
//! - a feed that cannot start when the server does (NATS refuses to make
//!   its consumer) is tried again until it can, and the server then
//!   serves.

use async_nats::jetstream::{self, consumer};
use futures_util::TryStreamExt;
use ipcbus::backplane::BackplaneConfig;
use ipcbus_protocol::ErrorCode;
use ipcbus_tests::backplane::{client, purge_marker, reaches, watch_until};
use ipcbus_tests::standalone::Standalone;
use ipcbus_tests::{test_config, TestServer};
use std::time::Duration;

/// Far past the watchdog (20 s) and a lease write (every 7.5 s): a bound
/// against a hang, not a figure.
const RESUMES: Duration = Duration::from_secs(90);

fn server(nats: &Standalone) -> TestServer {
    let backplane = BackplaneConfig {
        replicas: 1,
        ..BackplaneConfig::default().with_servers(nats.url())
    };
    TestServer::with_config(ipcbus::Config {
        backplane: Some(backplane),
        ..test_config()
    })
}

/// Makes every server's feed stall for good, as async-nats left it: the
/// name its next consumer would have is a pull consumer's, so recreating
/// it fails each time; then the consumer goes. Returns how many feeds.
async fn stall_every_feed(js: &jetstream::Context) -> usize {
    let stream = js.get_stream("KV_ipcbus").await.expect("stream");
    let feeds: Vec<consumer::Info> = stream
        .consumers()
        .try_filter(|info| {
            let feed = info
                .config
                .description
                .as_deref()
                .is_some_and(|d| d.starts_with("ipcbus feed of"));
            std::future::ready(feed)
        })
        .try_collect()
        .await
        .expect("consumers");
    for info in &feeds {
        let taken = format!("{}_1", info.name);
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(taken.clone()),
                ..Default::default()
            })
            .await
            .expect("the name taken");
        stream
            .delete_consumer(&info.name)
            .await
            .expect("the feed's consumer deleted");
    }
    feeds.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_feed_is_started_again_and_catches_up() {
    let nats = Standalone::start(tempfile::tempdir().expect("temp dir"), &[]);
    let (one, two) = (server(&nats), server(&nats));
    let (a, b) = (client(&one).await, client(&two).await);
    let watch = b.watch("s.>").await.expect("watch");
    let rev = a.set("s.k", &1).await.expect("set");
    reaches(&watch, "s.k", rev, RESUMES, "the feed works before").await;

    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    // One a server, and any left from a start that was tried again.
    let feeds = stall_every_feed(&js).await;
    assert!(feeds >= 2, "a feed per server, found {feeds}");
    let started = std::time::Instant::now();
    let rev = a.set("s.k", &2).await.expect("set");
    let entry = reaches(
        &watch,
        "s.k",
        rev,
        RESUMES,
        "server two's feed started again",
    )
    .await;
    eprintln!(
        "the stalled feed delivered again {:?} after the write",
        started.elapsed()
    );
    assert_eq!(entry.rev, rev);
    assert_eq!(rmp_serde::from_slice::<i32>(&entry.value).ok(), Some(2));
    // The new feed goes on as the old one did.
    let rev = a.set("s.k", &3).await.expect("set");
    reaches(&watch, "s.k", rev, RESUMES, "the new feed goes on").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_started_again_forgets_a_key_whose_deletion_left_the_bucket() {
    let nats = Standalone::start(tempfile::tempdir().expect("temp dir"), &[]);
    let (one, two) = (server(&nats), server(&nats));
    let (a, b) = (client(&one).await, client(&two).await);
    let watch = b.watch("g.>").await.expect("watch");
    let kept = a.set("g.kept", &1).await.expect("set");
    let gone = a.set("g.gone", &2).await.expect("set");
    reaches(&watch, "g.kept", kept, RESUMES, "before").await;
    reaches(&watch, "g.gone", gone, RESUMES, "before").await;

    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    stall_every_feed(&js).await;
    a.del("g.gone").await.expect("del");
    // The deletion's marker leaves the bucket, as it does after an hour:
    // server two's feed never delivers it.
    purge_marker(nats.url(), "g.gone").await;

    // Server two starts its feed again (its lease goes undelivered), and
    // the replay does not bring the key.
    let forgot = watch_until(&watch, RESUMES, |w| {
        w.get_raw("g.gone").is_none().then_some(())
    });
    if forgot.await.is_none() {
        panic!("server two still has g.gone: {:?}", watch.get_raw("g.gone"));
    }
    let missing = b.get_raw("g.gone").await.expect_err("forgotten");
    assert_eq!(missing.code(), Some(ErrorCode::NotFound), "{missing}");
    // The key the replay brought stays, as it was.
    assert_eq!(b.get_raw("g.kept").await.expect("kept").1, kept);
    assert_eq!(watch.get_raw("g.kept").map(|e| e.rev), Some(kept));
    // And the mirror goes on: a new write of the forgotten key arrives.
    let again = a.set("g.gone", &3).await.expect("set");
    reaches(&watch, "g.gone", again, RESUMES, "after").await;
}

/// A NATS configuration with user `ipcbus`, who may not make consumers
/// while `refused`.
fn nats_conf(refused: bool) -> String {
    let deny = if refused {
        r#", deny: ["$JS.API.CONSUMER.CREATE.>"]"#
    } else {
        ""
    };
    format!(
        r#"authorization {{ users = [ {{ user: "ipcbus", password: "secret",
            permissions: {{ publish: {{ allow: [">"]{deny} }} }} }} ] }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_cannot_start_yet_is_tried_again_until_the_server_serves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (conf, log) = (dir.path().join("nats.conf"), dir.path().join("nats.log"));
    std::fs::write(&conf, nats_conf(true)).expect("conf");
    let args = [
        "-c".to_owned(),
        conf.display().to_string(),
        "-l".to_owned(),
        log.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let nats = Standalone::start(tempfile::tempdir().expect("temp dir"), &args);
    let backplane = BackplaneConfig {
        replicas: 1,
        user: Some("ipcbus".to_owned()),
        password: Some("secret".to_owned()),
        ..BackplaneConfig::default().with_servers(nats.url())
    };
    let server = TestServer::with_config(ipcbus::Config {
        backplane: Some(backplane),
        ..test_config()
    });
    // The server's first feed is refused: NATS logs the violation.
    let deadline = std::time::Instant::now() + RESUMES;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Publish Violation - Subject \"$JS.API.CONSUMER.CREATE")
    {
        assert!(std::time::Instant::now() < deadline, "no consumer refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(&conf, nats_conf(false)).expect("conf");
    nats.reload(&log);
    // The server, still trying, gets its feed and serves.
    let a = client(&server).await;
    let watch = a.watch("f.>").await.expect("watch");
    let rev = a.set("f.k", &7).await.expect("set");
    reaches(&watch, "f.k", rev, RESUMES, "the feed started late").await;
}
