//! Withdrawing a leaked signing key: `latchkey keys revoke KID`.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_by_every_instance_and_leaves_the_jwks() {
    let a = spawn_app().await;
    let issuer = a.settings.issuer.clone();
    let b = spawn_app_in(a.dir.clone(), |s| {
        s.audience = issuer.clone();
        s.issuer = issuer;
    })
    .await;
    let (email, tokens) = a.new_user().await;
    let leaked = kid_of(&tokens.access);
    // Both instances have verified (and cached) the token before.
    assert_eq!(a.me(&tokens.access).await.status(), StatusCode::OK);
    assert_eq!(b.me(&tokens.access).await.status(), StatusCode::OK);

    let out = a.cli(&["keys", "revoke", &leaked], None);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("signs from now on"),
        "the signer was replaced: {said}"
    );
    for app in [&a, &b] {
        assert_eq!(
            app.me(&tokens.access).await.status(),
            StatusCode::UNAUTHORIZED,
            "a token of the withdrawn key was accepted"
        );
    }
    // Every instance's JWKS drops the key at once (judged on its clock,
    // which the CLI's wall clock may be ahead of here).
    for app in [&a, &b] {
        app.catch_up_with_wall_clock();
        app.clock.advance(1);
    }
    // Past the JWKS endpoint's once-a-second reload limit.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for app in [&a, &b] {
        assert!(
            !jwks_kids(app).await.contains(&leaked),
            "the withdrawn key stayed published"
        );
    }
    // The replacement signs, and both instances accept its tokens.
    let fresh = b.login_ok(&email, PASSWORD).await;
    assert_ne!(kid_of(&fresh.access), leaked);
    assert_eq!(a.me(&fresh.access).await.status(), StatusCode::OK);
    assert_eq!(b.me(&fresh.access).await.status(), StatusCode::OK);
    // The withdrawal is audited, and is never undone by a restart.
    let rows = a.rows().await;
    assert!(rows.events.iter().any(|e| e.kind == "key_revoked"));
    let home = b.stop().await;
    drop(a);
    let again = spawn_app_in(home, |_| {}).await;
    again.clock.advance(1);
    again.auth.reload_keys().await.expect("reload");
    assert!(!jwks_kids(&again).await.contains(&leaked));
}

#[tokio::test]
async fn revoking_an_unknown_or_already_revoked_key_fails_clearly() {
    let app = spawn_app().await;
    let out = app.cli(&["keys", "revoke", "no-such-kid"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no published signing key"));
    // A key that no longer signs is withdrawn without a replacement.
    let (_, tokens) = app.new_user().await;
    let old = kid_of(&tokens.access);
    let rotated = app.cli(&["keys", "rotate", "--now"], None);
    assert!(rotated.status.success(), "{rotated:?}");
    let out = app.cli(&["keys", "revoke", &old], None);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !said.contains("signs from now on"),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let twice = app.cli(&["keys", "revoke", &old], None);
    assert!(!twice.status.success());
}

#[tokio::test]
async fn the_feed_announces_a_withdrawn_key() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    let kid = kid_of(&tokens.access);
    let creds = crate::feed::client(&app).await;
    app.auth
        .withdraw_key(
            app.settings.signing_alg,
            &kid,
            &latchkey::domain::Actor::cli(),
        )
        .await
        .expect("withdraw");
    assert!(
        !jwks_kids(&app).await.contains(&kid),
        "left this instance's JWKS at once"
    );
    let page = crate::feed::page(&app, &creds, "?after=0").await;
    let entries = page["entries"].as_array().expect("entries");
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "key" && e["kid"] == kid.as_str()),
        "{page}"
    );
}
