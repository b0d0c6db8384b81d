//! Size, transport and type confusion: oversized headers, tokens in the
//! query, the scheme name, refresh tokens as access tokens, disabled users.

use super::*;

// ---------------------------------------------------------------------------
// size, transport and type confusion
// ---------------------------------------------------------------------------

#[tokio::test]
async fn oversized_authorization_headers_never_cause_a_server_error() {
    let f = forge().await;
    for (case, size) in [("64 KiB", 64 * 1024), ("1 MiB", 1024 * 1024)] {
        let value = format!("Bearer {}", "A".repeat(size));
        let started = Instant::now();
        let sent = f
            .app
            .client
            .get(f.app.url(ME))
            .header(AUTHORIZATION, value)
            .send()
            .await;
        let took = started.elapsed();
        match sent {
            Ok(resp) => {
                let status = resp.status();
                assert!(
                    status == StatusCode::UNAUTHORIZED
                        || status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "{case} Authorization header: expected 401 or 431, got {status}"
                );
            }
            // The server may drop a connection whose header block is too big.
            Err(e) => assert!(
                !e.is_timeout(),
                "{case} Authorization header: request timed out: {e}"
            ),
        }
        assert!(
            took < Duration::from_secs(2),
            "{case} Authorization header took {took:?}"
        );
    }
    assert_accepted(
        &f.app,
        &f.tokens.access,
        "the server still serves afterwards",
    )
    .await;
}

#[tokio::test]
async fn oversized_but_correctly_signed_token_is_refused() {
    let f = forge().await;
    let small = f
        .sign(&f.header, &f.claims_with("pad", json!("A".repeat(16))))
        .await;
    assert_accepted(&f.app, &small, "control: a short extra claim").await;
    let big = f
        .sign(
            &f.header,
            &f.claims_with("pad", json!("A".repeat(6 * 1024))),
        )
        .await;
    // Over the verifier's 4 KiB token limit, under the server's 16 KiB header limit.
    assert_refused(&f.app, &big, "a correctly signed 8 KiB token").await;
}

#[tokio::test]
async fn access_token_in_the_query_string_is_ignored() {
    let f = forge().await;
    let resp = f
        .app
        .client
        .get(f.app.url(&format!("{ME}?access_token={}", f.tokens.access)))
        .send()
        .await
        .expect("request");
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "?access_token= must not authenticate"
    );
    let with_header = format!("{ME}?access_token=garbage");
    let resp = f
        .app
        .client
        .get(f.app.url(&with_header))
        .bearer_auth(&f.tokens.access)
        .send()
        .await
        .expect("request");
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "control: the header token with a junk query parameter"
    );
}

#[tokio::test]
async fn bearer_scheme_name_is_case_insensitive() {
    let f = forge().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = f
            .app
            .client
            .get(f.app.url(ME))
            .header(AUTHORIZATION, format!("{scheme} {}", f.tokens.access))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::OK, "scheme {scheme:?}");
    }
}

#[tokio::test]
async fn refresh_token_is_not_accepted_as_an_access_token() {
    let f = forge().await;
    assert_accepted(&f.app, &f.tokens.access, "control: the access token").await;
    assert_refused(&f.app, &f.tokens.refresh, "refresh token as bearer").await;
}

#[tokio::test]
async fn access_token_is_not_accepted_as_a_refresh_token() {
    let f = forge().await;
    let (status, code, body) = error_of(f.app.refresh(&f.tokens.access).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant"),
        "{body}"
    );
    let next = f.app.refresh_ok(&f.tokens.refresh).await;
    assert_accepted(&f.app, &next.access, "the session is untouched").await;
}

#[tokio::test]
async fn every_claim_set_to_jwt_tool_is_refused_without_internal_detail() {
    let f = forge().await;
    assert_accepted(&f.app, &f.valid().await, "control").await;
    let mut claims = f.claims.clone();
    for value in claims.as_object_mut().expect("object").values_mut() {
        *value = json!("jwt_tool");
    }
    let header_tool = json!({"alg": "jwt_tool", "typ": "jwt_tool", "kid": "jwt_tool"});
    let cases = [
        ("every claim jwt_tool", f.sign(&f.header, &claims).await),
        (
            "every header member and claim jwt_tool",
            f.sign(&header_tool, &claims).await,
        ),
    ];
    let leaks = [
        "jwt_tool",
        "serde",
        "invalid type",
        "expected",
        "missing field",
        "line ",
        "column",
        "Claims",
        "VerifyError",
        "Malformed",
        ".rs",
        "panicked",
        "sqlx",
        "SELECT",
    ];
    for (case, token) in cases {
        let resp = me_raw(&f.app, &token).await;
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let status = resp.status();
        let body: Value = resp.json().await.expect("JSON error body");
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["error"], "invalid_token", "{case}: {body}");
        let members: Vec<&String> = body.as_object().expect("object").keys().collect();
        assert_eq!(members, ["error", "error_description"], "{case}: {body}");
        for leak in leaks {
            assert!(
                !body.to_string().contains(leak),
                "{case}: body reveals {leak:?}: {body}"
            );
            assert!(
                !challenge.contains(leak),
                "{case}: challenge reveals {leak:?}: {challenge}"
            );
        }
    }
}

#[tokio::test]
async fn correctly_signed_token_for_a_disabled_user_is_refused() {
    let f = forge().await;
    let forged = f.valid().await;
    assert_accepted(&f.app, &forged, "before the user is disabled").await;
    let out = f.app.cli(&["users", "disable", &f.email], None);
    assert!(out.status.success(), "users disable failed: {out:?}");
    assert_refused(&f.app, &forged, "forged token of a disabled user").await;
    assert_refused(&f.app, &f.tokens.access, "issued token of a disabled user").await;
}

#[tokio::test]
async fn correctly_signed_token_for_a_deleted_user_is_refused() {
    let f = forge().await;
    let forged = f.valid().await;
    assert_accepted(&f.app, &forged, "before the user is deleted").await;
    let out = f.app.cli(&["users", "delete", &f.email], None);
    assert!(out.status.success(), "users delete failed: {out:?}");
    assert_refused(&f.app, &forged, "forged token of a deleted user").await;
    assert_refused(&f.app, &f.tokens.access, "issued token of a deleted user").await;
}
