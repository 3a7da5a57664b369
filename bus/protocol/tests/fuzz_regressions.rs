//! Replays the fuzz seed corpus (`fuzz/corpus/<target>/`) and every saved
//! input (`fuzz/regressions/<target>/`) through the fuzz targets' own checks,
//! so a crasher found once stays fixed without cargo-fuzz or libFuzzer.

// The very file the fuzz targets call, so the two can never disagree.
#[path = "../../../fuzz/src/lib.rs"]
pub mod checks;

use bytes::Bytes;
use ipcbus_protocol::{json, msgpack, Pattern};
use std::path::{Path, PathBuf};

/// The inputs of one target in one folder (`corpus` or `regressions`), sorted.
fn inputs(folder: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(folder)
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.expect("list the folder").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "{} holds no input", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, data)
        })
        .collect()
}

/// Runs `check` on every input of `target`, and names every input that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let mut failed = Vec::new();
    for folder in ["corpus", "regressions"] {
        for (path, data) in inputs(folder, target) {
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "{target}: failing inputs {failed:#?}");
}

#[test]
fn frame_msgpack() {
    replay("frame_msgpack", checks::frame_msgpack);
}

#[test]
fn frame_json() {
    replay("frame_json", checks::frame_json);
}

#[test]
fn pattern() {
    replay("pattern", checks::pattern);
}

#[test]
fn index() {
    replay("index", checks::index);
}

/// Seeds only help the fuzzer if they get past the decoder, so each one must
/// be a valid frame (a request or a server message) or a valid pattern.
#[test]
fn seeds_are_valid() {
    for (path, data) in inputs("corpus", "frame_msgpack") {
        let frame = Bytes::from(data);
        let ok = msgpack::decode_request(&frame).is_ok() || msgpack::decode_server(&frame).is_ok();
        assert!(ok, "{} does not decode", path.display());
    }
    for (path, data) in inputs("corpus", "frame_json") {
        let text = String::from_utf8(data).expect("JSON seeds are UTF-8");
        let ok = json::decode_request(&text).is_ok() || json::decode_server(&text).is_ok();
        assert!(ok, "{} does not decode", path.display());
    }
    for (path, data) in inputs("corpus", "index") {
        let text = String::from_utf8(data).expect("index seeds are UTF-8");
        assert!(
            text.lines().any(|l| l.starts_with('+')),
            "{} files no pattern",
            path.display()
        );
    }
    for (path, data) in inputs("corpus", "pattern") {
        let text = String::from_utf8(data).expect("pattern seeds are UTF-8");
        assert!(
            Pattern::parse(&text).is_ok(),
            "{} is not a pattern",
            path.display()
        );
    }
}
