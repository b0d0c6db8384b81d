//! Property-based fuzzing of the HTTP edges against a real server: any body
//! to any credential endpoint, any cookie and CSRF header. Whatever arrives,
//! the answer is never a 5xx, and every refusal is one of the documented
//! errors in the documented shape. `PROPTEST_CASES` sets the number of cases
//! (the long run's command is in docs/security.md).

use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// The error codes of docs/api.md.
const DOCUMENTED: [&str; 16] = [
    "invalid_request",
    "invalid_grant",
    "unsupported_grant_type",
    "invalid_token",
    "csrf_failed",
    "invalid_client",
    "cursor_expired",
    "invalid_credentials",
    "not_found",
    "method_not_allowed",
    "email_taken",
    "unsupported_media_type",
    "payload_too_large",
    "weak_password",
    "rate_limited",
    "temporarily_unavailable",
];

/// One server for every case of a target, on a runtime of its own (proptest
/// drives synchronous code); dropped, with its data, when the target ends.
struct Target {
    app: TestApp,
    access: String,
    runtime: tokio::runtime::Runtime,
}

/// Runs `case` on every input `strategy` gives, against a fresh server on
/// SQLite (the edges are HTTP's; the backend does not change them).
fn run<S: Strategy>(strategy: S, case: impl Fn(&Target, S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (app, access) = runtime.block_on(async {
        let home = std::sync::Arc::new(TestHome::new(Backend::Sqlite).await);
        let app = spawn_app_in(home, |s| {
            s.cors_origins = vec!["https://app.example".into()]
        })
        .await;
        let (_, tokens) = app.new_user().await;
        (app, tokens.access)
    });
    let target = Target {
        app,
        access,
        runtime,
    };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::default());
    let outcome = runner.run(&strategy, |input| case(&target, input));
    let Target { app, runtime, .. } = target;
    runtime.block_on(async move { drop(app.stop().await) });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

/// Sends one request and checks the answer's shape.
fn check(t: &Target, request: reqwest::RequestBuilder) -> Result<(), TestCaseError> {
    let (status, body) = t.runtime.block_on(async {
        let resp = request.send().await.expect("an answer");
        let status = resp.status();
        (status, resp.bytes().await.expect("body"))
    });
    prop_assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}"
    );
    if status.is_client_error() || status.is_server_error() {
        let error: Value = serde_json::from_slice(&body)
            .map_err(|e| TestCaseError::fail(format!("{status}: not JSON ({e}): {body:?}")))?;
        let code = error["error"].as_str().unwrap_or_default();
        prop_assert!(
            DOCUMENTED.contains(&code),
            "{status}: undocumented error {error}"
        );
        prop_assert!(error["error_description"].is_string(), "{error}");
    }
    Ok(())
}

/// Bodies: JSON values of every shape, JSON objects with the endpoints' own
/// field names, form bodies, and raw bytes.
fn body() -> impl Strategy<Value = (Vec<u8>, &'static str)> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::from),
    ];
    let json = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let field = proptest::sample::select(vec![
        "email",
        "password",
        "name",
        "refresh_token",
        "grant_type",
        "token",
        "token_type_hint",
        "current_password",
        "new_password",
        "device_token",
    ]);
    let object = proptest::collection::btree_map(field, ".{0,60}", 0..5)
        .prop_map(|m| serde_json::to_vec(&m).expect("json"));
    prop_oneof![
        json.prop_map(|v| (serde_json::to_vec(&v).expect("json"), "application/json")),
        object.prop_map(|b| (b, "application/json")),
        "[ -~]{0,120}".prop_map(|s| (s.into_bytes(), "application/x-www-form-urlencoded")),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(|b| (b, "application/json")),
    ]
}

fn endpoint() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![
        "/v1/register",
        "/v1/login",
        "/v1/token",
        "/v1/logout",
        "/v1/revoke",
        "/v1/me/password",
        "/v1/introspect",
    ])
}

#[test]
fn any_body_to_any_credential_endpoint_gets_a_documented_answer() {
    let inputs = (endpoint(), body(), any::<bool>());
    run(inputs, |t, (path, (body, content_type), bearer)| {
        let mut request = t
            .app
            .client
            .post(t.app.url(path))
            .header("content-type", content_type)
            .body(body);
        if bearer {
            request = request.bearer_auth(&t.access);
        }
        check(t, request)
    });
}

#[test]
fn any_cookie_and_csrf_header_gets_a_documented_answer() {
    let origin = prop_oneof![
        Just("https://app.example"),
        Just("https://evil.example"),
        Just("null")
    ];
    let inputs = ("[ -~]{0,200}", "[ -~]{0,80}", origin);
    run(inputs, |t, (cookie, csrf, origin)| {
        let mut request = t
            .app
            .client
            .post(t.app.url("/v1/token"))
            .header("origin", origin)
            .form(&[("grant_type", "refresh_token")]);
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&cookie) {
            request = request.header("cookie", value);
        }
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&csrf) {
            request = request.header("x-csrf-token", value);
        }
        check(t, request)
    });
}
