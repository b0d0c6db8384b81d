//! Refresh rotation, reuse detection and revocation of sessions as HTTP shows
//! them (docs/security.md, "Refresh tokens and sessions"); the rules themselves
//! are tested on the domain, without HTTP.

use crate::helpers::*;

use std::collections::HashSet;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

const RT_PREFIX: &str = "lk_rt_";
const AGENT: &str = "LatchkeyTests/1.0 (sessions; +https://example.com)";

// ---------------------------------------------------------------- helpers

/// Asserts the refresh token is refused with 400 `invalid_grant`.
async fn assert_refresh_rejected(app: &TestApp, refresh: &str) {
    let (status, code, body) = error_of(app.refresh(refresh).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant"),
        "refresh was not refused: {body}"
    );
}

/// Asserts the access token is refused with 401 `invalid_token`.
async fn assert_access_rejected(app: &TestApp, access: &str) {
    let resp = app.me(access).await;
    assert!(
        resp.headers().contains_key("www-authenticate"),
        "401 without a challenge"
    );
    let (status, code, body) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token"),
        "access token still works: {body}"
    );
}

/// Asserts both tokens of a session still work; returns the rotated pair.
async fn assert_session_alive(app: &TestApp, tokens: &Tokens) -> Tokens {
    assert_eq!(
        app.me(&tokens.access).await.status(),
        StatusCode::OK,
        "access token was rejected"
    );
    let next = app.refresh_ok(&tokens.refresh).await;
    assert_eq!(next.session_id, tokens.session_id);
    next
}

/// Asserts both tokens of a session are dead.
async fn assert_session_dead(app: &TestApp, tokens: &Tokens) {
    assert_access_rejected(app, &tokens.access).await;
    assert_refresh_rejected(app, &tokens.refresh).await;
}

async fn refresh_json(app: &TestApp, refresh: &str) -> reqwest::Response {
    app.post_json(
        "/v1/token",
        json!({"grant_type": "refresh_token", "refresh_token": refresh}),
    )
    .await
}

async fn login_as(app: &TestApp, email: &str, agent: &str) -> Tokens {
    let resp = app
        .client
        .post(app.url("/v1/login"))
        .header("user-agent", agent)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK, "login failed");
    Tokens::from_body(resp.json().await.expect("json"))
}

async fn events_page(app: &TestApp, access: &str, query: &str) -> Value {
    let resp = app
        .get(&format!("/v1/me/events{query}"), Some(access))
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "events failed");
    resp.json().await.expect("json")
}

async fn event_list(app: &TestApp, access: &str) -> Vec<Value> {
    let page = events_page(app, access, "?limit=200").await;
    page["events"].as_array().expect("events array").clone()
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().expect("kind").to_string())
        .collect()
}

async fn session_list(app: &TestApp, access: &str) -> Vec<Value> {
    let resp = app.get("/v1/sessions", Some(access)).await;
    assert_eq!(resp.status(), StatusCode::OK, "listing sessions failed");
    let body: Value = resp.json().await.expect("json");
    body["sessions"].as_array().expect("sessions array").clone()
}

