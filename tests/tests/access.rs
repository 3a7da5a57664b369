//! Access control: the token (401 without it, on the upgrade and the HTTP
//! API), the browser `Origin` check (403, even with the token), and
//! `--no-auth`.

use ipcbus::Config;
use ipcbus_tests::{test_config, TestServer};

fn get(server: &TestServer, path: &str, headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{headers}Connection: close\r\n\r\n",
        server.addr()
    )
}

#[tokio::test]
async fn the_upgrade_needs_the_token() {
    let server = TestServer::start();
    let token = server.token().expect("token").to_owned();
    let bare = server.bare_url();
    let bearer = format!("Bearer {token}");
    assert_eq!(server.upgrade_status(&bare, &[]).await, 401);
    let wrong = [("Authorization", "Bearer not-the-token")];
    assert_eq!(server.upgrade_status(&bare, &wrong).await, 401);
    let half = format!("Bearer {}", &token[..token.len() / 2]);
    assert_eq!(
        server
            .upgrade_status(&bare, &[("Authorization", &half)])
            .await,
        401
    );
    assert_eq!(
        server
            .upgrade_status(&bare, &[("Authorization", &bearer)])
            .await,
        101
    );
    let lower = format!("bearer {token}");
    assert_eq!(
        server
            .upgrade_status(&bare, &[("Authorization", &lower)])
            .await,
        101,
        "the scheme name is case-insensitive"
    );
    let query = format!("{bare}?token={token}");
    assert_eq!(server.upgrade_status(&query, &[]).await, 101);
    let wrong_query = format!("{bare}?token=x");
    assert_eq!(server.upgrade_status(&wrong_query, &[]).await, 401);
}

#[tokio::test]
async fn the_http_api_needs_the_token_and_health_does_not() {
    let server = TestServer::start();
    let token = server.token().expect("token").to_owned();
    let (status, body) = server.http(&get(&server, "/v1/keys", "")).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"code\":\"unauthorized\"") && body.contains("Bearer"));
    let with = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(server.http(&get(&server, "/v1/keys", &with)).await.0, 200);
    let query = format!("/v1/keys?token={token}");
    assert_eq!(server.http(&get(&server, &query, "")).await.0, 200);
    assert_eq!(server.http(&get(&server, "/v1/keys/a.b", "")).await.0, 401);
    let put = format!(
        "PUT /v1/keys/a HTTP/1.1\r\nHost: {}\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1",
        server.addr()
    );
    assert_eq!(server.http(&put).await.0, 401);
    let (status, body) = server.http(&get(&server, "/health", "")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_foreign_origin_is_refused_even_with_the_token() {
    let server = TestServer::start();
    let token = server.token().expect("token").to_owned();
    let url = server.url();
    let port = server.addr().port();
    let forged = [("Origin", "http://evil.example")];
    assert_eq!(server.upgrade_status(&url, &forged).await, 403);
    // DNS rebinding: a page on a name that resolves to 127.0.0.1 sends
    // matching Host and Origin; only IP literals and localhost count.
    let rebound_host = format!("evil.example:{port}");
    let rebound_origin = format!("http://evil.example:{port}");
    let rebound = [
        ("Host", rebound_host.as_str()),
        ("Origin", rebound_origin.as_str()),
    ];
    assert_eq!(server.upgrade_status(&url, &rebound).await, 403);
    let own = format!("http://127.0.0.1:{port}");
    assert_eq!(server.upgrade_status(&url, &[("Origin", &own)]).await, 101);
    // A trailing `/` is ignored (protocol.md §1.6), both ways.
    let own_slash = format!("{own}/");
    assert_eq!(
        server.upgrade_status(&url, &[("Origin", &own_slash)]).await,
        101
    );
    let forged_slash = [("Origin", "http://evil.example/")];
    assert_eq!(server.upgrade_status(&url, &forged_slash).await, 403);
    let local_host = format!("localhost:{port}");
    let local_origin = format!("http://localhost:{port}");
    let local = [
        ("Host", local_host.as_str()),
        ("Origin", local_origin.as_str()),
    ];
    assert_eq!(server.upgrade_status(&url, &local).await, 101);
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1));
    assert_eq!(
        server
            .upgrade_status(&url, &[("Origin", &other_port)])
            .await,
        403
    );
    let headers = format!("Authorization: Bearer {token}\r\nOrigin: http://evil.example\r\n");
    let (status, body) = server.http(&get(&server, "/v1/keys", &headers)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"code\":\"forbidden\"") && body.contains("evil.example"));
    let (status, _) = server
        .http(&get(&server, "/health", "Origin: http://evil.example\r\n"))
        .await;
    assert_eq!(status, 403, "a page may not even probe /health");
}

/// A server that allows the pages of `origin`.
fn allowing(origin: &str) -> TestServer {
    TestServer::with_config(Config {
        allowed_origins: vec![origin.into()],
        ..test_config()
    })
}

#[tokio::test]
async fn allowed_origins_let_those_pages_in() {
    let server = allowing("http://localhost:8080/");
    let url = server.url();
    let page = [("Origin", "http://LOCALHOST:8080")];
    assert_eq!(server.upgrade_status(&url, &page).await, 101);
    let other = [("Origin", "http://localhost:8081")];
    assert_eq!(server.upgrade_status(&url, &other).await, 403);

    let config = Config {
        allowed_origins: vec!["*".into()],
        ..test_config()
    };
    let server = TestServer::with_config(config);
    let any = [("Origin", "http://anything.example")];
    assert_eq!(server.upgrade_status(&server.url(), &any).await, 101);
}

