//! Browser (cookie) mode over plain HTTP: cookie attributes, CSRF and Origin
//! checks, rotation, logout and CORS. The real-browser tests live in
//! `browser.rs`; these pin down the wire behaviour.

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const SPA: &str = "http://127.0.0.1:5173";

async fn browser_app() -> TestApp {
    spawn_app_with(|s| s.cors_origins = vec![SPA.to_string()]).await
}

fn set_cookies(resp: &Response) -> Vec<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

fn cookie_value(cookies: &[String], name: &str) -> Option<String> {
    cookies.iter().find_map(|c| {
        c.strip_prefix(&format!("{name}="))
            .map(|rest| rest.split(';').next().unwrap_or("").to_string())
    })
}

/// Logs in in cookie mode; returns (refresh cookie value, csrf token, body).
async fn browser_login(app: &TestApp, email: &str) -> (String, String, Value) {
    let resp = app
        .client
        .post(app.url("/v1/login"))
        .header("origin", SPA)
        .json(&json!({"email": email, "password": PASSWORD, "cookie": true}))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), StatusCode::OK);
    let cookies = set_cookies(&resp);
    let body: Value = resp.json().await.expect("json");
    let rt = cookie_value(&cookies, "lk_rt").expect("refresh cookie");
    (
        rt,
        body["csrf_token"].as_str().expect("csrf_token").to_string(),
        body,
    )
}

async fn cookie_refresh(
    app: &TestApp,
    rt: &str,
    csrf: Option<&str>,
    origin: Option<&str>,
) -> Response {
    let mut req = app
        .client
        .post(app.url("/v1/token"))
        .header(COOKIE, format!("lk_rt={rt}"))
        .json(&json!({"grant_type": "refresh_token"}));
    if let Some(c) = csrf {
        req = req.header("x-csrf-token", c);
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.expect("refresh")
}

#[tokio::test]
async fn cookie_login_keeps_the_refresh_token_out_of_the_body_and_in_an_http_only_cookie() {
    let app = browser_app().await;
    let (email, _) = app.new_user().await;
    let resp = app
        .client
        .post(app.url("/v1/login"))
        .json(&json!({"email": email, "password": PASSWORD, "cookie": true}))
        .send()
        .await
        .expect("login");
    let cookies = set_cookies(&resp);
    let body: Value = resp.json().await.expect("json");
    assert!(
        body.get("refresh_token").is_none(),
        "refresh token in the body: {body}"
    );
    assert!(body["access_token"].is_string() && body["csrf_token"].is_string());
    let rt = cookies
        .iter()
        .find(|c| c.starts_with("lk_rt="))
        .expect("rt cookie");
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/v1",
        "Max-Age=",
    ] {
        assert!(rt.contains(attr), "{attr} missing in {rt}");
    }
    let max_age: i64 = rt
        .split("Max-Age=")
        .nth(1)
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.parse().ok())
        .expect("max-age");
    assert!(max_age <= app.settings.session_ttl.as_secs() as i64 && max_age > 0);
    assert!(
        cookie_value(&cookies, "lk_rt")
            .expect("value")
            .starts_with("lk_rt_")
    );
    let csrf = cookies
        .iter()
        .find(|c| c.starts_with("lk_csrf="))
        .expect("csrf cookie");
    assert!(
        !csrf.contains("HttpOnly") && csrf.contains("Path=/") && csrf.contains("SameSite=Strict"),
        "{csrf}"
    );
    assert_eq!(
        cookie_value(&cookies, "lk_csrf").as_deref(),
        body["csrf_token"].as_str()
    );
}

#[tokio::test]
async fn cookie_refresh_needs_the_sessions_csrf_token_and_an_allowed_origin() {
    let app = browser_app().await;
    let (email, _) = app.new_user().await;
    let (rt, csrf, _) = browser_login(&app, &email).await;
    let (_, other_csrf, _) = browser_login(&app, &email).await;
    for (case, token, origin) in [
        ("no header", None, Some(SPA)),
        (
            "another session's token",
            Some(other_csrf.as_str()),
            Some(SPA),
        ),
        ("made-up token", Some("AAAA"), Some(SPA)),
        (
            "foreign origin",
            Some(csrf.as_str()),
            Some("https://evil.example"),
        ),
        ("null origin", Some(csrf.as_str()), Some("null")),
    ] {
        let (status, code, _) = error_of(cookie_refresh(&app, &rt, token, origin).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "csrf_failed"),
            "{case}"
        );
    }
    let cross_site = app
        .client
        .post(app.url("/v1/token"))
        .header(COOKIE, format!("lk_rt={rt}"))
        .header("x-csrf-token", &csrf)
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"grant_type": "refresh_token"}))
        .send()
        .await
        .expect("request");
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let ok = cookie_refresh(&app, &rt, Some(&csrf), Some(SPA)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let cookies = set_cookies(&ok);
    let body: Value = ok.json().await.expect("json");
    let rotated = cookie_value(&cookies, "lk_rt").expect("rotated cookie");
    assert_ne!(rotated, rt);
    assert!(body.get("refresh_token").is_none());
    assert_eq!(
        body["csrf_token"],
        csrf.as_str(),
        "the CSRF token is the session's"
    );
    assert_eq!(
        cookie_refresh(&app, &rotated, Some(&csrf), None)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_planted_cookie_with_a_matching_made_up_header_is_refused() {
    let app = browser_app().await;
    let (status, code, _) =
        error_of(cookie_refresh(&app, "lk_rt_planted", Some("planted"), Some(SPA)).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "csrf_failed")
    );
}

#[tokio::test]
async fn browser_login_from_a_foreign_origin_is_refused() {
    let app = browser_app().await;
    let (email, _) = app.new_user().await;
    let resp = app
        .client
        .post(app.url("/v1/login"))
        .header("origin", "https://evil.example")
        .json(&json!({"email": email, "password": PASSWORD, "cookie": true}))
        .send()
        .await
        .expect("login");
    assert!(set_cookies(&resp).is_empty());
    let (status, code, _) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "csrf_failed")
    );
}