fn session_ids(sessions: &[Value]) -> HashSet<String> {
    sessions
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

/// The token with the character at `index` replaced by a different one.
fn flip_char(token: &str, index: usize) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    chars[index] = if chars[index] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// The decoded bytes after the `lk_rt_` prefix.
fn rt_body(token: &str) -> Vec<u8> {
    let body = token
        .strip_prefix(RT_PREFIX)
        .unwrap_or_else(|| panic!("no {RT_PREFIX} prefix: {token}"));
    URL_SAFE_NO_PAD
        .decode(body)
        .expect("refresh token body is base64url")
}

/// 32 fresh random bytes (UUIDv4 randomness; no extra dependency).
fn random_32() -> Vec<u8> {
    [
        uuid::Uuid::new_v4().into_bytes(),
        uuid::Uuid::new_v4().into_bytes(),
    ]
    .concat()
}

/// A well-formed refresh token for `session_id` and `generation` whose MAC
/// is random: what a guesser without the server's key can build.
fn forged_refresh(session_id: &[u8; 16], generation: i64) -> String {
    let body = [
        session_id.as_slice(),
        &generation.to_be_bytes(),
        &random_32(),
    ]
    .concat();
    format!("{RT_PREFIX}{}", URL_SAFE_NO_PAD.encode(body))
}

fn assert_no_store(resp: &reqwest::Response) {
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert!(
        header("cache-control").contains("no-store"),
        "Cache-Control: {:?}",
        header("cache-control")
    );
    assert_eq!(header("pragma"), "no-cache");
}

// ---------------------------------------------------------------- the token endpoint

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_is_not_cacheable() {
    let app = spawn_app().await;
    let (_, first) = app.new_user().await;
    let resp = app.refresh(&first.refresh).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_no_store(&resp);
    let second = Tokens::from_body(resp.json().await.expect("json"));
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(second.body["token_type"], "Bearer");
    assert!(second.body["expires_in"].as_i64().is_some_and(|s| s > 0));
    assert_eq!(app.me(&second.access).await.status(), StatusCode::OK);

    let resp = refresh_json(&app, &second.refresh).await;
    assert_eq!(resp.status(), StatusCode::OK, "a JSON body is accepted too");
    assert_no_store(&resp);
    let third = Tokens::from_body(resp.json().await.expect("json"));
    assert!(![&first.refresh, &second.refresh].contains(&&third.refresh));
    assert_eq!(app.me(&third.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_endpoint_rejects_malformed_requests_without_consuming_the_token() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    let rt = tokens.refresh.as_str();

    let (status, code, _) =
        error_of(app.post_form("/v1/token", &[("refresh_token", rt)]).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "missing grant_type"
    );
    for grant in ["password", "authorization_code", "client_credentials"] {
        let resp = app
            .post_form("/v1/token", &[("grant_type", grant), ("refresh_token", rt)])
            .await;
        let (status, code, _) = error_of(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "unsupported_grant_type"),
            "{grant}"
        );
    }
    let resp = app
        .post_json(
            "/v1/token",
            json!({"grant_type": "password", "username": "a@b.c", "password": PASSWORD}),
        )
        .await;
    assert_eq!(error_of(resp).await.1, "unsupported_grant_type");

    let resp = app
        .post_form("/v1/token", &[("grant_type", "refresh_token")])
        .await;
    let (status, code, _) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "missing refresh_token"
    );
    let resp = app
        .post_json("/v1/token", json!({"grant_type": "refresh_token"}))
        .await;
    assert_eq!(error_of(resp).await.1, "invalid_request");

    let body = format!("grant_type=refresh_token&refresh_token={rt}");
    let resp = app
        .client
        .post(app.url("/v1/token"))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .expect("request");
    let (status, code, _) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );

    assert_session_alive(&app, &tokens).await;
}

// ---------------------------------------------------------------- reuse and grace

#[tokio::test]
async fn reused_refresh_token_after_the_window_revokes_the_session() {
    let app = spawn_app().await;
    let (email, phone) = app.new_user().await;
    let laptop = app.login_ok(&email, PASSWORD).await;
    let second = app.refresh_ok(&phone.refresh).await;

    app.clock.advance(11);
    let (status, code, _) = error_of(app.refresh(&phone.refresh).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert_session_dead(&app, &second).await;
    assert_access_rejected(&app, &phone.access).await;

    let laptop = assert_session_alive(&app, &laptop).await;
    let events = event_list(&app, &laptop.access).await;
    let reuse: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "refresh_reuse")
        .collect();
    assert_eq!(
        reuse.len(),
        1,
        "one refresh_reuse event expected in {events:?}"
    );
    assert_eq!(reuse[0]["session_id"], phone.session_id.as_str());
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_produce_one_successor() {
    let app = spawn_app().await;
    let (_, first) = app.new_user().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (client, url, rt, barrier) = (
            app.client.clone(),
            app.url("/v1/token"),
            first.refresh.clone(),
            barrier.clone(),
        );
        tasks.spawn(async move {
            barrier.wait().await;
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", rt.as_str()),
            ];
            let resp = client.post(url).form(&form).send().await.expect("request");
            (resp.status(), resp.json::<Value>().await.expect("json"))
        });
    }
    let mut successors = HashSet::new();
    while let Some(result) = tasks.join_next().await {
        let (status, body) = result.expect("task");
        assert_eq!(
            status,
            StatusCode::OK,
            "a concurrent refresh failed: {body}"
        );
        successors.insert(Tokens::from_body(body).refresh);
    }
    assert_eq!(successors.len(), 1, "concurrent refreshes forked the chain");
    let second = successors.into_iter().next().expect("successor");

    let rows = app.rows().await;
    let session = rows.sessions.iter().find(|s| s.id == first.session_id);
    let generation = session.expect("session row").generation;
    assert_eq!(generation, 1, "the chain advanced more than once");

    let third = app.refresh_ok(&second).await;
    app.clock.advance(11);
    assert_refresh_rejected(&app, &first.refresh).await;
    assert_refresh_rejected(&app, &third.refresh).await;
}

