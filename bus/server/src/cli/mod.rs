//! The `ipcbus` command line: `serve` runs the bus; `get`, `set`, `del`,
//! `keys`, `dump` and `watch` are a small client that reads and writes JSON;
//! `ui` opens the dashboard; `stats` prints the server's figures once a
//! second (`stats.rs`).

mod connect;
mod stats;
mod ui;

use crate::config::{Config, ConfigError};
use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use ipcbus_client::{Client, Event, SetOptions, Subscription};
use ipcbus_protocol::transcode::{json_to_msgpack, msgpack_to_json, msgpack_to_json_value};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "ipcbus",
    version,
    about = "A publish/subscribe bus for live data over WebSocket"
)]
pub struct Cli {
    /// Server to talk to (client commands).
    #[arg(
        long,
        global = true,
        env = "IPCBUS_URL",
        default_value = "ws://127.0.0.1:9099/ws"
    )]
    url: String,
    /// The server's access token (client commands) [default: $IPCBUS_TOKEN,
    /// else the token file].
    #[arg(long, global = true)]
    token: Option<String>,
    /// File holding the access token (client commands) [default:
    /// $IPCBUS_TOKEN_FILE, else `token` in $IPCBUS_DATA_DIR or the platform
    /// data directory].
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the bus.
    Serve(Box<ServeArgs>),
    /// Print a key's value as JSON.
    Get {
        /// The key.
        key: String,
    },
    /// Set a key to a JSON value, from the argument or from stdin.
    Set {
        /// The key.
        key: String,
        /// The value as JSON (strings need quotes: '"text"'); read from stdin if absent.
        value: Option<String>,
        /// Only if the key's current rev is this (0: only if absent).
        #[arg(long)]
        if_rev: Option<u64>,
        /// Write it to disk before the server answers, so it survives restarts.
        #[arg(long)]
        persist: bool,
        /// Delete the key after this many milliseconds.
        #[arg(long)]
        ttl_ms: Option<u64>,
    },
    /// Delete a key.
    Del {
        /// The key.
        key: String,
        /// Only if the key's current rev is this.
        #[arg(long)]
        if_rev: Option<u64>,
    },
    /// List keys and revs as JSON lines.
    Keys {
        /// Only keys matching this pattern (`*` one token, `>` the rest).
        pattern: Option<String>,
    },
    /// Print every matching key with its value and rev, one JSON line each, then exit.
    Dump {
        /// Key or pattern [default: every key].
        #[arg(default_value = ">")]
        pattern: String,
    },
    /// Print one JSON line per event until interrupted.
    Watch {
        /// Key or pattern.
        pattern: String,
        /// Replay only keys whose rev is above this.
        #[arg(long)]
        since: Option<u64>,
    },
    /// Print the dashboard's URL (with the token) and open it in a browser.
    Ui {
        /// Only print the URL. (A browser started by this command gets the
        /// URL, token included, on its command line, which other local
        /// users can see.)
        #[arg(long)]
        no_open: bool,
    },
    /// Print the server's figures (from /metrics) once a second until interrupted.
    Stats {
        /// Stop after this many lines.
        #[arg(long)]
        count: Option<u64>,
    },
}

