//! Access-token validation and forgery against `GET /v1/me` (SECURITY-CHECKLIST §A, items 1–25).

use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use latchkey::config::Settings;
use latchkey::domain::clock::Clock;
use latchkey_verify::SigningAlg;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const ME: &str = "/v1/me";
const JWKS: &str = "/.well-known/jwks.json";

/// Checklist item 9: a forged `kid` is refused within 100 ms.
const KID_LIMIT: Duration = Duration::from_millis(100);
/// Checklist item 18: a JWE is refused within 50 ms, without decryption.
const JWE_LIMIT: Duration = Duration::from_millis(50);

/// The order n of the P-256 group, big-endian.
const P256_N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

/// The order L of the Ed25519 group, little-endian (as `S` is encoded).
const ED25519_L: [u8; 32] = [
    0xED, 0xD3, 0xF5, 0x5C, 0x1A, 0x63, 0x12, 0x58, 0xD6, 0x9C, 0xF7, 0xA2, 0xDE, 0xF9, 0xDE, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// A self-signed P-256 certificate (CN=attacker) and its PKCS#8 private key.
const ATTACKER_CERT: &str = "MIIBfDCCASOgAwIBAgIUTF6g11nxlZSsBUuvQq/7i2tbpugwCgYIKoZIzj0EAwIwEzERMA8GA1UEAwwIYXR0YWNrZXIwIBcNMjYxMTI0MDA0MjM1WhgPMjEyNjEwMzEwMDQyMzVaMBMxETAPBgNVBAMMCGF0dGFja2VyMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEUuPeI4cDf/TWfSsJDm0kQNVRvEwcp599658gw/IyE+5B5ZqgizH//axU8Q4dRO85dtmf0krkRcRYtyLou7z+oaNTMFEwHQYDVR0OBBYEFLxIaYjzOoIjhf63yeIT+646LK8NMB8GA1UdIwQYMBaAFLxIaYjzOoIjhf63yeIT+646LK8NMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgVxJaLu6cPs2+2LUTr5zlBpLjUnqKS3X14/1pdz7TzU4CIDYIEo47y52cXYy12t7Llu+s3F02bHqg0cMlTeAuNW/9";
const ATTACKER_CERT_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg3vK291pB29OTu48fVTVYIjgunsIUWlk5P9baTwFvYBGhRANCAARS494jhwN/9NZ9KwkObSRA1VG8TBynn33rnyDD8jIT7kHlmqCLMf/9rFTxDh1E7zl22Z/SSuRFxFi3Iui7vP6h";

// ---------------------------------------------------------------------------
// Forging kit
// ---------------------------------------------------------------------------

/// A running app, one user, and the header and claims of a token of theirs
/// that passes every check: each test changes exactly one thing.
struct Forge {
    app: TestApp,
    email: String,
    tokens: Tokens,
    header: Value,
    claims: Value,
}

async fn forge() -> Forge {
    forge_with(|_| {}).await
}

async fn forge_with(configure: impl FnOnce(&mut Settings)) -> Forge {
    let app = spawn_app_with(configure).await;
    let (email, tokens) = app.new_user().await;
    let header = app.valid_header(&tokens);
    let claims = app.valid_claims(&tokens);
    Forge {
        app,
        email,
        tokens,
        header,
        claims,
    }
}

impl Forge {
    fn now(&self) -> i64 {
        self.app.clock.now()
    }

    fn leeway(&self) -> i64 {
        self.app.settings.clock_leeway.as_secs() as i64
    }

    fn kid(&self) -> &str {
        self.header["kid"].as_str().expect("kid")
    }

    fn header_with(&self, name: &str, value: Value) -> Value {
        let mut h = self.header.clone();
        h[name] = value;
        h
    }

    fn header_without(&self, name: &str) -> Value {
        let mut h = self.header.clone();
        h.as_object_mut().expect("object").remove(name);
        h
    }

    fn claims_with(&self, name: &str, value: Value) -> Value {
        let mut c = self.claims.clone();
        c[name] = value;
        c
    }

    fn claims_without(&self, name: &str) -> Value {
        let mut c = self.claims.clone();
        c.as_object_mut().expect("object").remove(name);
        c
    }

    async fn sign(&self, header: &Value, claims: &Value) -> String {
        self.app.sign_json(header, claims).await
    }

    /// The positive control: the genuine header and claims, signed with the real key.
    async fn valid(&self) -> String {
        self.sign(&self.header, &self.claims).await
    }

    /// A token over exactly these (already encoded) segments, signed with the real key.
    async fn signed_segments(&self, h64: &str, p64: &str) -> String {
        let input = format!("{h64}.{p64}");
        let signature = real_signature(&self.app, &input).await;
        format!("{input}.{signature}")
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

fn segments(token: &str) -> (String, String, String) {
    let mut parts = token.splitn(3, '.');
    let mut next = || parts.next().expect("segment").to_string();
    (next(), next(), next())
}

/// The real key's signature over an arbitrary signing input, for encodings
/// `sign_raw` never produces (padding, other alphabets, whitespace).
async fn real_signature(app: &TestApp, input: &str) -> String {
    app.sign_input(input).await
}

/// An HMAC-signed token; `header` must already name the matching `alg`.
fn hmac_token(alg: hmac::Algorithm, key: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let tag = hmac::sign(&hmac::Key::new(alg, key), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// A token signed by a key the attacker owns.
fn attacker_token(
    key: &jsonwebtoken::EncodingKey,
    alg: jsonwebtoken::Algorithm,
    header: &Value,
    claims: &Value,
) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign");
    format!("{input}.{signature}")
}

/// `object` as JSON text with member `name` replaced by the raw JSON text `raw`.
fn with_raw_member(object: &Value, name: &str, raw: &str) -> String {
    let mut o = object.clone();
    o.as_object_mut().expect("object").remove(name);
    append_raw_member(&o, name, raw)
}

/// `object` as JSON text with one more member `name: raw` appended, even if
/// `name` is already there (to build duplicates).
fn append_raw_member(object: &Value, name: &str, raw: &str) -> String {
    let text = object.to_string();
    let open = &text[..text.len() - 1];
    let sep = if open.len() > 1 { "," } else { "" };
    format!("{open}{sep}\"{name}\":{raw}}}")
}

// ---------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------

async fn me_raw(app: &TestApp, token: &str) -> Response {
    app.client
        .get(app.url(ME))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .expect("request")
}

async fn assert_accepted(app: &TestApp, token: &str, case: &str) {
    let resp = me_raw(app, token).await;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(
        status,
        StatusCode::OK,
        "{case}: expected 200, got {status} {body}"
    );
}

/// What is wrong with a response that should be an RFC 6750 `invalid_token`
/// refusal (401, the error body, a challenge naming the error), if anything.
async fn refusal_problem(resp: Response, case: &str) -> Option<String> {
    let status = resp.status();
    let challenge = resp
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.text().await.unwrap_or_default();
    if status != StatusCode::UNAUTHORIZED {
        return Some(format!("{case}: expected 401, got {status} {body}"));
    }
    let json: Value = serde_json::from_str(&body).unwrap_or_default();
    if json["error"] != "invalid_token" || !json["error_description"].is_string() {
        return Some(format!("{case}: error body is not invalid_token: {body}"));
    }
    if !(challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\"")) {
        return Some(format!("{case}: WWW-Authenticate is {challenge:?}"));
    }
    None
}

async fn assert_refusal(resp: Response, case: &str) {
    if let Some(problem) = refusal_problem(resp, case).await {
        panic!("{problem}");
    }
}

/// Failures of a table of cases, reported together so one run names them all.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    async fn refused(&mut self, app: &TestApp, token: &str, case: &str) {
        self.0
            .extend(refusal_problem(me_raw(app, token).await, case).await);
    }

    async fn accepted(&mut self, app: &TestApp, token: &str, case: &str) {
        let resp = me_raw(app, token).await;
        let status = resp.status();
        if status != StatusCode::OK {
            let body = resp.text().await.unwrap_or_default();
            self.0
                .push(format!("{case}: expected 200, got {status} {body}"));
        }
    }

    fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{} case(s) failed:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

async fn assert_refused(app: &TestApp, token: &str, case: &str) {
    assert_refusal(me_raw(app, token).await, case).await;
}

/// Asserts the token is refused every time and, at best, within `limit`.
/// The best of three keeps scheduler noise out while a real stall (a slept
/// injection, a fetch, a decryption) still shows.
async fn assert_refused_within(app: &TestApp, token: &str, limit: Duration, case: &str) {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let resp = me_raw(app, token).await;
        best = best.min(started.elapsed());
        assert_refusal(resp, case).await;
    }
    assert!(
        best < limit,
        "{case}: refusal took {best:?}, limit {limit:?}"
    );
}

async fn jwks(app: &TestApp) -> (String, Value) {
    let resp = app.get(JWKS, None).await;
    assert_eq!(resp.status(), StatusCode::OK, "JWKS");
    let text = resp.text().await.expect("JWKS body");
    let json = serde_json::from_str(&text).expect("JWKS is JSON");
    (text, json)
}

// ---------------------------------------------------------------------------
// Items 1–2: challenges and a damaged signature
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
// Items 3–8: algorithm and key confusion
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
// Items 9–11: kid, ECDSA and algorithm binding
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

// ---------------------------------------------------------------------------
// Items 12–15: typ and claims
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
// Items 16–19: JOSE structure and encoding
// ---------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_header_or_claim_members_are_refused() {
    let f = forge().await;
    let alg = f.header["alg"].as_str().expect("alg").to_string();
    let (_, other) = f.app.new_user().await;
    let other_sub = decode_segment(&other.access, 1)["sub"].clone();
    let claims = f.claims.to_string();
    let header = f.header.to_string();
    let payloads = [
        (
            "sub twice, same value",
            append_raw_member(&f.claims, "sub", &f.claims["sub"].to_string()),
        ),
        (
            "sub twice, then another user's",
            append_raw_member(&f.claims, "sub", &other_sub.to_string()),
        ),
        (
            "exp twice, then one long past",
            append_raw_member(&f.claims, "exp", "1"),
        ),
        (
            "sid twice, same value",
            append_raw_member(&f.claims, "sid", &f.claims["sid"].to_string()),
        ),
    ];
    for (case, payload) in payloads {
        let token = f.app.sign_raw(header.as_bytes(), payload.as_bytes()).await;
        assert_refused(&f.app, &token, &format!("payload: {case}")).await;
    }
    let headers = [
        (
            "alg twice, same value",
            append_raw_member(&f.header, "alg", &json!(alg).to_string()),
        ),
        (
            "alg twice, then none",
            append_raw_member(&f.header, "alg", "\"none\""),
        ),
        (
            "alg none, then ours",
            append_raw_member(
                &f.header_with("alg", json!("none")),
                "alg",
                &json!(alg).to_string(),
            ),
        ),
        (
            "typ twice, same value",
            append_raw_member(&f.header, "typ", "\"at+jwt\""),
        ),
        (
            "kid twice, same value",
            append_raw_member(&f.header, "kid", &json!(f.kid()).to_string()),
        ),
    ];
    for (case, header) in headers {
        let token = f.app.sign_raw(header.as_bytes(), claims.as_bytes()).await;
        assert_refused(&f.app, &token, &format!("header: {case}")).await;
    }
    let control = f.app.sign_raw(header.as_bytes(), claims.as_bytes()).await;
    assert_accepted(
        &f.app,
        &control,
        "control: the same texts without duplicates",
    )
    .await;
}

