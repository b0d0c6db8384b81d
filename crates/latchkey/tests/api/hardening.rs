//! The HTTP surface: security headers, methods and paths, body limits and parsing, error hygiene, operational and discovery endpoints.

use crate::helpers::*;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Fragments that betray internals: SQL, file paths, panics, Rust type names.
const INTERNALS: [&str; 10] = [
    "sqlx",
    "sqlite",
    "SELECT",
    "src/",
    ".rs",
    "panicked",
    "RUST_BACKTRACE",
    "LoginRequest",
    "RegisterRequest",
    "struct ",
];

async fn assert_error(resp: Response, status: StatusCode, code: &str) -> Value {
    let json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        json.starts_with("application/json"),
        "content type {json:?}"
    );
    let (got_status, got_code, body) = error_of(resp).await;
    assert_eq!((got_status, got_code.as_str()), (status, code), "{body}");
    body
}

fn assert_no_internals(text: &str) {
    for fragment in INTERNALS {
        assert!(
            !text.contains(fragment),
            "response reveals {fragment:?}: {text}"
        );
    }
}

fn assert_security_headers(headers: &HeaderMap, what: &str) {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name}"))
    };
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(
        get("content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'",
        "{what}"
    );
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(get("cross-origin-resource-policy"), "same-origin", "{what}");
    let hsts = get("strict-transport-security").to_ascii_lowercase();
    let max_age = hsts
        .split(';')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{what}: HSTS without max-age: {hsts}"));
    assert!(max_age >= 31_536_000, "{what}: {hsts}");
    assert!(
        hsts.split(';').any(|d| d.trim() == "includesubdomains"),
        "{what}: {hsts}"
    );
    assert!(
        get("content-type").starts_with("application/json"),
        "{what}"
    );
    assert!(
        !headers.contains_key("server"),
        "{what}: version banner {:?}",
        headers.get("server")
    );
    assert!(!headers.contains_key("x-powered-by"), "{what}");
}

