//! The HTTP API, for curl, shell scripts and any language:
//! `GET|PUT|DELETE /v1/keys/{key}` and `GET /v1/keys?pattern=`.
//! Same limits and error codes as the WebSocket API; docs/http.md is its spec.

use crate::app::AppState;
use crate::request::{KeyMsg, Requester};
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use ipcbus_actors::{Del, Done, Get, ReplyTo, Set};
use ipcbus_protocol::transcode::json_to_msgpack;
use ipcbus_protocol::{msgpack, validate_key, ErrorBody, ErrorCode, Life, Pattern, MAX_TTL_MS};
use serde::Deserialize;

/// MessagePack media type; `application/x-msgpack` is accepted too.
const MSGPACK: &str = "application/msgpack";
/// How long a request waits for its key actor. Only a server fault (a key
/// actor gone) can exhaust it; the request then fails with `internal`.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The HTTP status of each protocol error code.
fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::UnknownOp
        | ErrorCode::BadKey
        | ErrorCode::BadPattern => StatusCode::BAD_REQUEST,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::RevMismatch => StatusCode::PRECONDITION_FAILED,
        ErrorCode::Limit => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        // 507 Insufficient Storage (RFC 4918).
        ErrorCode::Storage => StatusCode::INSUFFICIENT_STORAGE,
        // The backplane did not confirm the write in time (docs/scaling.md).
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

pub(crate) fn error(e: &ErrorBody) -> HttpResponse {
    HttpResponse::build(status(e.code)).json(serde_json::json!({ "error": e }))
}

fn bad(msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadRequest, msg.into())
}

fn respond(result: Result<HttpResponse, ErrorBody>) -> HttpResponse {
    result.unwrap_or_else(|e| error(&e))
}

/// Hands one request to a key actor and waits for its outcome, through a
/// one-off [`Requester`] (the same path a WebSocket session's requests take).
async fn call(
    state: &AppState,
    key: &str,
    create: bool,
    make: impl FnOnce(ReplyTo) -> KeyMsg,
) -> Result<Done, ErrorBody> {
    Requester::new(state.registry.clone(), 0, REPLY_TIMEOUT)
        .call(key, create, make)
        .await
}

/// The key in `/v1/keys/{key}`, percent-decoded. Bytes that are not UTF-8
/// are refused rather than replaced, so no request names a key it did not mean.
fn path_key(req: &HttpRequest) -> Result<String, ErrorBody> {
    let raw = req
        .uri()
        .path()
        .strip_prefix("/v1/keys/")
        .unwrap_or_default();
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| {
            ErrorBody::new(
                ErrorCode::BadKey,
                "the key is not UTF-8 once percent-decoded",
            )
        })
}

fn checked_key(key: &str) -> Result<&str, ErrorBody> {
    validate_key(key).map_err(|e| e.for_key())?;
    Ok(key)
}

/// The configured `max_key_bytes`, below the protocol's own limit, for a
/// key (`bad_key`) or a pattern (`bad_pattern`).
pub(crate) fn check_length(text: &str, max: usize, code: ErrorCode) -> Result<(), ErrorBody> {
    if text.len() > max {
        let what = if code == ErrorCode::BadPattern {
            "pattern"
        } else {
            "key"
        };
        let msg = format!(
            "{what} of {} bytes exceeds max_key_bytes ({max})",
            text.len()
        );
        return Err(ErrorBody::new(code, msg));
    }
    Ok(())
}

/// `If-Match: "N"` (or `N`) asks for rev N; `If-None-Match: *` for absence.
fn if_rev(headers: &HeaderMap) -> Result<Option<u64>, ErrorBody> {
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        return match v.to_str().map(str::trim) {
            Ok("*") => Ok(Some(0)),
            _ => Err(bad("only If-None-Match: * is supported")),
        };
    }
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or_default().trim().trim_matches('"');
    text.parse()
        .map(Some)
        .map_err(|_| bad("If-Match must be a rev, such as \"12\""))
}

fn etag(rev: u64) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{rev}\""))
}

fn rev_body(done: &Done) -> Result<HttpResponse, ErrorBody> {
    let &Done::Rev(rev) = done else {
        return Err(ErrorBody::new(ErrorCode::Internal, "unexpected reply"));
    };
    Ok(HttpResponse::Ok()
        .insert_header(etag(rev))
        .json(serde_json::json!({ "rev": rev })))
}

/// `GET /v1/keys/{key}`: the value as JSON (or MessagePack if the client
/// accepts `application/msgpack`), with its rev as the ETag.
pub(crate) async fn get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    respond(match path_key(&req) {
        Ok(key) => try_get(&req, &key, &state).await,
        Err(e) => Err(e),
    })
}

async fn try_get(
    req: &HttpRequest,
    key: &str,
    state: &AppState,
) -> Result<HttpResponse, ErrorBody> {
    let key = checked_key(key)?;
    let Done::Value(update) = call(state, key, false, |reply| KeyMsg::Get(Get { reply })).await?
    else {
        return Err(ErrorBody::new(ErrorCode::Internal, "unexpected reply"));
    };
    let value = update.value.as_ref().ok_or_else(ErrorBody::not_found)?;
    let mut resp = HttpResponse::Ok();
    resp.insert_header(etag(update.rev));
    if accepts_msgpack(req.headers()) {
        return Ok(resp.content_type(MSGPACK).body(value.clone()));
    }
    let json = update
        .json()
        .map_err(Clone::clone)?
        .ok_or_else(ErrorBody::not_found)?;
    Ok(resp
        .content_type("application/json")
        .body(json.get().to_owned()))
}

