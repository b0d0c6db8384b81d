//! Cross-language interoperability: verifiers nobody on the project wrote
//! (Python PyJWT and Node jose, driven by `interop/python/verify.py` and
//! `interop/node/verify.mjs`, the snippets of docs/verifying.md) accept
//! genuine access tokens and refuse forged ones, for EdDSA and ES256. The
//! verifiers are installed on first use by `interop/setup.sh`; should that
//! fail (no registry in reach), these tests skip loudly, or fail under
//! `LATCHKEY_REQUIRE_ALL=1`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use latchkey::domain::clock::Clock;
use latchkey_verify::SigningAlg;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::helpers::*;
use crate::tools;

/// How long one verifier may take over a whole job.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// DER prefixes of SubjectPublicKeyInfo for an Ed25519 key and a P-256 key,
/// followed by the raw public key.
const ED25519_SPKI: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const P256_SPKI: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[tokio::test]
async fn python_and_node_verifiers_accept_eddsa_tokens_and_refuse_forgeries() {
    verifiers_agree_with_latchkey(SigningAlg::EdDSA).await;
}

#[tokio::test]
async fn python_and_node_verifiers_accept_es256_tokens_and_refuse_forgeries() {
    verifiers_agree_with_latchkey(SigningAlg::ES256).await;
}

