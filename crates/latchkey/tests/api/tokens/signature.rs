//! The signature and its key: challenges, a damaged signature, algorithm and
//! key confusion, `kid`, ECDSA and algorithm binding.

use super::*;

// ---------------------------------------------------------------------------
// challenges and a damaged signature
// ---------------------------------------------------------------------------

#[tokio::test]
async fn request_without_a_token_gets_a_bare_bearer_challenge() {
    let app = spawn_app().await;
    let resp = app.get(ME, None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("realm="),
        "challenge: {challenge:?}"
    );
    assert!(
        !challenge.contains("error="),
        "RFC 6750 §3.1: no error code without credentials: {challenge:?}"
    );
    let (status, _, _) = error_of(resp).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn garbage_token_gets_an_invalid_token_challenge_with_a_realm() {
    let app = spawn_app().await;
    let resp = me_raw(&app, "not-a-token").await;
    let challenge = resp
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(challenge.contains("realm="), "challenge: {challenge:?}");
    assert_refusal(resp, "garbage token").await;
}

#[tokio::test]
async fn token_with_a_truncated_signature_is_refused_and_the_original_still_works() {
    let f = forge().await;
    let token = &f.tokens.access;
    assert_refused(
        &f.app,
        &token[..token.len() - 4],
        "4 characters cut from the signature",
    )
    .await;
    let (h, p, _) = segments(token);
    let zeros = format!("{h}.{p}.{}", b64(&[0u8; 64]));
    assert_refused(&f.app, &zeros, "signature of 64 zero bytes").await;
    assert_accepted(&f.app, token, "the original token").await;
}

// ---------------------------------------------------------------------------
// algorithm and key confusion
// ---------------------------------------------------------------------------

#[tokio::test]
async fn alg_none_in_any_spelling_is_refused() {
    let f = forge().await;
    assert_accepted(&f.app, &f.valid().await, "control").await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = f.header_with("alg", json!(alg));
        let signed = f.sign(&header, &f.claims).await;
        assert_refused(
            &f.app,
            &signed,
            &format!("alg {alg} with our real signature"),
        )
        .await;
        let (h, p, _) = segments(&signed);
        assert_refused(
            &f.app,
            &format!("{h}.{p}."),
            &format!("alg {alg} with an empty signature"),
        )
        .await;
    }
    let no_alg = f.sign(&f.header_without("alg"), &f.claims).await;
    assert_refused(&f.app, &no_alg, "alg missing").await;
}

#[tokio::test]
async fn token_with_its_signature_stripped_is_refused() {
    let f = forge().await;
    let valid = f.valid().await;
    assert_accepted(&f.app, &valid, "control").await;
    let (h, p, _) = segments(&valid);
    assert_refused(&f.app, &format!("{h}.{p}."), "h.p. (CVE-2020-28042)").await;
    assert_refused(&f.app, &format!("{h}.{p}"), "h.p (two segments)").await;
}

#[tokio::test]
async fn hs256_with_an_empty_or_common_secret_is_refused() {
    let f = forge().await;
    assert_accepted(&f.app, &f.valid().await, "control").await;
    let header = f.header_with("alg", json!("HS256"));
    for secret in [
        "",
        "secret",
        "your-256-bit-secret",
        "secretkey",
        "password",
        "changeme",
        "jwt",
        "latchkey",
        "1",
    ] {
        let token = hmac_token(hmac::HMAC_SHA256, secret.as_bytes(), &header, &f.claims);
        assert_refused(&f.app, &token, &format!("HS256 keyed with {secret:?}")).await;
    }
}

