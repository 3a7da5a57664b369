//! A full disk: the data directory is a 2 MiB tmpfs. A persisted write that
//! does not fit fails with `storage` and leaves the key as it was, in memory
//! and on disk; `/health` says `degraded` and why; once space is back the
//! store recovers by itself; after a restart every key is what memory said.
//! Needs root, to mount the tmpfs (CI runs as root).

use ipcbus_protocol::Codec;
use ipcbus_tests::child::{Launcher, Server, AS_SERVER};
use ipcbus_tests::{Raw, WAIT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs of `size`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts a tmpfs and needs root (CI runs as root)"
        );
        std::fs::create_dir_all(dir).expect("mkdir");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed");
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn launcher(data_dir: &Path) -> Launcher {
    Launcher {
        program: env!("CARGO_BIN_EXE_ipcbus-soak").into(),
        prefix: vec![AS_SERVER.to_owned()],
        data_dir: data_dir.to_owned(),
        panics: Default::default(),
        extra: vec!["--no-selftest".into()],
    }
}

async fn connect(server: &Server) -> Raw {
    let url = format!("{}?token={}", server.url, server.token);
    let mut raw = Raw::connect(&url, Codec::Json).await;
    assert_eq!(raw.recv().await["ev"], "hello");
    raw
}

/// Sends one request and returns its reply.
async fn call(raw: &mut Raw, id: u64, mut req: Value) -> Value {
    req["id"] = id.into();
    raw.call(req).await.0
}

/// Polls `/health` until its status is `want`, within [`WAIT`].
async fn health_becomes(server: &Server, want: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let health = server.health().await.expect("/health");
        if health["status"] == want {
            return health;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health stayed {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_full_disk_fails_writes_cleanly_and_the_store_recovers_by_itself() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let _tmpfs = Tmpfs::mount(&data, "2m");
    // Room to give back later.
    let filler = data.join("filler");
    std::fs::write(&filler, vec![0u8; 512 << 10]).expect("filler");
    let server = launcher(&data).start().expect("start");
    let mut c = connect(&server).await;

    // What memory says each key holds; a failed write must not change it.
    let mut model: BTreeMap<String, Value> = BTreeMap::new();
    let mut id = 0;
    let mut failed = None;
    for i in 0..400 {
        id += 1;
        let key = format!("fill.{i}");
        let value = json!(format!("{i}:{}", "v".repeat(16 << 10)));
        let set = json!({"op": "set", "key": key, "value": value, "persist": true});
        let r = call(&mut c, id, set).await;
        if r["ok"] == true {
            model.insert(key, value);
            continue;
        }
        failed = Some((key, r));
        break;
    }
    let (failed_key, reply) = failed.expect("2 MiB never filled up");
    eprintln!("{} persisted writes fitted; then {reply}", model.len());
    assert_eq!(reply["error"]["code"], "storage", "{reply}");
    let msg = reply["error"]["msg"].as_str().unwrap_or("");
    assert!(msg.contains("No space left"), "{reply}");
    let health = health_becomes(&server, "degraded").await;
    assert!(
        health["storage"]
            .as_str()
            .unwrap_or("")
            .contains("No space left"),
        "{health}"
    );
    // The failed write left nothing behind.
    id += 1;
    let r = call(&mut c, id, json!({"op": "get", "key": failed_key})).await;
    assert_eq!(r["error"]["code"], "not_found", "{r}");
    // Overwrites and deletes of persisted keys must reach the disk too;
    // whatever their outcome, memory must go on agreeing with it.
    let value = json!("x".repeat(64 << 10));
    id += 1;
    let set = json!({"op": "set", "key": "fill.0", "value": value, "persist": true});
    let r = call(&mut c, id, set).await;
    eprintln!("overwrite while full: {r}");
    if r["ok"] == true {
        model.insert("fill.0".into(), value);
    }
    id += 1;
    let r = call(&mut c, id, json!({"op": "del", "key": "fill.1"})).await;
    eprintln!("delete while full: {r}");
    if r["ok"] == true {
        model.remove("fill.1");
    }
    for (key, want) in &model {
        id += 1;
        let r = call(&mut c, id, json!({"op": "get", "key": key})).await;
        assert_eq!(&r["value"], want, "{key} in memory");
    }

    // Space comes back: the store recovers without a restart.
    std::fs::remove_file(&filler).expect("free space");
    health_becomes(&server, "ok").await;
    id += 1;
    let after = json!({"op": "set", "key": "after", "value": 1, "persist": true});
    let r = call(&mut c, id, after).await;
    assert_eq!(r["ok"], true, "{r}");
    model.insert("after".into(), json!(1));

    // Memory and disk agree: a restart brings back exactly what memory had.
    drop(c);
    let status = server.stop().expect("stop");
    assert!(status.success(), "{status:?}");
    let server = launcher(&data).start().expect("restart");
    let mut c = connect(&server).await;
    let r = call(&mut c, 1, json!({"op": "keys"})).await;
    let keys: Vec<&str> = r["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["key"].as_str())
        .collect();
    let want: Vec<&str> = model.keys().map(String::as_str).collect();
    assert_eq!(keys, want);
    for (i, (key, want)) in model.iter().enumerate() {
        let r = call(&mut c, 2 + i as u64, json!({"op": "get", "key": key})).await;
        assert_eq!(&r["value"], want, "{key} after the restart");
    }
}
