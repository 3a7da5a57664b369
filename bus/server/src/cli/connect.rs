//! How the client commands connect: the token from `--token`,
//! `--token-file` or the usual lookup, and errors that say what to do
//! (a refused connection once, with the URL; a 401 with where the token
//! came from and how to give another).

use super::CliError;
use ipcbus_client::{Client, ClientOptions, Error, Subscription};
use ipcbus_protocol::auth;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use tokio_tungstenite::tungstenite;

/// Where the token a command sends comes from.
#[derive(Debug)]
pub(super) enum Source {
    /// `--token`, or `$IPCBUS_TOKEN`: the name.
    Given(&'static str),
    /// A file: `--token-file`, `$IPCBUS_TOKEN_FILE` or the data directory's.
    File(PathBuf),
    /// None found; the file looked for, if any.
    Missing(Option<PathBuf>),
}

/// Connects to `url` with the first of: `token` (`--token`), the token in
/// `token_file` (`--token-file`), `$IPCBUS_TOKEN`, the default token file.
/// The subscriptions to `patterns` are made in the upgrade request
/// (protocol.md §5.1), so their first values need no round trip of their own.
pub(super) async fn connect(
    url: &str,
    token: Option<String>,
    token_file: Option<&Path>,
    patterns: &[&str],
) -> Result<(Client, Vec<Subscription>), CliError> {
    let (token, source) = find_token(token, token_file)?;
    // A one-shot tool: one attempt, its error as it is, and no reconnect
    // (`watch` ends when the connection does).
    let options = ClientOptions {
        token,
        fail_fast: true,
        reconnect: false,
        ..ClientOptions::default()
    };
    let connected = if patterns.is_empty() {
        Client::connect_with(url, options)
            .await
            .map(|c| (c, Vec::new()))
    } else {
        Client::connect_subscribed(url, options, patterns).await
    };
    connected.map_err(|e| explain(url, &source, e))
}

/// The token to send, and where it came from: `token` (`--token`), the
/// token in `token_file` (`--token-file`), `$IPCBUS_TOKEN`, the default
/// token file.
pub(super) fn find_token(
    token: Option<String>,
    token_file: Option<&Path>,
) -> Result<(Option<String>, Source), CliError> {
    let env = std::env::var(auth::TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let (token, source) = match (token, token_file, env) {
        (Some(token), _, _) => (Some(token), Source::Given("--token")),
        (None, Some(file), _) => match auth::read_token_file(file) {
            Some(token) => (Some(token), Source::File(file.to_owned())),
            None => {
                return Err(CliError::Input(format!(
                    "cannot read a token from {} (--token-file)",
                    file.display()
                )))
            }
        },
        (None, None, Some(token)) => (Some(token), Source::Given("IPCBUS_TOKEN")),
        (None, None, None) => {
            let file = auth::default_token_file();
            match file.as_deref().and_then(auth::read_token_file) {
                Some(token) => (Some(token), Source::File(file.unwrap_or_default())),
                None => (None, Source::Missing(file)),
            }
        }
    };
    Ok((token, source))
}

/// Says where the token sent came from, for a 401.
pub(super) fn token_origin(source: &Source) -> String {
    match source {
        Source::Given(name) => format!("the token came from {name}"),
        Source::File(file) => format!("the token came from {}", file.display()),
        Source::Missing(Some(file)) => {
            format!(
                "no token was sent: {} does not exist or is empty",
                file.display()
            )
        }
        Source::Missing(None) => "no token was sent (no data directory here)".to_owned(),
    }
}

/// What to do when no server answers.
pub(super) const SERVER_HINT: &str =
    "is `ipcbus serve` running, and on this port? Another server: \
                                      --url or IPCBUS_URL";
/// What to do when the token is refused.
pub(super) const TOKEN_HINT: &str = "Give the right one with --token, --token-file, IPCBUS_TOKEN, \
                                     or IPCBUS_DATA_DIR (the data directory of the server)";

fn explain(url: &str, source: &Source, error: Error) -> CliError {
    let message = match error {
        Error::WebSocket(tungstenite::Error::Io(io))
            if io.kind() == ErrorKind::ConnectionRefused =>
        {
            format!("cannot connect to {url}: connection refused; {SERVER_HINT}")
        }
        Error::WebSocket(tungstenite::Error::Io(io)) => {
            format!("cannot connect to {url}: {io}; {SERVER_HINT}")
        }
        Error::Refused { status: 401, msg } => {
            let from = token_origin(source);
            format!("{url} refused the connection (401: {msg}); {from}. {TOKEN_HINT}")
        }
        other => return CliError::Client(other),
    };
    CliError::Input(message)
}
