//! What resource servers use: client credentials, RFC 7662 introspection and
//! the revocation feed.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use latchkey::domain::Actor;

pub(crate) async fn client(app: &TestApp) -> (String, String) {
    let (record, secret) = app
        .auth
        .add_client("orders-api", false, &Actor::cli())
        .await
        .expect("client");
    (record.id, secret)
}

async fn introspect(app: &TestApp, creds: &(String, String), token: &str) -> Value {
    let resp = app
        .client
        .post(app.url("/v1/introspect"))
        .basic_auth(&creds.0, Some(&creds.1))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("json")
}

async fn feed(app: &TestApp, creds: &(String, String), query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/v1/revocations{query}")))
        .basic_auth(&creds.0, Some(&creds.1))
        .send()
        .await
        .expect("feed")
}

pub(crate) async fn page(app: &TestApp, creds: &(String, String), query: &str) -> Value {
    let resp = feed(app, creds, query).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("json")
}

#[tokio::test]
async fn clients_are_managed_from_the_command_line_and_the_secret_is_shown_once() {
    let app = spawn_app().await;
    let out = app.cli(&["clients", "add", "billing"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |name: &str| {
        let line = text.lines().find(|l| l.starts_with(name)).expect("field");
        line.split_whitespace().last().expect("value").to_string()
    };
    let creds = (field("client_id:"), field("client_secret:"));
    assert!(creds.1.starts_with("lk_cs_"));
    let list = String::from_utf8_lossy(&app.cli(&["clients", "list"], None).stdout).to_string();
    assert!(
        list.contains(&creds.0) && list.contains("billing") && !list.contains(&creds.1),
        "{list}"
    );
    let (_, tokens) = app.new_user().await;
    assert_eq!(
        introspect(&app, &creds, &tokens.access).await["active"],
        true
    );
    let removed = app.cli(&["clients", "remove", &creds.0], None);
    assert!(removed.status.success());
    assert_eq!(
        feed(&app, &creds, "").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn resource_endpoints_require_valid_client_credentials() {
    let app = spawn_app().await;
    let (id, secret) = client(&app).await;
    let (_, tokens) = app.new_user().await;
    let anonymous = app
        .post_form("/v1/introspect", &[("token", &tokens.access)])
        .await;
    assert_eq!(
        anonymous
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"latchkey\"")
    );
    let (status, code, _) = error_of(anonymous).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    for creds in [
        (id.clone(), format!("{secret}x")),
        ("lk_client_nobody".into(), secret.clone()),
    ] {
        let (status, code, _) = error_of(feed(&app, &creds, "").await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNAUTHORIZED, "invalid_client")
        );
        // The token is checked alongside the credentials; the answer of a
        // live token still goes only to a client whose credentials hold,
        // and a request without a token is refused for the client first.
        for form in [vec![("token", tokens.access.as_str())], vec![]] {
            let resp = app
                .client
                .post(app.url("/v1/introspect"))
                .basic_auth(&creds.0, Some(&creds.1))
                .form(&form)
                .send()
                .await
                .expect("introspect");
            let (status, code, body) = error_of(resp).await;
            assert_eq!(
                (status, code.as_str()),
                (StatusCode::UNAUTHORIZED, "invalid_client"),
                "{body}"
            );
            assert!(
                body.get("active").is_none() && body.get("sub").is_none(),
                "{body}"
            );
        }
    }
    let bearer = app.get("/v1/revocations", Some(&tokens.access)).await;
    assert_eq!(
        bearer.status(),
        StatusCode::UNAUTHORIZED,
        "a user's token is not a client credential"
    );
}

#[tokio::test]
async fn introspection_describes_active_tokens_and_says_nothing_about_others() {
    let app = spawn_app().await;
    let creds = client(&app).await;
    let (_, tokens) = app.new_user().await;
    let active = introspect(&app, &creds, &tokens.access).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["token_type"], "Bearer");
    assert_eq!(active["sid"], tokens.session_id.as_str());
    for claim in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"] {
        assert!(!active[claim].is_null(), "missing {claim}: {active}");
    }
    let inactive = json!({"active": false});
    let mut forged = tokens.access.clone();
    forged.pop();
    // Signed with the real key (as a leaked key could), so only the
    // database can say no: a session that does not exist, and a real
    // session named by a token of another user.
    let (_, stranger) = app.new_user().await;
    let header = app.valid_header(&tokens);
    let mut claims = app.valid_claims(&tokens);
    claims["sid"] = json!("no-such-session");
    let no_session = app.sign_json(&header, &claims).await;
    claims["sid"] = json!(stranger.session_id);
    let not_its_session = app.sign_json(&header, &claims).await;
    for (case, token) in [
        ("refresh token", tokens.refresh.as_str()),
        ("forged", forged.as_str()),
        ("garbage", "not-a-token"),
        ("no such session", no_session.as_str()),
        ("another user's session", not_its_session.as_str()),
    ] {
        assert_eq!(introspect(&app, &creds, token).await, inactive, "{case}");
    }
    // Asked together, each answer is its own.
    let (live, dead, other) = tokio::join!(
        introspect(&app, &creds, &tokens.access),
        introspect(&app, &creds, &no_session),
        introspect(&app, &creds, &stranger.access),
    );
    assert_eq!(live["sid"], tokens.session_id.as_str());
    assert_eq!(dead, inactive);
    assert_eq!(other["sid"], stranger.session_id.as_str());
    app.clock
        .advance(app.settings.access_ttl.as_secs() as i64 + 10);
    assert_eq!(
        introspect(&app, &creds, &tokens.access).await,
        inactive,
        "expired"
    );
    let (_, other) = app.new_user().await;
    assert_eq!(
        app.post_auth("/v1/logout", &other.access, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        introspect(&app, &creds, &other.access).await,
        inactive,
        "revoked"
    );
    let missing = app
        .client
        .post(app.url("/v1/introspect"))
        .basic_auth(&creds.0, Some(&creds.1))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_feed_lists_ended_sessions_and_user_cutoffs_in_cursor_order() {
    let app = spawn_app().await;
    let creds = client(&app).await;
    let (email, first) = app.new_user().await;
    let second = app.login_ok(&email, PASSWORD).await;
    assert_eq!(
        app.post_auth("/v1/logout", &first.access, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.post_auth("/v1/logout-all", &second.access, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let all = page(&app, &creds, "?after=0").await;
    let entries = all["entries"].as_array().expect("entries");
    let kinds: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().expect("kind"),
                e["sid"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("session", first.session_id.as_str()),
            // Logout everywhere cuts the user first, then ends the sessions.
            ("user", ""),
            ("session", second.session_id.as_str()),
        ]
    );
    assert!(
        entries[1]["not_before"].as_i64().expect("not_before")
            >= entries[1]["revoked_at"].as_i64().expect("t") - 1
    );
    let cursors: Vec<i64> = entries
        .iter()
        .map(|e| e["cursor"].as_i64().expect("cursor"))
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    assert!(
        all["retention_seconds"].as_i64().expect("retention")
            >= app.settings.access_ttl.as_secs() as i64
    );
}

#[tokio::test]
async fn pages_join_up_and_the_cursor_follows_the_last_entry_at_once() {
    let app = spawn_app().await;
    let creds = client(&app).await;
    for _ in 0..5 {
        let (_, t) = app.new_user().await;
        app.post_auth("/v1/logout", &t.access, None).await;
    }
    let fresh = page(&app, &creds, "?after=0").await;
    let entries = fresh["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 5);
    assert_eq!(
        fresh["next_cursor"], entries[4]["cursor"],
        "cursors are in commit order: nothing needs repeating"
    );
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let p = page(&app, &creds, &format!("?after={after}&limit=2")).await;
        seen.extend(
            p["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .map(|e| e["cursor"].as_i64().expect("c")),
        );
        after = p["next_cursor"].as_i64().expect("next");
        if p["has_more"] != true {
            break;
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(after, *seen.last().expect("last"));
    assert!(
        page(&app, &creds, &format!("?after={after}")).await["entries"]
            .as_array()
            .expect("e")
            .is_empty()
    );
    for bad in ["?limit=0", "?limit=100000", "?after=-1", "?after=x"] {
        assert_eq!(
            feed(&app, &creds, bad).await.status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_cursor_older_than_the_kept_revocations_is_told_to_resynchronise() {
    let app = spawn_app().await;
    let creds = client(&app).await;
    for _ in 0..3 {
        let (_, t) = app.new_user().await;
        app.post_auth("/v1/logout", &t.access, None).await;
    }
    app.clock.advance(app.auth.revocation_retention() + 60);
    app.auth.prune_expired().await.expect("prune");
    let (_, t) = app.new_user().await;
    app.post_auth("/v1/logout", &t.access, None).await;
    let (status, code, _) = error_of(feed(&app, &creds, "?after=1").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::GONE, "cursor_expired")
    );
    let resync = page(&app, &creds, "?after=0").await;
    assert_eq!(resync["entries"].as_array().expect("entries").len(), 1);
}

#[tokio::test]
async fn metadata_names_the_introspection_endpoint() {
    let app = spawn_app().await;
    let meta: Value = app
        .get("/.well-known/oauth-authorization-server", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        meta["introspection_endpoint"],
        format!("{}/v1/introspect", app.settings.issuer)
    );
    // RFC 8414 §2: required, and a JSON array of values.
    let types = meta["response_types_supported"].as_array().expect("array");
    assert!(!types.is_empty(), "{meta}");
}

#[tokio::test]
async fn cursors_continue_above_pruned_ones_after_an_export_and_import() {
    use latchkey::store::RevokeReason;
    let app = spawn_app().await;
    let (_, first) = app.new_user().await;
    let (_, second) = app.new_user().await;
    for t in [&first, &second] {
        app.post_auth("/v1/logout", &t.access, None).await;
    }
    app.clock.advance(app.auth.revocation_retention() + 60);
    app.auth.prune_expired().await.expect("prune");
    let snapshot = app.rows().await;
    assert!(snapshot.revocations.is_empty(), "the feed should be pruned");
    assert!(
        snapshot.revocation_cursor >= 2,
        "{}",
        snapshot.revocation_cursor
    );

    let home = TestHome::new(backend()).await;
    let target = latchkey::app::open_store(&test_settings(&home))
        .await
        .expect("target store");
    target.import(&snapshot).await.expect("import");
    let user = &snapshot.users[0].id;
    target
        .revoke_user_sessions(
            user,
            None,
            RevokeReason::LogoutAll,
            0,
            Some(0),
            &latchkey::store::Outgoing::default(),
        )
        .await
        .expect("revoke");
    let after = target.revocations_after(0, 10).await.expect("feed");
    assert!(
        after.iter().all(|r| r.cursor > snapshot.revocation_cursor),
        "a cursor was reused after import: {after:?}"
    );
}
