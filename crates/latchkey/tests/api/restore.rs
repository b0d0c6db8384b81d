//! Restores: a database put back from a real backup is refused until every
//! session is revoked, so refresh tokens used or revoked since the backup
//! cannot come back; and `latchkey sessions revoke --all` on its own.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use latchkey::app::App;
use latchkey::domain::clock::{Clock, ManualClock, SystemClock};
use reqwest::StatusCode;
use sqlx::Connection;

use crate::backend::{Backend, TestHome, backend};
use crate::helpers::*;

/// Whether `tool` runs; when not, says so loudly and returns false, or fails
/// under `LATCHKEY_REQUIRE_ALL=1`.
fn require_tool(tool: &str, what: &str) -> bool {
    if Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    if std::env::var("LATCHKEY_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{what} needs {tool}, which is not installed");
    }
    eprintln!(
        "\n*** SKIPPED: {what}: {tool} is not installed (apt-get install postgresql-client).\n"
    );
    false
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real backup of the live database, the way an operator takes one.
async fn back_up(home: &TestHome, to: &Path) {
    let url = home.database_url();
    match backend() {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url.expose())
                .await
                .expect("connect");
            sqlx::query("VACUUM INTO ?1")
                .bind(to.display().to_string())
                .execute(&mut conn)
                .await
                .expect("VACUUM INTO");
        }
        Backend::Postgres => run(Command::new("pg_dump")
            .args(["--clean", "--if-exists", "--no-owner", "--file"])
            .arg(to)
            .arg(url.expose())),
    }
}

/// Puts the backup back in place of the database (the servers are stopped).
fn restore(home: &TestHome, from: &Path) {
    let url = home.database_url();
    match backend() {
        // SQLite's online backup API, as `sqlite3 latchkey.db ".restore FILE"`
        // does: correct even while connections to the file are still open.
        Backend::Sqlite => {
            let mut db = rusqlite::Connection::open(home.path().join("latchkey.db")).expect("open");
            db.restore(
                rusqlite::MAIN_DB,
                from,
                None::<fn(rusqlite::backup::Progress)>,
            )
            .expect("restore");
        }
        Backend::Postgres => run(Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(from)
            .arg(url.expose())),
    }
}

#[tokio::test]
async fn a_restored_backup_is_refused_until_every_session_is_revoked() {
    if backend() == Backend::Postgres
        && !(require_tool("pg_dump", "restoring a backup")
            && require_tool("psql", "restoring a backup"))
    {
        return;
    }
    let app = spawn_app().await;
    let (email, first) = app.new_user().await;
    let backup = tempfile::TempDir::new().expect("dir");
    let backup = backup.path().join("backup");
    back_up(&app.dir, &backup).await;
    // After the backup: the token is rotated, and the session logged out.
    let second = app.refresh_ok(&first.refresh).await;
    let resp = app
        .post_json(
            "/v1/logout",
            serde_json::json!({"refresh_token": second.refresh}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let settings = app.settings.clone();
    let home = app.stop().await;

    restore(&home, &backup);
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let refused = App::build(settings.clone(), clock).await.expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let serving = refused.serve(listener, std::future::pending());
    let error = tokio::time::timeout(std::time::Duration::from_secs(30), serving)
        .await
        .expect("a restored database must be refused at start, not served")
        .expect_err("a restored database must not be served");
    let message = format!("{error:#}");
    assert!(
        message.contains("latchkey sessions revoke --all"),
        "{message}"
    );
    assert!(
        message.contains("restore-guard"),
        "names the file: {message}"
    );

    let out = stdout(&cli_in(
        &home,
        &settings,
        &["sessions", "revoke", "--all"],
        None,
    ));
    assert!(out.contains("revoked 1 session(s) of 1 user(s)"), "{out}");
    let issuer = settings.issuer.clone();
    let app = spawn_app_in(home, |s| {
        s.audience = issuer.clone();
        s.issuer = issuer;
    })
    .await;
    app.clock.advance(2);
    assert_eq!(
        app.refresh(&first.refresh).await.status(),
        StatusCode::BAD_REQUEST,
        "the refresh token the backup still knew came back"
    );
    assert_eq!(
        app.me(&first.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let fresh = app.login_ok(&email, PASSWORD).await;
    assert_eq!(app.me(&fresh.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn revoking_every_session_ends_all_of_them_for_the_server_and_the_feed() {
    let app = spawn_app().await;
    let creds = crate::feed::client(&app).await;
    let (email_a, a1) = app.new_user().await;
    let a2 = app.login_ok(&email_a, PASSWORD).await;
    let (_, b1) = app.new_user().await;
    app.me(&a1.access).await; // cached as verified before the cut

    let out = stdout(&app.cli(&["sessions", "revoke", "--all"], None));
    assert!(out.contains("revoked 3 session(s) of 2 user(s)"), "{out}");
    for tokens in [&a1, &a2, &b1] {
        assert_eq!(
            app.me(&tokens.access).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.refresh(&tokens.refresh).await.status(),
            StatusCode::BAD_REQUEST
        );
    }
    let page = crate::feed::page(&app, &creds, "?after=0").await;
    let cut: Vec<(&str, i64)> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "user")
        .map(|e| {
            (
                e["sub"].as_str().expect("sub"),
                e["not_before"].as_i64().expect("nbf"),
            )
        })
        .collect();
    for tokens in [&a1, &b1] {
        let claims = decode_segment(&tokens.access, 1);
        let sub = claims["sub"].as_str().expect("sub");
        let iat = claims["iat"].as_i64().expect("iat");
        assert!(
            cut.iter().any(|(s, nbf)| *s == sub && iat < *nbf),
            "no feed entry refuses {sub}'s tokens: {cut:?}"
        );
    }
    // The server kept serving: the new database identity is adopted, not refused.
    app.auth.check_restore(&app.guard).await.expect("adopted");
    app.catch_up_with_wall_clock();
    app.clock.advance(2);
    app.login_ok(&email_a, PASSWORD).await;
}

#[tokio::test]
async fn a_database_that_goes_back_under_a_running_server_stops_it_serving() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    app.auth.check_restore(&app.guard).await.expect("first");
    set_guard_counter_back(&app).await;
    let error = app
        .guard
        .check(app.store.as_ref())
        .await
        .expect_err("went back");
    assert!(
        error.to_string().contains("latchkey sessions revoke --all"),
        "{error}"
    );
    for _ in 0..3 {
        // However often it is checked, the restored counter never creeps past the mark.
        assert!(app.auth.check_restore(&app.guard).await.is_err());
    }
    assert_eq!(
        app.me(&tokens.access).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, code, _) = error_of(app.get("/readyz", None).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
    );
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);

    stdout(&app.cli(&["sessions", "revoke", "--all"], None));
    app.auth
        .check_restore(&app.guard)
        .await
        .expect("acknowledged");
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    assert_eq!(
        app.me(&tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// What a restore does to the guard row, without the rest of a restore.
async fn set_guard_counter_back(app: &TestApp) {
    let url = app.dir.database_url();
    let sql = "UPDATE restore_guard SET counter = counter - 2";
    match backend() {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url.expose())
                .await
                .expect("connect");
            sqlx::query(sql).execute(&mut conn).await.expect("update");
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url.expose())
                .await
                .expect("connect");
            sqlx::query(sql).execute(&mut conn).await.expect("update");
        }
    }
}

#[test]
fn revoke_all_and_a_user_cannot_be_combined() {
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["sessions", "revoke", "--all", "--user", "a@example.com"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