#[tokio::test]
async fn crit_header_is_refused_whatever_it_lists() {
    let f = forge().await;
    assert_accepted(&f.app, &f.valid().await, "control").await;
    let mut unknown = f.header_with("crit", json!(["x-unknown"]));
    unknown["x-unknown"] = json!(true);
    let mut b64_false = f.header_with("crit", json!(["b64"]));
    b64_false["b64"] = json!(false);
    let cases = [
        (
            "crit [\"x-unknown\"]",
            f.header_with("crit", json!(["x-unknown"])),
        ),
        ("crit [\"x-unknown\"] with the member present", unknown),
        ("crit []", f.header_with("crit", json!([]))),
        ("crit [\"exp\"]", f.header_with("crit", json!(["exp"]))),
        ("crit [\"b64\"] with b64 false", b64_false),
    ];
    for (case, header) in cases {
        let token = f.sign(&header, &f.claims).await;
        assert_refused(&f.app, &token, case).await;
    }
}

#[tokio::test]
async fn nested_jwt_is_refused() {
    let f = forge().await;
    let inner = f.valid().await;
    assert_accepted(&f.app, &inner, "control: the inner token alone").await;
    let cty = f.header_with("cty", json!("JWT"));
    let cases = [
        (
            "cty JWT over ordinary claims",
            f.sign(&cty, &f.claims).await,
        ),
        (
            "cty JWT over a valid inner token",
            f.app
                .sign_raw(cty.to_string().as_bytes(), inner.as_bytes())
                .await,
        ),
        (
            "a valid token as the payload without cty",
            f.app
                .sign_raw(f.header.to_string().as_bytes(), inner.as_bytes())
                .await,
        ),
    ];
    for (case, token) in cases {
        assert_refused(&f.app, &token, case).await;
    }
}