async fn verifiers_agree_with_latchkey(alg: SigningAlg) {
    let what = format!("{alg} interop test against PyJWT and jose");
    let peers: Vec<Peer> = peers()
        .await
        .into_iter()
        .filter_map(|found| available(found, &what))
        .collect();
    if peers.is_empty() {
        return;
    }
    let app = spawn_app_with(|s| s.signing_alg = alg).await;
    let (_, tokens) = app.new_user().await;
    let cases = cases(&app, &tokens).await;
    let job = json!({
        "jwks_uri": jwks_uri(&app).await,
        "issuer": app.settings.issuer,
        "audience": app.settings.audience,
        // Both asymmetric algorithms, as a verifier ready for a change of
        // signing algorithm would allow: the key's own `alg` must still win.
        "algorithms": ["EdDSA", "ES256"],
        "cases": cases.iter().map(|c| json!({
            "name": c.name, "token": c.token,
            "expect": if c.accept { "accept" } else { "reject" },
        })).collect::<Vec<_>>(),
    });
    let mut problems = Vec::new();
    for peer in &peers {
        let results = peer.run(&job).await;
        problems.extend(disagreements(peer, &cases, &results));
    }
    assert!(
        problems.is_empty(),
        "{alg}: {} verdict(s) wrong:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

struct Case {
    name: String,
    token: String,
    accept: bool,
}

fn accept(name: &str, token: String) -> Case {
    let (name, accept) = (name.to_string(), true);
    Case {
        name,
        token,
        accept,
    }
}

fn reject(name: &str, token: String) -> Case {
    let (name, accept) = (name.to_string(), false);
    Case {
        name,
        token,
        accept,
    }
}

/// Genuine tokens, and forgeries that each break exactly one rule.
async fn cases(app: &TestApp, tokens: &Tokens) -> Vec<Case> {
    let (header, claims) = (app.valid_header(tokens), app.valid_claims(tokens));
    let control = app.sign_json(&header, &claims).await;
    let access = &tokens.access;
    let mut cases = vec![
        accept("the genuine access token", access.clone()),
        accept("control: valid claims, real key", control),
        reject("a signature character flipped", flip_signature_char(access)),
        reject("sub changed, original signature", tamper_sub(access)),
        reject("the refresh token", tokens.refresh.clone()),
    ];
    cases.extend(algorithm_confusions(app, &header, &claims).await);
    cases.extend(real_key_forgeries(app, &header, &claims).await);
    cases
}

/// Tokens whose header names an algorithm other than the key's.
async fn algorithm_confusions(app: &TestApp, header: &Value, claims: &Value) -> Vec<Case> {
    let public = public_key(app, header["kid"].as_str().expect("kid")).await;
    let hs256 = patched(header, &json!({"alg": "HS256"}));
    let none = patched(header, &json!({"alg": "none"}));
    let swapped = json!({"alg": if header["alg"] == "EdDSA" { "ES256" } else { "EdDSA" }});
    let other = patched(header, &swapped);
    let genuine = app.sign_json(&other, claims).await;
    let signature = genuine.rsplit('.').next().expect("signature");
    let input = |h: &Value| signing_input(h, claims);
    vec![
        reject("alg none, empty signature", format!("{}.", input(&none))),
        reject(
            "HS256 keyed with the raw public key",
            hmac_token(&public.raw, &input(&hs256)),
        ),
        reject(
            "HS256 keyed with the public key PEM",
            hmac_token(public.pem.as_bytes(), &input(&hs256)),
        ),
        reject(
            "the other asymmetric alg, real signature",
            format!("{}.{signature}", input(&other)),
        ),
    ]
}

/// Tokens signed with the deployment's real key whose header or claims break
/// one rule: only the verifier's checks stand in their way.
async fn real_key_forgeries(app: &TestApp, header: &Value, claims: &Value) -> Vec<Case> {
    let now = app.clock.now();
    // [name, header changes, claim changes]; null removes a member.
    let forgeries = json!([
        ["expired an hour ago", {}, {"exp": now - 3600, "iat": now - 3900}],
        ["issued an hour in the future", {}, {"iat": now + 3600, "exp": now + 3900}],
        ["wrong audience", {}, {"aud": "https://other-api.example.com"}],
        ["wrong issuer", {}, {"iss": "https://evil.example.com"}],
        ["sid claim missing", {}, {"sid": null}],
        ["typ JWT instead of at+jwt", {"typ": "JWT"}, {}],
        ["jku header", {"jku": "https://evil.example.com/jwks.json"}, {}],
        ["crit header", {"crit": ["exp"]}, {}],
    ]);
    let mut cases = Vec::new();
    for row in forgeries.as_array().expect("rows") {
        let name = format!("{} (real key)", row[0].as_str().expect("name"));
        let (h, c) = (patched(header, &row[1]), patched(claims, &row[2]));
        cases.push(reject(&name, app.sign_json(&h, &c).await));
    }
    cases
}

/// `object` with the members of `patch` set, or removed where `null`.
fn patched(object: &Value, patch: &Value) -> Value {
    let mut o = object.clone();
    let members = o.as_object_mut().expect("object");
    for (name, value) in patch.as_object().expect("patch") {
        match value {
            Value::Null => members.remove(name),
            _ => members.insert(name.clone(), value.clone()),
        };
    }
    o
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// Changes a character in the middle of the signature: the last one may only
/// carry padding bits that lenient decoders ignore.
fn flip_signature_char(token: &str) -> String {
    let at = token.rfind('.').expect("signature") + 10;
    let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
    format!("{}{flipped}{}", &token[..at], &token[at + 1..])
}

fn tamper_sub(token: &str) -> String {
    let mut parts = token.split('.');
    let (h64, _, s64) = (parts.next(), parts.next(), parts.next());
    let mut claims = decode_segment(token, 1);
    claims["sub"] = json!("00000000-0000-0000-0000-000000000000");
    let p64 = b64(claims.to_string().as_bytes());
    format!("{}.{p64}.{}", h64.expect("header"), s64.expect("signature"))
}

fn hmac_token(key: &[u8], input: &str) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// The deployment's public key as raw bytes (what `x`, or `x‖y`, encode)
/// and as the PEM a misused HMAC verifier might be handed.
struct PublicKey {
    raw: Vec<u8>,
    pem: String,
}

async fn public_key(app: &TestApp, kid: &str) -> PublicKey {
    let jwks: Value = app
        .get("/.well-known/jwks.json", None)
        .await
        .json()
        .await
        .expect("JWKS");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("the signing key is published");
    let coordinate = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[name].as_str().expect("coordinate"))
            .expect("base64url")
    };
    let (raw, spki) = match jwk["kty"].as_str() {
        Some("OKP") => (coordinate("x"), ED25519_SPKI),
        _ => (
            [vec![4], coordinate("x"), coordinate("y")].concat(),
            P256_SPKI,
        ),
    };
    let der = [spki, &raw].concat();
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    );
    PublicKey { raw, pem }
}

/// The JWKS URL as a client discovers it, from the RFC 8414 metadata.
async fn jwks_uri(app: &TestApp) -> String {
    let resp = app
        .get("/.well-known/oauth-authorization-server", None)
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "metadata");
    let metadata: Value = resp.json().await.expect("metadata JSON");
    assert_eq!(
        metadata["issuer"],
        app.settings.issuer.as_str(),
        "RFC 8414 §3.3: issuer matches"
    );
    metadata["jwks_uri"].as_str().expect("jwks_uri").to_string()
}

