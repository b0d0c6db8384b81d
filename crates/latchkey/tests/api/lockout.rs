//! Lock-out as a weapon: strangers who guess at an account slow only other
//! strangers, never a device the owner signed in from before; and however
//! patiently they retry, the failures evaluated per day stay under a ceiling.

use latchkey::domain::clock::Clock;
use reqwest::{Response, StatusCode};
use serde_json::json;

use crate::helpers::*;

async fn login_on_device(app: &TestApp, email: &str, password: &str, device: &str) -> Response {
    app.post_json(
        "/v1/login",
        json!({"email": email, "password": password, "device_token": device}),
    )
    .await
}

fn device_token(tokens: &Tokens) -> String {
    tokens.body["device_token"]
        .as_str()
        .expect("a device token in the token response")
        .to_string()
}

fn retry_after(resp: &Response) -> i64 {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds")
}

/// Wrong guesses from strangers until the account answers 429.
async fn lock_out(app: &TestApp, email: &str) {
    for _ in 0..5 {
        assert_eq!(
            app.login(email, OTHER_PASSWORD).await.status(),
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(
        app.login(email, PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn strangers_guessing_do_not_lock_the_owner_out_of_a_known_device() {
    let app = spawn_app().await;
    let (email, registered) = app.new_user().await;
    let device = device_token(&registered);
    assert!(device.starts_with("lk_dt_"));
    lock_out(&app, &email).await;

    let resp = login_on_device(&app, &email, PASSWORD, &device).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let tokens = Tokens::from_body(resp.json().await.expect("json"));
    assert_eq!(
        device_token(&tokens),
        device,
        "a known device keeps its token"
    );
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a device without a token is still a stranger"
    );
}

#[tokio::test]
async fn a_known_device_is_throttled_on_its_own_failures() {
    let app = spawn_app().await;
    let (email, registered) = app.new_user().await;
    let device = device_token(&registered);
    for _ in 0..5 {
        let resp = login_on_device(&app, &email, OTHER_PASSWORD, &device).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
    let resp = login_on_device(&app, &email, PASSWORD, &device).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&resp);
    app.login_ok(&email, PASSWORD).await;

    app.clock.advance(wait);
    let resp = login_on_device(&app, &email, PASSWORD, &device).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_forged_or_foreign_device_token_counts_as_a_stranger() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    let (_, other) = app.new_user().await;
    let foreign = device_token(&other);
    lock_out(&app, &email).await;
    for token in [foreign.as_str(), "lk_dt_AAAA", "not a token"] {
        let resp = login_on_device(&app, &email, PASSWORD, token).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "{token}");
    }
}

#[tokio::test]
async fn a_patient_attacker_gets_no_more_than_the_daily_ceiling_of_guesses() {
    let app = spawn_app_with(|s| s.account_daily_failure_limit = 12).await;
    let (email, registered) = app.new_user().await;
    let device = device_token(&registered);
    let start = app.clock.now();
    let mut evaluated_per_day = [0; 3];
    // Retry the moment each block ends, for three days.
    while app.clock.now() < start + 3 * 24 * 3600 {
        let resp = app.login(&email, OTHER_PASSWORD).await;
        match resp.status() {
            StatusCode::BAD_REQUEST => {
                let day = ((app.clock.now() - start) / (24 * 3600)) as usize;
                evaluated_per_day[day] += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => app.clock.advance(retry_after(&resp)),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        evaluated_per_day.iter().all(|n| *n <= 12),
        "{evaluated_per_day:?}"
    );
    assert_eq!(
        evaluated_per_day[1], 12,
        "the ceiling is per day, not for good"
    );
    // Meanwhile the owner's device was never locked out.
    let resp = login_on_device(&app, &email, PASSWORD, &device).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn password_changes_are_throttled_per_session_not_by_strangers() {
    let app = spawn_app().await;
    let (email, tokens) = app.new_user().await;
    lock_out(&app, &email).await;
    let change = |current: &'static str| {
        app.post_auth(
            "/v1/me/password",
            &tokens.access,
            Some(json!({"current_password": current, "new_password": "copper falcon orchard"})),
        )
    };
    for _ in 0..5 {
        assert_eq!(change(OTHER_PASSWORD).await.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(
        change(PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "wrong current passwords are counted"
    );
    app.clock.advance(1);
    assert_eq!(change(PASSWORD).await.status(), StatusCode::OK);
}
