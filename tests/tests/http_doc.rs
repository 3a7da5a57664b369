//! Runs every `console` block of docs/http.md with bash and curl against a
//! fresh server, and compares the output with what the document shows.

use ipcbus_tests::TestServer;
use std::process::Command;

const DOC: &str = include_str!("../../docs/http.md");

/// (command, expected output) pairs of one ```console block.
fn steps(block: &str) -> Vec<(String, String)> {
    let mut steps: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        match line.strip_prefix("$ ") {
            Some(cmd) => steps.push((cmd.to_owned(), String::new())),
            None => {
                let (_, out) = steps.last_mut().expect("output before any command");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    steps
}

#[test]
fn the_curl_examples_in_docs_http_md_are_true() {
    let blocks: Vec<&str> = DOC
        .split("```console\n")
        .skip(1)
        .map(|rest| rest.split("```").next().expect("closed block"))
        .collect();
    assert!(blocks.len() >= 4, "docs/http.md lost its examples");
    let server = TestServer::start();
    let bus = format!("http://{}", server.addr());
    let mut ran = 0;
    for block in blocks {
        for (cmd, want) in steps(block) {
            let out = Command::new("bash")
                .args(["-o", "pipefail", "-c", &cmd])
                .env("BUS", &bus)
                .env("TOKEN", server.token().expect("token"))
                .output()
                .expect("bash runs");
            let got = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                got.trim_end(),
                want.trim_end(),
                "`{cmd}` printed something else (stderr: {})",
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 15, "only {ran} commands ran");
}

fn curl(token: &str, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-w", " %{http_code}", "--oauth2-bearer", token])
        .args(args)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn oversized_values_and_bodies_are_413_and_the_server_goes_on() {
    let config = ipcbus::Config {
        max_value_bytes: 100,
        max_frame_bytes: 1000,
        ..ipcbus_tests::test_config()
    };
    let server = TestServer::with_config(config);
    let url = format!("http://{}/v1/keys/big", server.addr());
    let token = server.token().expect("token");
    let refused = |args: &[&str], needle: &str, status: &str| {
        let got = curl(token, &[&["-X", "PUT", url.as_str()], args].concat());
        assert!(
            got.contains(needle) && got.ends_with(status),
            "{args:?}: {got}"
        );
        got
    };
    let value = format!("\"{}\"", "x".repeat(200));
    let got = refused(&["-d", &value], "too_large", " 413");
    assert!(
        got.starts_with("{\"error\":{\"code\":\"too_large\""),
        "{got}"
    );
    let body = format!("\"{}\"", "x".repeat(5000));
    refused(&["-d", &body], "max_frame_bytes", " 413");
    refused(
        &["-H", "Content-Type: text/plain", "-d", "1"],
        "unsupported Content-Type",
        " 400",
    );
    let msgpack = "Content-Type: application/msgpack";
    refused(
        &["-H", msgpack, "--data-binary", "\u{1}\u{2}"],
        "bad_request",
        " 400",
    );
    assert_eq!(
        curl(token, &["-X", "PUT", &url, "-d", "[1,2]"]),
        "{\"rev\":1} 200"
    );
}