// ---------------------------------------------------------------- malformed and forged tokens

#[tokio::test]
async fn tampered_refresh_token_is_rejected_without_revoking_the_session() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    let len = tokens.refresh.len();
    // Positions in the session id, the generation and the MAC.
    for index in [
        RT_PREFIX.len() + 2,
        RT_PREFIX.len() + 24,
        RT_PREFIX.len() + 34,
        len - 20,
        len - 2,
    ] {
        assert_refresh_rejected(&app, &flip_char(&tokens.refresh, index)).await;
    }
    assert_refresh_rejected(&app, &tokens.refresh[..len - 1]).await;
    assert_refresh_rejected(&app, &format!("{}A", tokens.refresh)).await;
    assert_session_alive(&app, &tokens).await;
}

#[tokio::test]
async fn garbage_and_unknown_refresh_tokens_are_invalid_grants() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    let random_session = forged_refresh(&uuid::Uuid::new_v4().into_bytes(), 0);
    let garbage = [
        "garbage",
        RT_PREFIX,
        "lk_rt_!!!!",
        "lk_rt_AAAA",
        "Bearer x",
        &"A".repeat(2000),
        &random_session,
    ];
    for token in garbage {
        assert_refresh_rejected(&app, token).await;
    }
    // An access token is never a refresh token, nor the reverse (docs/api.md).
    assert_refresh_rejected(&app, &tokens.access).await;
    assert_access_rejected(&app, &tokens.refresh).await;

    // RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
    let (status, code, _) = error_of(app.refresh("").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert_session_alive(&app, &tokens).await;
}

#[tokio::test]
async fn guessed_token_naming_a_real_session_cannot_revoke_it() {
    let app = spawn_app().await;
    let (_, first) = app.new_user().await;
    let second = app.refresh_ok(&first.refresh).await;
    app.clock.advance(11);
    // A genuine generation-0 token would now be theft; a guessed one must not count.
    let sid = uuid::Uuid::parse_str(&first.session_id)
        .expect("session id is a UUID")
        .into_bytes();
    for generation in [0, 1, 2] {
        assert_refresh_rejected(&app, &forged_refresh(&sid, generation)).await;
    }
    assert_session_alive(&app, &second).await;
}

#[tokio::test]
async fn refresh_tokens_are_distinct_prefixed_and_carry_256_random_bits() {
    // Hashing cost and the throttle (which parallel logins of one account
    // would trip) are not under test here; keep 200 logins quick.
    let app = spawn_app_with(|s| {
        s.argon2_memory_kib = 64;
        s.hash_concurrency = 4;
        s.hash_queue = 256;
        s.account_failure_limit = 0;
    })
    .await;
    let app = Arc::new(app);
    let (email, first) = app.new_user().await;
    let mut all = vec![first];
    let mut logins = tokio::task::JoinSet::new();
    for _ in 0..199 {
        let (app, email) = (app.clone(), email.clone());
        logins.spawn(async move { app.login_ok(&email, PASSWORD).await });
    }
    while let Some(tokens) = logins.join_next().await {
        all.push(tokens.expect("login task"));
    }
    let distinct: HashSet<&str> = all.iter().map(|t| t.refresh.as_str()).collect();
    assert_eq!(distinct.len(), 200, "refresh tokens repeat");
    let mut macs = HashSet::new();
    let (mut ones, mut bits) = (0u32, 0u32);
    for tokens in &all {
        assert!(tokens.refresh.starts_with(RT_PREFIX));
        let body = rt_body(&tokens.refresh);
        let sid = uuid::Uuid::parse_str(&tokens.session_id).expect("uuid");
        assert_eq!(
            &body[..16],
            sid.as_bytes(),
            "the body starts with the session id"
        );
        let secret = &body[16..];
        assert!(
            secret.len() >= 32,
            "only {} bytes beyond the session id",
            secret.len()
        );
        let mac = &body[body.len() - 32..];
        assert!(
            macs.insert(mac.to_vec()),
            "two tokens share their secret part"
        );
        ones += mac.iter().map(|b| b.count_ones()).sum::<u32>();
        bits += 256;
    }
    let share = f64::from(ones) / f64::from(bits);
    assert!(
        (0.47..0.53).contains(&share),
        "secret bits are not random-looking: {share} ones"
    );
    assert_no_token_in_data_dir(&app, &all).await;
}