/// `request` sent as is; the whole response (status line, headers, body),
/// with header names lowercased.
async fn exchange(server: &TestServer, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    format!("{}\r\n\r\n{body}", head.to_ascii_lowercase())
}

#[tokio::test]
async fn listed_origins_may_fetch_the_http_api_others_get_403() {
    let server = allowing("http://localhost:8080");
    let host = server.addr();
    let token = server.token().expect("token").to_owned();
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /v1/keys/page.k HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: PUT\r\n\
             Access-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n"
        )
    };
    // The browser's preflight carries no token: answered for a listed origin.
    let resp = exchange(&server, &preflight("http://localhost:8080")).await;
    assert!(resp.starts_with("http/1.1 200"), "{resp}");
    assert!(
        resp.contains("access-control-allow-origin: http://localhost:8080\r\n"),
        "{resp}"
    );
    assert!(
        resp.contains("access-control-allow-methods:")
            && resp.contains("put")
            && resp.contains("post"),
        "{resp}"
    );
    assert!(
        resp.contains("access-control-allow-headers:") && resp.contains("authorization"),
        "{resp}"
    );
    // The request itself, with the token: allowed, with the header the
    // browser needs to hand the response to the page.
    let put = format!(
        "PUT /v1/keys/page.k HTTP/1.1\r\nHost: {host}\r\nOrigin: http://localhost:8080\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
         Connection: close\r\n\r\n42"
    );
    let resp = exchange(&server, &put).await;
    assert!(resp.starts_with("http/1.1 200"), "{resp}");
    assert!(
        resp.contains("access-control-allow-origin: http://localhost:8080\r\n"),
        "{resp}"
    );
    let auth = format!("Origin: http://localhost:8080\r\nAuthorization: Bearer {token}\r\n");
    let resp = exchange(&server, &get(&server, "/v1/keys/page.k", &auth)).await;
    assert!(
        resp.contains("access-control-allow-origin: http://localhost:8080\r\n")
            && resp.contains("42"),
        "{resp}"
    );
    // A listed origin still needs the token for the request itself.
    let resp = exchange(
        &server,
        &get(
            &server,
            "/v1/keys/page.k",
            "Origin: http://localhost:8080\r\n",
        ),
    )
    .await;
    assert!(resp.starts_with("http/1.1 401"), "{resp}");
    // Any other origin: 403, preflight or not, and no CORS header.
    let evil = format!("Origin: http://evil.example\r\nAuthorization: Bearer {token}\r\n");
    for request in [
        preflight("http://evil.example"),
        get(&server, "/v1/keys/page.k", &evil),
    ] {
        let resp = exchange(&server, &request).await;
        assert!(
            resp.starts_with("http/1.1 403") && !resp.contains("access-control-allow-origin"),
            "{resp}"
        );
    }
    // No Origin at all (curl, scripts): as before, no CORS header.
    let resp = exchange(
        &server,
        &get(
            &server,
            "/v1/keys/page.k",
            &format!("Authorization: Bearer {token}\r\n"),
        ),
    )
    .await;
    assert!(
        resp.starts_with("http/1.1 200") && !resp.contains("access-control-allow-origin"),
        "{resp}"
    );
}

#[tokio::test]
async fn no_auth_needs_no_token_but_still_checks_origins() {
    let config = Config {
        auth: false,
        ..test_config()
    };
    let server = TestServer::with_config(config);
    assert!(server.token().is_none());
    let url = server.bare_url();
    assert_eq!(server.upgrade_status(&url, &[]).await, 101);
    let client = server.client().await;
    client.set("k", &1).await.expect("set without a token");
    let forged = [("Origin", "http://evil.example")];
    assert_eq!(server.upgrade_status(&url, &forged).await, 403);
}

#[test]
fn no_auth_is_refused_off_loopback() {
    let config = Config {
        auth: false,
        host: "0.0.0.0".parse().expect("ip"),
        ..test_config()
    };
    let err = config.validate().expect_err("must refuse");
    assert!(err.to_string().contains("--no-auth"), "{err}");
}

#[tokio::test]
async fn the_rust_client_reports_a_refused_connection_clearly() {
    let server = TestServer::start();
    let options = ipcbus_client::ClientOptions {
        token: Some("wrong".into()),
        ..Default::default()
    };
    let err = ipcbus_client::Client::connect_with(&server.bare_url(), options)
        .await
        .expect_err("wrong token");
    match &err {
        ipcbus_client::Error::Refused { status: 401, msg } => {
            assert!(msg.contains("token"), "{msg}");
        }
        other => panic!("expected Refused(401), got {other:?}"),
    }
    let options = ipcbus_client::ClientOptions {
        token: server.token().map(str::to_owned),
        ..Default::default()
    };
    let client = ipcbus_client::Client::connect_with(&server.bare_url(), options)
        .await
        .expect("the right token, given explicitly");
    client.set("k", &1).await.expect("set");
}
