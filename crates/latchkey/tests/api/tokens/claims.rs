//! `typ` and the claims; the published keys and the tokens Latchkey issues.

use super::*;

// ---------------------------------------------------------------------------
// typ and claims
// ---------------------------------------------------------------------------

#[tokio::test]
async fn typ_must_name_an_access_token() {
    let f = forge().await;
    let mut findings = Findings::default();
    let missing = f.sign(&f.header_without("typ"), &f.claims).await;
    findings.refused(&f.app, &missing, "typ missing").await;
    for typ in [
        json!("JWT"),
        json!("jwt"),
        json!("rt+jwt"),
        json!("application/jwt"),
        json!("at+jwt+x"),
        json!(["at+jwt"]),
        json!(null),
    ] {
        let token = f.sign(&f.header_with("typ", typ.clone()), &f.claims).await;
        findings
            .refused(&f.app, &token, &format!("typ {typ}"))
            .await;
    }
    // RFC 7515 §4.1.9 / RFC 9068 §4: a media type, compared case-insensitively, prefix included.
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/AT+JWT",
        "APPLICATION/at+jwt",
    ] {
        let token = f.sign(&f.header_with("typ", json!(typ)), &f.claims).await;
        findings
            .accepted(&f.app, &token, &format!("typ {typ:?}"))
            .await;
    }
    findings.assert_none();
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_refused() {
    let f = forge().await;
    assert_accepted(&f.app, &f.valid().await, "control").await;
    let issuer = f.app.settings.issuer.clone();
    let audience = f.app.settings.audience.clone();
    let cases = [
        (
            "iss with a trailing slash",
            f.claims_with("iss", json!(format!("{issuer}/"))),
        ),
        (
            "iss of another server",
            f.claims_with("iss", json!("https://evil.example")),
        ),
        (
            "iss in upper case",
            f.claims_with("iss", json!(issuer.to_uppercase())),
        ),
        ("iss empty", f.claims_with("iss", json!(""))),
        (
            "aud of another service",
            f.claims_with("aud", json!("https://api.other.example")),
        ),
        (
            "aud with a trailing slash",
            f.claims_with("aud", json!(format!("{audience}/"))),
        ),
        ("aud empty", f.claims_with("aud", json!(""))),
        ("aud missing", f.claims_without("aud")),
    ];
    for (case, claims) in cases {
        let token = f.sign(&f.header, &claims).await;
        assert_refused(&f.app, &token, case).await;
    }
}

#[tokio::test]
async fn token_missing_any_required_claim_is_refused() {
    let f = forge().await;
    assert_accepted(&f.app, &f.valid().await, "control").await;
    for claim in ["iss", "exp", "aud", "sub", "client_id", "iat", "jti", "sid"] {
        let token = f.sign(&f.header, &f.claims_without(claim)).await;
        assert_refused(&f.app, &token, &format!("{claim} removed")).await;
    }
}

#[tokio::test]
async fn expiry_is_checked_with_the_configured_leeway() {
    let f = forge().await;
    let (now, leeway) = (f.now(), f.leeway());
    assert!(leeway > 3, "the default leeway is 5 s, got {leeway}");
    let expired = f
        .sign(&f.header, &f.claims_with("exp", json!(now - (leeway + 1))))
        .await;
    assert_refused(&f.app, &expired, "exp = now - (leeway + 1)").await;
    let within = f
        .sign(&f.header, &f.claims_with("exp", json!(now - (leeway - 3))))
        .await;
    assert_accepted(&f.app, &within, "exp = now - (leeway - 3)").await;
}

#[tokio::test]
async fn issued_token_stops_working_once_its_lifetime_and_the_leeway_have_passed() {
    let f = forge().await;
    let ttl = f.app.settings.access_ttl.as_secs() as i64;
    let leeway = f.leeway();
    f.app.clock.advance(ttl + leeway - 1);
    assert_accepted(&f.app, &f.tokens.access, "one second before exp + leeway").await;
    f.app.clock.advance(2);
    assert_refused(&f.app, &f.tokens.access, "one second after exp + leeway").await;
}

#[tokio::test]
async fn token_not_yet_valid_is_refused() {
    let f = forge().await;
    let (now, leeway) = (f.now(), f.leeway());
    let cases = [
        ("nbf = now", f.claims_with("nbf", json!(now)), true),
        (
            "nbf = now + leeway + 1",
            f.claims_with("nbf", json!(now + leeway + 1)),
            false,
        ),
        (
            "nbf an hour ahead",
            f.claims_with("nbf", json!(now + 3600)),
            false,
        ),
        (
            "iat = now + leeway - 1",
            f.claims_with("iat", json!(now + leeway - 1)),
            true,
        ),
        (
            "iat = now + leeway + 1",
            f.claims_with("iat", json!(now + leeway + 1)),
            false,
        ),
        (
            "iat an hour ahead",
            f.claims_with("iat", json!(now + 3600)),
            false,
        ),
    ];
    for (case, claims, ok) in cases {
        let token = f.sign(&f.header, &claims).await;
        if ok {
            assert_accepted(&f.app, &token, case).await;
        } else {
            assert_refused(&f.app, &token, case).await;
        }
    }
}

