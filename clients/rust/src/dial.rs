//! One connection attempt: the upgrade with the token, then the server's
//! `hello`.

use crate::conn::Ws;
use crate::error::{Error, Result};
use crate::options::ClientOptions;
use futures_util::StreamExt;
use ipcbus_protocol::{msgpack, ErrorBody, ErrorCode, Pattern, ServerMsg, SUBPROTOCOL_MSGPACK};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// What the server said in `hello`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hello {
    pub(crate) session: String,
    pub(crate) store: String,
    /// The largest value the server takes, if it said.
    pub(crate) max_value_bytes: Option<u64>,
    /// The largest message the server reads, if it said.
    pub(crate) max_frame_bytes: Option<u64>,
    /// How many subscriptions the upgrade request's `sub` parameters made
    /// (ids 1 to `subs`, protocol.md §5.1); `None` from a server that
    /// does not know them, or when the request named none.
    pub(crate) subs: Option<u64>,
}

/// Opens a connection to `url` and reads its `hello`. The token is looked
/// up at every attempt, so that a rewritten token file is picked up.
pub(crate) async fn dial(url: &str, options: &ClientOptions) -> Result<(Ws, Hello)> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL_MSGPACK),
    );
    let has = |name: &str| {
        request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with(name)))
    };
    let (in_url, asked_subs) = (has("token="), has("sub="));
    let token = match &options.token {
        Some(token) => Some(token.clone()),
        None if in_url => None,
        None => ipcbus_protocol::auth::discover_token(),
    };
    if let Some(token) = token {
        let value = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Error::Protocol("the token is not a valid header value".into()))?;
        request.headers_mut().insert("Authorization", value);
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(options.read_buffer_bytes)
        .max_message_size(Some(options.max_message_bytes))
        .max_frame_size(Some(options.max_message_bytes));
    let (mut ws, _) =
        match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
            Ok(connected) => connected,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                return Err(refused(status, resp.body().as_deref(), asked_subs));
            }
            Err(e) => return Err(e.into()),
        };
    let hello = match ws.next().await {
        Some(Ok(Message::Binary(frame))) => match msgpack::decode_server(&frame) {
            Ok(ServerMsg::Hello {
                session,
                store,
                max_value_bytes,
                max_frame_bytes,
                subs,
                ..
            }) => Hello {
                session: session.into_owned(),
                store: store.into_owned(),
                max_value_bytes,
                max_frame_bytes,
                subs,
            },
            _ => return Err(Error::Protocol("expected hello".into())),
        },
        Some(Err(e)) => return Err(e.into()),
        _ => return Err(Error::Protocol("expected hello".into())),
    };
    Ok((ws, hello))
}