fn accepts_msgpack(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(MSGPACK) || v.contains("application/x-msgpack"))
}

/// `PUT /v1/keys/{key}`: the body is the value, JSON or MessagePack by
/// Content-Type (JSON when absent, and for curl's default form type).
pub(crate) async fn put(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    respond(match path_key(&req) {
        Ok(key) => try_put(&req, &key, body, &state).await,
        Err(e) => Err(e),
    })
}

async fn try_put(
    req: &HttpRequest,
    key: &str,
    body: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ErrorBody> {
    let key = checked_key(key)?;
    check_length(key, state.config.max_key_bytes, ErrorCode::BadKey)?;
    crate::sys::check_writable(key)?;
    let if_rev = if_rev(req.headers())?;
    let life = life(req)?;
    let body = read_body(body, state.config.max_frame_bytes).await?;
    let value = decode_value(req.headers(), &body)?;
    let max = state.config.max_value_bytes;
    if value.len() > max {
        let msg = format!(
            "value of {} bytes exceeds max_value_bytes ({max})",
            value.len()
        );
        return Err(ErrorBody::new(ErrorCode::TooLarge, msg));
    }
    let done = call(state, key, true, |reply| {
        KeyMsg::Set(Set {
            value,
            if_rev,
            life,
            reply,
        })
    })
    .await?;
    rev_body(&done)
}

#[derive(Deserialize)]
struct PutQuery {
    #[serde(default)]
    persist: bool,
    ttl_ms: Option<u64>,
    #[serde(default)]
    ephemeral: bool,
}

/// `?persist=true` and `?ttl_ms=N`, as the `set` fields of the same names.
fn life(req: &HttpRequest) -> Result<Life, ErrorBody> {
    let q = web::Query::<PutQuery>::from_query(req.query_string())
        .map_err(|e| bad(format!("bad query string: {e}")))?;
    if q.ephemeral {
        return Err(bad(
            "ephemeral keys need a WebSocket session: an HTTP request has no session to end",
        ));
    }
    if q.ttl_ms.is_some_and(|t| t == 0 || t > MAX_TTL_MS) {
        return Err(bad("ttl_ms must be 1 to 2^53-1"));
    }
    Ok(Life {
        persist: q.persist,
        ephemeral: false,
        ttl_ms: q.ttl_ms,
    })
}

fn decode_value(headers: &HeaderMap, body: &[u8]) -> Result<Bytes, ErrorBody> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        MSGPACK | "application/x-msgpack" => msgpack::check_value(body)
            .map(|()| Bytes::copy_from_slice(body))
            .map_err(|e| e.error),
        // `curl -d` labels its body form-encoded unless told otherwise; a
        // form body is not a value, so it is read as the JSON it most likely is.
        "application/json" | "text/json" | "application/x-www-form-urlencoded" | "" => {
            std::str::from_utf8(body)
                .map_err(|_| bad("the JSON body is not UTF-8"))
                .and_then(|text| json_to_msgpack(text).map_err(|e| e.error))
        }
        other => Err(bad(format!(
            "unsupported Content-Type {other:?}: use application/json or {MSGPACK}"
        ))),
    }
}

async fn read_body(mut body: web::Payload, limit: usize) -> Result<BytesMut, ErrorBody> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| bad(format!("cannot read the body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            let msg = format!("body exceeds max_frame_bytes ({limit})");
            return Err(ErrorBody::new(ErrorCode::TooLarge, msg));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// `DELETE /v1/keys/{key}`.
pub(crate) async fn delete(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    respond(match path_key(&req) {
        Ok(key) => try_delete(&req, &key, &state).await,
        Err(e) => Err(e),
    })
}

async fn try_delete(
    req: &HttpRequest,
    key: &str,
    state: &AppState,
) -> Result<HttpResponse, ErrorBody> {
    let key = checked_key(key)?;
    crate::sys::check_writable(key)?;
    if req.headers().contains_key(header::IF_NONE_MATCH) {
        return Err(bad("If-None-Match applies to PUT only"));
    }
    let if_rev = if_rev(req.headers())?;
    // With a backplane another server may have set the key a moment ago.
    let shared = state.registry.is_shared(key);
    rev_body(
        &call(state, key, shared, |reply| {
            KeyMsg::Del(Del { if_rev, reply })
        })
        .await?,
    )
}

#[derive(Deserialize)]
struct KeysQuery {
    pattern: Option<String>,
}

/// `GET /v1/keys?pattern=P`: keys with a value, and their revs, sorted.
pub(crate) async fn keys(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    respond(try_keys(&req, &state).await)
}

async fn try_keys(req: &HttpRequest, state: &AppState) -> Result<HttpResponse, ErrorBody> {
    let query = web::Query::<KeysQuery>::from_query(req.query_string())
        .map_err(|e| bad(format!("bad query string: {e}")))?;
    let pattern = query
        .pattern
        .as_deref()
        .map(Pattern::parse)
        .transpose()
        .map_err(|e| e.for_pattern())?;
    let keys: Vec<_> = state
        .registry
        .list(pattern.as_ref())
        .await
        .into_iter()
        .map(|k| serde_json::json!({ "key": k.key, "rev": k.rev }))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "keys": keys })))
}
