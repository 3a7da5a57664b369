//! The ipcbus server: an actix-web app whose WebSocket sessions talk to the
//! key actors of `ipcbus-actors`, plus the `ipcbus` command line.
//!
//! # Layout
//! - [`config`]: [`Config`], its TOML file and the precedence of settings.
//! - `auth`: the access token and the browser `Origin` check.
//! - `private`: the data directory and its files belong to this user, as ssh checks its keys.
//! - `fds`: the open-file limit, raised at startup, and the connections it allows.
//! - `app`: the HTTP app (`/ws`, `/health`) and [`serve`], which runs it on a bound listener.
//! - `http`: the HTTP API (`/v1/keys`), for curl and shell scripts.
//! - `request`: `Requester`, requests to key actors from outside a session
//!   (the HTTP API, the Kodi bridge).
//! - `ws`: the WebSocket transport (the only module that knows `actix-web-actors`).
//! - `session`: one session's subscriptions and request dispatch.
//! - `selftest`: the self-test over a real socket, at startup and on `POST /v1/selftest`.
//! - `sys`: the server's own keys (`ipcbus.sys.*`): refused to clients; `ipcbus.sys.stats`.
//! - `metrics`: `GET /metrics` in the Prometheus text format, and the handles the hot paths bump.
//! - [`kodi`]: the bridge from Kodi's JSON-RPC (`serve --kodi`), publishing `kodi.player.*`.
//! - `backplane`: several servers share one keyspace through a NATS JetStream
//!   bucket (docs/scaling.md; being built: the key-to-subject mapping).
//! - [`ui`]: the dashboard at `/ui/`, its files embedded in the binary.
//! - [`cli`]: the `ipcbus` command line (`serve`, `get`, `set`, `del`, `keys`, `watch`, `stats`).
//!
//! `main.rs` only parses arguments and calls [`cli::run`].

mod app;
mod auth;
pub mod backplane;
pub mod cli;
pub mod config;
mod fds;
mod http;
pub mod kodi;
mod metrics;
mod private;
mod request;
mod selftest;
mod session;
mod sys;
pub mod ui;
mod ws;

pub use app::serve;
pub use config::Config;
pub use ws::{CLIENT_TIMEOUT, HEARTBEAT_INTERVAL};

/// `ipcbus/<version>`, as sent in `hello` and `/health`.
pub const SERVER_NAME: &str = concat!("ipcbus/", env!("CARGO_PKG_VERSION"));
