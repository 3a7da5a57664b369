//! `GET /health` and the startup self-test.

use ipcbus_tests::{test_config, TestServer, WAIT};
use serde_json::Value;

#[tokio::test]
async fn the_self_test_passes_and_leaves_nothing_behind() {
    let config = ipcbus::Config {
        selftest: true,
        ..test_config()
    };
    let server = TestServer::with_config(config);
    let settled = async {
        loop {
            let (status, body) = server.http_get("/health").await;
            assert_eq!(status, 200, "{body}");
            let health: Value = serde_json::from_str(&body).expect("health is JSON");
            if health["selftest"] != "pending" {
                return health;
            }
            tokio::task::yield_now().await;
        }
    };
    let health = tokio::time::timeout(WAIT, settled)
        .await
        .expect("self-test finished");
    assert_eq!(health["selftest"], "passed", "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["server"], ipcbus::SERVER_NAME);
    // set (rev 1) and del (rev 2) of the reserved key; nothing is left.
    assert_eq!(
        (&health["rev"], &health["keys"]),
        (&Value::from(2), &Value::from(0))
    );
    let client = server.client().await;
    assert!(client.keys(None).await.expect("keys").is_empty());
}

#[tokio::test]
async fn health_counts_sessions_and_keys() {
    let server = TestServer::start();
    let (_, body) = server.http_get("/health").await;
    let health: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(health["selftest"], "disabled");
    assert_eq!(
        (&health["sessions"], &health["keys"]),
        (&Value::from(0), &Value::from(0))
    );
    let client = server.client().await;
    client.set("h.a", &1).await.expect("set");
    let (_, body) = server.http_get("/health").await;
    let health: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (&health["sessions"], &health["keys"], &health["rev"]),
        (&Value::from(1), &Value::from(1), &Value::from(1))
    );
}