/// `ipcbus serve` settings; each overrides `IPCBUS_*`, which overrides the file.
#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "IPCBUS_CONFIG")]
    config: Option<PathBuf>,
    /// Address to bind [default: 127.0.0.1].
    #[arg(long, env = "IPCBUS_HOST")]
    host: Option<IpAddr>,
    /// Port to bind [default: 9099].
    #[arg(long, env = "IPCBUS_PORT")]
    port: Option<u16>,
    /// Worker threads; 0 for one per CPU [default: 1].
    #[arg(long, env = "IPCBUS_WORKERS")]
    workers: Option<usize>,
    /// Largest value, in bytes [default: 1048576].
    #[arg(long, env = "IPCBUS_MAX_VALUE_BYTES")]
    max_value_bytes: Option<usize>,
    /// Largest WebSocket message, in bytes [default: 1114112].
    #[arg(long, env = "IPCBUS_MAX_FRAME_BYTES")]
    max_frame_bytes: Option<usize>,
    /// Per-session outbox budget before conflation, in bytes [default: 1048576].
    #[arg(long, env = "IPCBUS_OUTBOX_BYTES")]
    outbox_bytes: Option<usize>,
    /// Items a session's outbox holds at most before the session is closed
    /// as too far behind [default: 32768].
    #[arg(long, env = "IPCBUS_OUTBOX_EVENTS")]
    outbox_events: Option<usize>,
    /// Requests in flight per session before reading pauses [default: 1024].
    #[arg(long, env = "IPCBUS_MAX_INFLIGHT")]
    max_inflight: Option<usize>,
    /// Subscriptions per session [default: 4096].
    #[arg(long, env = "IPCBUS_MAX_SUBS")]
    max_subs: Option<usize>,
    /// Drop a connection that stops reading for this long, in ms [default: 60000].
    #[arg(long, env = "IPCBUS_STALL_TIMEOUT_MS")]
    stall_timeout_ms: Option<u64>,
    /// Ping each client this often, in ms [default: 10000].
    #[arg(long, env = "IPCBUS_HEARTBEAT_MS")]
    heartbeat_ms: Option<u64>,
    /// Disconnect a client silent this long, in ms [default: 30000].
    #[arg(long, env = "IPCBUS_CLIENT_TIMEOUT_MS")]
    client_timeout_ms: Option<u64>,
    /// Skip the startup self-test.
    #[arg(long, env = "IPCBUS_NO_SELFTEST")]
    no_selftest: bool,
    /// Where the store and the token live [default: ~/.local/share/ipcbus on Linux].
    #[arg(long, env = "IPCBUS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The token file [default: <data dir>/token].
    #[arg(long, env = "IPCBUS_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Accept clients without the token (loopback addresses only).
    #[arg(long, env = "IPCBUS_NO_AUTH")]
    no_auth: bool,
    /// A browser origin to let in, e.g. http://localhost:8080 (repeatable; * for any).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Persist every non-ephemeral write.
    #[arg(long, env = "IPCBUS_PERSIST_ALL")]
    persist_all: bool,
    /// Open WebSocket sessions [default: 1024].
    #[arg(long, env = "IPCBUS_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Keys with a value [default: 1000000].
    #[arg(long, env = "IPCBUS_MAX_KEYS")]
    max_keys: Option<usize>,
    /// Longest key or pattern, in bytes [default: 256].
    #[arg(long, env = "IPCBUS_MAX_KEY_BYTES")]
    max_key_bytes: Option<usize>,
    /// Publish kodi.player.* from Kodi's JSON-RPC, e.g. ws://192.168.1.20:9090/jsonrpc
    /// (no addon needed; Kodi must allow remote control from other systems).
    #[arg(long, env = "IPCBUS_KODI", value_name = "URL")]
    kodi: Option<String>,
    /// Share the keyspace with other servers through NATS JetStream, e.g.
    /// nats://10.0.0.2:4222,nats://10.0.0.3:4222 (more settings: [backplane]
    /// in the TOML file; docs/scaling.md).
    #[arg(long, env = "IPCBUS_BACKPLANE", value_name = "URLS")]
    backplane: Option<String>,
}

impl ServeArgs {
    fn into_config(self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! take {
            ($($field:ident),*) => { $(if let Some(v) = self.$field { c.$field = v; })* };
        }
        take!(
            stall_timeout_ms,
            host,
            port,
            workers,
            max_value_bytes,
            max_frame_bytes,
            outbox_bytes,
            outbox_events,
            max_inflight,
            max_subs,
            max_connections,
            max_keys,
            max_key_bytes,
            heartbeat_ms,
            client_timeout_ms
        );
        if self.data_dir.is_some() {
            c.data_dir = self.data_dir;
        }
        if self.token_file.is_some() {
            c.token_file = self.token_file;
        }
        if self.kodi.is_some() {
            c.kodi = self.kodi;
        }
        if let Some(urls) = &self.backplane {
            c.backplane = Some(c.backplane.take().unwrap_or_default().with_servers(urls));
        }
        c.allowed_origins.extend(self.allowed_origins);
        if self.no_selftest {
            c.selftest = false;
        }
        if self.no_auth {
            c.auth = false;
        }
        if self.persist_all {
            c.persist_all = true;
        }
        c.validate()?;
        Ok(c)
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad settings.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server could not start or stopped with an error.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    /// A client request failed.
    #[error(transparent)]
    Client(#[from] ipcbus_client::Error),
    /// The user's input is unusable.
    #[error("{0}")]
    Input(String),
}

/// Parses the command line and runs the command.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve(args.into_config()?),
        Command::Ui { no_open } => ui::run(&cli.url, cli.token, cli.token_file.as_deref(), no_open),
        Command::Stats { count } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(stats::run(
                &cli.url,
                cli.token,
                cli.token_file.as_deref(),
                count,
            )),
        command => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // `dump` and `watch` (without `--since`) subscribe as they connect.
            let pattern = match &command {
                Command::Dump { pattern }
                | Command::Watch {
                    pattern,
                    since: None,
                } => Some(pattern.clone()),
                _ => None,
            };
            let patterns = Vec::from_iter(pattern.as_deref());
            rt.block_on(async {
                let (client, mut subs) =
                    connect::connect(&cli.url, cli.token, cli.token_file.as_deref(), &patterns)
                        .await?;
                client_command(client, subs.pop(), command).await
            })
        }
    }
}