/// Sends raw bytes over a fresh connection and returns the status and the
/// body of the answer. The server may answer and close before the whole
/// request is written, so write errors are not failures.
async fn raw_request(addr: SocketAddr, head: &str, body_chunks: &[&[u8]]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut written = stream.write_all(head.as_bytes()).await;
    for chunk in body_chunks {
        if written.is_err() {
            break;
        }
        written = stream.write_all(chunk).await;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("server answers");
    if answer.is_empty() {
        read.expect("read answer");
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn send_bytes(app: &TestApp, path: &str, content_type: &str, body: Vec<u8>) -> Response {
    app.client
        .post(app.url(path))
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("request")
}

async fn metrics_text(app: &TestApp) -> String {
    let resp = app.get("/metrics", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.expect("metrics text")
}

/// The sum of the samples of `name` whose labels include every one of `labels`.
fn metric_value(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|l| series.contains(l))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

// ---------------------------------------------------------------- headers, paths, methods

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    let cases = [
        ("a 200", app.me(&tokens.access).await),
        ("healthz", app.get("/healthz", None).await),
        ("a 401", app.get("/v1/me", None).await),
        ("a 404", app.get("/v1/nowhere", None).await),
        ("a 400", app.login(&unique_email(), PASSWORD).await),
        (
            "the metadata",
            app.get("/.well-known/oauth-authorization-server", None)
                .await,
        ),
        ("the JWKS", app.get("/.well-known/jwks.json", None).await),
    ];
    for (what, resp) in cases {
        assert_security_headers(resp.headers(), what);
    }
}

#[tokio::test]
async fn unknown_paths_answer_404_in_json() {
    let app = spawn_app().await;
    for path in ["/v1/nowhere", "/", "/v1/me/../../etc/passwd", "/v2/login"] {
        assert_error(
            app.get(path, None).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    let resp = app.post_json("/v1/loginx", json!({})).await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn wrong_methods_answer_405_in_json() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    let cases = [
        (Method::GET, "/v1/login"),
        (Method::GET, "/v1/register"),
        (Method::GET, "/v1/logout"),
        (Method::TRACE, "/v1/me"),
        (Method::PUT, "/v1/me"),
        (Method::DELETE, "/v1/me"),
        (Method::TRACE, "/v1/login"),
    ];
    for (method, path) in cases {
        let resp = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(&tokens.access)
            .send()
            .await
            .expect("request");
        assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    }
}

// ---------------------------------------------------------------- body limits

#[tokio::test]
async fn a_body_over_64_kib_is_refused_with_413_when_sized_by_content_length() {
    let app = spawn_app().await;
    let body = json!({"email": unique_email(), "password": "x".repeat(64 * 1024)});
    assert!(body.to_string().len() > 64 * 1024);
    assert_error(
        app.post_json("/v1/login", body.clone()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert_error(
        app.post_json("/v1/register", body).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    let token = "x".repeat(70 * 1024);
    let resp = app
        .post_form(
            "/v1/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &token)],
        )
        .await;
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn a_chunked_body_over_64_kib_is_refused_with_413() {
    let app = spawn_app().await;
    let head = format!(
        "POST /v1/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr
    );
    let opening = format!("{{\"email\":\"{}\",\"password\":\"", unique_email());
    let filler = "x".repeat(8 * 1024);
    let mut chunks: Vec<String> = vec![opening];
    chunks.extend(std::iter::repeat_n(filler, 9));
    chunks.push("\"}".to_string());
    let mut framed: Vec<String> = chunks
        .iter()
        .map(|c| format!("{:x}\r\n{c}\r\n", c.len()))
        .collect();
    framed.push("0\r\n\r\n".to_string());
    let bytes: Vec<&[u8]> = framed.iter().map(|c| c.as_bytes()).collect();
    let (status, body) = raw_request(app.addr, &head, &bytes).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn more_than_16_kib_of_headers_is_refused() {
    let app = spawn_app().await;
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
        app.addr,
        "a".repeat(17 * 1024)
    );
    let (status, body) = raw_request(app.addr, &head, &[]).await;
    assert!(status == 431 || status == 400, "{status}: {body}");
}

#[tokio::test]
async fn conflicting_content_length_and_transfer_encoding_are_refused() {
    let app = spawn_app().await;
    let body = json!({"email": unique_email(), "password": PASSWORD}).to_string();
    let head = format!(
        "POST /v1/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr
    );
    let chunk = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let (status, answer) = raw_request(app.addr, &head, &[chunk.as_bytes()]).await;
    assert_eq!(status, 400, "{answer}");
}

// ---------------------------------------------------------------- parsing

#[tokio::test]
async fn json_nested_ten_thousand_deep_is_refused_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let resp = send_bytes(&app, "/v1/login", "application/json", deep.into_bytes()).await;
    assert_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    let deep_field = format!(
        "{{\"email\":{}{},\"password\":\"x\"}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    let resp = send_bytes(
        &app,
        "/v1/register",
        "application/json",
        deep_field.into_bytes(),
    )
    .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    app.new_user().await;
}

#[tokio::test]
async fn unknown_fields_at_registration_are_refused_and_grant_nothing() {
    let app = spawn_app().await;
    for (field, value) in [
        ("role", json!("admin")),
        ("email_verified", json!(true)),
        ("is_admin", json!(true)),
    ] {
        let email = unique_email();
        let mut body = json!({"email": email, "password": PASSWORD});
        body[field] = value;
        let resp = app.post_json("/v1/register", body).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert_error(
            app.login(&email, PASSWORD).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
}

#[tokio::test]
async fn wrong_json_types_are_refused() {
    let app = spawn_app().await;
    let email = unique_email();
    let bodies = [
        ("/v1/register", json!({"email": 42, "password": PASSWORD})),
        ("/v1/register", json!({"email": email, "password": true})),
        (
            "/v1/register",
            json!({"email": email, "password": PASSWORD, "name": ["Ada"]}),
        ),
        (
            "/v1/register",
            json!({"email": [email], "password": PASSWORD}),
        ),
        ("/v1/login", json!({"email": email, "password": null})),
        (
            "/v1/login",
            json!({"email": email, "password": {"$ne": ""}}),
        ),
        ("/v1/login", json!("a string")),
        ("/v1/login", json!({"email": email})),
    ];
    for (path, body) in bodies {
        let resp = app.post_json(path, body.clone()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path} {body}");
        assert_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_json_array_is_not_accepted_in_place_of_the_request_object() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    let resp = app.post_json("/v1/login", json!([email, PASSWORD])).await;
    assert_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    let resp = app
        .post_json("/v1/register", json!([unique_email(), PASSWORD, null]))
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn invalid_utf8_lone_surrogates_and_duplicate_keys_are_refused() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    let mut invalid_utf8 = format!("{{\"email\":\"{email}\",\"password\":\"").into_bytes();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    invalid_utf8.extend_from_slice(b"\"}");
    let bodies = [
        ("/v1/login", invalid_utf8.clone()),
        ("/v1/register", invalid_utf8),
        (
            "/v1/login",
            format!(r#"{{"email":"{email}","password":"\ud800 kettle harbour"}}"#).into_bytes(),
        ),
        (
            "/v1/register",
            format!(r#"{{"email":"x\ud800{email}","password":"{PASSWORD}"}}"#).into_bytes(),
        ),
        (
            "/v1/login",
            format!(r#"{{"email":"{email}","password":"wrong","password":"{PASSWORD}"}}"#)
                .into_bytes(),
        ),
        (
            "/v1/register",
            format!(
                r#"{{"email":"{}","email":"{}","password":"{PASSWORD}"}}"#,
                unique_email(),
                unique_email()
            )
            .into_bytes(),
        ),
    ];
    for (path, body) in bodies {
        let resp = send_bytes(&app, path, "application/json", body).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn login_accepts_only_json_bodies() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    let json_text = json!({"email": email, "password": PASSWORD}).to_string();
    let boundary = "latchkeyboundary";
    let multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\n{email}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n{PASSWORD}\r\n--{boundary}--\r\n"
    );
    let cases = [
        ("text/plain", json_text.clone()),
        ("text/plain;charset=UTF-8", json_text.clone()),
        (
            &format!("multipart/form-data; boundary={boundary}") as &str,
            multipart,
        ),
        (
            "application/x-www-form-urlencoded",
            format!("email={email}&password={PASSWORD}"),
        ),
    ];
    for (content_type, body) in cases {
        let resp = send_bytes(&app, "/v1/login", content_type, body.into_bytes()).await;
        assert_error(
            resp,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    let resp = app
        .client
        .post(app.url("/v1/login"))
        .body(json_text)
        .send()
        .await
        .expect("request");
    assert_error(
        resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

// ---------------------------------------------------------------- error hygiene

#[tokio::test]
async fn error_responses_never_reveal_internals() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    let malformed = [
        (
            "/v1/login",
            "application/json",
            "{\"email\": \"a@example.com\", \"password\": ",
        ),
        ("/v1/login", "application/json", "\"just a string\""),
        ("/v1/login", "application/json", "42"),
        (
            "/v1/register",
            "application/json",
            "{'email': 'single quotes'}",
        ),
        ("/v1/register", "application/json", "[]"),
        ("/v1/token", "application/json", "{\"grant_type\": 5}"),
        (
            "/v1/token",
            "application/x-www-form-urlencoded",
            "grant_type=refresh_token&refresh_token=%ZZ",
        ),
        ("/v1/revoke", "application/json", "nul\u{0}l"),
    ];
    for (path, content_type, body) in malformed {
        let resp = send_bytes(&app, path, content_type, body.as_bytes().to_vec()).await;
        assert!(
            resp.status().is_client_error(),
            "{path} {body}: {}",
            resp.status()
        );
        let text = resp.text().await.expect("text");
        let parsed: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert!(
            parsed["error"].is_string() && parsed["error_description"].is_string(),
            "{text}"
        );
        assert_no_internals(&text);
    }

    let mut claims = app.valid_claims(&tokens);
    for exp in [
        json!("9999999999"),
        json!("never"),
        json!(null),
        json!([1]),
        json!(-1),
        json!(1e300),
    ] {
        claims["exp"] = exp;
        let forged = app.sign_json(&app.valid_header(&tokens), &claims).await;
        let resp = app.me(&forged).await;
        assert_error(resp, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
}

// ---------------------------------------------------------------- operations

#[tokio::test]
async fn health_and_readiness_answer_200() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let resp = app.get(path, None).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let _: Value = resp.json().await.expect("JSON");
    }
}

#[tokio::test]
async fn metrics_count_logins_registrations_refreshes_reuse_and_revocations() {
    let app = spawn_app_with(|s| {
        s.hash_concurrency = 1;
        s.argon2_memory_kib = 4096;
    })
    .await;
    let before = metrics_text(&app).await;

    let (email, tokens) = app.new_user().await;
    app.login_ok(&email, PASSWORD).await;
    assert_eq!(
        app.login(&email, OTHER_PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
    app.refresh_ok(&tokens.refresh).await;
    app.clock.advance(60);
    assert_eq!(
        app.refresh(&tokens.refresh).await.status(),
        StatusCode::BAD_REQUEST,
        "reuse"
    );
    let other = app.login_ok(&email, PASSWORD).await;
    let resp = app.post_auth("/v1/logout", &other.access, None).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // Several hashes at once with one hashing slot: some wait in the queue.
    app.logins_at_once((0..4).map(|_| json!({"email": unique_email(), "password": PASSWORD})))
        .await;

    let after = metrics_text(&app).await;
    let grew = |name: &str, labels: &[&str]| {
        let (was, is) = (
            metric_value(&before, name, labels),
            metric_value(&after, name, labels),
        );
        assert!(
            is >= was + 1.0,
            "{name}{labels:?} went from {was} to {is}:\n{after}"
        );
    };
    grew("latchkey_registrations_total", &[]);
    grew("latchkey_logins_total", &["result=\"ok\""]);
    grew("latchkey_logins_total", &["result=\"failed\""]);
    grew("latchkey_refreshes_total", &[]);
    grew("latchkey_refresh_reuse_detected_total", &[]);
    grew("latchkey_revocations_total", &[]);
    grew(
        "latchkey_http_request_duration_seconds_count",
        &["route=\"/v1/login\""],
    );
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("latchkey_hash_queue_depth")),
        "{after}"
    );
}

#[tokio::test]
async fn a_fresh_server_exports_the_hash_queue_depth_before_anything_queues() {
    // Metrics are process-global, so only a fresh process shows the state
    // before any hash has queued: run the real binary.
    let dir = tempfile::TempDir::new().expect("temp dir");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--listen",
            &addr.to_string(),
            "--argon2-memory-kib",
            "1024",
            "--argon2-iterations",
            "1",
        ])
        .env("RUST_LOG", "warn")
        .env_remove("LATCHKEY_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn latchkey serve");
    let client = reqwest::Client::new();
    let mut text = None;
    for _ in 0..200 {
        if let Ok(resp) = client.get(format!("http://{addr}/metrics")).send().await {
            assert_eq!(resp.status(), StatusCode::OK);
            text = Some(resp.text().await.expect("metrics text"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().await.expect("stop server");
    let text = text.expect("the server never answered");
    assert!(
        text.lines()
            .any(|l| l.split([' ', '{']).next() == Some("latchkey_hash_queue_depth")),
        "no latchkey_hash_queue_depth in:\n{text}"
    );
}

// ---------------------------------------------------------------- discovery

#[tokio::test]
async fn the_openapi_document_is_3_1_and_lists_every_public_endpoint() {
    let app = spawn_app().await;
    let resp = app.get("/openapi.json", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = resp.json().await.expect("JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    let expected = [
        ("/v1/register", "post"),
        ("/v1/login", "post"),
        ("/v1/token", "post"),
        ("/v1/logout", "post"),
        ("/v1/logout-all", "post"),
        ("/v1/me", "get"),
        ("/v1/me/events", "get"),
        ("/v1/me/password", "post"),
        ("/v1/sessions", "get"),
        ("/v1/sessions/{id}", "delete"),
        ("/v1/revoke", "post"),
        ("/.well-known/jwks.json", "get"),
        ("/.well-known/oauth-authorization-server", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).is_some_and(|p| p.get(method).is_some()),
            "{method} {path} missing from {:?}",
            paths.keys()
        );
    }
}

#[tokio::test]
async fn the_metadata_names_this_issuer_and_offers_no_password_grant() {
    let app = spawn_app().await;
    let resp = app
        .get("/.well-known/oauth-authorization-server", None)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("text");
    let meta: Value = serde_json::from_str(&text).expect("JSON");
    let issuer = app.settings.issuer.as_str();
    assert_eq!(meta["issuer"], issuer);
    assert_eq!(meta["token_endpoint"], format!("{issuer}/v1/token"));
    assert_eq!(meta["revocation_endpoint"], format!("{issuer}/v1/revoke"));
    assert_eq!(meta["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
    assert_eq!(meta["grant_types_supported"], json!(["refresh_token"]));
    assert!(!text.contains("\"password\""), "{text}");

    let jwks = app
        .client
        .get(meta["jwks_uri"].as_str().expect("jwks_uri"))
        .send()
        .await
        .expect("request");
    assert_eq!(jwks.status(), StatusCode::OK);
    let keys: Value = jwks.json().await.expect("JSON");
    assert!(
        keys["keys"].as_array().is_some_and(|k| !k.is_empty()),
        "{keys}"
    );
}

#[tokio::test]
async fn the_jwks_may_be_cached_for_at_most_five_minutes() {
    let app = spawn_app().await;
    let resp = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cache = resp.headers()["cache-control"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    let max_age = cache
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no max-age in {cache}"));
    assert!(max_age <= 300, "{cache}");
    assert!(!cache.contains("immutable"), "{cache}");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = spawn_app().await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 20 s");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "dropped suspiciously early"
    );
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}
