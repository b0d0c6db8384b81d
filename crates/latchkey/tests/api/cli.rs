//! The `latchkey` binary: admin commands on a live deployment, restarts,
//! key rotation, configuration errors, graceful shutdown and log hygiene.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn users_add_reads_the_password_from_stdin_and_the_user_can_log_in() {
    let app = spawn_app().await;
    let email = unique_email();
    let out = app.cli(
        &[
            "users",
            "add",
            "--email",
            &email,
            "--name",
            "Ada",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(stdout(&out).contains(&email));
    app.login_ok(&email, PASSWORD).await;
    let show = stdout(&app.cli(&["users", "show", &email.to_uppercase()], None));
    assert!(
        show.contains("Ada") && show.contains("active") && show.contains("live sessions:  1"),
        "{show}"
    );
    let list = stdout(&app.cli(&["users", "list"], None));
    assert!(list.contains(&email), "{list}");
}

#[tokio::test]
async fn users_add_refuses_weak_passwords_and_taken_emails() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    let weak = app.cli(
        &[
            "users",
            "add",
            "--email",
            &unique_email(),
            "--password-stdin",
        ],
        Some("password\n"),
    );
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("too common"));
    let taken = app.cli(
        &["users", "add", "--email", &email, "--password-stdin"],
        Some(PASSWORD),
    );
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("already exists"));
}

