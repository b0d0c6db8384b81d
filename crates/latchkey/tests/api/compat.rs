//! `compat = ["djoser"]`: one client, written from djoser's and simplejwt's
//! documentation (`interop/python/djoser_client.py`), runs unchanged against
//! the real djoser + simplejwt peer (`bench/peer`) and against Latchkey.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::tools;

async fn app_with_djoser() -> TestApp {
    spawn_app_with(|s| s.compat = vec![latchkey::config::Compat::Djoser]).await
}

/// Runs the documented client against `base`; its output on failure.
async fn run_client(python: &Path, base: &str) {
    let out = tokio::process::Command::new(python)
        .arg(tools::workspace().join("interop/python/djoser_client.py"))
        .arg(base)
        .output()
        .await
        .expect("run djoser_client.py");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the djoser client failed against {base}:\n{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("all steps passed"), "{printed}");
}

#[tokio::test]
async fn the_djoser_client_runs_unchanged_against_the_real_peer_and_against_latchkey() {
    let Some(python) = tools::python_with(
        "rest_framework",
        "the djoser client and the DRF view need Python with DRF",
    )
    .await
    else {
        return;
    };
    let Some(peer) = tools::peer_python("the djoser client runs against the real peer").await
    else {
        return;
    };
    // The real peer: bench/peer's Django site under gunicorn, as bench/compare.sh runs it.
    let data = tempfile::TempDir::new().expect("temp dir");
    let site = tools::workspace().join("bench/peer");
    let secret = uuid::Uuid::new_v4().simple().to_string().repeat(2);
    let env = [
        ("PEER_DATA_DIR", data.path().to_str().expect("path")),
        ("PEER_SECRET_KEY", secret.as_str()),
    ];
    let migrated = tokio::process::Command::new(&peer)
        .arg(site.join("simplejwt_site/manage.py"))
        .args(["migrate", "--noinput"])
        .envs(env)
        .output()
        .await
        .expect("migrate the peer");
    assert!(migrated.status.success(), "{migrated:?}");
    let port = free_port();
    let gunicorn = peer.with_file_name("gunicorn");
    let mut server = tokio::process::Command::new(gunicorn)
        .arg("--chdir")
        .arg(&site)
        .args(["--workers", "1", "-b", &format!("127.0.0.1:{port}")])
        .arg("simplejwt_site.wsgi")
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start gunicorn");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if client
            .get(format!("{base}/auth/users/me/"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the peer did not start");
    run_client(&python, &base).await;
    // A user registered through djoser, to come to Latchkey below.
    let email = unique_email();
    let made = client
        .post(format!("{base}/auth/users/"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .expect("register at the peer");
    assert_eq!(made.status(), StatusCode::CREATED);
    server.kill().await.expect("stop the peer");

    let app = app_with_djoser().await;
    run_client(&python, &app.base).await;

    // The peer's users (its custom user model, email as login) come over
    // with their passwords, and sign in to Latchkey through djoser's URLs;
    // the token then passes a DRF view through the Python package.
    let peer_db = data.path().join("db.sqlite3");
    let peer_db = peer_db.to_str().expect("path");
    let imported = app.cli(
        &[
            "import",
            "django",
            peer_db,
            "--users-table",
            "accounts_user",
        ],
        None,
    );
    assert!(
        stdout(&imported).contains("argon2 "),
        "{}",
        stdout(&imported)
    );
    app.catch_up_with_wall_clock();
    let pair: Value = app
        .post_json(
            "/auth/jwt/create/",
            json!({ "email": email, "password": PASSWORD }),
        )
        .await
        .json()
        .await
        .expect("json");
    let access = pair["access"]
        .as_str()
        .expect("signed in with the djoser password");
    let package = tools::workspace().join("clients/python/src");
    let viewed = tokio::process::Command::new(&python)
        .arg(tools::workspace().join("interop/python/drf_call.py"))
        .args([&app.settings.issuer, &app.settings.audience, access])
        .env("PYTHONPATH", package)
        .output()
        .await
        .expect("run drf_call.py");
    let seen: Value = serde_json::from_slice(&viewed.stdout)
        .unwrap_or_else(|_| panic!("drf_call.py: {}", String::from_utf8_lossy(&viewed.stderr)));
    assert_eq!(seen["status"], 200, "{seen}");
    assert_eq!(
        seen["data"]["user"],
        decode_segment(access, 1)["sub"],
        "the DRF view saw the user"
    );
}

#[tokio::test]
async fn a_rotated_away_refresh_token_presented_again_ends_the_session() {
    let app = app_with_djoser().await;
    let email = unique_email();
    let body = json!({ "email": email, "password": PASSWORD });
    let resp = app.post_json("/auth/users/", body.clone()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.expect("json");
    assert_eq!(created["email"], email.as_str());
    let pair: Value = app
        .post_json("/auth/jwt/create/", body)
        .await
        .json()
        .await
        .expect("json");
    let refresh = |token: &Value| app.post_json("/auth/jwt/refresh/", json!({ "refresh": token }));
    let rotated: Value = refresh(&pair["refresh"]).await.json().await.expect("json");
    let access = rotated["access"].as_str().expect("access");
    assert_eq!(app.me(access).await.status(), StatusCode::OK);
    // The old token again, past the grace for a client's own races: theft
    // assumed, the whole session ends (simplejwt would only refuse that token).
    app.clock
        .advance(app.settings.refresh_reuse_grace.as_secs() as i64 + 1);
    let reused = refresh(&pair["refresh"]).await;
    assert_eq!(reused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = reused.json().await.expect("json");
    assert_eq!(body["code"], "token_not_valid");
    assert_eq!(app.me(access).await.status(), StatusCode::UNAUTHORIZED);
    let again = refresh(&rotated["refresh"]).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn djosers_endpoints_are_served_only_when_asked_for() {
    let app = spawn_app().await;
    let resp = app
        .post_json(
            "/auth/jwt/create/",
            json!({ "email": "a@example.com", "password": "x" }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let app = app_with_djoser().await;
    let resp = app
        .post_json(
            "/auth/users/",
            json!({ "email": "not an address", "password": PASSWORD }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.expect("json");
    assert!(body["email"][0].is_string(), "{body}");
}
