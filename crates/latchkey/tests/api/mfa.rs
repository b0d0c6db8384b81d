//! Two-step sign-in with TOTP and recovery codes: enrolment, the second
//! step of a sign-in, single use of codes (across instances too), the
//! challenge's limits, throttling, step-up, notices and the djoser view.
//! Codes are computed here from the secret the enrolment handed out, at the
//! server's (manual) clock.

use reqwest::StatusCode;
use serde_json::{Value, json};
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::helpers::*;

/// What an enrolled user has: their first session, the app's secret and
/// the recovery codes.
pub struct Enrolled {
    pub email: String,
    pub tokens: Tokens,
    pub totp: Totp,
    pub codes: Vec<String>,
}

fn totp_of(secret: &str) -> Totp {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(Secret::try_from_base32(secret).expect("base32 secret"))
        .build()
        .expect("an RFC 6238 secret")
}

/// The code the app shows at the server's time.
fn code_now(app: &TestApp, totp: &Totp) -> String {
    let now = latchkey::domain::clock::Clock::now(app.clock.as_ref());
    totp.generate(u64::try_from(now).expect("time")).to_string()
}

/// A code of none of the steps around now.
fn wrong_code(app: &TestApp, totp: &Totp) -> String {
    let now = latchkey::domain::clock::Clock::now(app.clock.as_ref());
    let now = u64::try_from(now).expect("time");
    let near: Vec<String> = [now - 30, now, now + 30]
        .iter()
        .map(|t| totp.generate(*t).to_string())
        .collect();
    (0..1000)
        .map(|n| format!("{:06}", 123_456 + n))
        .find(|c| !near.contains(c))
        .expect("a wrong code")
}

