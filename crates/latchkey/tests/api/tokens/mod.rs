//! Access-token validation and forgery against `GET /v1/me`, by theme: the
//! signature and its key, the claims, the JOSE encoding, and the transport.
//! What is checked and why is in docs/security.md, "Access tokens"; this file
//! holds the forging kit and the assertions the themes share.

mod claims;
mod encoding;
mod signature;
mod transport;

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

/// A forged `kid` is refused within 100 ms (no key lookup it could slow).
const KID_LIMIT: Duration = Duration::from_millis(100);
/// A JWE is refused within 50 ms, without decryption.
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
