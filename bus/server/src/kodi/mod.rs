//! The Kodi bridge (`ipcbus serve --kodi ws://HOST:9090/jsonrpc`): follows a
//! Kodi's JSON-RPC notifications and publishes `kodi.player.state` and
//! `kodi.player.item` (shapes in docs/kodi.md) without any Kodi addon.
//!
//! - `rpc`: JSON-RPC over tokio-tungstenite (ids, pending replies, timeouts).
//! - `sync`: one connection's work (read the player, follow notifications).
//! - `player`: Kodi's replies turned into the two key values.
//! - `publish`: writes into the [`Registry`] in-process, like the HTTP API.
//!
//! [`run`] connects, reconnects with exponential backoff, pings Kodi
//! every [`PING_INTERVAL`], and ends when the server shuts down.

mod player;
mod publish;
mod rpc;
mod sync;

use ipcbus_actors::Registry;
use rpc::RpcError;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The key of the playback state.
pub const STATE_KEY: &str = "kodi.player.state";
/// The key of the playing item.
pub const ITEM_KEY: &str = "kodi.player.item";
/// First wait before reconnecting; it doubles after each failure.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
/// Longest wait between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often the connection is checked with `JSONRPC.Ping`, busy or not; a ping
/// without reply (after `rpc::REQUEST_TIMEOUT`) ends the connection, so a
/// Kodi that vanished from the LAN without closing is noticed.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

/// Checks a `--kodi` URL: `ws://host[:port]/path`. Kodi serves no TLS on
/// its JSON-RPC port, and this build has none, so `wss://` is refused too.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    use tokio_tungstenite::tungstenite::http::Uri;
    let uri: Uri = url
        .parse()
        .map_err(|_| "not a URL; expected ws://HOST:9090/jsonrpc")?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => return Err(
            "wss:// is not supported: Kodi's JSON-RPC WebSocket is plain ws://HOST:9090/jsonrpc",
        ),
        _ => return Err("the scheme must be ws://, e.g. ws://HOST:9090/jsonrpc"),
    }
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err("no host; expected ws://HOST:9090/jsonrpc"),
    }
}

/// The bridge's connection, for `/health`.
#[derive(Debug, Default)]
pub struct KodiStatus(AtomicU8);

impl KodiStatus {
    // 0, the default: connecting.
    const CONNECTED: u8 = 1;
    const RETRYING: u8 = 2;

    /// `connecting` (first attempt), `connected` or `retrying`.
    pub fn as_str(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            Self::CONNECTED => "connected",
            Self::RETRYING => "retrying",
            _ => "connecting",
        }
    }

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }
}

/// Exponential backoff: [`BACKOFF_INITIAL`] doubling up to [`BACKOFF_MAX`].
#[derive(Debug)]
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(BACKOFF_INITIAL)
    }

    /// The wait before the next attempt; doubles the one after.
    fn next_delay(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        delay
    }

    fn reset(&mut self) {
        self.0 = BACKOFF_INITIAL;
    }
}

/// Runs the bridge to Kodi at `url` until `shutdown` turns true. Must run
/// inside the server's actix system (writes may start key actors).
pub async fn run(
    url: String,
    registry: Registry,
    status: Arc<KodiStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut out = publish::Publisher::new(registry);
    let mut backoff = Backoff::new();
    // Whether the last attempt already logged that Kodi is unreachable.
    let mut warned = false;
    loop {
        let mut synced = false;
        let why = tokio::select! {
            why = connection(&url, &mut out, &status, &mut synced) => why,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        if synced {
            backoff.reset();
            // "Lost" says it; the failed attempts that follow need not.
            warned = true;
            tracing::warn!(%url, "lost Kodi: {why}; reconnecting");
            // The bus does not claim a playback it can no longer see.
            out.set(STATE_KEY, &player::State::stopped()).await;
            out.del(ITEM_KEY).await;
        } else if !warned {
            warned = true;
            tracing::warn!(%url, "cannot reach Kodi: {why}; retrying every {BACKOFF_INITIAL:?} to {BACKOFF_MAX:?}");
        } else {
            tracing::debug!(%url, "cannot reach Kodi: {why}");
        }
        status.set(KodiStatus::RETRYING);
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// One connection: connect, publish what plays, then follow notifications
/// until the connection fails; returns why. Sets `synced` once the first
/// read of the player succeeded.
async fn connection(
    url: &str,
    out: &mut publish::Publisher,
    status: &KodiStatus,
    synced: &mut bool,
) -> RpcError {
    let (rpc, reader, mut notes) = match rpc::connect(url).await {
        Ok(parts) => parts,
        Err(e) => return e,
    };
    out.forget();
    let work = async {
        let mut sync = sync::Sync::new(&rpc, out);
        if let Err(e) = sync.resync().await {
            return e;
        }
        *synced = true;
        status.set(KodiStatus::CONNECTED);
        tracing::info!(%url, "connected to Kodi; publishing kodi.player.*");
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.reset();
        loop {
            tokio::select! {
                note = notes.recv() => match note {
                    Some(n) => sync.handle(n).await,
                    None => return RpcError::Closed,
                },
                _ = ping.tick() => {
                    if let Err(e) = rpc.call("JSONRPC.Ping", serde_json::json!({})).await {
                        return e;
                    }
                }
            }
        }
    };
    tokio::select! {
        why = reader.run() => why,
        why = work => why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..10).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(
            waits,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_INITIAL);
    }

    #[test]
    fn only_plain_websocket_urls_with_a_host() {
        assert!(check_url("ws://127.0.0.1:9090/jsonrpc").is_ok());
        assert!(check_url("ws://kodi.lan/jsonrpc").is_ok());
        for bad in [
            "http://127.0.0.1:9090/jsonrpc",
            "wss://kodi/jsonrpc",
            "127.0.0.1:9090",
            "ws:///jsonrpc",
            "",
            "kodi",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