/// The second-factor notice to `to` whose subject ends with `change`.
async fn notice(app: &TestApp, to: &str, change: &str) -> crate::mail::Mail {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found = crate::mail::outbox_files(app).into_iter().find(|(p, m)| {
            m.to.contains(to)
                && p.to_string_lossy().ends_with("-second_factor.eml")
                && m.subject.ends_with(change)
        });
        if let Some((_, mail)) = found {
            return mail;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no notice \"{change}\" to {to}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.expect("json")
}

/// Registers a user and turns TOTP on; the clock then moves to the next
/// step, so the confirming code is behind.
pub async fn enrolled(app: &TestApp) -> Enrolled {
    let (email, tokens) = app.new_user().await;
    let resp = app.post_auth("/v1/mfa/totp", &tokens.access, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let enrolment = json_of(resp).await;
    let totp = totp_of(enrolment["secret"].as_str().expect("secret"));
    let code = code_now(app, &totp);
    let resp = app
        .post_auth(
            "/v1/mfa/totp/confirm",
            &tokens.access,
            Some(json!({ "code": code })),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let codes: Vec<String> = serde_json::from_value(json_of(resp).await["recovery_codes"].clone())
        .expect("recovery codes");
    app.clock.advance(30);
    Enrolled {
        email,
        tokens,
        totp,
        codes,
    }
}

/// The password step; returns the challenge token.
pub async fn challenge(app: &TestApp, email: &str) -> String {
    let resp = app.login(email, PASSWORD).await;
    let (status, code, body) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "mfa_required")
    );
    assert!(body.get("access_token").is_none(), "{body}");
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    assert_eq!(body["expires_in"], 300);
    body["mfa_token"].as_str().expect("mfa_token").to_string()
}

pub async fn second_step(app: &TestApp, token: &str, proof: Value) -> reqwest::Response {
    let mut body = json!({ "mfa_token": token });
    body.as_object_mut()
        .expect("object")
        .extend(proof.as_object().expect("object").clone());
    app.post_json("/v1/login/mfa", body).await
}

#[tokio::test]
async fn an_authenticator_app_turns_on_two_step_sign_in_and_each_code_works_once() {
    let app = spawn_app().await;
    let (email, tokens) = app.new_user().await;
    let status = json_of(app.get("/v1/mfa", Some(&tokens.access)).await).await;
    assert_eq!(
        status,
        json!({"totp": false, "totp_pending": false, "recovery_codes_left": 0})
    );

    let resp = app.post_auth("/v1/mfa/totp", &tokens.access, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let enrolment = json_of(resp).await;
    let uri = enrolment["otpauth_uri"].as_str().expect("uri");
    let secret = enrolment["secret"].as_str().expect("secret");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(uri.contains("issuer="), "{uri}");
    let svg = enrolment["qr_svg"].as_str().expect("svg");
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
    let totp = totp_of(secret);
    let pending = json_of(app.get("/v1/mfa", Some(&tokens.access)).await).await;
    assert_eq!(pending["totp_pending"], true);
    // Not on until confirmed: the password alone still signs in.
    app.login_ok(&email, PASSWORD).await;

    let wrong = json!({ "code": wrong_code(&app, &totp) });
    let resp = app
        .post_auth("/v1/mfa/totp/confirm", &tokens.access, Some(wrong))
        .await;
    assert_eq!(error_of(resp).await.1, "invalid_code");
    let first = code_now(&app, &totp);
    let resp = app
        .post_auth(
            "/v1/mfa/totp/confirm",
            &tokens.access,
            Some(json!({ "code": first })),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let codes = json_of(resp).await["recovery_codes"].clone();
    assert_eq!(codes.as_array().map(Vec::len), Some(10), "{codes}");
    let status = json_of(app.get("/v1/mfa", Some(&tokens.access)).await).await;
    assert_eq!(
        status,
        json!({"totp": true, "totp_pending": false, "recovery_codes_left": 10})
    );
    let resp = app.post_auth("/v1/mfa/totp", &tokens.access, None).await;
    assert_eq!(
        error_of(resp).await.0,
        StatusCode::CONFLICT,
        "a second enrolment would replace the secret"
    );

    // The password is now only the first step.
    let token = challenge(&app, &email).await;
    let replay = second_step(&app, &token, json!({ "code": first })).await;
    assert_eq!(
        error_of(replay).await.1,
        "invalid_code",
        "the confirming code was used"
    );
    app.clock.advance(30);
    let resp = second_step(&app, &token, json!({ "code": code_now(&app, &totp) })).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let signed_in = Tokens::from_body(json_of(resp).await);
    let claims = decode_segment(&signed_in.access, 1);
    assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(app.me(&signed_in.access).await.status(), StatusCode::OK);
    app.refresh_ok(&signed_in.refresh).await;

    let again = second_step(&app, &token, json!({ "code": code_now(&app, &totp) })).await;
    assert_eq!(
        error_of(again).await.1,
        "invalid_grant",
        "a challenge starts one session"
    );
    let token = challenge(&app, &email).await;
    let same_code = second_step(&app, &token, json!({ "code": code_now(&app, &totp) })).await;
    assert_eq!(
        error_of(same_code).await.1,
        "invalid_code",
        "the code of a step is accepted once"
    );
    let kinds = app.event_kinds(&signed_in.access).await;
    for kind in ["mfa_enabled", "mfa_failed", "login"] {
        assert!(kinds.contains(&kind.to_string()), "{kind} in {kinds:?}");
    }
    let both = json!({ "code": "123456", "recovery_code": "abcde-fghjk" });
    let resp = second_step(&app, &token, both).await;
    assert_eq!(error_of(resp).await.1, "invalid_request");
}

#[tokio::test]
async fn a_challenge_stays_with_its_device_for_five_minutes_and_five_codes() {
    // The account throttle is off here so that only the challenge's own
    // limits are seen.
    let app = spawn_app_with(|s| s.account_failure_limit = 0).await;
    let user = enrolled(&app).await;

    let token = challenge(&app, &user.email).await;
    let elsewhere = app
        .client
        .post(app.url("/v1/login/mfa"))
        .header("user-agent", "another device")
        .json(&json!({ "mfa_token": token, "code": code_now(&app, &user.totp) }))
        .send()
        .await
        .expect("request");
    assert_eq!(error_of(elsewhere).await.1, "invalid_grant");
    let resp = second_step(&app, &token, json!({ "code": code_now(&app, &user.totp) })).await;
    assert_eq!(
        error_of(resp).await.1,
        "invalid_grant",
        "a challenge seen from another device is spent"
    );

    let token = challenge(&app, &user.email).await;
    app.clock.advance(301);
    let resp = second_step(&app, &token, json!({ "code": code_now(&app, &user.totp) })).await;
    assert_eq!(error_of(resp).await.1, "invalid_grant", "expired");

    let token = challenge(&app, &user.email).await;
    for _ in 0..5 {
        let wrong = json!({ "code": wrong_code(&app, &user.totp) });
        let resp = second_step(&app, &token, wrong).await;
        assert_eq!(error_of(resp).await.1, "invalid_code");
    }
    let resp = second_step(&app, &token, json!({ "code": code_now(&app, &user.totp) })).await;
    assert_eq!(
        error_of(resp).await.1,
        "invalid_grant",
        "five codes used up"
    );

    let token = challenge(&app, &user.email).await;
    let resp = second_step(&app, &token, json!({ "code": code_now(&app, &user.totp) })).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_codes_are_throttled_per_account_across_challenges() {
    let app = spawn_app().await;
    let user = enrolled(&app).await;
    // Five failures are free (account_failure_limit), spread over challenges.
    for _ in 0..5 {
        let token = challenge(&app, &user.email).await;
        let wrong = json!({ "code": wrong_code(&app, &user.totp) });
        let resp = second_step(&app, &token, wrong).await;
        assert_eq!(error_of(resp).await.1, "invalid_code");
    }
    let token = challenge(&app, &user.email).await;
    let resp = second_step(&app, &token, json!({ "code": code_now(&app, &user.totp) })).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    app.clock.advance(60);
    let token = challenge(&app, &user.email).await;
    let resp = second_step(&app, &token, json!({ "code": code_now(&app, &user.totp) })).await;
    assert_eq!(resp.status(), StatusCode::OK, "the delay passed");
}

#[tokio::test]
async fn a_recovery_code_signs_in_once_and_its_owner_is_told() {
    let app = spawn_app().await;
    let user = enrolled(&app).await;
    let typed = format!("  {}  ", user.codes[3].to_uppercase());

    let token = challenge(&app, &user.email).await;
    let resp = second_step(&app, &token, json!({ "recovery_code": typed })).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let signed_in = Tokens::from_body(json_of(resp).await);
    let token = challenge(&app, &user.email).await;
    let resp = second_step(&app, &token, json!({ "recovery_code": user.codes[3] })).await;
    assert_eq!(error_of(resp).await.1, "invalid_code", "spent");

    let status = json_of(app.get("/v1/mfa", Some(&signed_in.access)).await).await;
    assert_eq!(status["recovery_codes_left"], 9);
    let kinds = app.event_kinds(&signed_in.access).await;
    assert!(
        kinds.contains(&"recovery_code_used".to_string()),
        "{kinds:?}"
    );
    let mail = notice(&app, &user.email, "a recovery code was used").await;
    assert!(mail.text.contains("9 remain"), "{}", mail.text);
}

#[tokio::test]
async fn turning_it_off_or_new_codes_need_a_recent_proof_with_the_code() {
    let app = spawn_app().await;
    let user = enrolled(&app).await;
    app.clock.advance(11 * 60);
    let stale = app.refresh_ok(&user.tokens.refresh).await;
    let resp = app.delete_auth("/v1/mfa/totp", &stale.access).await;
    assert_eq!(error_of(resp).await.1, "reauthentication_required");
    let resp = app
        .post_auth("/v1/mfa/recovery-codes", &stale.access, None)
        .await;
    assert_eq!(error_of(resp).await.1, "reauthentication_required");
    assert_eq!(
        error_of(app.post_auth("/v1/mfa/totp", &stale.access, None).await)
            .await
            .1,
        "reauthentication_required"
    );

    // The password alone no longer re-proves an account with a second factor.
    let password_only = json!({ "password": PASSWORD });
    let resp = app
        .post_auth("/v1/reauthenticate", &stale.access, Some(password_only))
        .await;
    assert_refused(resp, StatusCode::BAD_REQUEST, "invalid_request", "code").await;
    let wrong = json!({ "password": PASSWORD, "code": wrong_code(&app, &user.totp) });
    let resp = app
        .post_auth("/v1/reauthenticate", &stale.access, Some(wrong))
        .await;
    assert_eq!(error_of(resp).await.1, "invalid_code");
    let right = json!({ "password": PASSWORD, "code": code_now(&app, &user.totp) });
    let resp = app
        .post_auth("/v1/reauthenticate", &stale.access, Some(right))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let renewed = json_of(resp).await["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(
        decode_segment(&renewed, 1)["amr"],
        json!(["pwd", "otp", "mfa"])
    );

    let resp = app
        .post_auth("/v1/mfa/recovery-codes", &renewed, None)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let fresh = json_of(resp).await["recovery_codes"].clone();
    assert_eq!(fresh.as_array().map(Vec::len), Some(10));
    let token = challenge(&app, &user.email).await;
    let resp = second_step(&app, &token, json!({ "recovery_code": user.codes[0] })).await;
    assert_eq!(error_of(resp).await.1, "invalid_code", "old codes are void");

    assert_eq!(
        app.delete_auth("/v1/mfa/totp", &renewed).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete_auth("/v1/mfa/totp", &renewed).await.status(),
        StatusCode::NOT_FOUND
    );
    app.login_ok(&user.email, PASSWORD).await;
    let kinds = app.event_kinds(&renewed).await;
    for kind in [
        "recovery_codes_regenerated",
        "mfa_disabled",
        "reauthenticated",
    ] {
        assert!(kinds.contains(&kind.to_string()), "{kind} in {kinds:?}");
    }
    let mail = notice(&app, &user.email, "turned off").await;
    assert!(
        mail.text.contains("a password alone now signs in"),
        "{}",
        mail.text
    );
}

#[tokio::test]
async fn a_code_accepted_by_one_instance_is_refused_by_another() {
    let home = std::sync::Arc::new(TestHome::new(backend()).await);
    let a = spawn_app_in(home.clone(), |_| {}).await;
    let b = spawn_app_in(home, |s| {
        s.issuer = a.settings.issuer.clone();
        s.audience = a.settings.audience.clone();
    })
    .await;
    let user = enrolled(&a).await;
    let now = |app: &TestApp| latchkey::domain::clock::Clock::now(app.clock.as_ref());
    b.clock.advance(now(&a) - now(&b));

    let on_a = challenge(&a, &user.email).await;
    let on_b = challenge(&b, &user.email).await;
    let code = code_now(&a, &user.totp);
    let resp = second_step(&a, &on_a, json!({ "code": code })).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = second_step(&b, &on_b, json!({ "code": code })).await;
    assert_eq!(error_of(resp).await.1, "invalid_code", "replayed on b");
    // A challenge of one instance is good on the other.
    b.clock.advance(30);
    let resp = second_step(&b, &on_b, json!({ "code": code_now(&b, &user.totp) })).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn simplejwt_logins_of_enrolled_accounts_are_sent_to_the_two_step_sign_in() {
    let app = spawn_app_with(|s| s.compat = vec![latchkey::config::Compat::Djoser]).await;
    let user = enrolled(&app).await;
    let resp = app
        .post_json(
            "/auth/jwt/create/",
            json!({ "email": user.email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body = json_of(resp).await;
    assert_eq!(body["code"], "mfa_required", "{body}");
    assert!(body.get("access").is_none());
}

#[tokio::test]
async fn second_factors_are_sealed_at_rest_and_exported() {
    let app = spawn_app().await;
    let user = enrolled(&app).await;
    let rows = app.rows().await;
    let factor = rows.totp_factors.first().expect("a factor");
    let plain = user.totp.secret().as_ref().to_vec();
    assert!(
        !factor
            .secret
            .windows(plain.len())
            .any(|w| w == plain.as_slice()),
        "the secret is stored sealed"
    );
    assert_eq!(rows.recovery_codes.len(), 10);
    let stored = serde_json::to_string(&rows.recovery_codes).expect("json");
    for code in &user.codes {
        assert!(!stored.contains(code.as_str()), "codes are kept as digests");
    }

    let home = TestHome::new(backend()).await;
    let target = latchkey::app::open_store(&test_settings(&home))
        .await
        .expect("target store");
    target.import(&rows).await.expect("import");
    let moved = target.export().await.expect("export");
    assert_eq!(moved.totp_factors, rows.totp_factors);
    assert_eq!(moved.recovery_codes, rows.recovery_codes);
}

#[tokio::test]
async fn at_most_ten_wrong_codes_a_day_are_judged_per_account() {
    // No growing delays here, and a generous daily ceiling for passwords:
    // codes still stop at ten a day.
    let app = spawn_app_with(|s| {
        s.account_failure_limit = 100;
        s.account_daily_failure_limit = 1000;
    })
    .await;
    let user = enrolled(&app).await;
    for _ in 0..2 {
        let token = challenge(&app, &user.email).await;
        for _ in 0..5 {
            let wrong = json!({ "code": wrong_code(&app, &user.totp) });
            let resp = second_step(&app, &token, wrong).await;
            assert_eq!(error_of(resp).await.1, "invalid_code");
        }
    }
    let token = challenge(&app, &user.email).await;
    let resp = second_step(&app, &token, json!({ "code": code_now(&app, &user.totp) })).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: i64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(wait > 3600, "until the day is over: {wait}");
    app.clock.advance(wait);
    let token = challenge(&app, &user.email).await;
    let resp = second_step(&app, &token, json!({ "code": code_now(&app, &user.totp) })).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn password_and_email_changes_of_an_account_with_a_second_factor_need_a_recent_proof() {
    let app = spawn_app().await;
    let user = enrolled(&app).await;
    let (_, plain) = app.new_user().await;
    app.clock.advance(11 * 60);
    let stale = app.refresh_ok(&user.tokens.refresh).await;
    let change = json!({ "current_password": PASSWORD, "new_password": OTHER_PASSWORD });
    let resp = app
        .post_auth("/v1/me/password", &stale.access, Some(change.clone()))
        .await;
    assert_refused(
        resp,
        StatusCode::FORBIDDEN,
        "reauthentication_required",
        "a code from the authenticator app",
    )
    .await;
    let move_to = json!({ "password": PASSWORD, "new_email": unique_email() });
    let resp = app
        .post_auth("/v1/me/email", &stale.access, Some(move_to))
        .await;
    assert_eq!(error_of(resp).await.1, "reauthentication_required");

    let proof = json!({ "password": PASSWORD, "code": code_now(&app, &user.totp) });
    let renewed = json_of(
        app.post_auth("/v1/reauthenticate", &stale.access, Some(proof))
            .await,
    )
    .await;
    let renewed = renewed["access_token"].as_str().expect("token");
    let resp = app
        .post_auth("/v1/me/password", renewed, Some(change))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let fresh = Tokens::from_body(json_of(resp).await);
    assert_eq!(
        decode_segment(&fresh.access, 1)["amr"],
        json!(["pwd", "otp", "mfa"]),
        "the new session keeps how it was proved"
    );

    // Without a second factor, the current password in the request is the proof.
    let stale = app.refresh_ok(&plain.refresh).await;
    let change = json!({ "current_password": PASSWORD, "new_password": OTHER_PASSWORD });
    let resp = app
        .post_auth("/v1/me/password", &stale.access, Some(change))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}