#[tokio::test]
async fn jwe_is_refused_quickly_without_decryption() {
    let f = forge().await;
    let kid = f.kid().to_string();
    let headers = [
        (
            "PBES2 with p2c 2147483647 and zip DEF",
            json!({"alg": "PBES2-HS256+A128KW", "enc": "A128GCM", "p2c": 2147483647u32, "p2s": "AAAAAAAAAAAAAAAAAAAAAA", "zip": "DEF", "kid": kid, "typ": "at+jwt"}),
        ),
        (
            "dir with zip DEF",
            json!({"alg": "dir", "enc": "A256GCM", "zip": "DEF", "kid": kid, "typ": "at+jwt"}),
        ),
        (
            "RSA-OAEP-256 with cty JWT",
            json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT", "kid": kid}),
        ),
    ];
    // A DEFLATE stream of stored/fixed blocks that would expand if inflated.
    let bomb = [
        &[0xED, 0xC1, 0x01, 0x0D, 0x00, 0x00, 0x00, 0xC2, 0xA0][..],
        &[0u8; 512][..],
    ]
    .concat();
    for (case, header) in headers {
        let token = format!(
            "{}.{}.{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(&[7u8; 40]),
            b64(&[1u8; 12]),
            b64(&bomb),
            b64(&[2u8; 16])
        );
        assert_refused_within(&f.app, &token, JWE_LIMIT, &format!("5-segment JWE: {case}")).await;
    }
}

