//! Fuzz target `http_request`: the real server's HTTP stack (actix-http's
//! request parser, the access checks, the routes of the HTTP API and the
//! WebSocket upgrade), in this process on 127.0.0.1:0, fed one input per
//! connection. The check is in `src/http.rs`.
#![no_main]

use std::net::{SocketAddr, TcpListener};
use std::sync::OnceLock;

/// The server, started once: its address and token.
fn server() -> &'static (SocketAddr, String) {
    static SERVER: OnceLock<(SocketAddr, String)> = OnceLock::new();
    SERVER.get_or_init(|| {
        // A panic anywhere in the server is a finding, not a log line.
        std::panic::set_hook(Box::new(|info| {
            eprintln!("{info}");
            std::process::abort();
        }));
        let dir = std::env::temp_dir().join(format!("ipcbus-fuzz-http-{}", std::process::id()));
        let token = "0123456789abcdef0123456789abcdef".to_owned();
        std::fs::create_dir_all(&dir).expect("data dir");
        std::fs::write(dir.join("token"), format!("{token}\n")).expect("token");
        let config = ipcbus::Config {
            data_dir: Some(dir),
            selftest: false,
            workers: 1,
            // Inputs are small; so are the limits, so that they are met.
            max_value_bytes: 4096,
            max_frame_bytes: 8192,
            ..ipcbus::Config::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            actix_rt::System::new()
                .block_on(ipcbus::serve(listener, config, std::future::pending()))
                .expect("server failed");
        });
        (addr, token)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (addr, token) = server();
    ipcbus_fuzz::http::http_request(*addr, token, data);
});
