//! The cluster harness itself (tests/src/nats.rs): three nats-server
//! processes form one JetStream cluster, a bucket replicated on all three
//! takes writes through one node and serves them through another, and
//! keeps taking writes with one node killed.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use ipcbus_tests::nats::NatsCluster;

async fn bucket(url: &str) -> kv::Store {
    let client = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(client);
    match js.get_key_value("harness").await {
        Ok(store) => store,
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: "harness".into(),
                num_replicas: 3,
                ..Default::default()
            })
            .await
            .expect("create bucket"),
    }
}

#[tokio::test]
async fn three_nodes_replicate_a_bucket_and_survive_one_kill() {
    let mut cluster = NatsCluster::start(3).await.expect("cluster");
    let one = bucket(&cluster.url(0)).await;
    let rev = one.put("k", Bytes::from_static(b"v1")).await.expect("put");
    let three = bucket(&cluster.url(2)).await;
    let entry = three.entry("k").await.expect("entry").expect("replicated");
    assert_eq!((entry.value.as_ref(), entry.revision), (&b"v1"[..], rev));

    cluster.kill(0);
    let two = bucket(&cluster.url(1)).await;
    // Two of three keep a quorum; a new leader may take a few seconds.
    let rev2 = two
        .put("k", Bytes::from_static(b"v2"))
        .await
        .expect("put with one node down");
    assert!(rev2 > rev);
    let entry = three.entry("k").await.expect("entry").expect("value");
    assert_eq!(entry.value.as_ref(), b"v2");

    cluster.restart(0).await.expect("restart");
    assert!(
        cluster.log(0).contains("Server is ready"),
        "{}",
        cluster.log(0)
    );
}