/// Grey-box: no refresh token, its base64 body or its raw secret bytes is
/// stored anywhere in the data directory (database, WAL, key files).
async fn assert_no_token_in_data_dir(app: &TestApp, all: &[Tokens]) {
    let mut needles: Vec<Vec<u8>> = vec![RT_PREFIX.as_bytes().to_vec()];
    for tokens in all {
        needles.push(
            tokens
                .refresh
                .strip_prefix(RT_PREFIX)
                .expect("prefix")
                .as_bytes()
                .to_vec(),
        );
        needles.push(rt_body(&tokens.refresh)[24..].to_vec());
    }
    // A filter on each needle's first two bytes keeps one pass over the files cheap.
    let mut first_two = vec![false; 1 << 16];
    for n in &needles {
        first_two[usize::from(n[0]) << 8 | usize::from(n[1])] = true;
    }
    let files = walk(app.dir.path());
    assert!(!files.is_empty(), "no files in the data dir");
    // Every row of the database, whatever the backend, plus every file.
    let dump = serde_json::to_vec(&app.rows().await).expect("rows as JSON");
    let contents = files
        .into_iter()
        .map(|f| (format!("{f:?}"), std::fs::read(&f).expect("read data file")))
        .chain([("the database rows".to_string(), dump)]);
    for (file, bytes) in contents {
        for i in 0..bytes.len().saturating_sub(1) {
            if first_two[usize::from(bytes[i]) << 8 | usize::from(bytes[i + 1])] {
                let hit = needles.iter().any(|n| bytes[i..].starts_with(n));
                assert!(
                    !hit,
                    "{file} holds a refresh token or its secret at byte {i}"
                );
            }
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path))
        } else {
            out.push(path)
        }
    }
    out
}

// ---------------------------------------------------------------- logout

#[tokio::test]
async fn logout_with_the_refresh_token_ends_the_session_at_once() {
    let app = spawn_app().await;
    let (email, by_json) = app.new_user().await;
    let resp = app
        .post_json("/v1/logout", json!({"refresh_token": by_json.refresh}))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_session_dead(&app, &by_json).await;

    let by_form = app.login_ok(&email, PASSWORD).await;
    let resp = app
        .post_form("/v1/logout", &[("refresh_token", &by_form.refresh)])
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_session_dead(&app, &by_form).await;
}

#[tokio::test]
async fn logout_with_the_bearer_token_ends_only_that_session() {
    let app = spawn_app().await;
    let (email, phone) = app.new_user().await;
    let laptop = app.login_ok(&email, PASSWORD).await;
    let (_, other_user) = app.new_user().await;

    let resp = app.post_auth("/v1/logout", &phone.access, None).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_session_dead(&app, &phone).await;
    assert_session_alive(&app, &laptop).await;
    assert_session_alive(&app, &other_user).await;
}

