//! The admin API (`/admin/v1`): admin clients only, the same actions as the
//! `latchkey` command, each recorded with the acting client.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const ADMIN_SET: &str = "correct horse battery staple";

/// An admin client's credentials, made the way an operator makes them.
pub(crate) fn admin_client(app: &TestApp, name: &str) -> (String, String) {
    let out = app.cli(&["clients", "add", name, "--admin"], None);
    let text = stdout(&out);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {key} in {text}"))
    };
    (field("client_id:"), field("client_secret:"))
}

struct Admin<'a> {
    app: &'a TestApp,
    creds: (String, String),
}

impl Admin<'_> {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut req = self
            .app
            .client
            .request(method, self.app.url(path))
            .basic_auth(&self.creds.0, Some(&self.creds.1));
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("admin request")
    }

    /// Sends and expects `status`; returns the JSON body (null when empty).
    async fn call(&self, method: Method, path: &str, body: Option<Value>, status: u16) -> Value {
        let resp = self.send(method.clone(), path, body).await;
        let got = resp.status();
        let text = resp.text().await.expect("body");
        assert_eq!(got.as_u16(), status, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn get(&self, path: &str) -> Value {
        self.call(Method::GET, path, None, 200).await
    }

    async fn events(&self, query: &str) -> Vec<Value> {
        let page = self.get(&format!("/admin/v1/events?{query}")).await;
        page["events"].as_array().expect("events").clone()
    }
}

#[tokio::test]
async fn only_admin_clients_reach_the_admin_api() {
    let app = spawn_app().await;
    let (_, tokens) = app.new_user().await;
    let path = "/admin/v1/users";

    let resp = app.get(path, None).await;
    let (status, code, _) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    // A user's access token is never an admin credential.
    let (status, code, _) = error_of(app.get(path, Some(&tokens.access)).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    let (id, secret) = crate::feed::client(&app).await;
    let resource = Admin {
        app: &app,
        creds: (id, secret),
    };
    let (status, code, _) = error_of(resource.send(Method::GET, path, None).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );

    let (id, _) = admin_client(&app, "console");
    let wrong = Admin {
        app: &app,
        creds: (id, "lk_cs_wrong".into()),
    };
    let (status, code, _) = error_of(wrong.send(Method::GET, path, None).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    // A page of another site cannot use credentials a browser might hold.
    let (id, secret) = admin_client(&app, "browser-held");
    let forged = |name: &'static str, value: &'static str| {
        app.client
            .post(app.url("/admin/v1/sessions/revoke-all"))
            .basic_auth(&id, Some(&secret))
            .header(name, value)
            .json(&json!({"confirm": true}))
            .send()
    };
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "https://evil.example"),
    ] {
        let (status, code, _) = error_of(forged(name, value).await.expect("send")).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{name}: {value}"
        );
    }
    assert_eq!(
        app.me(&tokens.access).await.status(),
        StatusCode::OK,
        "nothing was revoked"
    );
    let same = app
        .client
        .get(app.url("/admin/v1/users"))
        .basic_auth(&id, Some(&secret))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("send");
    assert_eq!(same.status(), StatusCode::OK);

    let spec: Value = app
        .get("/openapi.json", None)
        .await
        .json()
        .await
        .expect("spec");
    for p in [
        "/admin/v1/users",
        "/admin/v1/users/{user}/sessions",
        "/admin/v1/events",
        "/admin/v1/keys/rotate",
        "/admin/v1/clients",
        "/admin/v1/webhooks",
    ] {
        assert!(
            spec["paths"][p].is_object(),
            "{p} is not in the OpenAPI description"
        );
    }
}

