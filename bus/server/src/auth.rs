//! Access control: the token every request must carry, and the browser
//! `Origin` check that keeps web pages out (cross-site WebSocket hijacking).
//! `docs/security.md` explains the threat model.

use crate::config::Config;
use crate::private::PrivateError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// Random bytes in a new token (shown as twice as many hex digits).
const TOKEN_BYTES: usize = 32;
/// The shortest token a token file may hold: 16 characters, 64 bits as hex.
const MIN_TOKEN_CHARS: usize = 16;

/// What a request must show to get in.
#[derive(Debug)]
pub(crate) struct Access {
    /// `None` with `--no-auth`.
    token: Option<String>,
    /// Extra allowed origins, lowercased, without a trailing `/`.
    origins: Vec<String>,
    any_origin: bool,
}

/// Why the token could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    /// The file or its directory could not be read or written.
    #[error("token file {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file exists but holds no token.
    #[error("token file {0} is empty; delete it and a new token is made at the next start")]
    Empty(PathBuf),
    /// The token is too easy to guess.
    #[error(
        "token file {path} holds a token of {len} characters; at least {MIN_TOKEN_CHARS} are \
         needed. Delete the file and a new random token is made at the next start"
    )]
    Short {
        /// The file.
        path: PathBuf,
        /// The token's length in characters.
        len: usize,
    },
    /// A symlink, or owned by another user.
    #[error(transparent)]
    Private(#[from] PrivateError),
}

impl Access {
    /// Loads the token (making one if needed) as `config` says.
    pub(crate) fn from_config(config: &Config, data_dir: &Path) -> Result<Access, TokenError> {
        let token = if config.auth {
            let file = config
                .token_file
                .clone()
                .unwrap_or_else(|| data_dir.join(ipcbus_protocol::auth::TOKEN_FILE_NAME));
            let token = load_or_create(&file)?;
            if ipcbus_protocol::auth::platform_token_file().as_deref() == Some(file.as_path()) {
                tracing::info!(
                    "access token in {} (clients of this user on this machine read it from \
                     there by themselves)",
                    file.display()
                );
            } else {
                // Not where clients look by default: say what they need.
                let kodi = if file.to_string_lossy().contains("service.ipcbus") {
                    "; addons inside Kodi find it by themselves"
                } else {
                    ""
                };
                tracing::info!(
                    "access token in {}; clients find it only when told: IPCBUS_TOKEN_FILE={} \
                     (or the CLI's --token-file){kodi}",
                    file.display(),
                    file.display()
                );
            }
            Some(token)
        } else {
            tracing::warn!(
                "authentication is OFF (--no-auth): every local user and program can use this bus"
            );
            None
        };
        let origins: Vec<String> = config
            .allowed_origins
            .iter()
            .map(|o| normalize(o))
            .collect();
        Ok(Access {
            token,
            any_origin: origins.iter().any(|o| o == "*"),
            origins,
        })
    }

    /// The token clients must show; `None` with `--no-auth`.
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Checks the `Origin` and, if `token` is set, the token.
    pub(crate) fn check(&self, req: &HttpRequest, token: bool) -> Result<(), Refusal> {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = normalize(origin.to_str().unwrap_or(""));
            if !self.origin_allowed(&origin, req) {
                return Err(Refusal::Origin(origin));
            }
        }
        match &self.token {
            Some(want) if token && !token_matches(req, want) => Err(Refusal::Token),
            _ => Ok(()),
        }
    }

    /// CORS for the pages of the listed origins (`--allow-origin`), so that
    /// they can `fetch` the HTTP API: preflights answered, and
    /// `Access-Control-Allow-Origin` on the responses. A request from any
    /// other origin gets no CORS headers, and [`guard`] refuses it (403).
    pub(crate) fn cors(&self) -> actix_cors::Cors {
        let origins = self.origins.clone();
        let any = self.any_origin;
        actix_cors::Cors::default()
            .allowed_origin_fn(move |origin, _| {
                any || origins.contains(&normalize(origin.to_str().unwrap_or("")))
            })
            .allowed_methods(["GET", "PUT", "DELETE", "POST"])
            .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(600)
            // Not a listed origin: no CORS headers; the guard decides.
            .block_on_origin_mismatch(false)
    }

    fn origin_allowed(&self, origin: &str, req: &HttpRequest) -> bool {
        self.any_origin || self.origins.iter().any(|o| o == origin) || is_own_origin(origin, req)
    }
}

