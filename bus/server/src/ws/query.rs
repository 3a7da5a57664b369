//! Subscriptions named in the upgrade request (`GET /ws?sub=<pattern>`,
//! docs/protocol.md §5.1): made before any request, so that a new client
//! gets its replay right after `hello`, without a round trip of its own.

use crate::http::check_length;
use crate::session::Limits;
use actix_web::HttpRequest;
use ipcbus_protocol::{ErrorBody, ErrorCode, Pattern};

/// The `sub` parameters of the upgrade request, in order, checked as a
/// `sub` request would be. Other parameters (`token`) are not ours.
pub(super) fn subscriptions(req: &HttpRequest, limits: &Limits) -> Result<Vec<Pattern>, ErrorBody> {
    let mut patterns = Vec::new();
    for pair in req.query_string().split('&') {
        let Some(("sub", value)) = pair.split_once('=') else {
            continue;
        };
        let text = form_value(value)?;
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

/// A form-encoded value (`+` for a space, `%XX` escapes), which must be
/// UTF-8 once decoded: a pattern is never guessed from broken bytes.
fn form_value(raw: &str) -> Result<String, ErrorBody> {
    let spaced = raw.replace('+', " ");
    match percent_encoding::percent_decode_str(&spaced).decode_utf8() {
        Ok(text) => Ok(text.into_owned()),
        Err(_) => Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!("sub={raw}: not UTF-8 once percent-decoded"),
        )),
    }
}
