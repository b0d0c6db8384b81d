//! The axum extractor and the tower layer: RFC 6750 answers for a missing
//! or bad token, the claims for a good one.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use axum::{Extension, Json, Router};
use latchkey_verify::axum::{Authenticated, VerifyLayer};
use latchkey_verify::{Claims, SigningAlg, Verifier};
use serde_json::Value;
use tower::ServiceExt as _;

use crate::support::{FakeLatchkey, Signer, claims};

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    body: Value,
}

async fn call(app: &Router, path: &str, authorization: Option<&str>) -> Answer {
    let mut request = Request::get(path);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        challenge,
        body,
    }
}

async fn me(Authenticated(claims): Authenticated) -> Json<Claims> {
    Json(claims)
}

async fn maybe(auth: Option<Authenticated>) -> String {
    auth.map_or_else(|| "anonymous".into(), |Authenticated(c)| c.sub)
}

async fn orders(Extension(claims): Extension<Claims>) -> Json<Claims> {
    Json(claims)
}

async fn apps() -> (FakeLatchkey, Signer, Router, Router) {
    let signer = Signer::generate(SigningAlg::EdDSA, "k1");
    let fake = FakeLatchkey::spawn(&[&signer]).await;
    let verifier = Verifier::builder(&fake.issuer).build().await.unwrap();
    let extracting = Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .with_state(verifier.clone());
    let layered = Router::new()
        .route("/orders", get(orders))
        .layer(VerifyLayer::new(verifier));
    (fake, signer, extracting, layered)
}

fn assert_missing(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // No error attribute in the challenge (RFC 6750 §3.1: no credentials were
    // sent); the body names the error as the Latchkey server does.
    assert_eq!(answer.challenge.as_deref(), Some(r#"Bearer realm="api""#));
    assert_eq!(answer.body["error"], "invalid_token");
}

fn assert_invalid(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let challenge = answer.challenge.as_deref().unwrap();
    assert!(
        challenge.starts_with(r#"Bearer realm="api", error="invalid_token", error_description=""#),
        "{challenge}"
    );
    assert_eq!(answer.body["error"], "invalid_token");
    assert!(answer.body["error_description"].is_string());
}

#[tokio::test]
async fn the_extractor_answers_401_without_a_token_or_with_a_bad_one() {
    let (fake, signer, app, _) = apps().await;
    assert_missing(&call(&app, "/me", None).await);
    assert_missing(&call(&app, "/me", Some("Basic dXNlcjpwYXNz")).await);
    assert_invalid(&call(&app, "/me", Some("Bearer not.a.token")).await);
    let forged = Signer::generate(SigningAlg::EdDSA, "k1").sign(&claims(&fake.issuer, "u1", "s1"));
    assert_invalid(&call(&app, "/me", Some(&format!("Bearer {forged}"))).await);

    let token = signer.sign(&claims(&fake.issuer, "u1", "s1"));
    let answer = call(&app, "/me", Some(&format!("bEaReR {token}"))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["sub"], "u1");
    assert_eq!(answer.body["sid"], "s1");
}

#[tokio::test]
async fn an_optional_extractor_is_anonymous_without_a_token_but_refuses_a_bad_one() {
    let (fake, signer, app, _) = apps().await;
    let answer = call(&app, "/maybe", None).await;
    assert_eq!(
        (answer.status, answer.body),
        (StatusCode::OK, Value::from("anonymous"))
    );
    assert_invalid(&call(&app, "/maybe", Some("Bearer not.a.token")).await);
    let token = signer.sign(&claims(&fake.issuer, "u7", "s1"));
    let answer = call(&app, "/maybe", Some(&format!("Bearer {token}"))).await;
    assert_eq!(
        (answer.status, answer.body),
        (StatusCode::OK, Value::from("u7"))
    );
}

#[tokio::test]
async fn the_layer_answers_401_without_a_token_or_with_a_bad_one() {
    let (fake, signer, _, app) = apps().await;
    assert_missing(&call(&app, "/orders", None).await);
    assert_invalid(&call(&app, "/orders", Some("Bearer not.a.token")).await);
    let expired = Claims {
        exp: crate::support::now() - 60,
        iat: crate::support::now() - 400,
        ..claims(&fake.issuer, "u1", "s1")
    };
    let answer = call(
        &app,
        "/orders",
        Some(&format!("Bearer {}", signer.sign(&expired))),
    )
    .await;
    assert_invalid(&answer);
    assert_eq!(
        answer.body["error_description"],
        "the access token has expired"
    );

    let token = signer.sign(&claims(&fake.issuer, "u1", "s1"));
    let answer = call(&app, "/orders", Some(&format!("Bearer {token}"))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["sub"], "u1");
}

#[tokio::test]
async fn a_stale_feed_is_a_503_not_a_401() {
    let signer = Signer::generate(SigningAlg::EdDSA, "k1");
    let fake = FakeLatchkey::spawn(&[&signer]).await;
    let builder = fake.builder().max_staleness(crate::support::STALE_SOON);
    let verifier = builder.build().await.unwrap();
    let app = Router::new()
        .route("/me", get(me))
        .with_state(verifier.clone());
    let token = signer.sign(&claims(&fake.issuer, "u1", "s1"));
    fake.state
        .feed_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    crate::support::eventually("the feed goes stale", || async {
        verifier.status().feed.unwrap().stale
    })
    .await;
    let answer = call(&app, "/me", Some(&format!("Bearer {token}"))).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.body["error"], "temporarily_unavailable");
    assert_eq!(answer.challenge, None);
}
