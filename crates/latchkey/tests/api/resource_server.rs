//! The example resource server (examples/resource-server), protected by
//! `latchkey-verify`, against a real Latchkey: tokens verified offline, and a
//! logged-out token refused within the feed's poll interval plus a second.

use std::io::Write;
use std::time::{Duration, Instant};

use latchkey_verify::Verifier;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;
use latchkey::domain::Actor;

const POLL: Duration = Duration::from_secs(2);

/// Starts the example API in-process against `app`; returns its base URL.
async fn start_resource_server(app: &TestApp) -> (String, Verifier) {
    let (client, secret) = app
        .auth
        .add_client("orders-api", false, &Actor::cli())
        .await
        .expect("client");
    let verifier = Verifier::builder(app.settings.issuer.clone())
        .revocation_feed(client.id, secret)
        .poll_interval(POLL)
        .build()
        .await
        .expect("verifier");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = resource_server::router(verifier.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, verifier)
}

async fn orders(app: &TestApp, base: &str, token: &str) -> reqwest::Response {
    app.client
        .get(format!("{base}/orders"))
        .bearer_auth(token)
        .send()
        .await
        .expect("orders")
}

#[tokio::test]
async fn the_example_api_accepts_valid_tokens_and_refuses_bad_ones() {
    let app = spawn_app().await;
    let (base, _verifier) = start_resource_server(&app).await;
    let (_, tokens) = app.new_user().await;
    let ok = orders(&app, &base, &tokens.access).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = ok.json().await.expect("json");
    assert_eq!(body["session"], tokens.session_id.as_str());
    let mut forged = tokens.access.clone();
    forged.pop();
    assert_eq!(
        orders(&app, &base, &forged).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        orders(&app, &base, &tokens.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let anonymous = app
        .client
        .get(format!("{base}/orders"))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));
}

/// Polls the example API until it refuses `token`; returns how long it took.
async fn time_until_refused(app: &TestApp, base: &str, token: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if orders(app, base, token).await.status() == StatusCode::UNAUTHORIZED {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "the revoked token was still accepted after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_logged_out_token_is_refused_by_the_api_within_the_poll_interval_plus_a_second() {
    let app = spawn_app().await;
    let (base, _verifier) = start_resource_server(&app).await;
    let (email, tokens) = app.new_user().await;
    let other = app.login_ok(&email, PASSWORD).await;
    assert_eq!(
        orders(&app, &base, &tokens.access).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.post_auth("/v1/logout", &tokens.access, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let latency =
        time_until_refused(&app, &base, &tokens.access, POLL + Duration::from_secs(1)).await;
    let _ = writeln!(
        std::io::stderr(),
        "revocation latency at the example API (logout, poll {POLL:?}): {latency:?}"
    );
    assert_eq!(
        orders(&app, &base, &other.access).await.status(),
        StatusCode::OK,
        "another session was refused"
    );

    assert_eq!(
        app.post_auth("/v1/logout-all", &other.access, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let latency =
        time_until_refused(&app, &base, &other.access, POLL + Duration::from_secs(1)).await;
    let _ = writeln!(
        std::io::stderr(),
        "revocation latency at the example API (logout-all): {latency:?}"
    );
}

#[tokio::test]
async fn a_withdrawn_key_is_refused_by_the_api_within_the_poll_interval_plus_a_second() {
    let app = spawn_app().await;
    let (base, _verifier) = start_resource_server(&app).await;
    let (_, tokens) = app.new_user().await;
    assert_eq!(
        orders(&app, &base, &tokens.access).await.status(),
        StatusCode::OK
    );
    let kid = kid_of(&tokens.access);
    let out = app.cli(&["keys", "revoke", &kid], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = time_until_refused(&app, &base, &tokens.access, POLL + Duration::from_secs(1)).await;
    eprintln!("a token of a withdrawn key was refused by the API after {took:?}");
}