#[tokio::test]
async fn logout_is_idempotent_and_needs_exactly_one_token() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    for token in [
        "garbage",
        "lk_rt_AAAA",
        &forged_refresh(&uuid::Uuid::new_v4().into_bytes(), 0),
    ] {
        let resp = app
            .post_json("/v1/logout", json!({"refresh_token": token}))
            .await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "logout with {token}");
    }
    assert_session_alive(&app, &tokens).await;

    let (_, other) = app.new_user().await;
    let resp = app
        .post_auth(
            "/v1/logout",
            &tokens.access,
            Some(json!({"refresh_token": other.refresh})),
        )
        .await;
    let (status, code, _) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "bearer and body token together"
    );
    assert_session_alive(&app, &other).await;

    let resp = app
        .client
        .post(app.url("/v1/logout"))
        .send()
        .await
        .expect("request");
    let (status, code, _) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "no token at all"
    );

    let (_, gone) = app.new_user().await;
    for _ in 0..2 {
        let resp = app
            .post_json("/v1/logout", json!({"refresh_token": gone.refresh}))
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::NO_CONTENT,
            "logout of a revoked session is still 204"
        );
    }
}

#[tokio::test]
async fn logout_all_ends_every_device_but_not_the_next_login() {
    let app = spawn_app().await;
    let (email, first) = app.new_user().await;
    let mut devices = vec![first];
    for _ in 0..3 {
        devices.push(app.login_ok(&email, PASSWORD).await);
    }
    let (_, bystander) = app.new_user().await;
    let resp = app
        .post_auth("/v1/logout-all", &devices[1].access, None)
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for device in &devices {
        assert_session_dead(&app, device).await;
    }
    // Same second as the per-user not_before: a fresh session must still work.
    let fresh = app.login_ok(&email, PASSWORD).await;
    assert_session_alive(&app, &fresh).await;
    assert_session_alive(&app, &bystander).await;
}

// ---------------------------------------------------------------- password change

#[tokio::test]
async fn password_change_ends_every_other_session_and_returns_a_fresh_one() {
    let app = spawn_app().await;
    let (email, phone) = app.new_user().await;
    let laptop = app.login_ok(&email, PASSWORD).await;
    let caller = app.login_ok(&email, PASSWORD).await;
    let (_, bystander) = app.new_user().await;

    let body = json!({"current_password": PASSWORD, "new_password": OTHER_PASSWORD});
    let resp = app
        .post_auth("/v1/me/password", &caller.access, Some(body))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_no_store(&resp);
    let fresh = Tokens::from_body(resp.json().await.expect("json"));
    assert!(
        ![&phone, &laptop, &caller]
            .iter()
            .any(|t| t.session_id == fresh.session_id)
    );

    for old in [&phone, &laptop, &caller] {
        assert_session_dead(&app, old).await;
    }
    assert_session_alive(&app, &fresh).await;
    assert_session_alive(&app, &bystander).await;

    let (status, code, _) = error_of(app.login(&email, PASSWORD).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant"),
        "the old password still logs in"
    );
    assert_eq!(
        app.login(&email, OTHER_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn password_change_refuses_bad_requests_and_keeps_sessions() {
    let app = spawn_app().await;
    let (email, tokens) = app.new_user().await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});

    let resp = app
        .post_auth(
            "/v1/me/password",
            &tokens.access,
            Some(change(OTHER_PASSWORD, "brand new passphrase")),
        )
        .await;
    let (status, code, _) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "invalid_credentials"),
        "wrong current password"
    );

    let local = email.split('@').next().expect("local part");
    for weak in ["short", "password", "12345678", local] {
        let resp = app
            .post_auth(
                "/v1/me/password",
                &tokens.access,
                Some(change(PASSWORD, weak)),
            )
            .await;
        let (status, code, _) = error_of(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "weak_password"),
            "new password {weak:?}"
        );
    }
    for body in [
        json!({}),
        json!({"current_password": PASSWORD}),
        json!({"new_password": OTHER_PASSWORD}),
    ] {
        let resp = app
            .post_auth("/v1/me/password", &tokens.access, Some(body.clone()))
            .await;
        let (status, code, _) = error_of(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "body {body}"
        );
    }
    assert_session_alive(&app, &tokens).await;
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::OK,
        "the password changed anyway"
    );
}

// ---------------------------------------------------------------- listing and deleting sessions