/// An origin as compared: lowercased, without a trailing `/` (not part of
/// an origin, RFC 6454, though some clients send one).
fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether `origin` is the server itself, as the request addressed it. Only
/// IP literals and `localhost` count: a page whose host name resolves to
/// this machine (DNS rebinding) must not pass as the server's own origin.
fn is_own_origin(origin: &str, req: &HttpRequest) -> bool {
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !authority.eq_ignore_ascii_case(host) {
        return false;
    }
    let name = match authority.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => authority,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

fn token_matches(req: &HttpRequest, want: &str) -> bool {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            // The scheme name is case-insensitive (RFC 9110 §11.1).
            let (scheme, token) = h.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(str::trim);
    let query = || {
        web::Query::<TokenQuery>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.into_inner().token)
    };
    let matches = |given: &str| bool::from(given.as_bytes().ct_eq(want.as_bytes()));
    bearer.is_some_and(matches) || query().is_some_and(|q| matches(&q))
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Why a request was turned away.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// 403: a browser page from this origin may not use the bus.
    Origin(String),
    /// 401: no token, or a wrong one.
    Token,
}

impl Refusal {
    fn response(&self) -> HttpResponse {
        let body =
            |code: &str, msg: &str| serde_json::json!({ "error": { "code": code, "msg": msg } });
        match self {
            Refusal::Origin(origin) => HttpResponse::Forbidden().json(body(
                "forbidden",
                &format!("origin {origin:?} is not allowed; add it to allowed_origins to let that page in"),
            )),
            Refusal::Token => HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .json(body(
                    "unauthorized",
                    "missing or wrong token: send 'Authorization: Bearer <token>' or ?token=<token>; \
                     the token is in the server's token file",
                )),
        }
    }
}

/// Middleware: every route passes the origin check; all but `/health`,
/// the dashboard's files (`/ui/`, which hold no data) and CORS preflights
/// (a browser sends those without credentials; the CORS middleware inside
/// answers them) need the token.
pub(crate) async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let preflight = req.method() == actix_web::http::Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let needs_token = req.path() != "/health" && !crate::ui::is_ui_path(req.path()) && !preflight;
    let verdict = match req.app_data::<web::Data<crate::app::AppState>>() {
        Some(state) => state.access.check(req.request(), needs_token),
        None => Ok(()),
    };
    match verdict {
        Ok(()) => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
        Err(refusal) => {
            tracing::debug!(?refusal, path = req.path(), "request refused");
            if let Some(state) = req.app_data::<web::Data<crate::app::AppState>>() {
                state.metrics.refused(match refusal {
                    Refusal::Origin(_) => crate::metrics::Refused::Origin,
                    Refusal::Token => crate::metrics::Refused::Token,
                });
            }
            Ok(req.into_response(refusal.response()).map_into_right_body())
        }
    }
}

/// Reads the token file, or creates it (mode 0600, in a 0700 directory)
/// with a new random token.
fn load_or_create(path: &Path) -> Result<String, TokenError> {
    let io = |error| TokenError::Io {
        path: path.to_owned(),
        error,
    };
    // The data directory was checked at startup; another directory (given
    // with `--token-file`) is only created if missing, never changed: the
    // file itself must be ours, which a planted one cannot be.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private::create_dir(dir)?;
    }
    if crate::private::secure_file(path)? {
        std::fs::read(path).map_err(io)?;
        let token = ipcbus_protocol::auth::read_token_file(path)
            .ok_or_else(|| TokenError::Empty(path.to_owned()))?;
        let len = token.chars().count();
        if len < MIN_TOKEN_CHARS {
            return Err(TokenError::Short {
                path: path.to_owned(),
                len,
            });
        }
        return Ok(token);
    }
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = private_file(path).map_err(io)?;
    writeln!(file, "{token}")
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    tracing::info!("created a new access token in {}", path.display());
    Ok(token)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}
