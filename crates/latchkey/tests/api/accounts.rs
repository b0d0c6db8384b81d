//! Registration, login, the password policy, user enumeration and the per-account, per-IP and hashing throttles.

use crate::helpers::*;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

/// A strong password of `len` characters, different for every `seed`.
fn random_password(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] =
        b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789!#%&*+-=?@^_~";
    let mut state = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ALPHABET[((state >> 33) % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

async fn assert_error(resp: Response, status: StatusCode, code: &str) -> Value {
    let (got_status, got_code, body) = error_of(resp).await;
    assert_eq!((got_status, got_code.as_str()), (status, code), "{body}");
    body
}

fn retry_after(headers: &HeaderMap) -> u64 {
    headers
        .get("retry-after")
        .expect("Retry-After header")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("Retry-After in seconds")
}

async fn stored_hash(app: &TestApp, email: &str) -> String {
    let rows = app.rows().await;
    let user = rows
        .users
        .into_iter()
        .find(|u| u.email_normalized == email.to_lowercase());
    user.expect("user row").password_hash
}

async fn change_password(app: &TestApp, access: &str, current: &str, new: &str) -> Response {
    app.post_auth(
        "/v1/me/password",
        access,
        Some(json!({"current_password": current, "new_password": new})),
    )
    .await
}

async fn login_from(app: &TestApp, email: &str, password: &str, forwarded_for: &str) -> Response {
    app.client
        .post(app.url("/v1/login"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("request")
}

// ---------------------------------------------------------------- registration

#[tokio::test]
async fn registration_returns_the_user_and_an_uncacheable_token_response() {
    let app = spawn_app().await;
    let email = unique_email();
    let resp = app
        .post_json(
            "/v1/register",
            json!({"email": email, "password": PASSWORD, "name": "Ada Lovelace"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    let body: Value = resp.json().await.expect("json");
    let tokens = Tokens::from_body(body.clone());
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().is_some_and(|s| s > 0), "{body}");
    assert!(tokens.refresh.starts_with("lk_rt_"), "{body}");
    let user = &body["user"];
    assert!(
        user["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    assert_eq!(user["email"], email.as_str());
    assert_eq!(user["name"], "Ada Lovelace");
    assert_eq!(user["email_verified"], false);
    assert!(user["created_at"].is_string(), "{body}");

    let login = app.login(&email, PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK);
    assert_eq!(login.headers()["cache-control"], "no-store");
    assert_eq!(login.headers()["pragma"], "no-cache");
    let me: Value = app
        .me(&Tokens::from_body(login.json().await.expect("json")).access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["id"], user["id"]);
}

#[tokio::test]
async fn the_name_is_optional_at_registration() {
    let app = spawn_app().await;
    let resp = app.register_raw(&unique_email(), PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.expect("json");
    assert!(body["user"]["name"].is_null(), "{body}");
}

#[tokio::test]
async fn an_email_registered_twice_in_any_case_is_refused_and_both_spellings_reach_one_account() {
    let app = spawn_app().await;
    let lower = format!("alice-{}", unique_email());
    let shouted = {
        let (local, domain) = lower.split_once('@').expect("@");
        format!(
            "{}{}@{}",
            local[..1].to_uppercase(),
            &local[1..],
            domain.to_uppercase()
        )
    };
    let first = app.register(&lower, PASSWORD).await;
    assert_error(
        app.register_raw(&lower, OTHER_PASSWORD).await,
        StatusCode::CONFLICT,
        "email_taken",
    )
    .await;
    assert_error(
        app.register_raw(&shouted, OTHER_PASSWORD).await,
        StatusCode::CONFLICT,
        "email_taken",
    )
    .await;

    let id = first.body["user"]["id"].clone();
    for spelling in [&lower, &shouted] {
        let tokens = app.login_ok(spelling, PASSWORD).await;
        let me: Value = app.me(&tokens.access).await.json().await.expect("json");
        assert_eq!(me["id"], id, "{spelling} reached another account");
    }
    assert_error(
        app.login(&shouted, OTHER_PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn malformed_emails_are_refused_with_invalid_request() {
    let app = spawn_app().await;
    // Valid label and local-part lengths, so only the total length is at fault.
    let long_address = |last_label: usize| {
        format!(
            "bob@{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(last_label)
        )
    };
    let too_long = long_address(59);
    assert_eq!(too_long.len(), 255);
    let bad = [
        "no-at-sign.example.com".to_string(),
        "two words@example.com".to_string(),
        "@example.com".to_string(),
        too_long,
        "ali\rce@example.com".to_string(),
        "ali\nce@example.com".to_string(),
        "ali\r\nBcc: x@evil.example@example.com".to_string(),
        "ali\u{0}ce@example.com".to_string(),
        "ali\u{1b}[31mce@example.com".to_string(),
    ];
    for email in &bad {
        let body = assert_error(
            app.register_raw(email, PASSWORD).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
        assert!(!body.to_string().contains('\u{1b}'), "{body}");
    }
    let at_limit = long_address(58);
    assert_eq!(at_limit.len(), 254);
    assert_eq!(
        app.register_raw(&at_limit, PASSWORD).await.status(),
        StatusCode::CREATED
    );
}

// ---------------------------------------------------------------- password length

#[tokio::test]
async fn passwords_shorter_than_the_minimum_are_refused_and_the_minimum_is_accepted() {
    let app = spawn_app().await;
    let weak = |r| assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
    weak(app.register_raw(&unique_email(), "q7#Kp2!").await).await;
    let email = unique_email();
    app.register(&email, "q7#Kp2!x").await;
    app.login_ok(&email, "q7#Kp2!x").await;
}

#[tokio::test]
async fn password_length_is_counted_in_characters_not_bytes() {
    let app = spawn_app().await;
    // Seven emoji are 28 bytes and seven é are 14: both are seven characters.
    let seven_emoji = "😀🐙🌵🎲🚲🧊🦉";
    let eight_emoji = "😀🐙🌵🎲🚲🧊🦉🍄";
    assert_eq!((seven_emoji.len(), eight_emoji.len()), (28, 32));
    assert_error(
        app.register_raw(&unique_email(), seven_emoji).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "weak_password",
    )
    .await;
    assert_error(
        app.register_raw(&unique_email(), &"é".repeat(7)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "weak_password",
    )
    .await;
    let email = unique_email();
    app.register(&email, eight_emoji).await;
    app.login_ok(&email, eight_emoji).await;
}

#[tokio::test]
async fn a_raised_minimum_length_refuses_shorter_passwords() {
    let app = spawn_app_with(|s| s.password_min_length = 15).await;
    let twelve = random_password(12, 1);
    let fifteen = random_password(15, 2);
    assert_error(
        app.register_raw(&unique_email(), &twelve).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "weak_password",
    )
    .await;
    app.register(&unique_email(), &fifteen).await;
    let (_, tokens) = app.new_user().await;
    let resp = change_password(&app, &tokens.access, PASSWORD, &twelve).await;
    assert_error(resp, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
}

#[tokio::test]
async fn passwords_of_64_and_128_characters_are_accepted_and_129_refused() {
    let app = spawn_app().await;
    for len in [64, 128] {
        let password = random_password(len, len as u64);
        let email = unique_email();
        app.register(&email, &password).await;
        app.login_ok(&email, &password).await;
    }
    let resp = app
        .register_raw(&unique_email(), &random_password(129, 129))
        .await;
    assert_error(resp, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
    let (_, tokens) = app.new_user().await;
    let resp = change_password(&app, &tokens.access, PASSWORD, &random_password(129, 7)).await;
    assert_error(resp, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
}

#[tokio::test]
async fn huge_passwords_are_refused_quickly_without_being_hashed() {
    // Costly enough that one hash is clearly visible in the response time.
    let app = spawn_app_with(|s| {
        s.argon2_memory_kib = 8192;
        s.account_failure_limit = 0;
    })
    .await;
    let (email, _) = app.new_user().await;
    let started = Instant::now();
    assert_error(
        app.login(&email, OTHER_PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    let one_hash = started.elapsed();

    let mebibyte = "x".repeat(1 << 20);
    let started = Instant::now();
    assert_error(
        app.register_raw(&unique_email(), &mebibyte).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert_error(
        app.login(&email, &mebibyte).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    // Under the body limit but far over the password limit: refused by length, not by Argon2.
    let sixty_k = random_password(60 * 1024, 60);
    assert_error(
        app.register_raw(&unique_email(), &sixty_k).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "weak_password",
    )
    .await;
    assert_error(
        app.login(&email, &sixty_k).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    let four_refusals = started.elapsed();
    assert!(
        four_refusals < one_hash * 2,
        "four refusals took {four_refusals:?}; one hashed login takes {one_hash:?}"
    );
}

#[tokio::test]
async fn passwords_are_never_truncated() {
    let app = spawn_app().await;
    let email = unique_email();
    let password = random_password(100, 100);
    app.register(&email, &password).await;
    assert_error(
        app.login(&email, &password[..72]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    app.login_ok(&email, &password).await;
}

#[tokio::test]
async fn a_password_with_a_nul_character_is_not_cut_at_the_nul() {
    let app = spawn_app().await;
    let email = unique_email();
    let password = "violet kettle\u{0}harbour gale";
    app.register(&email, password).await;
    assert_error(
        app.login(&email, "violet kettle").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    app.login_ok(&email, password).await;
}

// ---------------------------------------------------------------- normalisation and composition

#[tokio::test]
async fn passwords_are_nfkc_normalised_at_registration_login_and_change() {
    let app = spawn_app().await;
    let email = unique_email();
    // Precomposed ö (U+00F6) and the ﬁ ligature (U+FB01).
    app.register(&email, "gr\u{f6}ne \u{fb01}nch lantern 42")
        .await;
    let tokens = app.login_ok(&email, "gro\u{308}ne finch lantern 42").await;

    let resp = change_password(
        &app,
        &tokens.access,
        "gro\u{308}ne \u{fb01}nch lantern 42",
        "m\u{f6}we \u{fb01}ddle harbour 7",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    app.login_ok(&email, "mo\u{308}we fiddle harbour 7").await;
}

#[tokio::test]
async fn leading_and_trailing_spaces_are_part_of_the_password() {
    let app = spawn_app().await;
    let email = unique_email();
    let padded = format!("  {PASSWORD}  ");
    app.register(&email, &padded).await;
    assert_error(
        app.login(&email, PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    app.login_ok(&email, &padded).await;
}

#[tokio::test]
async fn a_lowercase_only_passphrase_is_accepted() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email, "tangerine mollusk quietly orbits")
        .await;
    app.login_ok(&email, "tangerine mollusk quietly orbits")
        .await;
}

#[tokio::test]
async fn common_and_guessable_passwords_are_refused_at_registration_and_password_change() {
    let app = spawn_app().await;
    let email = format!("mossyharbinger{}", unique_email());
    let local = email.split('@').next().expect("local part").to_string();
    let guessable = [
        "password",
        "12345678",
        "password123",
        local.as_str(),
        "latchkey2024",
    ];
    for password in guessable {
        let resp = app.register_raw(&email, password).await;
        assert_error(resp, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
    }
    let tokens = app.register(&email, PASSWORD).await;
    for password in guessable {
        let resp = change_password(&app, &tokens.access, PASSWORD, password).await;
        assert_error(resp, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
    }
    app.login_ok(&email, PASSWORD).await;
}

// ---------------------------------------------------------------- stored hashes

#[tokio::test]
async fn stored_hashes_are_salted_argon2id_phc_strings() {
    let app = spawn_app().await;
    let (first, second) = (unique_email(), unique_email());
    app.register(&first, PASSWORD).await;
    app.register(&second, PASSWORD).await;
    let hashes = [
        stored_hash(&app, &first).await,
        stored_hash(&app, &second).await,
    ];
    for hash in &hashes {
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(!hash.contains(PASSWORD));
        let salt = hash.split('$').nth(4).expect("salt");
        assert!(salt.len() >= 22, "salt shorter than 16 bytes: {hash}");
    }
    assert_ne!(hashes[0], hashes[1]);
    assert_ne!(hashes[0].split('$').nth(4), hashes[1].split('$').nth(4));
}

#[tokio::test]
async fn raising_the_argon2_cost_rehashes_the_password_at_the_next_login() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    assert!(
        stored_hash(&app, &email)
            .await
            .starts_with("$argon2id$v=19$m=1024,t=1,p=1$")
    );
    let dir = app.stop().await;

    let app = spawn_app_in(dir, |s| s.argon2_memory_kib = 2048).await;
    assert!(
        stored_hash(&app, &email).await.contains("m=1024,"),
        "rehashed before any login"
    );
    assert_error(
        app.login(&email, OTHER_PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert!(
        stored_hash(&app, &email).await.contains("m=1024,"),
        "a failed login must not rehash"
    );
    app.login_ok(&email, PASSWORD).await;
    assert!(
        stored_hash(&app, &email)
            .await
            .starts_with("$argon2id$v=19$m=2048,t=1,p=1$")
    );
    app.login_ok(&email, PASSWORD).await;
}

// ---------------------------------------------------------------- enumeration

/// Status, body bytes and headers of a response, minus values that differ per request.
async fn fingerprint(resp: Response) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
    let status = resp.status();
    let headers = resp
        .headers()
        .iter()
        .map(|(name, value)| {
            let varying = matches!(name.as_str(), "date" | "x-request-id");
            let value = if varying {
                String::new()
            } else {
                value.to_str().unwrap_or("<binary>").to_string()
            };
            (name.as_str().to_string(), value)
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    (status, headers, resp.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn unknown_wrong_password_and_disabled_accounts_get_identical_answers() {
    let app = spawn_app().await;
    let (known, _) = app.new_user().await;
    let (disabled, _) = app.new_user().await;
    let out = app.cli(&["users", "disable", &disabled], None);
    assert!(out.status.success(), "{out:?}");

    let unknown = fingerprint(app.login(&unique_email(), PASSWORD).await).await;
    let wrong = fingerprint(app.login(&known, OTHER_PASSWORD).await).await;
    let off = fingerprint(app.login(&disabled, PASSWORD).await).await;
    assert_eq!(unknown.0, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&unknown.2).contains("invalid_grant"));
    assert!(!unknown.1.iter().any(|(name, _)| name == "set-cookie"));
    assert_eq!(unknown, wrong);
    assert_eq!(unknown, off);
}

#[tokio::test]
async fn unknown_and_known_emails_take_about_the_same_time_to_refuse() {
    // 8 MiB is about 80 ms per hash in a debug build: a skipped hash for
    // unknown users would make one side a small fraction of the other, far
    // beyond the tolerance, which is wide enough for what parallel tests on
    // two cores add to even the fastest sample.
    let app = spawn_app_with(|s| {
        s.argon2_memory_kib = 8192;
        s.account_failure_limit = 0;
    })
    .await;
    let (email, _) = app.new_user().await;
    let unknown_email = unique_email();
    let time = |email: String| {
        let app = &app;
        async move {
            let started = Instant::now();
            let resp = app.login(&email, OTHER_PASSWORD).await;
            let elapsed = started.elapsed();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
            elapsed
        }
    };
    // Interleaved, alternating which goes first. Other tests running in
    // parallel only ever add delay, so the fastest sample of each series is
    // what the server's own work costs (medians swing by tens of ms here).
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for round in 0..30 {
        if round % 2 == 0 {
            known.push(time(email.clone()).await);
            unknown.push(time(unknown_email.clone()).await);
        } else {
            unknown.push(time(unknown_email.clone()).await);
            known.push(time(email.clone()).await);
        }
    }
    let (known, unknown) = (fastest(&known), fastest(&unknown));
    let tolerance = Duration::from_millis(10).max(known.max(unknown) * 3 / 10);
    assert!(
        known.abs_diff(unknown) < tolerance,
        "known emails take {known:?} to refuse, unknown ones {unknown:?}"
    );
}

fn fastest(samples: &[Duration]) -> Duration {
    samples.iter().copied().min().expect("samples")
}

// ---------------------------------------------------------------- per-account throttle

#[tokio::test]
async fn repeated_failures_throttle_the_account_even_for_the_right_password() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    for _ in 0..5 {
        assert_error(
            app.login(&email, OTHER_PASSWORD).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
    let resp = app.login(&email, PASSWORD).await;
    let wait = retry_after(resp.headers());
    assert!(wait >= 1);
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    app.clock.advance(wait as i64);
    app.login_ok(&email, PASSWORD).await;
    // The success reset the counter: five fresh failures are allowed again.
    for _ in 0..5 {
        assert_error(
            app.login(&email, OTHER_PASSWORD).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
    assert_error(
        app.login(&email, PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
}

#[tokio::test]
async fn the_throttle_is_shared_by_every_spelling_of_an_email() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    let shouted = email.to_uppercase();
    for i in 0..5 {
        let spelling = if i % 2 == 0 { &email } else { &shouted };
        assert_error(
            app.login(spelling, OTHER_PASSWORD).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
    assert_error(
        app.login(&email, PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
}

#[tokio::test]
async fn unknown_emails_are_throttled_exactly_like_known_ones() {
    let app = spawn_app().await;
    let (known, _) = app.new_user().await;
    let unknown = unique_email();
    for _ in 0..5 {
        assert_error(
            app.login(&known, OTHER_PASSWORD).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
        assert_error(
            app.login(&unknown, OTHER_PASSWORD).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
    let known_429 = fingerprint(app.login(&known, OTHER_PASSWORD).await).await;
    let unknown_429 = fingerprint(app.login(&unknown, OTHER_PASSWORD).await).await;
    assert_eq!(known_429.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(known_429, unknown_429);
}

#[tokio::test]
async fn rotating_forwarded_for_does_not_escape_the_account_throttle() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    for i in 0..5 {
        let resp = login_from(&app, &email, OTHER_PASSWORD, &format!("198.51.100.{i}")).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    let resp = login_from(&app, &email, PASSWORD, "203.0.113.77").await;
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test]
async fn the_throttle_delay_grows_but_is_capped_and_never_locks_out_for_good() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    for _ in 0..5 {
        assert_error(
            app.login(&email, OTHER_PASSWORD).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
    let mut waits = Vec::new();
    for _ in 0..16 {
        let resp = app.login(&email, OTHER_PASSWORD).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait = retry_after(resp.headers());
        waits.push(wait);
        app.clock.advance(wait as i64);
        assert_error(
            app.login(&email, OTHER_PASSWORD).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
    assert!(
        waits.windows(2).all(|w| w[0] <= w[1]),
        "delays shrank: {waits:?}"
    );
    assert!(waits[5] > waits[0], "delays do not grow: {waits:?}");
    let cap = *waits.last().expect("waits");
    assert_eq!(
        waits[waits.len() - 2],
        cap,
        "delays are not capped: {waits:?}"
    );
    assert!(cap <= 3600, "a delay of {cap}s is a lockout: {waits:?}");

    let resp = app.login(&email, PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    app.clock.advance(retry_after(resp.headers()) as i64);
    app.login_ok(&email, PASSWORD).await;
}

#[tokio::test]
async fn concurrent_wrong_passwords_are_counted_atomically() {
    let app = spawn_app().await;
    let (email, _) = app.new_user().await;
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (client, url) = (app.client.clone(), app.url("/v1/login"));
        let body = json!({"email": email, "password": OTHER_PASSWORD});
        attempts.spawn(async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("request")
                .status()
        });
    }
    let statuses = attempts.join_all().await;
    let evaluated = statuses
        .iter()
        .filter(|s| **s != StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        statuses
            .iter()
            .all(|s| [StatusCode::BAD_REQUEST, StatusCode::TOO_MANY_REQUESTS].contains(s)),
        "{statuses:?}"
    );
    assert!(
        evaluated <= 5,
        "{evaluated} of 50 concurrent attempts were evaluated: {statuses:?}"
    );
}

// ---------------------------------------------------------------- per-IP limit

#[tokio::test]
async fn the_per_ip_limit_refuses_credential_requests_before_hashing() {
    let app = spawn_app_with(|s| {
        s.ip_rate_limit = 3;
        s.argon2_memory_kib = 8192;
    })
    .await;
    let email = unique_email();
    app.register(&email, PASSWORD).await;
    let started = Instant::now();
    assert_error(
        app.login(&unique_email(), PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    let one_hash = started.elapsed();
    assert_error(
        app.login(&unique_email(), PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;

    let started = Instant::now();
    let login = app.login(&email, PASSWORD).await;
    let register = app.register_raw(&unique_email(), PASSWORD).await;
    let both = started.elapsed();
    assert!(retry_after(login.headers()) >= 1 && retry_after(register.headers()) >= 1);
    let login = assert_error(login, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let register = assert_error(register, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(login, register, "the 429 body is generic");
    assert!(
        both < one_hash,
        "two 429s took {both:?}; one hashed login takes {one_hash:?}"
    );
}

#[tokio::test]
async fn password_change_is_limited_per_ip() {
    let app = spawn_app_with(|s| s.ip_rate_limit = 3).await;
    let (_, tokens) = app.new_user().await;
    for _ in 0..2 {
        let resp = change_password(
            &app,
            &tokens.access,
            OTHER_PASSWORD,
            "quiet mulberry orchard",
        )
        .await;
        assert_error(resp, StatusCode::FORBIDDEN, "invalid_credentials").await;
    }
    let resp = change_password(&app, &tokens.access, PASSWORD, "quiet mulberry orchard").await;
    assert!(retry_after(resp.headers()) >= 1);
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_gives_each_client_its_own_budget() {
    let app = spawn_app_with(|s| {
        s.ip_rate_limit = 2;
        s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    })
    .await;
    for _ in 0..2 {
        let resp = login_from(&app, &unique_email(), PASSWORD, "203.0.113.1").await;
        assert_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    let resp = login_from(&app, &unique_email(), PASSWORD, "203.0.113.1").await;
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let resp = login_from(&app, &unique_email(), PASSWORD, "203.0.113.2").await;
    assert_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn a_spoofed_forwarded_for_is_ignored_without_trusted_proxies() {
    let app = spawn_app_with(|s| s.ip_rate_limit = 2).await;
    for i in 0..2 {
        let resp = login_from(&app, &unique_email(), PASSWORD, &format!("203.0.113.{i}")).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    let resp = login_from(&app, &unique_email(), PASSWORD, "203.0.113.99").await;
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

// ---------------------------------------------------------------- hashing concurrency

#[tokio::test]
async fn a_flood_of_logins_is_shed_with_503_instead_of_queueing_without_bound() {
    let app = spawn_app_with(|s| {
        s.hash_concurrency = 1;
        s.hash_queue = 2;
        s.argon2_memory_kib = 8192;
        s.account_failure_limit = 0;
    })
    .await;
    let (email, _) = app.new_user().await;
    let bodies = (0..40).map(|i| {
        let password = if i % 2 == 0 { PASSWORD } else { OTHER_PASSWORD };
        json!({"email": email, "password": password})
    });
    let mut answers = Vec::new();
    for resp in app.logins_at_once(bodies).await {
        let status = resp.status();
        let wait = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        answers.push((status, wait, body));
    }
    let mut shed = 0;
    for (status, wait, body) in &answers {
        match *status {
            StatusCode::OK | StatusCode::BAD_REQUEST => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                shed += 1;
                assert_eq!(body["error"], "temporarily_unavailable");
                assert!(
                    wait.is_some_and(|w| w >= 1),
                    "503 without Retry-After: {body}"
                );
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert!(shed >= 1, "no login was shed: {answers:?}");
    app.login_ok(&email, PASSWORD).await;
}

#[tokio::test]
async fn shed_logins_touch_neither_the_throttle_nor_the_audit_log() {
    let app = spawn_app_with(|s| {
        s.hash_concurrency = 1;
        s.hash_queue = 1;
        s.argon2_memory_kib = 8192;
        s.account_failure_limit = 1000;
    })
    .await;
    let (email, _) = app.new_user().await;
    let bodies = (0..30).map(|_| json!({"email": email, "password": OTHER_PASSWORD}));
    let answers: Vec<StatusCode> = app
        .logins_at_once(bodies)
        .await
        .iter()
        .map(Response::status)
        .collect();
    let refused = answers
        .iter()
        .filter(|s| **s == StatusCode::BAD_REQUEST)
        .count();
    let shed = answers
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(refused + shed, answers.len(), "{answers:?}");
    assert!(shed >= 1, "no login was shed: {answers:?}");
    let rows = app.rows().await;
    let counted: i64 = rows.throttles.iter().map(|t| t.failures).sum();
    assert_eq!(counted, refused as i64, "only verified attempts count");
    let audited = rows
        .events
        .iter()
        .filter(|e| e.kind == "login_failed")
        .count();
    assert_eq!(audited, refused);
}
