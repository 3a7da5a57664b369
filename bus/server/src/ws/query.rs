//! Subscriptions named in the upgrade request (`GET /ws?sub=<pattern>`,
//! docs/protocol.md §5.1): made before any request, so that a new client
//! gets its replay right after `hello`, without a round trip of its own.

use crate::http::check_length;
use crate::session::Limits;
use actix_web::{web, HttpRequest};
use ipcbus_protocol::{ErrorBody, ErrorCode, Pattern};

/// The `sub` parameters of the upgrade request, in order, checked as a
/// `sub` request would be. Other parameters (`token`) are not ours.
pub(super) fn subscriptions(req: &HttpRequest, limits: &Limits) -> Result<Vec<Pattern>, ErrorBody> {
    if !req.query_string().contains("sub=") {
        return Ok(Vec::new());
    }
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ErrorBody::new(ErrorCode::BadRequest, format!("bad query string: {e}")))?;
    let mut patterns = Vec::new();
    for (name, text) in pairs.into_inner() {
        if name != "sub" {
            continue;
        }
        if patterns.len() == limits.max_subs {
            let msg = format!(
                "the upgrade request names more than max_subs ({}) subscriptions",
                limits.max_subs
            );
            return Err(ErrorBody::new(ErrorCode::Limit, msg));
        }
        check_length(&text, limits.max_key_bytes, ErrorCode::BadPattern)?;
        patterns.push(Pattern::parse(&text).map_err(|e| e.for_pattern())?);
    }
    Ok(patterns)
}
