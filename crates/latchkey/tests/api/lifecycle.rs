//! Server housekeeping: request timeouts and background pruning.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn a_request_that_outlives_the_timeout_gets_503_in_the_error_shape() {
    let app = spawn_app_with(|s| {
        s.request_timeout = Duration::from_millis(1);
        s.argon2_memory_kib = 19456;
        s.argon2_iterations = 2;
    })
    .await;
    let resp = app.register_raw(&unique_email(), PASSWORD).await;
    assert!(resp.headers().contains_key("retry-after"));
    let (status, code, _) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
    );
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

async fn count(app: &TestApp, table: &str) -> usize {
    let rows = app.rows().await;
    match table {
        "sessions" => rows.sessions.len(),
        "revocations" => rows.revocations.len(),
        other => panic!("no table {other}"),
    }
}

#[tokio::test]
async fn expired_sessions_and_old_revocations_are_pruned() {
    let app = spawn_app().await;
    let (_, live) = app.new_user().await;
    let (_, ended) = app.new_user().await;
    assert_eq!(
        app.post_auth("/v1/logout", &ended.access, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        (
            count(&app, "sessions").await,
            count(&app, "revocations").await
        ),
        (2, 1)
    );
    app.auth.prune_expired().await.expect("prune");
    assert_eq!(count(&app, "sessions").await, 2, "pruned too early");
    app.clock.advance(2 * 24 * 3600);
    app.auth.prune_expired().await.expect("prune");
    assert_eq!(
        (
            count(&app, "sessions").await,
            count(&app, "revocations").await
        ),
        (1, 0)
    );
    app.refresh_ok(&live.refresh).await;
}