#[tokio::test]
async fn time_claims_of_the_wrong_type_or_range_are_refused() {
    let f = forge().await;
    let now = f.now();
    let header = f.header.to_string();
    let controls = [("exp", now + 300), ("nbf", now), ("iat", now)];
    for (claim, good) in controls {
        let payload = with_raw_member(&f.claims, claim, &good.to_string());
        let token = f.app.sign_raw(header.as_bytes(), payload.as_bytes()).await;
        assert_accepted(&f.app, &token, &format!("control: {claim} = {good}")).await;
    }
    let bad = [
        "\"9999999999\"",
        "\"never\"",
        "null",
        "[]",
        "[9999999999]",
        "{}",
        "true",
        "-1",
        "-9999999999",
        "9999999999.5",
        "1e309",
        "18446744073709551616",
        "9223372036854775808",
    ];
    let mut findings = Findings::default();
    for claim in ["exp", "nbf", "iat"] {
        for raw in bad {
            let payload = with_raw_member(&f.claims, claim, raw);
            let token = f.app.sign_raw(header.as_bytes(), payload.as_bytes()).await;
            findings
                .refused(&f.app, &token, &format!("{claim} = {raw}"))
                .await;
        }
    }
    findings.assert_none();
}

// ---------------------------------------------------------------------------
// published keys and issued tokens
// ---------------------------------------------------------------------------

#[tokio::test]
async fn jwks_publishes_only_public_keys_of_allowed_curves_with_unique_kids() {
    for signing in [SigningAlg::EdDSA, SigningAlg::ES256] {
        let f = forge_with(|s| s.signing_alg = signing).await;
        let (_, jwks) = jwks(&f.app).await;
        let keys = jwks["keys"].as_array().expect("keys array");
        assert!(!keys.is_empty(), "{signing}: empty JWKS");
        let mut kids: Vec<&str> = keys
            .iter()
            .map(|k| k["kid"].as_str().expect("every key has a kid"))
            .collect();
        assert!(
            kids.contains(&f.kid()),
            "{signing}: the signing kid is published"
        );
        for key in keys {
            for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
                assert!(
                    key.get(private).is_none(),
                    "{signing}: JWK exposes {private}: {key}"
                );
            }
            assert_eq!(key["use"], "sig", "{signing}: {key}");
            let (kty, crv, alg) = (
                key["kty"].as_str(),
                key["crv"].as_str(),
                key["alg"].as_str(),
            );
            assert!(
                matches!(
                    (kty, crv, alg),
                    (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
                        | (Some("EC"), Some("P-256"), Some("ES256"))
                ),
                "{signing}: key type not Ed25519/EdDSA or P-256/ES256: {key}"
            );
        }
        let count = kids.len();
        kids.sort_unstable();
        kids.dedup();
        assert_eq!(kids.len(), count, "{signing}: duplicate kids in {jwks}");
    }
}

#[tokio::test]
async fn issued_access_tokens_follow_the_at_jwt_profile_and_carry_no_personal_data() {
    let app = spawn_app().await;
    let email = unique_email();
    let resp = app.register_raw(&email, PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.expect("json");
    let user_id = body["user"]["id"].clone();
    let registered = Tokens::from_body(body);
    let refreshed = app.refresh_ok(&registered.refresh).await;
    let logged_in = app.login_ok(&email, PASSWORD).await;
    let (_, jwks) = jwks(&app).await;
    let published: Vec<&Value> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| &k["kid"])
        .collect();
    let mut jtis = Vec::new();
    for (case, tokens) in [
        ("register", &registered),
        ("refresh", &refreshed),
        ("login", &logged_in),
    ] {
        let header = decode_segment(&tokens.access, 0);
        assert_eq!(header["typ"], "at+jwt", "{case}: {header}");
        assert!(
            published.contains(&&header["kid"]),
            "{case}: kid not in the JWKS: {header}"
        );
        assert_eq!(header["alg"], "EdDSA", "{case}: {header}");
        let claims = decode_segment(&tokens.access, 1);
        let mut names: Vec<&str> = claims
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "amr",
                "aud",
                "auth_time",
                "client_id",
                "exp",
                "iat",
                "iss",
                "jti",
                "sid",
                "sub"
            ],
            "{case}: {claims}"
        );
        assert_eq!(claims["iss"], app.settings.issuer.as_str(), "{case}");
        assert_eq!(claims["aud"], app.settings.audience.as_str(), "{case}");
        assert_eq!(claims["sub"], user_id, "{case}: sub is the user id");
        assert_eq!(
            claims["sid"],
            tokens.session_id.as_str(),
            "{case}: sid is the session"
        );
        let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
        assert!(
            lifetime > 0 && lifetime <= 15 * 60,
            "{case}: lifetime {lifetime}s"
        );
        assert_eq!(
            tokens.body["expires_in"].as_i64(),
            Some(lifetime),
            "{case}: expires_in matches"
        );
        let text = String::from_utf8(
            URL_SAFE_NO_PAD
                .decode(tokens.access.split('.').nth(1).expect("payload"))
                .expect("b64"),
        )
        .expect("utf8");
        let local = email.split('@').next().expect("local part");
        assert!(
            !text.contains(local),
            "{case}: the payload carries the email: {text}"
        );
        jtis.push(claims["jti"].as_str().expect("jti").to_string());
    }
    let count = jtis.len();
    jtis.sort_unstable();
    jtis.dedup();
    assert_eq!(jtis.len(), count, "every access token has its own jti");
}