/// Flips the lowest of the unused trailing bits of a base64url text whose
/// decoded length leaves some (as a 64-byte signature does).
fn non_canonical(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = *text.as_bytes().last().expect("text");
    let index = ALPHABET
        .iter()
        .position(|&c| c == last)
        .expect("base64url char");
    let changed = ALPHABET[index | 1] as char;
    format!("{}{changed}", &text[..text.len() - 1])
}

/// A valid token whose chosen segment (1 payload, 2 signature) uses a
/// character that differs between base64url and standard base64.
async fn token_with_url_safe_chars(f: &Forge, segment: usize) -> (String, Value) {
    for i in 0..500 {
        let claims = f.claims_with("jti", json!(format!("jti-{i}-~~~>>>???")));
        let token = f.sign(&f.header, &claims).await;
        if token
            .split('.')
            .nth(segment)
            .expect("segment")
            .contains(['-', '_'])
        {
            return (token, claims);
        }
    }
    panic!("no token with '-' or '_' in segment {segment}");
}

#[tokio::test]
async fn non_canonical_encodings_are_refused() {
    let f = forge().await;
    let valid = f.valid().await;
    assert_accepted(&f.app, &valid, "control").await;
    let (h, p, s) = segments(&valid);
    let claims_text = f.claims.to_string();
    assert_accepted(
        &f.app,
        &f.signed_segments(&h, &p).await,
        "control: signing arbitrary input",
    )
    .await;

    let mut cases: Vec<(&str, String)> = Vec::new();
    // Padding: the signing input carries the '=' so a lenient decoder would verify.
    let padded_claims = (0..3)
        .map(|n| {
            f.claims_with("jti", json!(format!("jti{}", "x".repeat(n))))
                .to_string()
        })
        .find(|text| text.len() % 3 != 0)
        .expect("a payload length that needs padding");
    cases.push((
        "'=' padding on the payload",
        f.signed_segments(&h, &URL_SAFE.encode(&padded_claims))
            .await,
    ));
    assert!(s.len() % 4 != 0, "a 64-byte signature needs padding");
    cases.push((
        "'=' padding on the signature",
        format!("{valid}{}", "=".repeat(4 - s.len() % 4)),
    ));
    // Standard alphabet.
    let (_, dashed_claims) = token_with_url_safe_chars(&f, 1).await;
    let std_payload = STANDARD_NO_PAD.encode(dashed_claims.to_string());
    assert!(
        std_payload.contains(['+', '/']),
        "payload in the standard alphabet"
    );
    cases.push((
        "'+' or '/' in the payload",
        f.signed_segments(&h, &std_payload).await,
    ));
    let (dashed, _) = token_with_url_safe_chars(&f, 2).await;
    assert_accepted(
        &f.app,
        &dashed,
        "control: token with '-' or '_' in its signature",
    )
    .await;
    let (dh, dp, ds) = segments(&dashed);
    cases.push((
        "'+' or '/' in the signature",
        format!("{dh}.{dp}.{}", ds.replace('-', "+").replace('_', "/")),
    ));
    // Whitespace inside segments, signed as sent.
    let mid = p.len() / 2;
    let spaced = format!("{} {}", &p[..mid], &p[mid..]);
    cases.push((
        "a space inside the payload",
        f.signed_segments(&h, &spaced).await,
    ));
    let tabbed = format!("{}\t{}", &p[..mid], &p[mid..]);
    cases.push((
        "a tab inside the payload",
        f.signed_segments(&h, &tabbed).await,
    ));
    cases.push((
        "a space inside the signature",
        format!("{h}.{p}.{} {}", &s[..40], &s[40..]),
    ));
    // Non-canonical trailing bits.
    cases.push((
        "non-canonical trailing bits in the signature",
        format!("{h}.{p}.{}", non_canonical(&s)),
    ));
    // JSON that is not a UTF-8 object.
    let header_text = f.header.to_string();
    let bom = |text: &str| [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat();
    cases.push((
        "BOM before the payload JSON",
        f.app
            .sign_raw(header_text.as_bytes(), &bom(&claims_text))
            .await,
    ));
    cases.push((
        "BOM before the header JSON",
        f.app
            .sign_raw(&bom(&header_text), claims_text.as_bytes())
            .await,
    ));
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(claims_text.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    cases.push((
        "UTF-16LE payload JSON",
        f.app.sign_raw(header_text.as_bytes(), &utf16).await,
    ));
    cases.push((
        "payload []",
        f.app.sign_raw(header_text.as_bytes(), b"[]").await,
    ));
    cases.push((
        "payload a JSON string",
        f.app.sign_raw(header_text.as_bytes(), b"\"claims\"").await,
    ));
    for (case, token) in &cases {
        assert_refused(&f.app, token, case).await;
    }
}

// ---------------------------------------------------------------------------
// Items 20–23: size, transport and type confusion
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

// ---------------------------------------------------------------------------
// Items 24–25: published keys and issued tokens
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
            ["aud", "client_id", "exp", "iat", "iss", "jti", "sid", "sub"],
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