#[tokio::test]
async fn cookie_logout_ends_the_session_and_clears_both_cookies() {
    let app = browser_app().await;
    let (email, _) = app.new_user().await;
    let (rt, csrf, body) = browser_login(&app, &email).await;
    let without = app
        .client
        .post(app.url("/v1/logout"))
        .header(COOKIE, format!("lk_rt={rt}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(
        without.status(),
        StatusCode::FORBIDDEN,
        "logout without the CSRF header"
    );
    let resp = app
        .client
        .post(app.url("/v1/logout"))
        .header(COOKIE, format!("lk_rt={rt}"))
        .header("x-csrf-token", &csrf)
        .header("origin", SPA)
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let cleared = set_cookies(&resp);
    for name in ["lk_rt=;", "lk_csrf=;"] {
        assert!(
            cleared
                .iter()
                .any(|c| c.starts_with(name) && c.contains("Max-Age=0")),
            "{name} not cleared: {cleared:?}"
        );
    }
    let access = body["access_token"].as_str().expect("at");
    assert_eq!(app.me(access).await.status(), StatusCode::UNAUTHORIZED);
    let after = cookie_refresh(&app, &rt, Some(&csrf), Some(SPA)).await;
    assert!(
        set_cookies(&after).iter().any(|c| c.starts_with("lk_rt=;")),
        "a dead session's cookie is cleared"
    );
    let (status, code, _) = error_of(after).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
}

#[tokio::test]
async fn reuse_of_a_cookie_refresh_token_ends_the_session_and_clears_the_cookie() {
    let app = browser_app().await;
    let (email, _) = app.new_user().await;
    let (rt, csrf, _) = browser_login(&app, &email).await;
    let next = cookie_refresh(&app, &rt, Some(&csrf), Some(SPA)).await;
    let rotated = cookie_value(&set_cookies(&next), "lk_rt").expect("rotated");
    app.clock.advance(11);
    let reuse = cookie_refresh(&app, &rt, Some(&csrf), Some(SPA)).await;
    assert!(set_cookies(&reuse).iter().any(|c| c.starts_with("lk_rt=;")));
    assert_eq!(reuse.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        cookie_refresh(&app, &rotated, Some(&csrf), Some(SPA))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn https_issuers_use_prefixed_cookie_names_and_plain_http_hosts_get_no_cookies() {
    let app = spawn_app_with(|s| {
        s.issuer = "https://auth.example.com".into();
        s.audience = s.issuer.clone();
    })
    .await;
    let (email, _) = app.new_user().await;
    let resp = app
        .client
        .post(app.url("/v1/login"))
        .json(&json!({"email": email, "password": PASSWORD, "cookie": true}))
        .send()
        .await
        .expect("login");
    let cookies = set_cookies(&resp);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Secure-lk_rt=") && c.contains("Path=/v1")),
        "{cookies:?}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("__Host-lk_csrf=")
            && c.contains("Path=/")
            && !c.contains("Domain")),
        "{cookies:?}"
    );

    let plain = spawn_app_with(|s| {
        s.issuer = "http://auth.example.com".into();
        s.audience = s.issuer.clone();
    })
    .await;
    let (email, _) = plain.new_user().await;
    let resp = plain
        .client
        .post(plain.url("/v1/login"))
        .json(&json!({"email": email, "password": PASSWORD, "cookie": true}))
        .send()
        .await
        .expect("login");
    assert!(set_cookies(&resp).is_empty());
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins_with_credentials() {
    let app = browser_app().await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/token"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, x-csrf-token",
            )
            .send()
    };
    let ok = preflight(SPA).await.expect("preflight");
    let h = ok.headers();
    assert_eq!(
        h.get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(SPA)
    );
    assert_eq!(
        h.get("access-control-allow-credentials")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert!(
        h.get("access-control-allow-headers")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_lowercase().contains("x-csrf-token"))
    );
    assert!(h.get_all("vary").iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_lowercase().contains("origin"))
    }));
    for bad in [
        "https://evil.com",
        "null",
        "http://127.0.0.1:5173.evil.com",
        "http://127.0.0.1:5174",
        "https://127.0.0.1:5173",
    ] {
        let resp = preflight(bad).await.expect("preflight");
        assert!(
            resp.headers().get("access-control-allow-origin").is_none(),
            "{bad} got an ACAO header"
        );
    }
}
