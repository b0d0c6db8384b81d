//! Credentials under races: logins in flight while a password changes, the
//! account is disabled or logged out everywhere; a rehash racing a password
//! change; correct logins sent at once. Every interleaving must leave no
//! session made from an old credential and no old password restored.

use std::future::Future;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use latchkey::domain::Actor;

/// Rounds of each race: enough that the interleavings vary.
const ROUNDS: usize = 8;

async fn change_password(app: &TestApp, access: &str, current: &str, new: &str) -> StatusCode {
    app.post_auth(
        "/v1/me/password",
        access,
        Some(json!({"current_password": current, "new_password": new})),
    )
    .await
    .status()
}

/// Sends three logins with `password` while `cut` runs, then checks that no
/// login answered 200 left a usable session: its access token is refused,
/// its refresh token too, and the feed lists its session as revoked (so
/// offline verifiers refuse its access token, whose `iat` is in the very
/// second of the cut).
async fn logins_racing<F: Future<Output = ()>>(app: &TestApp, email: &str, cut: F) {
    let body = json!({"email": email, "password": PASSWORD});
    let (answers, ()) = tokio::join!(app.logins_at_once(vec![body; 3]), cut);
    let mut won = Vec::new();
    for answer in answers {
        if answer.status() == StatusCode::OK {
            won.push(Tokens::from_body(answer.json().await.expect("json")));
        }
    }
    let revoked = app.rows().await.revocations;
    for tokens in &won {
        assert_eq!(
            app.me(&tokens.access).await.status(),
            StatusCode::UNAUTHORIZED,
            "a login that raced the cut kept a working access token"
        );
        assert_eq!(
            app.refresh(&tokens.refresh).await.status(),
            StatusCode::BAD_REQUEST,
            "a login that raced the cut kept a working refresh token"
        );
        assert!(
            revoked
                .iter()
                .any(|r| r.session_id.as_deref() == Some(tokens.session_id.as_str())),
            "the feed does not list a raced session"
        );
    }
}

#[tokio::test]
async fn no_login_racing_a_password_change_keeps_a_session() {
    let app = spawn_app().await;
    for _ in 0..ROUNDS {
        let (email, first) = app.new_user().await;
        let change = async {
            let status = change_password(&app, &first.access, PASSWORD, OTHER_PASSWORD).await;
            assert_eq!(status, StatusCode::OK);
        };
        logins_racing(&app, &email, change).await;
        app.login_ok(&email, OTHER_PASSWORD).await;
        assert_eq!(
            app.login(&email, PASSWORD).await.status(),
            StatusCode::BAD_REQUEST
        );
    }
}

/// A login in flight when the user logs out everywhere may legitimately end
/// after it (a login that *began* afterwards is a new login), so this one is
/// told through the store: a session whose login read the user before the
/// cut is refused after it, on either backend.
#[tokio::test]
async fn a_session_verified_before_logout_everywhere_is_not_started_after_it() {
    let app = spawn_app().await;
    let (email, first) = app.new_user().await;
    let store = &app.store;
    let before = store
        .user_by_email(&email)
        .await
        .expect("read")
        .expect("user");
    let resp = app.post_auth("/v1/logout-all", &first.access, None).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let mut late = store
        .session(&first.session_id)
        .await
        .expect("read")
        .expect("session");
    late.id = "late-session".into();
    late.revoked_at = None;
    let inserted = store
        .insert_session(
            &late,
            before.credential_version,
            &latchkey::store::Outgoing::default(),
        )
        .await
        .expect("insert");
    assert!(
        !inserted,
        "a session of the old credential version was started"
    );
    assert!(store.session("late-session").await.expect("read").is_none());
}

#[tokio::test]
async fn no_login_racing_the_disabling_of_an_account_keeps_a_session() {
    let app = spawn_app().await;
    for _ in 0..ROUNDS {
        let (email, _) = app.new_user().await;
        let disable = async {
            app.auth
                .disable_user(&email, &Actor::cli())
                .await
                .expect("disable");
        };
        logins_racing(&app, &email, disable).await;
    }
}

#[tokio::test]
async fn a_rehash_racing_a_password_change_never_restores_the_old_password() {
    let app = spawn_app().await;
    let mut users = Vec::new();
    for _ in 0..ROUNDS {
        users.push(app.new_user().await);
    }
    let issuer = app.settings.issuer.clone();
    let home = app.stop().await;
    // Raised parameters: the next login with the old password rehashes it.
    // The same issuer, so the access tokens issued before stay valid.
    let app = spawn_app_in(home, |s| {
        s.argon2_memory_kib = 2048;
        s.audience = issuer.clone();
        s.issuer = issuer;
    })
    .await;
    for (email, tokens) in &users {
        let body = json!({"email": email, "password": PASSWORD});
        let (_, changed) = tokio::join!(
            app.logins_at_once(vec![body; 2]),
            change_password(&app, &tokens.access, PASSWORD, OTHER_PASSWORD)
        );
        assert_eq!(changed, StatusCode::OK);
        app.login_ok(email, OTHER_PASSWORD).await;
        assert_eq!(
            app.login(email, PASSWORD).await.status(),
            StatusCode::BAD_REQUEST,
            "the old password came back"
        );
    }
}

#[tokio::test]
async fn two_password_changes_at_once_leave_one_password_and_one_session() {
    let app = spawn_app().await;
    let (email, tokens) = app.new_user().await;
    let (a, b) = tokio::join!(
        change_password(&app, &tokens.access, PASSWORD, OTHER_PASSWORD),
        change_password(&app, &tokens.access, PASSWORD, "copper falcon orchard")
    );
    let mut answers = [a, b];
    answers.sort();
    // Either the second was judged after the first committed (its token
    // revoked: 401) or against the old hash that was replaced meanwhile (403).
    assert_eq!(answers[0], StatusCode::OK, "{answers:?}");
    assert!(
        [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&answers[1]),
        "{answers:?}"
    );
    let winner = if a == StatusCode::OK {
        OTHER_PASSWORD
    } else {
        "copper falcon orchard"
    };
    app.login_ok(&email, winner).await;
}

#[tokio::test]
async fn correct_logins_sent_at_once_are_never_throttled() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url) = (app.client.clone(), app.url("/v1/login"));
        let body: Value = json!({"email": email, "password": PASSWORD});
        workers.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..5 {
                let resp = client.post(&url).json(&body).send().await;
                statuses.push(resp.expect("request").status());
            }
            statuses
        });
    }
    let statuses: Vec<StatusCode> = workers.join_all().await.concat();
    assert_eq!(statuses.len(), 40);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
}
