//! Deletion markers leave the bucket (docs/scaling.md §9): every deletion
//! this server writes (a `del`, an ephemeral key's end, a lease dropped at
//! shutdown) carries a TTL as long as the markers NATS writes itself, so
//! that the markers of keys and leases do not pile up over the starts of
//! servers and the lives of keys. Against one standalone NATS server.

use async_nats::jetstream;
use bytes::Bytes;
use ipcbus::backplane::{BackplaneConfig, Expect, NatsBackplane, Put};
use ipcbus_tests::standalone::Standalone;
use std::time::Duration;

/// The TTL of the markers NATS writes (`MARKER_TTL` in nats.rs).
const MARKER_TTL: &str = "3600s";

#[tokio::test]
async fn deletions_and_dropped_leases_carry_the_markers_ttl() {
    let nats = Standalone::start(tempfile::tempdir().expect("temp dir"), &[]);
    let config = BackplaneConfig {
        replicas: 1,
        ..BackplaneConfig::default().with_servers(nats.url())
    };
    let backplane = NatsBackplane::connect(&config, "node1")
        .await
        .expect("backplane");
    let put = Put {
        value: Bytes::from_static(b"\x01"),
        expect: Expect::Any,
        ttl_ms: None,
        ephemeral: false,
    };
    backplane.put("a.b", put, 0).await.expect("put");
    let deleted = backplane.delete("a.b", None, 0).await.expect("delete");
    backplane
        .write_lease(Duration::from_secs(30), 0, &mut false)
        .await
        .expect("lease");
    let dropped = backplane.drop_lease().await.expect("drop");

    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let stream = js.get_stream("KV_ipcbus").await.expect("stream");
    for (subject, seq) in [
        ("$KV.ipcbus.k.a.b", deleted),
        ("$KV.ipcbus.n.node1", dropped),
    ] {
        let message = stream
            .get_last_raw_message_by_subject(subject)
            .await
            .expect("the marker");
        assert_eq!(message.sequence, seq, "{subject}");
        let ttl = message
            .headers
            .get("Nats-TTL")
            .map(|v| v.as_str().to_owned());
        assert_eq!(ttl.as_deref(), Some(MARKER_TTL), "{subject}");
        let operation = message
            .headers
            .get("KV-Operation")
            .map(|v| v.as_str().to_owned());
        assert_eq!(operation.as_deref(), Some("DEL"), "{subject}");
    }
}