fn serve(config: Config) -> Result<(), CliError> {
    let listener = TcpListener::bind((config.host, config.port)).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            "; another program (or another ipcbus) listens there: stop it, or choose another \
             port with --port"
        } else {
            ""
        };
        CliError::Input(format!(
            "cannot bind {}:{}: {e}{hint}",
            config.host, config.port
        ))
    })?;
    actix_web::rt::System::new().block_on(async {
        let shutdown = shutdown_signal();
        crate::serve(listener, config, shutdown).await
    })?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are in place when this
/// returns, before the server says it listens: a SIGTERM sent as soon as
/// that line appears still shuts it down cleanly (the data file closed, so
/// the store id kept), instead of killing it.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let (int, term) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        match (int, term) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Carries out `command`; `sub` is the subscription `dump` or `watch` made
/// as it connected, if any.
async fn client_command(
    client: Client,
    sub: Option<Subscription>,
    command: Command,
) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Serve(_) | Command::Ui { .. } | Command::Stats { .. } => {
            unreachable!("handled by run")
        }
        Command::Get { key } => {
            let (value, _) = client.get_raw(&key).await?;
            writeln!(out, "{}", json(&value)?)?;
        }
        Command::Set {
            key,
            value,
            if_rev,
            persist,
            ttl_ms,
        } => {
            let text = match value {
                Some(v) => v,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s
                }
            };
            let value = json_to_msgpack(text.trim()).map_err(|e| {
                CliError::Input(format!(
                    "{} (strings need JSON quotes, e.g. '\"text\"')",
                    e.error.msg
                ))
            })?;
            let options = SetOptions {
                if_rev,
                persist,
                ttl: ttl_ms.map(std::time::Duration::from_millis),
                ..SetOptions::default()
            };
            let rev = client.set_raw_with(&key, value, options).await?;
            writeln!(out, "{}", serde_json::json!({ "rev": rev }))?;
        }
        Command::Del { key, if_rev } => {
            let rev = match if_rev {
                Some(r) => client.del_if(&key, r).await?,
                None => client.del(&key).await?,
            };
            writeln!(out, "{}", serde_json::json!({ "rev": rev }))?;
        }
        Command::Keys { pattern } => {
            for (key, rev) in client.keys(pattern.as_deref()).await? {
                writeln!(out, "{}", serde_json::json!({ "key": key, "rev": rev }))?;
            }
        }
        Command::Dump { pattern } => {
            // The subscription's replay: each current value once, then
            // `synced`. A key deleted meanwhile is left out.
            let mut sub = match sub {
                Some(sub) => sub,
                None => client.subscribe(&pattern).await?,
            };
            while let Some(event) = sub.next().await {
                match event {
                    Event::Value { key, rev, value } => {
                        let value = msgpack_to_json_value(&value)
                            .map_err(|e| CliError::Input(e.error.msg.into_owned()))?;
                        let line = serde_json::json!({ "key": key, "rev": rev, "value": value });
                        writeln!(out, "{line}")?;
                    }
                    Event::Deleted { .. } => {}
                    Event::Synced => return Ok(()),
                }
            }
            return Err(ended(&client));
        }
        Command::Watch { pattern, since } => {
            let mut sub = match sub {
                Some(sub) => sub,
                None => client.subscribe_since(&pattern, since).await?,
            };
            while let Some(event) = sub.next().await {
                let line = match &event {
                    Event::Value { key, rev, value } => {
                        let value = msgpack_to_json_value(value)
                            .map_err(|e| CliError::Input(e.error.msg.into_owned()))?;
                        serde_json::json!({ "ev": "val", "key": key, "rev": rev, "value": value })
                    }
                    Event::Deleted { key, rev } => {
                        serde_json::json!({ "ev": "del", "key": key, "rev": rev })
                    }
                    Event::Synced => serde_json::json!({ "ev": "synced" }),
                };
                writeln!(out, "{line}")?;
                out.flush()?;
            }
            return Err(ended(&client));
        }
    }
    Ok(())
}

/// The error for a subscription that ended: the client closed, and why
/// (the CLI does not reconnect).
fn ended(client: &Client) -> CliError {
    let reason = client.state().borrow().reason.clone();
    CliError::Client(ipcbus_client::Error::Unavailable {
        reason,
        maybe_applied: false,
    })
}

fn json(value: &[u8]) -> Result<Box<serde_json::value::RawValue>, CliError> {
    msgpack_to_json(value).map_err(|e| CliError::Input(e.error.msg.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from([&["ipcbus", "serve"], args].concat()).expect("parse");
        match cli.command {
            Command::Serve(args) => *args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("ipcbus-cli-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("ipcbus.toml");
        std::fs::write(&file, "port = 7000\nmax_subs = 3\nselftest = true\n").expect("write");
        let path = file.to_str().expect("utf8 path");
        let c = serve_args(&["--config", path, "--port", "7001", "--no-selftest"])
            .into_config()
            .expect("config");
        assert_eq!((c.port, c.max_subs, c.selftest), (7001, 3, false));
        assert_eq!(c.max_inflight, Config::default().max_inflight);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