// ---------------------------------------------------------------------------
// The verifiers
// ---------------------------------------------------------------------------

/// A third-party verifier: a program running a script of `interop/`.
struct Peer {
    name: &'static str,
    program: PathBuf,
    script: PathBuf,
}

#[derive(Debug, Deserialize)]
struct Verdict {
    name: String,
    accepted: bool,
    error: Option<String>,
}

fn interop_dir() -> PathBuf {
    tools::workspace().join("interop")
}

async fn python() -> Result<Peer, String> {
    let dir = interop_dir().join("python");
    let program = dir.join(".venv/bin/python");
    let missing = |why: String| format!("Python (PyJWT): {why}");
    if !program.exists() {
        return Err(missing(format!("{} does not exist", program.display())));
    }
    probe(&program, &["-c", "import jwt, cryptography"])
        .await
        .map_err(missing)?;
    let script = dir.join("verify.py");
    Ok(Peer {
        name: "Python (PyJWT)",
        program,
        script,
    })
}

async fn node() -> Result<Peer, String> {
    let dir = interop_dir().join("node");
    let jose = dir.join("node_modules/jose/package.json");
    let missing = |why: String| format!("Node (jose): {why}");
    if !jose.exists() {
        return Err(missing(format!("{} does not exist", jose.display())));
    }
    let program = PathBuf::from("node");
    probe(&program, &["--version"]).await.map_err(missing)?;
    let script = dir.join("verify.mjs");
    Ok(Peer {
        name: "Node (jose)",
        program,
        script,
    })
}

/// Whether `program args` runs and succeeds.
async fn probe(program: &Path, args: &[&str]) -> Result<(), String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(format!(
        "{} {args:?} failed: {}",
        program.display(),
        stderr.trim()
    ))
}

/// Both verifiers, installed with `interop/setup.sh` first if one is missing.
async fn peers() -> [Result<Peer, String>; 2] {
    let found = [python().await, node().await];
    if found.iter().all(Result::is_ok) {
        return found;
    }
    match tools::install("interop/setup.sh").await {
        Ok(()) => [python().await, node().await],
        Err(e) => found.map(|f| f.map_err(|why| format!("{why} ({e})"))),
    }
}

/// The peer, or a loud skip (a failure under `LATCHKEY_REQUIRE_ALL=1`).
fn available(found: Result<Peer, String>, what: &str) -> Option<Peer> {
    let reason = match found {
        Ok(peer) => return Some(peer),
        Err(reason) => reason,
    };
    if std::env::var("LATCHKEY_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{what}: verifier not installed: {reason}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED in part: {what}: verifier not installed: {reason}.\n*** interop/setup.sh installs PyJWT and jose.\n"
    );
    None
}

impl Peer {
    /// Runs the job; panics unless the verifier ran and printed its verdicts.
    async fn run(&self, job: &Value) -> Vec<Verdict> {
        let mut child = tokio::process::Command::new(&self.program)
            .arg(&self.script)
            .current_dir(self.script.parent().expect("script dir"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: cannot start: {e}", self.name));
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(job.to_string().as_bytes())
            .await
            .expect("write job");
        drop(stdin);
        let out = tokio::time::timeout(PEER_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{}: no answer within {PEER_TIMEOUT:?}", self.name))
            .expect("verifier output");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "{}: {}\n{stderr}",
            self.name,
            out.status
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{}: unreadable verdicts ({e}): {stdout}\n{stderr}",
                self.name
            )
        })
    }
}

/// What the peer decided differently from what Latchkey requires.
fn disagreements(peer: &Peer, cases: &[Case], verdicts: &[Verdict]) -> Vec<String> {
    let names: Vec<&str> = verdicts.iter().map(|v| v.name.as_str()).collect();
    let expected: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    if names != expected {
        return vec![format!(
            "{}: verdicts for {names:?}, cases were {expected:?}",
            peer.name
        )];
    }
    cases
        .iter()
        .zip(verdicts)
        .filter(|(case, verdict)| case.accept != verdict.accepted)
        .map(|(case, verdict)| {
            let said = if verdict.accepted {
                "accepted"
            } else {
                "refused"
            };
            let why = verdict.error.as_deref().unwrap_or("no error");
            format!("{}: {said} {:?} ({why})", peer.name, case.name)
        })
        .collect()
}
