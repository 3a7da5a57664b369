//! Server settings. Precedence, highest first: command-line flags, `IPCBUS_*`
//! environment variables, the TOML file named by `--config`, built-in defaults.

use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Default port: the one the old `service.ipcdatastore` used.
pub const DEFAULT_PORT: u16 = 9099;

/// The smallest `outbox_events`: a replay goes at the pace its reader
/// takes it, but may run up to 128 events past the outbox's budget.
const MIN_OUTBOX_EVENTS: usize = 256;

/// Everything `ipcbus serve` can be told. Field names are the TOML keys.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to bind.
    pub host: IpAddr,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// Worker threads (each runs sessions and key actors); 0 means one per
    /// CPU. One by default: a local bus shares its machine with its
    /// clients, and on one thread a delivery crosses no thread
    /// (docs/benchmarks.md, Issue 17: the default worker count).
    pub workers: usize,
    /// Largest value a `set` may carry, in bytes of MessagePack.
    pub max_value_bytes: usize,
    /// Largest WebSocket message; larger ones close the connection with 1009.
    pub max_frame_bytes: usize,
    /// Byte budget of each session's outbox before events are conflated.
    pub outbox_bytes: usize,
    /// Items a session's outbox holds at most (past its byte budget, one
    /// event per subscription and key); a session further behind is closed
    /// (1008) so that its client reconnects to a fresh replay.
    pub outbox_events: usize,
    /// Requests a session may have in flight before the server stops reading it.
    pub max_inflight: usize,
    /// Subscriptions one session may hold.
    pub max_subs: usize,
    /// How long a connection may leave sent data unacknowledged, or keep a
    /// zero receive window (a client that stopped reading), before the
    /// kernel drops it (TCP_USER_TIMEOUT, Linux only), in milliseconds.
    pub stall_timeout_ms: u64,
    /// How often the server pings each client, in milliseconds.
    pub heartbeat_ms: u64,
    /// A client silent this long (no frame, no pong) is disconnected, and
    /// its ephemeral keys deleted, in milliseconds.
    pub client_timeout_ms: u64,
    /// Run the startup self-test.
    pub selftest: bool,
    /// Where the store and the token file live; the platform's data
    /// directory (`~/.local/share/ipcbus` on Linux) when unset.
    pub data_dir: Option<PathBuf>,
    /// The token file; `<data_dir>/token` when unset. Created (mode 0600)
    /// with a random token if missing.
    pub token_file: Option<PathBuf>,
    /// Require the token on `/ws` and `/v1/*`. Only a loopback server may
    /// run without it.
    pub auth: bool,
    /// Browser origins allowed besides the server's own, e.g.
    /// `http://localhost:8080`. `*` allows every origin.
    pub allowed_origins: Vec<String>,
    /// Persist every non-ephemeral write, as if each `set` had `persist`.
    pub persist_all: bool,
    /// Open WebSocket sessions; the upgrade gets 503 beyond it.
    pub max_connections: usize,
    /// Keys with a value; a `set` that would create one more fails with `limit`.
    pub max_keys: usize,
    /// Longest key or pattern, in bytes (at most 256, the protocol's limit).
    pub max_key_bytes: usize,
    /// Kodi's JSON-RPC WebSocket, e.g. `ws://192.168.1.20:9090/jsonrpc`:
    /// when set, the server publishes `kodi.player.*` from it (docs/kodi.md).
    pub kodi: Option<String>,
    /// Share the keyspace with other servers through a NATS JetStream
    /// bucket (`[backplane]`, docs/scaling.md).
    pub backplane: Option<crate::backplane::BackplaneConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: IpAddr::from([127, 0, 0, 1]),
            port: DEFAULT_PORT,
            workers: 1,
            max_value_bytes: 1 << 20,
            max_frame_bytes: (1 << 20) + (64 << 10),
            outbox_bytes: 1 << 20,
            outbox_events: 32 * 1024,
            max_inflight: 1024,
            max_subs: 4096,
            stall_timeout_ms: 60_000,
            heartbeat_ms: crate::HEARTBEAT_INTERVAL.as_millis() as u64,
            client_timeout_ms: crate::CLIENT_TIMEOUT.as_millis() as u64,
            selftest: true,
            data_dir: None,
            token_file: None,
            auth: true,
            allowed_origins: Vec::new(),
            persist_all: false,
            max_connections: 1024,
            max_keys: 1_000_000,
            max_key_bytes: ipcbus_protocol::MAX_KEY_BYTES,
            kodi: None,
            backplane: None,
        }
    }
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("invalid setting: {0}")]
    Invalid(&'static str),
    /// The `[backplane]` settings are unusable.
    #[error("{0}")]
    Backplane(String),
    /// The `kodi` URL is not a `ws://` URL with a host.
    #[error("invalid kodi URL {url:?}: {reason}")]
    KodiUrl {
        /// The URL as given.
        url: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// No data directory was given and the platform has none.
    #[error("no data directory: set --data-dir or IPCBUS_DATA_DIR")]
    NoDataDir,
}

impl Config {
    /// Reads a TOML file; missing keys keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let shown = || path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: shown(),
            source,
        })
    }

    /// Checks values that would make the server useless.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_value_bytes == 0 || self.max_frame_bytes == 0 {
            return Err(ConfigError::Invalid(
                "max_value_bytes and max_frame_bytes must be > 0",
            ));
        }
        if self.max_frame_bytes < self.max_value_bytes {
            return Err(ConfigError::Invalid(
                "max_frame_bytes must be >= max_value_bytes",
            ));
        }
        if self.stall_timeout_ms == 0 || self.stall_timeout_ms > u64::from(u32::MAX) {
            return Err(ConfigError::Invalid(
                "stall_timeout_ms must be 1 to 4294967295",
            ));
        }
        if self.heartbeat_ms == 0 || self.client_timeout_ms < self.heartbeat_ms {
            return Err(ConfigError::Invalid(
                "heartbeat_ms must be > 0 and client_timeout_ms >= heartbeat_ms",
            ));
        }
        if self.outbox_events < MIN_OUTBOX_EVENTS {
            return Err(ConfigError::Invalid(
                "outbox_events must be at least 256 (a replay may take an outbox 128 events past its budget)",
            ));
        }
        if [
            self.outbox_bytes,
            self.outbox_events,
            self.max_inflight,
            self.max_subs,
            self.max_connections,
            self.max_keys,
        ]
        .contains(&0)
        {
            return Err(ConfigError::Invalid(
                "outbox_bytes, max_inflight, max_subs, max_connections and max_keys must be > 0",
            ));
        }
        if self.max_key_bytes == 0 || self.max_key_bytes > ipcbus_protocol::MAX_KEY_BYTES {
            return Err(ConfigError::Invalid("max_key_bytes must be 1 to 256"));
        }
        if !self.auth && !self.host.is_loopback() {
            return Err(ConfigError::Invalid(
                "--no-auth is allowed only on a loopback address (127.0.0.1 or ::1); \
                 a server reachable from the network needs its token",
            ));
        }
        if let Some(url) = &self.kodi {
            crate::kodi::check_url(url).map_err(|reason| ConfigError::KodiUrl {
                url: url.clone(),
                reason,
            })?;
        }
        if let Some(backplane) = &self.backplane {
            backplane.check().map_err(ConfigError::Backplane)?;
        }
        Ok(())
    }

    /// The data directory: `data_dir`, else the platform default.
    pub fn data_dir(&self) -> Result<PathBuf, ConfigError> {
        self.data_dir
            .clone()
            .or_else(ipcbus_protocol::auth::default_data_dir)
            .ok_or(ConfigError::NoDataDir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_rejects_typos() {
        let c: Config = toml::from_str("port = 7000\nmax_subs = 3").expect("toml");
        assert_eq!((c.port, c.max_subs, c.max_inflight), (7000, 3, 1024));
        assert!(toml::from_str::<Config>("prot = 1").is_err());
        assert!(Config {
            max_frame_bytes: 10,
            ..Config::default()
        }
        .validate()
        .is_err());
        let c: Config = toml::from_str("kodi = \"ws://kodi.lan:9090/jsonrpc\"").expect("toml");
        assert!(c.validate().is_ok());
        let c: Config = toml::from_str("kodi = \"http://kodi.lan:9090\"").expect("toml");
        assert!(matches!(c.validate(), Err(ConfigError::KodiUrl { .. })));
    }
}
