//! One connection attempt: the upgrade with the token, then the server's
//! `hello`.

use crate::conn::Ws;
use crate::error::{Error, Result};
use crate::options::ClientOptions;
use futures_util::StreamExt;
use ipcbus_protocol::{msgpack, ServerMsg, SUBPROTOCOL_MSGPACK};
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
}

/// Opens a connection to `url` and reads its `hello`. The token is looked
/// up at every attempt, so that a rewritten token file is picked up.
pub(crate) async fn dial(url: &str, options: &ClientOptions) -> Result<(Ws, Hello)> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL_MSGPACK),
    );
    let in_url = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")));
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
                return Err(refused(resp.status().as_u16(), resp.body().as_deref()));
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
                ..
            }) => Hello {
                session: session.into_owned(),
                store: store.into_owned(),
                max_value_bytes,
                max_frame_bytes,
            },
            _ => return Err(Error::Protocol("expected hello".into())),
        },
        Some(Err(e)) => return Err(e.into()),
        _ => return Err(Error::Protocol("expected hello".into())),
    };
    Ok((ws, hello))
}

/// A refusal that retrying with the same settings cannot mend: a wrong
/// token (401) or origin (403). 503 (`max_connections`) is not one: other
/// connections end, so it is retried like a bus that is not up yet.
pub(crate) fn is_refusal(e: &Error) -> bool {
    matches!(e, Error::Refused { status, .. } if *status == 401 || *status == 403)
}

/// The error for a refused upgrade: the `msg` of the server's JSON error
/// body, or the body as text.
fn refused(status: u16, body: Option<&[u8]>) -> Error {
    let text = String::from_utf8_lossy(body.unwrap_or_default());
    let msg = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["msg"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned());
    Error::Refused { status, msg }
}
