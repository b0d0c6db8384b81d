//! Coming from Django: a real Django project's users (registered through
//! djoser by `interop/python/django_users.py`, in the djoser peer's venv,
//! with every hash format Django writes or wrote) imported with `latchkey
//! import django`, then signed in with their old passwords.

use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::backend::{PgDatabase, require_postgres};
use crate::helpers::*;
use crate::tools;

/// The Django users: one per hash format, with their passwords.
fn django_users(tag: &str) -> Vec<Value> {
    let user = |name: &str, hasher: Option<&str>, password: Option<&str>| {
        json!({
            "username": format!("{name}-{tag}"),
            "email": format!("{name}-{tag}@example.com"),
            "password": password,
            "hasher": hasher,
            "first_name": if name == "pbkdf2_sha256" { "Ada" } else { "" },
            "last_name": if name == "pbkdf2_sha256" { "Lovelace" } else { "" },
        })
    };
    let mut users: Vec<Value> = [
        "pbkdf2_sha256",
        "pbkdf2_sha1",
        "argon2",
        "argon2i",
        "bcrypt_sha256",
        "bcrypt",
        "scrypt",
        "md5",
        "unsalted_md5",
        "unsalted_sha1",
    ]
    .iter()
    .map(|h| user(h, Some(h), Some(&format!("{h} old password 1"))))
    .collect();
    users.push(user("unusable", None, None));
    let mut inactive = user(
        "inactive",
        Some("pbkdf2_sha256"),
        Some("inactive password 1"),
    );
    inactive["is_active"] = json!(false);
    users.push(inactive);
    // The same address twice, by case: never merged.
    let mut twin = user("twin", Some("pbkdf2_sha256"), Some("twin password 1"));
    users.push(twin.clone());
    twin["username"] = json!(format!("Twin-{tag}"));
    twin["email"] = json!(format!("TWIN-{tag}@example.com"));
    users.push(twin);
    users
}

/// Makes the Django database at `url` with [`django_users`].
async fn make_django_project(url: &str, users: &[Value]) -> Option<Vec<Value>> {
    let python = tools::peer_python("the Django import tests create users through djoser").await?;
    let mut child = tokio::process::Command::new(python)
        .arg(tools::workspace().join("interop/python/django_users.py"))
        .args(["--database", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start django_users.py");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(serde_json::to_string(users).expect("json").as_bytes())
        .await
        .expect("write users");
    drop(stdin);
    let out = child.wait_with_output().await.expect("django_users.py");
    assert!(out.status.success(), "django_users.py failed");
    Some(serde_json::from_slice(&out.stdout).expect("stored users"))
}

fn password_of(users: &[Value], name: &str) -> String {
    let prefix = format!("{name}-");
    users
        .iter()
        .find(|u| {
            u["username"]
                .as_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .and_then(|u| u["password"].as_str())
        .expect("a password")
        .to_string()
}

fn email_of(tag: &str, name: &str) -> String {
    format!("{name}-{tag}@example.com")
}

/// Imports the Django database at `url` and signs every importable user in.
async fn import_and_sign_in(url: &str) {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let users = django_users(&tag);
    let Some(stored) = make_django_project(url, &users).await else {
        return;
    };
    assert!(stored.iter().any(|u| {
        u["password"]
            .as_str()
            .is_some_and(|p| p.starts_with("argon2$argon2i$"))
    }));
    let app = spawn_app().await;

    let dry = app.cli(&["import", "django", url, "--dry-run"], None);
    let report = stdout(&dry);
    for format in [
        "pbkdf2_sha256 4",
        "pbkdf2_sha1 1",
        "argon2 2",
        "bcrypt_sha256 1",
        "bcrypt 1",
        "scrypt 1",
        "unusable 1",
        "md5/sha1/crypt 3",
    ] {
        assert!(report.contains(format), "no {format:?} in:\n{report}");
    }
    assert!(report.contains("dry run, nothing written"), "{report}");
    assert!(app.rows().await.users.is_empty(), "a dry run wrote");
    // A custom model's columns are named with --users-table and --email-field.
    let other = app.cli(
        &[
            "import",
            "django",
            url,
            "--email-field",
            "mail",
            "--dry-run",
        ],
        None,
    );
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("no column \"mail\""), "{err}");
    let named = app.cli(
        &[
            "import",
            "django",
            url,
            "--users-table",
            "auth_user",
            "--email-field",
            "email",
            "--dry-run",
        ],
        None,
    );
    assert!(stdout(&named).contains("read 14 users"));

    let out = app.cli(&["import", "django", url], None);
    let report = stdout(&out);
    assert!(
        report.contains("created 9, updated 0, unchanged 0, skipped 5; 1 must reset"),
        "{report}"
    );
    assert!(
        report.contains("skipped 3: an unsalted or weak MD5/SHA-1 hash"),
        "{report}"
    );
    assert!(
        report.contains("skipped 2: the same address as another user"),
        "{report}"
    );
    app.catch_up_with_wall_clock();

    for name in [
        "pbkdf2_sha256",
        "pbkdf2_sha1",
        "argon2",
        "argon2i",
        "bcrypt_sha256",
        "bcrypt",
        "scrypt",
    ] {
        let email = email_of(&tag, name);
        let password = password_of(&users, name);
        let resp = app.login(&email, "not the old password 1").await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{name}");
        let resp = app.login(&email, &password).await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{name}: {:?}",
            resp.text().await
        );
        let tokens = Tokens::from_body(resp.json().await.expect("json"));
        let kinds = app.event_kinds(&tokens.access).await;
        assert!(
            kinds.iter().any(|k| k == "password_upgraded"),
            "{name}: {kinds:?}"
        );
        assert!(
            kinds.iter().any(|k| k == "user_imported"),
            "{name}: {kinds:?}"
        );
        // Now an Argon2id hash of Latchkey's own: the password still works.
        app.login_ok(&email, &password).await;
    }
    let rows = app.rows().await;
    let ada = rows
        .users
        .iter()
        .find(|u| u.email == email_of(&tag, "pbkdf2_sha256"))
        .expect("ada");
    assert_eq!(ada.name.as_deref(), Some("Ada Lovelace"));
    assert!(ada.password_hash.starts_with("$argon2id$"));
    let unusable = email_of(&tag, "unusable");
    let resp = app.login(&unusable, "anything at all 1").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let inactive = app
        .login(&email_of(&tag, "inactive"), "inactive password 1")
        .await;
    assert_eq!(
        inactive.status(),
        StatusCode::BAD_REQUEST,
        "inactive is disabled"
    );

    // Again: those who signed in are never overwritten, the others are unchanged;
    // weak hashes come in as must-reset when allowed.
    let again = app.cli(&["import", "django", url, "--allow-weak-hashes"], None);
    let report = stdout(&again);
    assert!(
        report.contains("created 3, updated 0, unchanged 2, skipped 9; 3 must reset"),
        "{report}"
    );
    assert!(
        report.contains("skipped 7: signed in to Latchkey since"),
        "{report}"
    );
    let md5 = app
        .login(&email_of(&tag, "md5"), &password_of(&users, "md5"))
        .await;
    assert_eq!(
        md5.status(),
        StatusCode::BAD_REQUEST,
        "a weak hash is never checked"
    );
}

#[tokio::test]
async fn a_django_sqlite_projects_users_sign_in_with_their_old_passwords() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("django.sqlite3").display());
    import_and_sign_in(&url).await;
}