#[tokio::test]
async fn hmac_keyed_with_our_public_key_is_refused() {
    let f = forge().await;
    assert_accepted(&f.app, &f.valid().await, "control").await;
    let (jwks_text, jwks) = jwks(&f.app).await;
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == f.kid())
        .expect("our JWK");
    let x_text = jwk["x"].as_str().expect("x");
    let x = b64_decode(x_text);
    // SubjectPublicKeyInfo of an Ed25519 key: fixed prefix, then the 32 key bytes.
    let der = [
        &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ][..],
        &x,
    ]
    .concat();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----",
        STANDARD.encode(&der)
    );
    let keys: [(&str, Vec<u8>); 7] = [
        ("raw x bytes", x.clone()),
        ("x as base64url text", x_text.as_bytes().to_vec()),
        ("the JWK JSON", jwk.to_string().into_bytes()),
        ("the JWKS document", jwks_text.into_bytes()),
        ("SPKI DER", der.clone()),
        ("PEM without trailing newline", pem.clone().into_bytes()),
        ("PEM with trailing newline", format!("{pem}\n").into_bytes()),
    ];
    for (alg_name, alg) in [
        ("HS256", hmac::HMAC_SHA256),
        ("HS384", hmac::HMAC_SHA384),
        ("HS512", hmac::HMAC_SHA512),
    ] {
        let header = f.header_with("alg", json!(alg_name));
        for (form, key) in &keys {
            let token = hmac_token(alg, key, &header, &f.claims);
            assert_refused(
                &f.app,
                &token,
                &format!("{alg_name} keyed with our public key as {form}"),
            )
            .await;
        }
    }
}

/// A fresh Ed25519 key of the attacker's, with its public JWK.
fn attacker_ed25519() -> (jsonwebtoken::EncodingKey, Value) {
    let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).expect("generate");
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("parse");
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()), "alg": "EdDSA", "use": "sig"});
    (jsonwebtoken::EncodingKey::from_ed_der(doc.as_ref()), jwk)
}

#[tokio::test]
async fn embedded_jwk_header_is_refused() {
    let f = forge().await;
    assert_accepted(&f.app, &f.valid().await, "control").await;
    let (attacker_key, attacker_jwk) = attacker_ed25519();
    let (_, ours) = jwks(&f.app).await;
    let our_jwk = ours["keys"][0].clone();
    let signed_by_us = f.sign(&f.header_with("jwk", our_jwk), &f.claims).await;
    assert_refused(
        &f.app,
        &signed_by_us,
        "jwk header (our own key) with our real signature",
    )
    .await;
    let with_our_kid = f.header_with("jwk", attacker_jwk.clone());
    let token = attacker_token(
        &attacker_key,
        jsonwebtoken::Algorithm::EdDSA,
        &with_our_kid,
        &f.claims,
    );
    assert_refused(&f.app, &token, "attacker's jwk and signature, our kid").await;
    let mut own_kid = with_our_kid.clone();
    own_kid["kid"] = json!("attacker");
    let token = attacker_token(
        &attacker_key,
        jsonwebtoken::Algorithm::EdDSA,
        &own_kid,
        &f.claims,
    );
    assert_refused(&f.app, &token, "attacker's jwk, signature and kid").await;
    let mut no_kid = f.header_without("kid");
    no_kid["jwk"] = attacker_jwk;
    let token = attacker_token(
        &attacker_key,
        jsonwebtoken::Algorithm::EdDSA,
        &no_kid,
        &f.claims,
    );
    assert_refused(&f.app, &token, "attacker's jwk and signature, no kid").await;
}