#[tokio::test]
async fn admins_manage_users_and_their_sessions_over_http() {
    let app = spawn_app().await;
    let admin = Admin {
        app: &app,
        creds: admin_client(&app, "console"),
    };
    let actor = format!("client:{}", admin.creds.0);

    // Create, refuse a taken address and a weak password.
    let prefix = format!("adm{}", &unique_email()[..8]).to_lowercase();
    let mut ids = vec![];
    for i in 0..3 {
        let email = format!("{prefix}{i}@example.com");
        let body = json!({"email": email, "password": ADMIN_SET, "name": format!("User {i}")});
        let user = admin
            .call(Method::POST, "/admin/v1/users", Some(body), 201)
            .await;
        assert_eq!(user["email"], email.as_str());
        assert_eq!(user["disabled"], false);
        ids.push(user["id"].as_str().expect("id").to_string());
    }
    let taken = json!({"email": format!("{prefix}0@example.com"), "password": ADMIN_SET});
    admin
        .call(Method::POST, "/admin/v1/users", Some(taken), 409)
        .await;
    let weak = json!({"email": format!("{prefix}9@example.com"), "password": "short"});
    admin
        .call(Method::POST, "/admin/v1/users", Some(weak), 422)
        .await;
    let unknown_field = json!({"email": "x@example.com", "password": ADMIN_SET, "admin": true});
    admin
        .call(Method::POST, "/admin/v1/users", Some(unknown_field), 400)
        .await;

    // Search by prefix (any case), two to a page.
    let q = prefix.to_uppercase();
    let page = admin
        .get(&format!("/admin/v1/users?email={q}&limit=2"))
        .await;
    assert_eq!(page["users"].as_array().expect("users").len(), 2);
    let next = page["next_offset"].as_i64().expect("a next page");
    let page = admin
        .get(&format!("/admin/v1/users?email={q}&limit=2&offset={next}"))
        .await;
    assert_eq!(page["users"][0]["id"], ids[2].as_str());
    assert!(page.get("next_offset").is_none());
    admin
        .call(Method::GET, "/admin/v1/users?limit=0", None, 400)
        .await;
    admin
        .call(Method::GET, "/admin/v1/users?sort=x", None, 400)
        .await;

    // Show by id and by address; unknown is 404.
    let email = format!("{prefix}0@example.com");
    let shown = admin.get(&format!("/admin/v1/users/{email}")).await;
    assert_eq!(shown["id"], ids[0].as_str());
    admin
        .call(Method::GET, "/admin/v1/users/nobody@example.com", None, 404)
        .await;

    // Sessions: list, revoke one (its access token is refused at once), revoke all.
    let first = app.login_ok(&email, ADMIN_SET).await;
    let second = app.login_ok(&email, ADMIN_SET).await;
    let sessions = admin
        .get(&format!("/admin/v1/users/{}/sessions", ids[0]))
        .await;
    assert_eq!(sessions["sessions"].as_array().expect("list").len(), 2);
    let path = format!("/admin/v1/users/{}/sessions/{}", ids[0], first.session_id);
    let revoked = admin.call(Method::DELETE, &path, None, 200).await;
    assert_eq!(revoked["revoked"], 1);
    assert_eq!(
        app.me(&first.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.me(&second.access).await.status(), StatusCode::OK);
    let other = format!("/admin/v1/users/{}/sessions/{}", ids[1], second.session_id);
    admin.call(Method::DELETE, &other, None, 404).await;
    let all = format!("/admin/v1/users/{}/sessions", ids[0]);
    let revoked = admin.call(Method::DELETE, &all, None, 200).await;
    assert_eq!(revoked["revoked"], 1);
    assert_eq!(
        app.me(&second.access).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Disable: the session ends and sign-in is refused; enable: it works again.
    let live = app.login_ok(&email, ADMIN_SET).await;
    let user = admin
        .call(
            Method::POST,
            &format!("/admin/v1/users/{}/disable", ids[0]),
            None,
            200,
        )
        .await;
    assert_eq!(user["disabled"], true);
    assert_eq!(
        app.me(&live.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(!app.login(&email, ADMIN_SET).await.status().is_success());
    let user = admin
        .call(
            Method::POST,
            &format!("/admin/v1/users/{}/enable", ids[0]),
            None,
            200,
        )
        .await;
    assert_eq!(user["disabled"], false);
    let live = app.login_ok(&email, ADMIN_SET).await;

    // A new password ends the sessions; the new one signs in.
    let new_password = "a quite different passphrase 42";
    let path = format!("/admin/v1/users/{}/password", ids[0]);
    admin
        .call(Method::POST, &path, Some(json!({"password": "short"})), 422)
        .await;
    admin
        .call(
            Method::POST,
            &path,
            Some(json!({"password": new_password})),
            200,
        )
        .await;
    assert_eq!(
        app.me(&live.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.login_ok(&email, new_password).await;

    let path = format!("/admin/v1/users/{}/verify-email", ids[1]);
    let user = admin.call(Method::POST, &path, None, 200).await;
    assert_eq!(user["email_verified"], true);

    // Every action is an event naming the client; a search by user and kind.
    let kinds: Vec<String> = admin
        .events(&format!("user={email}&limit=100"))
        .await
        .iter()
        .filter(|e| e["actor"] == actor.as_str())
        .map(|e| e["kind"].as_str().expect("kind").to_string())
        .collect();
    for kind in [
        "user_created",
        "session_revoked",
        "user_disabled",
        "user_enabled",
        "password_changed",
    ] {
        assert!(
            kinds.contains(&kind.to_string()),
            "{kind} missing from {kinds:?}"
        );
    }
    let logins = admin.events(&format!("user={}&kind=login", ids[0])).await;
    assert_eq!(logins.len(), 5, "{logins:?}");
    assert!(
        logins.iter().all(|e| e["actor"].is_null()),
        "a user's own sign-in"
    );

    // Delete: the events stay under the id.
    admin
        .call(
            Method::DELETE,
            &format!("/admin/v1/users/{}", ids[0]),
            None,
            204,
        )
        .await;
    admin
        .call(
            Method::GET,
            &format!("/admin/v1/users/{}", ids[0]),
            None,
            404,
        )
        .await;
    let after = admin
        .events(&format!("user={}&kind=user_deleted", ids[0]))
        .await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["actor"], actor.as_str());
}

#[tokio::test]
async fn events_are_searched_by_time_and_paged_newest_first() {
    let app = spawn_app().await;
    let admin = Admin {
        app: &app,
        creds: admin_client(&app, "console"),
    };
    let (email, _) = app.new_user().await;
    let start = latchkey::domain::clock::Clock::now(app.clock.as_ref());
    app.clock.advance(100);
    for _ in 0..3 {
        let refused = app.login(&email, "wrong password entirely").await;
        assert!(refused.status().is_client_error());
    }
    // Past the throttle's delay after three failures.
    app.clock.advance(3600);
    app.login_ok(&email, PASSWORD).await;

    let failed = admin.events("kind=login_failed").await;
    assert_eq!(failed.len(), 3);
    let since = latchkey::domain::clock::rfc3339(start + 50);
    let until = start + 150;
    let window = admin
        .events(&format!("since={since}&until={until}&user={email}"))
        .await;
    assert_eq!(window.len(), 3, "{window:?}");
    assert!(window.iter().all(|e| e["kind"] == "login_failed"));

    let page = admin
        .get(&format!("/admin/v1/events?user={email}&limit=2"))
        .await;
    let events = page["events"].as_array().expect("events");
    assert_eq!(events[0]["kind"], "login");
    let before = page["next_before"].as_i64().expect("more");
    let rest = admin
        .events(&format!("user={email}&before={before}&limit=100"))
        .await;
    assert!(rest.iter().all(|e| e["id"].as_i64() < Some(before)));
    assert!(rest.iter().any(|e| e["kind"] == "register"));

    admin
        .call(Method::GET, "/admin/v1/events?since=yesterday", None, 400)
        .await;
}

#[tokio::test]
async fn keys_clients_and_webhooks_are_administered_over_http() {
    let app = spawn_app_with(|s| s.webhook_allow_private = true).await;
    let admin = Admin {
        app: &app,
        creds: admin_client(&app, "console"),
    };
    let actor = format!("client:{}", admin.creds.0);

    // Keys: rotate (published, signs later), then revoke the signing one.
    let keys = admin.get("/admin/v1/keys").await;
    let signing = keys["keys"][0]["kid"].as_str().expect("kid").to_string();
    assert_eq!(keys["keys"][0]["state"], "signing");
    let rotated = admin
        .call(Method::POST, "/admin/v1/keys/rotate", None, 200)
        .await;
    let new_kid = rotated["kid"].as_str().expect("kid").to_string();
    let keys = admin.get("/admin/v1/keys").await;
    let state_of = |kid: &str| {
        keys["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k["state"].clone())
    };
    assert_eq!(state_of(&new_kid), Some(json!("pending")));
    assert!(jwks_kids(&app).await.contains(&new_kid));
    let path = format!("/admin/v1/keys/{signing}/revoke");
    let revoked = admin.call(Method::POST, &path, None, 200).await;
    let replacement = revoked["replaced_by"].as_str().expect("a replacement");
    assert!(!jwks_kids(&app).await.contains(&signing));
    let (_, tokens) = app.new_user().await;
    assert_eq!(kid_of(&tokens.access), replacement);
    admin
        .call(Method::POST, "/admin/v1/keys/nokey/revoke", None, 404)
        .await;

    // Clients: a resource server made here introspects; removed, it cannot.
    let made = admin
        .call(
            Method::POST,
            "/admin/v1/clients",
            Some(json!({"name": "orders-api"})),
            201,
        )
        .await;
    let (id, secret) = (
        made["client"]["id"].as_str().expect("id").to_string(),
        made["client_secret"].as_str().expect("secret").to_string(),
    );
    assert_eq!(made["client"]["admin"], false);
    let introspect = |secret: String| {
        let req = app
            .client
            .post(app.url("/v1/introspect"))
            .basic_auth(id.clone(), Some(secret))
            .form(&[("token", tokens.access.as_str())]);
        async move { req.send().await.expect("introspect").status() }
    };
    assert_eq!(introspect(secret.clone()).await, StatusCode::OK);
    let clients = admin.get("/admin/v1/clients").await;
    assert_eq!(clients["clients"].as_array().expect("clients").len(), 2);
    admin
        .call(
            Method::DELETE,
            &format!("/admin/v1/clients/{id}"),
            None,
            204,
        )
        .await;
    assert_eq!(introspect(secret).await, StatusCode::UNAUTHORIZED);

    // Webhooks: add, disable, enable, test, deliveries, replay, remove.
    let body = json!({"url": "https://hooks.example.com/in", "events": ["nope"]});
    admin
        .call(Method::POST, "/admin/v1/webhooks", Some(body), 400)
        .await;
    let body = json!({"url": format!("http://127.0.0.1:{}/in", free_port()), "events": ["*"]});
    let made = admin
        .call(Method::POST, "/admin/v1/webhooks", Some(body), 201)
        .await;
    assert!(
        made["secret"]
            .as_str()
            .expect("secret")
            .starts_with("whsec_")
    );
    let hook = made["webhook"]["id"].as_str().expect("id").to_string();
    let hook_path = |rest: &str| format!("/admin/v1/webhooks/{hook}{rest}");
    let off = admin
        .call(Method::POST, &hook_path("/disable"), None, 200)
        .await;
    assert_eq!(off["disabled"], true);
    let on = admin
        .call(Method::POST, &hook_path("/enable"), None, 200)
        .await;
    assert_eq!(on["disabled"], false);
    let sent = admin
        .call(Method::POST, &hook_path("/test"), None, 202)
        .await;
    assert!(sent["event_id"].is_string());
    let deliveries = admin.get(&hook_path("/deliveries")).await;
    let delivery = deliveries["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .find(|d| d["event_type"] == "webhook.test")
        .expect("the test's delivery")
        .clone();
    let path = format!("/admin/v1/deliveries/{}/replay", delivery["id"]);
    admin.call(Method::POST, &path, None, 202).await;
    admin
        .call(Method::POST, "/admin/v1/deliveries/x/replay", None, 404)
        .await;
    let hooks = admin.get("/admin/v1/webhooks").await;
    assert_eq!(hooks["webhooks"][0]["id"], hook.as_str());
    admin.call(Method::DELETE, &hook_path(""), None, 204).await;
    admin.call(Method::DELETE, &hook_path(""), None, 404).await;

    let kinds: Vec<Value> = admin
        .events("limit=100")
        .await
        .into_iter()
        .filter(|e| e["actor"] == actor.as_str())
        .map(|e| e["kind"].clone())
        .collect();
    for kind in [
        "key_rotated",
        "key_revoked",
        "client_added",
        "client_removed",
        "webhook_added",
        "webhook_disabled",
        "webhook_enabled",
        "webhook_tested",
        "delivery_replayed",
        "webhook_removed",
    ] {
        assert!(
            kinds.contains(&json!(kind)),
            "{kind} missing from {kinds:?}"
        );
    }
    // The command's own actions name it.
    let cli_added = admin.events("kind=client_added").await;
    assert!(cli_added.iter().any(|e| e["actor"] == "cli"));
}

#[tokio::test]
async fn signing_everyone_out_needs_a_confirmation() {
    let app = spawn_app().await;
    let admin = Admin {
        app: &app,
        creds: admin_client(&app, "console"),
    };
    let (_, a) = app.new_user().await;
    let (_, b) = app.new_user().await;
    let path = "/admin/v1/sessions/revoke-all";
    admin.call(Method::POST, path, None, 415).await;
    admin
        .call(Method::POST, path, Some(json!({"confirm": false})), 400)
        .await;
    assert_eq!(app.me(&a.access).await.status(), StatusCode::OK);
    let done = admin
        .call(Method::POST, path, Some(json!({"confirm": true})), 200)
        .await;
    assert_eq!(done["sessions"], 2);
    for t in [&a, &b] {
        assert_eq!(app.me(&t.access).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            app.refresh(&t.refresh).await.status(),
            StatusCode::BAD_REQUEST
        );
    }
    // The server keeps serving (it adopted the database's new identity).
    app.new_user().await;
}
