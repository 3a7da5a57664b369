//! The dashboard at `/ui/`: a page served from the binary that shows and
//! edits the live bus through the JavaScript client (docs/dashboard.md).
//!
//! - `assets`: the embedded files (page, client, vendored MessagePack).
//!
//! The files carry no data and no token, so they are served without one;
//! the page asks for the token and shows it to the bus itself. Every
//! response under `/ui` carries a strict Content-Security-Policy.

mod assets;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `/ui` and everything under it: served without the token.
pub(crate) fn is_ui_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// Adds the dashboard's routes to the app.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui", web::get().to(redirect))
        .route("/ui/{path:.*}", web::get().to(file));
}

/// The page's modules are found relative to `/ui/`, so `/ui` must become it.
async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

async fn file(req: HttpRequest) -> HttpResponse {
    let path = req.match_info().get("path").unwrap_or("");
    let mut response = match assets::get(path) {
        Some(asset) => HttpResponse::Ok()
            .content_type(asset.content_type)
            // Revalidate: the files change with the binary.
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(asset.body.clone()),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such file in the dashboard\n"),
    };
    let headers = response.headers_mut();
    for (name, value) in security_headers(&req) {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// The headers of every `/ui/` response. Scripts, styles and images come
/// only from this server (no inline script, no `eval`); the page may talk
/// only to this server, over HTTP and over its WebSocket.
fn security_headers(req: &HttpRequest) -> Vec<(header::HeaderName, String)> {
    // `'self'` covers ws: on the same host in current browsers (CSP 3);
    // the explicit ws: source is for those that do not. The Host is used
    // only if it is a plain host[:port], so it cannot add a directive.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let ws = host.map(|h| format!(" ws://{h}")).unwrap_or_default();
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'{ws}; object-src 'none'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    vec![
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::REFERRER_POLICY, "no-referrer".to_owned()),
        (header::X_FRAME_OPTIONS, "DENY".to_owned()),
    ]
}

/// The dashboard's address for a server listening on `addr`, with the
/// token in the fragment: a browser never sends the fragment, so the token
/// reaches no request line, access log or Referer.
pub fn url(addr: SocketAddr, token: Option<&str>) -> String {
    // A wildcard address is reached through loopback.
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    with_token(
        format!("http://{}/ui/", SocketAddr::new(ip, addr.port())),
        token,
    )
}

/// `base` with `#token=…` added (percent-encoded) when there is a token.
pub(crate) fn with_token(base: String, token: Option<&str>) -> String {
    match token {
        Some(token) => {
            let token =
                percent_encoding::utf8_percent_encode(token, percent_encoding::NON_ALPHANUMERIC);
            format!("{base}#token={token}")
        }
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_has_the_token_in_the_fragment() {
        let addr: SocketAddr = "0.0.0.0:7000".parse().expect("addr");
        assert_eq!(
            url(addr, Some("ab12")),
            "http://127.0.0.1:7000/ui/#token=ab12"
        );
        let addr: SocketAddr = "[::1]:7000".parse().expect("addr");
        assert_eq!(url(addr, None), "http://[::1]:7000/ui/");
        assert!(url(addr, Some("a+b c")).ends_with("#token=a%2Bb%20c"));
    }

    #[test]
    fn a_strange_host_adds_no_csp_source() {
        let req = actix_web::test::TestRequest::default()
            .insert_header((header::HOST, "x; script-src *"))
            .to_http_request();
        let csp = &security_headers(&req)[0].1;
        assert!(!csp.contains('*'), "{csp}");
        let req = actix_web::test::TestRequest::default()
            .insert_header((header::HOST, "127.0.0.1:9"))
            .to_http_request();
        assert!(security_headers(&req)[0]
            .1
            .contains("connect-src 'self' ws://127.0.0.1:9;"));
    }
}