#[tokio::test]
async fn jku_x5u_and_x5c_headers_are_refused_without_any_fetch() {
    let f = forge().await;
    assert_accepted(&f.app, &f.valid().await, "control").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind listener");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    let cases = [
        ("jku", json!(url)),
        ("x5u", json!(url)),
        ("x5c", json!([ATTACKER_CERT])),
    ];
    for (member, value) in cases {
        let token = f.sign(&f.header_with(member, value), &f.claims).await;
        assert_refused(
            &f.app,
            &token,
            &format!("{member} header with our real signature"),
        )
        .await;
    }
    // A self-signed chain, signed by the certificate's own key.
    let cert_key =
        jsonwebtoken::EncodingKey::from_ec_der(&STANDARD.decode(ATTACKER_CERT_KEY).expect("key"));
    for kid in [Some(f.kid().to_string()), None] {
        let mut header = json!({"alg": "ES256", "typ": "at+jwt", "x5c": [ATTACKER_CERT]});
        if let Some(kid) = &kid {
            header["kid"] = json!(kid);
        }
        let token = attacker_token(
            &cert_key,
            jsonwebtoken::Algorithm::ES256,
            &header,
            &f.claims,
        );
        assert_refused(
            &f.app,
            &token,
            &format!("self-signed x5c chain signing the token, kid {kid:?}"),
        )
        .await;
    }
    // jwt_tool -M cc: the listener's URL in every header and claim.
    let mut header = f.header.clone();
    for member in ["jku", "x5u", "kid", "typ"] {
        header[member] = json!(url);
    }
    let mut claims = f.claims.clone();
    for claim in ["iss", "sub", "aud", "jti", "sid", "client_id"] {
        claims[claim] = json!(url);
    }
    let token = f.sign(&header, &claims).await;
    assert_refused(&f.app, &token, "listener URL in every header and claim").await;
    let jku_only = f.sign(&f.header_with("jku", json!(url)), &claims).await;
    assert_refused(&f.app, &jku_only, "jku plus URL claims").await;
    let contacted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(
        contacted.is_err(),
        "the server fetched an attacker URL (SSRF): {contacted:?}"
    );
}

// ---------------------------------------------------------------------------
// kid, ECDSA and algorithm binding
// ---------------------------------------------------------------------------

#[tokio::test]
async fn kid_injection_and_unknown_kids_are_refused_quickly() {
    let f = forge().await;
    assert_accepted(&f.app, &f.valid().await, "control").await;
    let hs = |kid: &str, key: &[u8]| {
        let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
        hmac_token(hmac::HMAC_SHA256, key, &header, &f.claims)
    };
    let mut cases: Vec<(String, String)> = vec![
        (
            "kid ../../dev/null, HS256 with an empty key".into(),
            hs("../../dev/null", b""),
        ),
        (
            "kid /dev/null, HS256 with an empty key".into(),
            hs("/dev/null", b""),
        ),
        (
            "kid x' UNION SELECT '1';--, HS256 with key 1".into(),
            hs("x' UNION SELECT '1';--", b"1"),
        ),
    ];
    let long_kid = "k".repeat(2000);
    for kid in [
        "|sleep 10",
        "`sleep 10`",
        "$(sleep 10)",
        "x' UNION SELECT '1';--",
        "../../dev/null",
        "unknown-kid",
        "",
        long_kid.as_str(),
    ] {
        let token = f.sign(&f.header_with("kid", json!(kid)), &f.claims).await;
        let shown: String = kid.chars().take(40).collect();
        cases.push((format!("kid {shown:?} with our real signature"), token));
    }
    let appended = format!("{}x", f.kid());
    cases.push((
        "our kid with one character appended".into(),
        f.sign(&f.header_with("kid", json!(appended)), &f.claims)
            .await,
    ));
    for (name, value) in [
        ("null", json!(null)),
        ("a number", json!(1)),
        ("an array", json!([f.kid()])),
        ("an object", json!({"kid": f.kid()})),
    ] {
        let token = f.sign(&f.header_with("kid", value), &f.claims).await;
        cases.push((format!("kid as {name}"), token));
    }
    cases.push((
        "kid missing".into(),
        f.sign(&f.header_without("kid"), &f.claims).await,
    ));
    for (case, token) in &cases {
        assert_refused_within(&f.app, token, KID_LIMIT, case).await;
    }
    // A burst of unknown kids must not turn into a burst of key reloads.
    let started = Instant::now();
    for i in 0..20 {
        let token = f
            .sign(
                &f.header_with("kid", json!(format!("unknown-{i}"))),
                &f.claims,
            )
            .await;
        assert_refused(&f.app, &token, &format!("unknown kid #{i}")).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "20 unknown kids took {:?}",
        started.elapsed()
    );
    assert_accepted(&f.app, &f.valid().await, "control after the injections").await;
}

fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    [vec![0x02, v.len() as u8], v].concat()
}

#[tokio::test]
async fn ecdsa_psychic_and_out_of_range_signatures_are_refused() {
    let f = forge_with(|s| s.signing_alg = SigningAlg::ES256).await;
    assert_eq!(f.header["alg"], "ES256", "the app signs with ES256");
    let valid = f.valid().await;
    assert_accepted(
        &f.app,
        &valid,
        "control: a forged token with the real ES256 key",
    )
    .await;
    let (h, p, s) = segments(&valid);
    let sig = b64_decode(&s);
    let (r, s) = (&sig[..32], &sig[32..]);
    let der = {
        let body = [der_integer(r), der_integer(s)].concat();
        [vec![0x30, body.len() as u8], body].concat()
    };
    let cases: [(&str, String); 7] = [
        ("64 zero bytes (r = s = 0)", b64(&[0u8; 64])),
        ("MAYCAQACAQA (DER r = s = 0)", "MAYCAQACAQA".into()),
        ("r = n", b64(&[&P256_N[..], s].concat())),
        ("s = n", b64(&[r, &P256_N[..]].concat())),
        ("r = s = n", b64(&[P256_N, P256_N].concat())),
        ("s = 2^256 - 1", b64(&[r, &[0xFF; 32][..]].concat())),
        ("the valid signature in DER instead of r || s", b64(&der)),
    ];
    for (case, signature) in cases {
        assert_refused(&f.app, &format!("{h}.{p}.{signature}"), case).await;
    }
    assert_accepted(&f.app, &valid, "control after the attempts").await;
}

#[tokio::test]
async fn ed25519_signature_with_s_above_the_group_order_is_refused() {
    let f = forge().await;
    let valid = f.valid().await;
    assert_accepted(&f.app, &valid, "control").await;
    let (h, p, s) = segments(&valid);
    let sig = b64_decode(&s);
    // S + L is the same scalar mod L: a verifier that skips the S < L check
    // (RFC 8032 §5.1.7) accepts this second encoding of a valid signature.
    let mut carry = 0u16;
    let s_plus_l: Vec<u8> = sig[32..]
        .iter()
        .zip(ED25519_L)
        .map(|(a, b)| {
            let t = u16::from(*a) + u16::from(b) + carry;
            carry = t >> 8;
            t as u8
        })
        .collect();
    assert_eq!(carry, 0, "S + L fits in 32 bytes");
    let malleated = format!("{h}.{p}.{}", b64(&[&sig[..32], &s_plus_l[..]].concat()));
    assert_refused(&f.app, &malleated, "Ed25519 signature with S + L").await;
}

#[tokio::test]
async fn our_key_under_any_other_alg_is_refused() {
    for signing in [SigningAlg::EdDSA, SigningAlg::ES256] {
        let f = forge_with(|s| s.signing_alg = signing).await;
        assert_accepted(&f.app, &f.valid().await, &format!("{signing} control")).await;
        let other = if signing == SigningAlg::EdDSA {
            "ES256"
        } else {
            "EdDSA"
        };
        let lower = signing.as_str().to_lowercase();
        for alg in [
            other,
            "ES384",
            "ES512",
            "RS256",
            "PS256",
            "HS256",
            "Ed25519",
            lower.as_str(),
        ] {
            let token = f.sign(&f.header_with("alg", json!(alg)), &f.claims).await;
            assert_refused(&f.app, &token, &format!("{signing} key with alg {alg}")).await;
        }
    }
}