#[tokio::test]
async fn disabling_a_user_revokes_their_tokens_at_once_and_enabling_restores_login() {
    let app = spawn_app().await;
    let (email, tokens) = app.new_user().await;
    stdout(&app.cli(&["users", "disable", &email], None));
    assert_eq!(
        app.me(&tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, code, _) = error_of(app.refresh(&tokens.refresh).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    let (status, code, _) = error_of(app.login(&email, PASSWORD).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    stdout(&app.cli(&["users", "enable", &email], None));
    app.catch_up_with_wall_clock();
    let fresh = app.login_ok(&email, PASSWORD).await;
    assert_eq!(app.me(&fresh.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn deleting_a_user_revokes_their_tokens_and_frees_the_email() {
    let app = spawn_app().await;
    let (email, tokens) = app.new_user().await;
    stdout(&app.cli(&["users", "delete", &email], None));
    assert_eq!(
        app.me(&tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.refresh(&tokens.refresh).await.status(),
        StatusCode::BAD_REQUEST
    );
    let missing = app.cli(&["users", "show", &email], None);
    assert!(!missing.status.success());
    app.register(&email, PASSWORD).await;
}

#[tokio::test]
async fn adding_and_deleting_users_is_audited_and_a_deleted_users_events_stay_readable() {
    let app = spawn_app().await;
    let email = unique_email();
    let added = stdout(&app.cli(
        &["users", "add", "--email", &email, "--password-stdin"],
        Some(PASSWORD),
    ));
    let id = added
        .split_whitespace()
        .nth(2)
        .expect("created user ID <email>")
        .to_string();
    app.login_ok(&email, PASSWORD).await;
    stdout(&app.cli(&["users", "delete", &email], None));

    let events = stdout(&app.cli(&["users", "events", &id], None));
    let kinds: Vec<&str> = events
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(kinds, ["user_deleted", "login", "user_created"], "{events}");
    assert!(
        events.contains(&email),
        "the deletion names the email: {events}"
    );
    let rows = app.rows().await;
    assert!(rows.users.iter().all(|u| u.id != id));
    assert_eq!(
        rows.events
            .iter()
            .filter(|e| e.user_id.as_deref() == Some(id.as_str()))
            .count(),
        3
    );
    let none = app.cli(&["users", "events", "no-such-user"], None);
    assert!(!none.status.success());
}

#[tokio::test]
async fn sessions_can_be_listed_and_revoked_from_the_command_line() {
    let app = spawn_app().await;
    let (email, first) = app.new_user().await;
    let second = app.login_ok(&email, PASSWORD).await;
    let list = stdout(&app.cli(&["sessions", "list", "--user", &email], None));
    assert!(
        list.contains(&first.session_id) && list.contains(&second.session_id),
        "{list}"
    );
    let one = app.cli(
        &[
            "sessions",
            "revoke",
            "--user",
            &email,
            "--session",
            &first.session_id,
        ],
        None,
    );
    assert!(stdout(&one).contains("revoked 1"));
    assert_eq!(
        app.me(&first.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.me(&second.access).await.status(), StatusCode::OK);
    let (other_email, other) = app.new_user().await;
    let foreign = app.cli(
        &[
            "sessions",
            "revoke",
            "--user",
            &email,
            "--session",
            &other.session_id,
        ],
        None,
    );
    assert!(!foreign.status.success(), "revoked another user's session");
    assert_eq!(app.me(&other.access).await.status(), StatusCode::OK);
    stdout(&app.cli(&["sessions", "revoke", "--user", &email], None));
    assert_eq!(
        app.me(&second.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(!other_email.is_empty());
}

#[tokio::test]
async fn keys_rotated_by_the_cli_are_used_and_published_while_old_tokens_stay_valid() {
    let app = spawn_app().await;
    let (email, before) = app.new_user().await;
    let old_kid = kid_of(&before.access);
    let out = stdout(&app.cli(&["keys", "rotate", "--now"], None));
    assert!(out.contains("published"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let after = loop {
        app.catch_up_with_wall_clock();
        let tokens = app.login_ok(&email, PASSWORD).await;
        if kid_of(&tokens.access) != old_kid {
            break tokens;
        }
        assert!(
            Instant::now() < deadline,
            "the server never picked up the rotated key"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let kids = jwks_kids(&app).await;
    assert!(
        kids.contains(&old_kid) && kids.contains(&kid_of(&after.access)),
        "{kids:?}"
    );
    assert_eq!(
        app.me(&before.access).await.status(),
        StatusCode::OK,
        "old key's token refused"
    );
    assert_eq!(app.me(&after.access).await.status(), StatusCode::OK);
    let list = stdout(&app.cli(&["keys", "list"], None));
    assert!(
        list.contains("signing") && list.contains("retired"),
        "{list}"
    );
}

#[tokio::test]
async fn a_rotated_key_is_published_before_it_signs_anything() {
    let app = spawn_app().await;
    let (email, before) = app.new_user().await;
    let old_kid = kid_of(&before.access);
    let (kid, from) = app
        .auth
        .rotate_keys(
            app.settings.signing_alg,
            false,
            &latchkey::domain::Actor::cli(),
        )
        .await
        .expect("rotate");
    assert!(from >= latchkey::domain::clock::Clock::now(app.clock.as_ref()) + 90);
    assert_eq!(
        jwks_kids(&app).await,
        vec![old_kid.clone(), kid.clone()],
        "the new key is published at once"
    );
    let pending = app.login_ok(&email, PASSWORD).await;
    assert_eq!(
        kid_of(&pending.access),
        old_kid,
        "the new key signed before its activation"
    );
    let list = stdout(&app.cli(&["keys", "list"], None));
    assert!(list.contains("published, not yet signing"), "{list}");
    app.clock.advance(latchkey::domain::admin::KEY_PUBLISH_LEAD);
    app.auth.reload_keys().await.expect("reload");
    let after = app.login_ok(&email, PASSWORD).await;
    assert_eq!(kid_of(&after.access), kid);
    assert_eq!(app.me(&pending.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn retired_keys_leave_the_jwks_once_their_tokens_have_expired() {
    let app = spawn_app().await;
    let (_, before) = app.new_user().await;
    let old_kid = kid_of(&before.access);
    let kid = app
        .auth
        .rotate_keys(
            app.settings.signing_alg,
            true,
            &latchkey::domain::Actor::cli(),
        )
        .await
        .expect("rotate")
        .0;
    assert!(jwks_kids(&app).await.contains(&old_kid));
    app.clock.advance(
        app.settings.access_ttl.as_secs() as i64 + app.settings.clock_leeway.as_secs() as i64 + 1,
    );
    app.auth.reload_keys().await.expect("reload");
    assert_eq!(jwks_kids(&app).await, vec![kid]);
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let app = spawn_app().await;
    let (email, tokens) = app.new_user().await;
    let kids = jwks_kids(&app).await;
    let dir = app.stop().await;
    let app = spawn_app_in(dir, |_| {}).await;
    assert_eq!(jwks_kids(&app).await, kids);
    app.refresh_ok(&tokens.refresh).await;
    app.login_ok(&email, PASSWORD).await;
}

#[tokio::test]
async fn migrate_and_version_work_and_bad_settings_name_the_setting() {
    let app = spawn_app().await;
    assert!(stdout(&app.cli(&["migrate"], None)).contains("migrations applied"));
    assert!(stdout(&app.cli(&["version"], None)).contains(env!("CARGO_PKG_VERSION")));
    let bad = app.cli(&["serve", "--access-ttl", "soon"], None);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("access_ttl") || err.contains("ACCESS_TTL"),
        "{err}"
    );
}

/// Starts the real binary on a free port, with trace logging captured.
fn start_server(
    dir: &std::path::Path,
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["--data-dir"])
        .arg(dir)
        .arg("serve")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--argon2-memory-kib",
            "1024",
            "--argon2-iterations",
            "1",
        ])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let address = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("server start line");
        if line.contains("latchkey is serving") {
            let v: Value = serde_json::from_str(&line).expect("json log line");
            break v["fields"]["address"]
                .as_str()
                .expect("address")
                .to_string();
        }
    };
    (child, format!("http://{address}"), rx)
}

#[tokio::test]
async fn the_binary_shuts_down_gracefully_and_never_logs_secrets() {
    let dir = tempfile::TempDir::new().expect("dir");
    let (child, base, logs) = start_server(dir.path());
    let http = reqwest::Client::new();
    let email = unique_email();
    let reg: Value = http
        .post(format!("{base}/v1/register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let rt = reg["refresh_token"].as_str().expect("rt").to_string();
    let at = reg["access_token"].as_str().expect("at").to_string();
    let bad = http
        .post(format!("{base}/v1/login"))
        .json(&json!({"email": email, "password": OTHER_PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let next: Value = http
        .post(format!("{base}/v1/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ])
        .send()
        .await
        .expect("refresh")
        .json()
        .await
        .expect("json");
    assert_eq!(
        http.get(format!("{base}/v1/me"))
            .bearer_auth(&at)
            .send()
            .await
            .expect("me")
            .status(),
        StatusCode::OK
    );
    let changed = http
        .post(format!("{base}/v1/me/password"))
        .bearer_auth(next["access_token"].as_str().expect("at"))
        .json(&json!({"current_password": PASSWORD, "new_password": OTHER_PASSWORD}))
        .send()
        .await
        .expect("password");
    assert_eq!(changed.status(), StatusCode::OK);
    // A token in a query string is never used, and never logged either.
    let in_query = http
        .get(format!("{base}/v1/me?access_token={at}&next=%2Fhome"))
        .send()
        .await
        .expect("me with a query");
    assert_eq!(in_query.status(), StatusCode::UNAUTHORIZED);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait_with_output().expect("wait").status;
    assert!(
        exit.success(),
        "server did not exit cleanly on SIGTERM: {exit:?}"
    );
    let all: Vec<String> = logs.try_iter().collect();
    let text = all.join("\n");
    assert!(text.contains("shutting down"), "no shutdown log");
    let rt_body = rt.trim_start_matches("lk_rt_");
    for secret in [
        PASSWORD,
        OTHER_PASSWORD,
        rt_body,
        next["refresh_token"].as_str().expect("rt2"),
        "eyJ",
        "access_token=",
        "next=",
        "$argon2id$",
    ] {
        assert!(
            !text.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
    assert!(
        text.contains("\"event\":\"login_failed\""),
        "failed login not audited in the log"
    );
}

/// `migrate --no-lock` (for databases without PostgreSQL's advisory lock)
/// builds a fresh database's whole schema, which the server then uses.
#[tokio::test]
async fn migrate_without_the_lock_builds_a_fresh_database() {
    let home = std::sync::Arc::new(TestHome::new(backend()).await);
    let settings = test_settings(&home);
    let out = cli_in(&home, &settings, &["migrate", "--no-lock"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("migrations applied"));
    let again = cli_in(&home, &settings, &["migrate", "--no-lock"], None);
    assert!(again.status.success(), "applying twice changes nothing");
    let app = spawn_app_in(home, |_| {}).await;
    let (email, _) = app.new_user().await;
    app.login_ok(&email, PASSWORD).await;
}