#[tokio::test]
async fn sessions_list_shows_live_sessions_and_marks_the_current_one() {
    let app = spawn_app().await;
    let (email, first) = app.new_user().await;
    let tagged = login_as(&app, &email, AGENT).await;
    let revoked = app.login_ok(&email, PASSWORD).await;
    assert_eq!(
        app.post_auth("/v1/logout", &revoked.access, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );

    let sessions = session_list(&app, &tagged.access).await;
    assert_eq!(
        session_ids(&sessions),
        HashSet::from([first.session_id.clone(), tagged.session_id.clone()])
    );
    for s in &sessions {
        for field in ["id", "created_at", "last_used_at", "expires_at", "ip"] {
            assert!(s[field].is_string(), "{field} missing in {s}");
        }
        assert!(s.get("user_agent").is_some(), "user_agent missing in {s}");
        for field in ["created_at", "last_used_at", "expires_at"] {
            let text = s[field].as_str().expect("time");
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{field} {text:?} is not RFC 3339: {e}"));
        }
        let current = s["id"] == tagged.session_id.as_str();
        assert_eq!(s["current"], current, "current flag of {s}");
    }
    let mine = sessions
        .iter()
        .find(|s| s["id"] == tagged.session_id.as_str())
        .expect("own session");
    assert_eq!(mine["user_agent"], AGENT);
    assert_eq!(mine["ip"], "127.0.0.1");
    assert!(
        !serde_json::to_string(&sessions)
            .expect("json")
            .contains(RT_PREFIX),
        "the list leaks a refresh token"
    );
}

#[tokio::test]
async fn deleting_an_own_session_ends_it_at_once() {
    let app = spawn_app().await;
    let (email, phone) = app.new_user().await;
    let laptop = app.login_ok(&email, PASSWORD).await;

    let resp = app
        .delete_auth(
            &format!("/v1/sessions/{}", phone.session_id),
            &laptop.access,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_session_dead(&app, &phone).await;
    let laptop = assert_session_alive(&app, &laptop).await;
    let remaining = session_ids(&session_list(&app, &laptop.access).await);
    assert_eq!(remaining, HashSet::from([laptop.session_id.clone()]));
}

#[tokio::test]
async fn deleting_another_users_or_an_unknown_session_is_not_found() {
    let app = spawn_app().await;
    let (_, attacker) = app.new_user().await;
    let (_, victim) = app.new_user().await;

    let resp = app
        .delete_auth(
            &format!("/v1/sessions/{}", victim.session_id),
            &attacker.access,
        )
        .await;
    let (status, code, _) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert_session_alive(&app, &victim).await;

    for id in [
        uuid::Uuid::new_v4().to_string(),
        "not-a-session".to_string(),
    ] {
        let resp = app
            .delete_auth(&format!("/v1/sessions/{id}"), &attacker.access)
            .await;
        let (status, code, _) = error_of(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "not_found"),
            "session {id}"
        );
    }
}

// ---------------------------------------------------------------- RFC 7009 revocation

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_session() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    let form = [
        ("token", tokens.refresh.as_str()),
        ("token_type_hint", "refresh_token"),
    ];
    assert_eq!(
        app.post_form("/v1/revoke", &form).await.status(),
        StatusCode::OK
    );
    assert_session_dead(&app, &tokens).await;
}

#[tokio::test]
async fn revoking_an_access_token_ends_its_session() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    let form = [
        ("token", tokens.access.as_str()),
        ("token_type_hint", "access_token"),
    ];
    assert_eq!(
        app.post_form("/v1/revoke", &form).await.status(),
        StatusCode::OK
    );
    assert_session_dead(&app, &tokens).await;
}

#[tokio::test]
async fn revoking_garbage_is_ok_and_a_missing_token_is_invalid() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    for token in ["garbage", "lk_rt_AAAA", "eyJhbGciOiJub25lIn0.e30."] {
        assert_eq!(
            app.post_form("/v1/revoke", &[("token", token)])
                .await
                .status(),
            StatusCode::OK,
            "{token}"
        );
    }
    let forged = forged_refresh(
        &uuid::Uuid::parse_str(&tokens.session_id)
            .expect("uuid")
            .into_bytes(),
        0,
    );
    assert_eq!(
        app.post_form("/v1/revoke", &[("token", &forged)])
            .await
            .status(),
        StatusCode::OK
    );
    assert_session_alive(&app, &tokens).await;

    let resp = app
        .post_form("/v1/revoke", &[("token_type_hint", "refresh_token")])
        .await;
    let (status, code, _) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

// ---------------------------------------------------------------- security events

