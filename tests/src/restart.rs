//! A server that a test stops and starts again on the same port, with the
//! same data directory and token: what a client sees when the bus restarts.

use crate::TestServer;
use ipcbus::Config;
use std::net::{SocketAddr, TcpListener};

/// A server that can be stopped and started again. Its data directory is
/// removed on drop.
pub struct Restartable {
    addr: SocketAddr,
    config: Config,
    token: Option<String>,
    running: Option<TestServer>,
    _dir: tempfile::TempDir,
}

impl Restartable {
    /// Starts a server with test defaults.
    pub fn start() -> Restartable {
        Restartable::with_config(crate::test_config())
    }

    /// Starts a server with `config` (its data directory is replaced by
    /// one of the restartable's own).
    pub fn with_config(mut config: Config) -> Restartable {
        let dir = tempfile::tempdir().expect("temp data dir");
        config.data_dir = Some(dir.path().to_owned());
        let server = TestServer::with_config(config.clone());
        Restartable {
            addr: server.addr(),
            token: server.token().map(str::to_owned),
            config,
            running: Some(server),
            _dir: dir,
        }
    }

    /// A server that has not started yet, on a port kept free for it.
    pub fn not_started() -> Restartable {
        let mut server = Restartable::start();
        server.stop_blocking();
        server
    }

    /// `ws://127.0.0.1:PORT/ws?token=…`, the same across restarts.
    pub fn url(&self) -> String {
        match &self.token {
            Some(token) => format!("ws://{}/ws?token={token}", self.addr),
            None => format!("ws://{}/ws", self.addr),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The access token.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Stops the server (gracefully: sessions are closed with 1001) and
    /// waits until it has, off the async runtime so that clients on it
    /// can answer the close.
    pub async fn stop(&mut self) {
        if let Some(server) = self.running.take() {
            tokio::task::spawn_blocking(move || drop(server))
                .await
                .expect("server stopped");
        }
    }

    /// Stops the server, from a test with no async runtime.
    pub fn stop_blocking(&mut self) {
        self.running.take();
    }

    /// Starts the server again on the same port and data directory.
    pub fn start_again(&mut self) {
        assert!(self.running.is_none(), "the server is running");
        // std binds with SO_REUSEADDR on Unix: the old connections' TIME_WAIT
        // does not keep the port.
        let listener = TcpListener::bind(self.addr).expect("bind the same port again");
        self.running = Some(TestServer::on(
            listener,
            self.config.clone(),
            self.token.clone(),
        ));
    }
}