/// What a `sub` parameter leaves as it is: letters, digits and the
/// unreserved `.-_~`. Everything else (`*`, `>`, and `+`, which a form
/// decoder would take for a space) is percent-encoded.
const SUB_PARAM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// `url` with a `sub` parameter for each pattern, in order, after any query
/// it has (such as `?token=`): the subscriptions of the upgrade request
/// (protocol.md §5.1).
pub(crate) fn with_subscriptions<'a>(
    url: &str,
    patterns: impl IntoIterator<Item = &'a Pattern>,
) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let mut out = base.to_owned();
    for pattern in patterns {
        let sep = match out.find('?') {
            None => "?",
            Some(_) if out.ends_with('?') || out.ends_with('&') => "",
            Some(_) => "&",
        };
        let value = utf8_percent_encode(pattern.as_str(), SUB_PARAM);
        out.push_str(&format!("{sep}sub={value}"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// The `sub` parameters `url` has of its own, named as the server reads
/// them (bus/server/src/ws/query.rs): each `&`-separated pair of the query
/// whose name, up to its first `=`, is exactly `sub`. A bare `sub` (no
/// `=`) counts too, in every client: the server ignores it, but the
/// JavaScript client would send it as `sub=`, an empty pattern.
pub(crate) fn own_subscriptions(url: &str) -> Vec<&str> {
    let base = url.split_once('#').map_or(url, |(base, _)| base);
    let query = base.split_once('?').map_or("", |(_, query)| query);
    query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(name, _)| name) == "sub")
        .collect()
}

/// A URL with `sub` parameters of its own is refused before anything is
/// sent: the subscriptions it would make are not the client's, so it could
/// not route, count or remake them (the subscriptions of the upgrade
/// request are named with [`crate::Client::connect_subscribed`]).
pub(crate) fn check_url(url: &str) -> Result<()> {
    let own = own_subscriptions(url);
    if own.is_empty() {
        return Ok(());
    }
    Err(Error::Protocol(format!(
        "the URL has its own sub= parameters ({}); name subscriptions with \
         Client::connect_subscribed or connect_watching instead",
        own.join("&")
    )))
}

/// A refusal that retrying with the same settings cannot mend: a wrong
/// token (401) or origin (403), or subscriptions in the upgrade request
/// the server will not make (400 `bad_pattern`, 429 `limit`: see
/// [`refused`]). 503 (`max_connections`) is not one: other connections
/// end, so it is retried like a bus that is not up yet.
pub(crate) fn is_refusal(e: &Error) -> bool {
    match e {
        Error::Refused { status, .. } => *status == 401 || *status == 403,
        // Only a refused upgrade gives this from `dial`.
        Error::Server(_) => true,
        _ => false,
    }
}

/// The error for a refused upgrade: the `msg` of the server's JSON error
/// body, or the body as text. When the request named subscriptions
/// (`asked_subs`), a 400 or 429 with `bad_pattern`, `bad_request` or
/// `limit` is the server refusing them: [`Error::Server`] with that code,
/// as a `sub` request refused for the same reason would give. Any other
/// refusal (a proxy's 429, say) stays [`Error::Refused`].
fn refused(status: u16, body: Option<&[u8]>, asked_subs: bool) -> Error {
    let text = String::from_utf8_lossy(body.unwrap_or_default());
    let json = serde_json::from_str::<serde_json::Value>(&text).ok();
    let error = json.as_ref().map(|v| &v["error"]);
    let msg = error
        .and_then(|e| e["msg"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned());
    let code = error.and_then(|e| e["code"].as_str()).map(ErrorCode::parse);
    let about_subs = matches!(
        code,
        Some(ErrorCode::BadPattern | ErrorCode::BadRequest | ErrorCode::Limit)
    );
    match code {
        Some(code) if asked_subs && about_subs && (status == 400 || status == 429) => {
            Error::Server(ErrorBody::new(
                code,
                format!("the server refused the upgrade request ({status}): {msg}"),
            ))
        }
        _ => Error::Refused { status, msg },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(texts: &[&str]) -> Vec<Pattern> {
        texts
            .iter()
            .map(|t| Pattern::parse(t).expect("a pattern"))
            .collect()
    }

    #[test]
    fn subscriptions_are_appended_to_the_query_percent_encoded() {
        let two = patterns(&["w.today", "svc.*.on-line_~x", "a.>"]);
        assert_eq!(
            with_subscriptions("ws://h:1/ws", &two),
            "ws://h:1/ws?sub=w.today&sub=svc.%2A.on-line_~x&sub=a.%3E"
        );
        let one = patterns(&["a.b"]);
        for (url, want) in [
            ("ws://h/ws?token=t", "ws://h/ws?token=t&sub=a.b"),
            ("ws://h/ws?", "ws://h/ws?sub=a.b"),
            ("ws://h/ws?token=t&", "ws://h/ws?token=t&sub=a.b"),
            ("ws://h/ws#f", "ws://h/ws?sub=a.b#f"),
        ] {
            assert_eq!(with_subscriptions(url, &one), want);
        }
        assert_eq!(with_subscriptions("ws://h/ws", &[]), "ws://h/ws");
    }

    #[test]
    fn a_url_with_sub_parameters_of_its_own_is_refused_as_the_server_reads_them() {
        for (url, own) in [
            ("ws://h/ws?sub=a.%3E", vec!["sub=a.%3E"]),
            ("ws://h/ws?token=t&sub=a&x=1&sub=", vec!["sub=a", "sub="]),
            ("/ws?sub=a.b#f", vec!["sub=a.b"]),
            ("ws://h/ws?x=1&sub", vec!["sub"]),
            // Not `sub` parameters, for the server either: other names, and
            // anything after the fragment.
            ("ws://h/ws?token=t&x=sub&subs=1&Sub=a&sub%3Dx&=sub", vec![]),
            ("ws://h/ws#?sub=a", vec![]),
            ("ws://h/sub=a", vec![]),
        ] {
            assert_eq!(own_subscriptions(url), own, "{url}");
            assert_eq!(check_url(url).is_ok(), own.is_empty(), "{url}");
        }
        let err = check_url("ws://h/ws?token=t&sub=a.%3E&sub=b").expect_err("refused");
        assert!(matches!(err, Error::Protocol(_)), "{err}");
        assert!(!is_refusal(&err), "not from the server");
        assert_eq!(
            err.to_string(),
            "protocol: the URL has its own sub= parameters (sub=a.%3E&sub=b); \
             name subscriptions with Client::connect_subscribed or connect_watching instead"
        );
    }

    #[test]
    fn what_a_form_decoder_reads_is_the_pattern() {
        // The server decodes `sub` as application/x-www-form-urlencoded.
        for text in ["a+b.*", "k.%20", "é.>", "q&sub=x.#?=", "x"] {
            let p = Pattern::parse(text).expect("a pattern");
            let url = with_subscriptions("ws://h/ws?token=t", [&p]);
            let (_, query) = url.split_once('?').expect("a query");
            let value = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("sub="))
                .expect("a sub");
            let spaced = value.replace('+', " ");
            let decoded = percent_encoding::percent_decode_str(&spaced)
                .decode_utf8()
                .expect("utf-8");
            assert_eq!(decoded, text);
        }
    }

    #[test]
    fn a_refused_subscription_list_is_the_servers_error_and_final() {
        let body = br#"{"error":{"code":"bad_pattern","msg":"empty token"}}"#;
        let err = refused(400, Some(body), true);
        assert_eq!(err.code(), Some(ErrorCode::BadPattern), "{err}");
        assert!(err.to_string().contains("(400): empty token"), "{err}");
        assert!(is_refusal(&err));
        let body = br#"{"error":{"code":"limit","msg":"more than max_subs (2)"}}"#;
        let err = refused(429, Some(body), true);
        assert_eq!(err.code(), Some(ErrorCode::Limit), "{err}");
        assert!(is_refusal(&err));
        // 503 is retried; 401 is final; neither has a code.
        let body = br#"{"error":{"code":"limit","msg":"too many connections"}}"#;
        let err = refused(503, Some(body), true);
        assert!(matches!(err, Error::Refused { status: 503, .. }), "{err}");
        assert!(!is_refusal(&err));
        let err = refused(401, Some(b"no token"), false);
        assert!(matches!(&err, Error::Refused { status: 401, msg } if msg == "no token"));
        assert!(is_refusal(&err));
        let err = refused(400, Some(b"Bad Request"), true);
        assert!(matches!(err, Error::Refused { status: 400, .. }), "{err}");
        // Without subscriptions asked for, a 429 with a code (a proxy's) is
        // not about them, and is retried as before.
        let body = br#"{"error":{"code":"limit","msg":"slow down"}}"#;
        let err = refused(429, Some(body), false);
        assert!(matches!(err, Error::Refused { status: 429, .. }), "{err}");
        assert!(!is_refusal(&err));
    }
}
