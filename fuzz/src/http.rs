//! The check of fuzz target `http_request`: one connection to a running
//! server, the input sent as is (with `TOKEN` replaced by the server's
//! token, so that mutations of the seeds get past the access check and
//! reach the routes), then the answer read to its end. The server must
//! answer with a well-formed status line or close the connection, within
//! the time allowed, and go on accepting connections. A panic in the
//! server aborts the fuzz process (its panic hook), so it is caught too.
//!
//! Std only, so that `tests/tests/fuzz_http.rs` can replay saved inputs
//! against the test server under plain `cargo test`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// How long the server may take to answer one input.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `data` to the server at `addr` and checks its answer.
pub fn http_request(addr: SocketAddr, token: &str, data: &[u8]) {
    let request = replace_token(data, token.as_bytes());
    let mut stream = TcpStream::connect(addr).expect("the server accepts connections");
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .expect("read timeout");
    // The server may close before it has read everything: that is fine.
    let _ = stream.write_all(&request);
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    if let Err(e) = stream.read_to_end(&mut answer) {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "no answer within {ANSWER_TIMEOUT:?} (read {} bytes)",
            answer.len()
        );
    }
    if !answer.is_empty() {
        // HTTP/1.0 requests get HTTP/1.0 answers.
        let status_line = answer.starts_with(b"HTTP/1.1 ") || answer.starts_with(b"HTTP/1.0 ");
        assert!(
            status_line && answer.len() >= 12,
            "not an HTTP answer: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
    }
}

fn replace_token(data: &[u8], token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + token.len());
    let mut rest = data;
    while let Some(at) = rest.windows(5).position(|w| w == b"TOKEN") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(token);
        rest = &rest[at + 5..];
    }
    out.extend_from_slice(rest);
    out
}