#[tokio::test]
async fn a_django_postgresql_projects_users_sign_in_with_their_old_passwords() {
    if !require_postgres("importing from a Django project on PostgreSQL") {
        return;
    }
    let pg = PgDatabase::create().await;
    import_and_sign_in(&pg.url).await;
}

#[tokio::test]
async fn users_come_from_a_json_lines_file_too_and_a_bad_line_writes_nothing() {
    let app = spawn_app().await;
    let dir = tempfile::TempDir::new().expect("temp dir");
    let file = dir.path().join("users.jsonl");
    // An Argon2id hash (PHC) made by another system: here, another server.
    let elsewhere = spawn_app().await;
    elsewhere.register("source@example.com", PASSWORD).await;
    let phc = elsewhere.rows().await.users[0].password_hash.clone();
    let lines = [
        json!({ "email": "phc@example.com", "password_hash": phc, "name": "Phc", "id": 7,
                "created_at": "2021-05-01T10:00:00Z" }),
        json!({ "email": "reset@example.com", "active": true }),
        json!({ "email": "off@example.com", "password_hash": phc, "active": false }),
    ];
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&file, text.join("\n")).expect("write");
    let path = file.to_str().expect("path");
    let out = app.cli(&["import", "users", path], None);
    let report = stdout(&out);
    assert!(
        report.contains("created 3, updated 0, unchanged 0, skipped 0; 1 must reset"),
        "{report}"
    );
    app.catch_up_with_wall_clock();
    app.login_ok("phc@example.com", PASSWORD).await;
    let rows = app.rows().await;
    let phc_user = rows
        .users
        .iter()
        .find(|u| u.email == "phc@example.com")
        .expect("imported");
    assert_eq!(phc_user.created_at, 1_619_863_200);
    assert_eq!(
        app.login("off@example.com", PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );

    std::fs::write(
        &file,
        "{\"email\": \"fine@example.com\"}\n{\"email\": \"x@example.com\", \"pasword_hash\": \"typo\"}\n",
    )
    .expect("write");
    let out = app.cli(&["import", "users", path], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    assert!(
        !app.rows()
            .await
            .users
            .iter()
            .any(|u| u.email == "fine@example.com"),
        "a bad file wrote nothing"
    );
}