#[tokio::test]
async fn events_record_the_session_history_newest_first() {
    let app = spawn_app().await;
    let (email, first) = app.new_user().await;
    let second = app.login_ok(&email, PASSWORD).await;
    let resp = app
        .post_json("/v1/logout", json!({"refresh_token": second.refresh}))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let body = json!({"current_password": PASSWORD, "new_password": OTHER_PASSWORD});
    let resp = app
        .post_auth("/v1/me/password", &first.access, Some(body))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let fresh = Tokens::from_body(resp.json().await.expect("json"));

    let events = event_list(&app, &fresh.access).await;
    let expected = ["password_changed", "logout", "login", "register"];
    let seen: Vec<String> = kinds(&events)
        .into_iter()
        .filter(|k| expected.contains(&k.as_str()))
        .collect();
    assert_eq!(seen, expected, "events out of order or missing: {events:?}");
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {ids:?}"
    );
    let logout = events
        .iter()
        .find(|e| e["kind"] == "logout")
        .expect("logout event");
    assert_eq!(logout["session_id"], second.session_id.as_str());
    assert!(events.iter().all(|e| e["created_at"].is_string()));
}

#[tokio::test]
async fn events_paginate_with_before_and_limit() {
    let app = spawn_app().await;
    let (email, tokens) = app.new_user().await;
    for _ in 0..4 {
        app.login_ok(&email, PASSWORD).await;
    }
    let all: Vec<i64> = event_list(&app, &tokens.access)
        .await
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    assert!(all.len() >= 5, "expected at least 5 events, got {all:?}");

    let mut paged = Vec::new();
    let mut query = "?limit=2".to_string();
    loop {
        let page = events_page(&app, &tokens.access, &query).await;
        let events = page["events"].as_array().expect("events");
        assert!(events.len() <= 2);
        paged.extend(events.iter().map(|e| e["id"].as_i64().expect("id")));
        match page["next_before"].as_i64() {
            Some(before) => query = format!("?limit=2&before={before}"),
            None => break,
        }
        assert!(paged.len() <= all.len(), "pagination does not end");
    }
    assert_eq!(paged, all);

    for bad in ["?limit=0", "?limit=1000", "?limit=-1", "?limit=ten"] {
        let (status, code, _) = error_of(
            app.get(&format!("/v1/me/events{bad}"), Some(&tokens.access))
                .await,
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn events_of_other_users_are_never_shown() {
    let app = spawn_app().await;
    let (email, alice) = app.new_user().await;
    app.login_ok(&email, PASSWORD).await;
    let (status, _, _) = error_of(app.login(&email, OTHER_PASSWORD).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, bob) = app.new_user().await;

    let alices = event_list(&app, &alice.access).await;
    let bobs = event_list(&app, &bob.access).await;
    assert_eq!(
        kinds(&bobs),
        ["register"],
        "bob sees more than his own events"
    );
    assert_eq!(bobs[0]["session_id"], bob.session_id.as_str());
    let alice_ids: HashSet<i64> = alices
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    assert!(
        bobs.iter()
            .all(|e| !alice_ids.contains(&e["id"].as_i64().expect("id")))
    );
    assert!(
        kinds(&alices).contains(&"login_failed".to_string()),
        "alice's failed login is missing: {alices:?}"
    );
    let before_all = events_page(&app, &bob.access, &format!("?before={}", i64::MAX)).await;
    assert_eq!(before_all["events"].as_array().expect("events").len(), 1);
}

/// An instance whose clock is behind the database's (stepped back, or never
/// synchronised) sees an expired session as live; the statements that rotate
/// and list sessions judge deadlines at the later of the two clocks, so it
/// cannot hand the session a new refresh token.
#[tokio::test]
async fn an_instance_whose_clock_is_behind_cannot_revive_an_expired_session() {
    let app = spawn_app().await;
    // The rows of a session that expired ten days ago, idle for longer.
    app.clock.advance(-40 * 24 * 3600);
    let (_, tokens) = app.new_user().await;
    assert_refresh_rejected(&app, &tokens.refresh).await;
    let listed = app.get("/v1/sessions", Some(&tokens.access)).await;
    assert_eq!(listed.status(), StatusCode::OK);
    let body: serde_json::Value = listed.json().await.expect("json");
    assert!(
        body["sessions"].as_array().expect("sessions").is_empty(),
        "{body}"
    );
}

#[tokio::test]
async fn sessions_and_events_name_the_device_and_keep_the_raw_user_agent() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    let agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
    let resp = app
        .client
        .post(app.url("/v1/login"))
        .header("user-agent", agent)
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), StatusCode::OK);
    let tokens = Tokens::from_body(resp.json().await.expect("json"));
    let list: Value = app
        .get("/v1/sessions", Some(&tokens.access))
        .await
        .json()
        .await
        .expect("json");
    let chrome = list["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["id"] == tokens.session_id.as_str())
        .expect("the new session")
        .clone();
    assert_eq!(chrome["device"], "Chrome 156 on Linux");
    assert_eq!(chrome["user_agent"], agent);
    // The test client's own agent is not a browser: no name, the raw header stays.
    let other = list["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["id"] != tokens.session_id.as_str())
        .expect("the registration's session")
        .clone();
    assert!(other["device"].is_null(), "{other}");

    let events: Value = app
        .get("/v1/me/events", Some(&tokens.access))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(events["events"][0]["kind"], "login");
    assert_eq!(events["events"][0]["device"], "Chrome 156 on Linux");
}

/// Step-up: tokens carry `auth_time` and `amr`; revoking other devices and
/// logging out everywhere need a proof younger than `reauth_max_age` (10
/// minutes), which `POST /v1/reauthenticate` renews without a new session.
#[tokio::test]
async fn revoking_other_devices_needs_a_recent_sign_in_which_reauthentication_renews() {
    let app = spawn_app().await;
    let (email, first) = app.new_user().await;
    let other = app.login_ok(&email, PASSWORD).await;
    let signed_in = decode_segment(&first.access, 1);
    assert_eq!(signed_in["amr"], serde_json::json!(["pwd"]));
    let auth_time = signed_in["auth_time"].as_i64().expect("auth_time");
    assert_eq!(auth_time, signed_in["iat"].as_i64().expect("iat"));

    app.clock.advance(11 * 60);
    let other = app.refresh_ok(&other.refresh).await;
    let refreshed = app.refresh_ok(&first.refresh).await;
    assert_eq!(
        decode_segment(&refreshed.access, 1)["auth_time"],
        auth_time,
        "a refresh is not a proof of identity"
    );
    let path = format!("/v1/sessions/{}", other.session_id);
    let (status, code, body) = error_of(app.delete_auth(&path, &refreshed.access).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "reauthentication_required")
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("/v1/reauthenticate"),
        "{body}"
    );
    let resp = app
        .post_auth("/v1/logout-all", &refreshed.access, None)
        .await;
    assert_eq!(error_of(resp).await.1, "reauthentication_required");
    assert_eq!(
        app.me(&other.access).await.status(),
        StatusCode::OK,
        "nothing ended"
    );

    let wrong = serde_json::json!({"password": "not the password at all"});
    let resp = app
        .post_auth("/v1/reauthenticate", &refreshed.access, Some(wrong))
        .await;
    assert_eq!(error_of(resp).await.1, "invalid_credentials");
    let right = serde_json::json!({"password": PASSWORD});
    let resp = app
        .post_auth("/v1/reauthenticate", &refreshed.access, Some(right))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    assert!(body.get("refresh_token").is_none(), "no new refresh token");
    assert_eq!(body["session_id"], first.session_id.as_str());
    let renewed = body["access_token"].as_str().expect("token").to_string();
    let now = latchkey::domain::clock::Clock::now(app.clock.as_ref());
    assert_eq!(decode_segment(&renewed, 1)["auth_time"], now);

    assert_eq!(
        app.delete_auth(&path, &renewed).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.me(&other.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The proof is the session's: the next refresh carries it on.
    let later = app.refresh_ok(&refreshed.refresh).await;
    assert_eq!(decode_segment(&later.access, 1)["auth_time"], now);
    assert!(
        app.event_kinds(&later.access)
            .await
            .contains(&"reauthenticated".to_string())
    );
    // Its own session is always the caller's to end.
    assert_eq!(
        app.post_auth("/v1/logout", &later.access, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
}
