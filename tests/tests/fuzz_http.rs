//! Replays the seed corpus and the saved inputs of fuzz target
//! `http_request` (`fuzz/corpus/http_request`, `fuzz/regressions/http_request`)
//! against the real server, through the target's own check, so that an
//! input found once stays fixed without cargo-fuzz.

#[path = "../../fuzz/src/http.rs"]
pub mod check;

use ipcbus_tests::{test_config, TestServer};
use std::path::Path;

#[test]
fn saved_http_inputs_get_an_answer_and_harm_nothing() {
    let server = TestServer::with_config(ipcbus::Config {
        max_value_bytes: 4096,
        max_frame_bytes: 8192,
        ..test_config()
    });
    let token = server.token().expect("token").to_owned();
    let mut replayed = 0;
    for folder in ["corpus", "regressions"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz")
            .join(folder)
            .join("http_request");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("list").path())
            .collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).expect("read input");
            eprintln!("{}", path.display());
            check::http_request(server.addr(), &token, &data);
            replayed += 1;
        }
    }
    assert!(replayed >= 10, "only {replayed} inputs");
    // And the server still serves.
    check::http_request(
        server.addr(),
        &token,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    );
}
