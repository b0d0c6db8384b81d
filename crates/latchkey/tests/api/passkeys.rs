//! Passkeys over the API, with a software authenticator written here (P-256
//! keys, "none" attestation, CBOR by hand) so that ceremonies run on both
//! backends and across instances; the real-browser path is in `browser`
//! (Chromium's virtual authenticator).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// One credential of a software authenticator that verifies its user.
struct Authenticator {
    key: EcdsaKeyPair,
    id: Vec<u8>,
    user_handle: Vec<u8>,
    rp_id: String,
    origin: String,
    counter: u32,
    /// A synced passkey: backup eligible and backed up (flags BE and BS).
    synced: bool,
}

impl Authenticator {
    /// Answers `navigator.credentials.create()` options.
    fn create(options: &Value, origin: &str, synced: bool) -> (Authenticator, Value) {
        let public_key = &options["publicKey"];
        let rp_id = public_key["rp"]["id"].as_str().expect("rp.id").to_string();
        let user_handle = B64
            .decode(public_key["user"]["id"].as_str().expect("user.id"))
            .expect("b64");
        assert_eq!(
            public_key["authenticatorSelection"]["residentKey"], "required",
            "a discoverable credential is asked for"
        );
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("key");
        let mut id = vec![0u8; 16];
        aws_lc_rs::rand::fill(&mut id).expect("random");
        let auth = Authenticator {
            key,
            id,
            user_handle,
            rp_id,
            origin: origin.to_string(),
            counter: 0,
            synced,
        };
        let client_data = auth.client_data("webauthn.create", public_key);
        // Attested credential data: AAGUID, id length, id, COSE key.
        let point = auth.key.public_key().as_ref().to_vec();
        let (x, y) = (&point[1..33], &point[33..65]);
        let mut cose = map(5);
        cose.extend([uint(1), uint(2)].concat()); // kty: EC2
        cose.extend([uint(3), negative(-7)].concat()); // alg: ES256
        cose.extend([negative(-1), uint(1)].concat()); // crv: P-256
        cose.extend([negative(-2), bytes(x)].concat());
        cose.extend([negative(-3), bytes(y)].concat());
        let mut attested = vec![0u8; 16];
        attested.extend((auth.id.len() as u16).to_be_bytes());
        attested.extend(&auth.id);
        attested.extend(cose);
        let auth_data = auth.auth_data(0x40, &attested);
        let mut attestation = map(3);
        attestation.extend([text("fmt"), text("none")].concat());
        attestation.extend([text("attStmt"), map(0)].concat());
        attestation.extend([text("authData"), bytes(&auth_data)].concat());
        let id = B64.encode(&auth.id);
        let answer = json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "attestationObject": B64.encode(attestation),
                "clientDataJSON": B64.encode(client_data),
            },
            "clientExtensionResults": {},
        });
        (auth, answer)
    }

    /// Answers `navigator.credentials.get()` options, counting one use.
    fn get(&mut self, options: &Value) -> Value {
        self.counter += 1;
        self.assert_with(options, self.counter)
    }

    /// An answer whose signature counter is `counter`, whatever was used.
    fn assert_with(&self, options: &Value, counter: u32) -> Value {
        let public_key = &options["publicKey"];
        if let Some(allowed) = public_key["allowCredentials"]
            .as_array()
            .filter(|a| !a.is_empty())
        {
            let mine = B64.encode(&self.id);
            assert!(
                allowed.iter().any(|c| c["id"] == mine.as_str()),
                "{allowed:?}"
            );
        }
        let client_data = self.client_data("webauthn.get", public_key);
        let mut with_counter = self.rp_hash();
        with_counter.push(0x01 | 0x04 | self.backup_flags());
        with_counter.extend(counter.to_be_bytes());
        let mut signed = with_counter.clone();
        signed.extend(sha256(&client_data));
        let signature = self.key.sign(&SystemRandom::new(), &signed).expect("sign");
        let id = B64.encode(&self.id);
        json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "authenticatorData": B64.encode(&with_counter),
                "clientDataJSON": B64.encode(client_data),
                "signature": B64.encode(signature.as_ref()),
                "userHandle": B64.encode(&self.user_handle),
            },
            "clientExtensionResults": {},
        })
    }

    fn client_data(&self, kind: &str, public_key: &Value) -> Vec<u8> {
        let challenge = public_key["challenge"].as_str().expect("challenge");
        json!({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false})
            .to_string()
            .into_bytes()
    }

    fn backup_flags(&self) -> u8 {
        if self.synced { 0x08 | 0x10 } else { 0 }
    }

    fn rp_hash(&self) -> Vec<u8> {
        sha256(self.rp_id.as_bytes())
    }

    /// Authenticator data with user presence and verification, and `more`.
    fn auth_data(&self, flags: u8, more: &[u8]) -> Vec<u8> {
        let mut data = self.rp_hash();
        data.push(0x01 | 0x04 | self.backup_flags() | flags);
        data.extend(self.counter.to_be_bytes());
        data.extend(more);
        data
    }
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

// CBOR, as much as attestation needs.
fn head(major: u8, n: usize) -> Vec<u8> {
    match n {
        0..24 => vec![major << 5 | n as u8],
        24..256 => vec![major << 5 | 24, n as u8],
        _ => {
            let mut h = vec![major << 5 | 25];
            h.extend((n as u16).to_be_bytes());
            h
        }
    }
}
fn uint(n: usize) -> Vec<u8> {
    head(0, n)
}
fn negative(n: i64) -> Vec<u8> {
    head(1, (-1 - n) as usize)
}
fn bytes(b: &[u8]) -> Vec<u8> {
    let mut v = head(2, b.len());
    v.extend(b);
    v
}
fn text(s: &str) -> Vec<u8> {
    let mut v = head(3, s.len());
    v.extend(s.as_bytes());
    v
}
fn map(pairs: usize) -> Vec<u8> {
    head(5, pairs)
}

/// An app whose issuer is on `localhost`, where passkeys work; `with`
/// starts it on another instance's home and issuer.
async fn passkey_app(with: Option<&TestApp>) -> TestApp {
    let configure = |s: &mut latchkey::config::Settings| {
        s.issuer = match with {
            Some(other) => other.settings.issuer.clone(),
            None => format!("http://localhost:{}", s.listen.port()),
        };
        s.audience = s.issuer.clone();
    };
    match with {
        Some(other) => spawn_app_in(other.dir.clone(), configure).await,
        None => spawn_app_with(configure).await,
    }
}

async fn json_of(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let body: Value = resp.json().await.expect("json");
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// Registers a passkey for the holder of `access`; returns the authenticator.
async fn register(app: &TestApp, access: &str) -> Authenticator {
    register_as(app, access, false).await
}

async fn register_as(app: &TestApp, access: &str, synced: bool) -> Authenticator {
    let ceremony = json_of(
        app.post_auth("/v1/passkeys/register/options", access, None)
            .await,
    )
    .await;
    let (auth, credential) =
        Authenticator::create(&ceremony["options"], &app.settings.issuer, synced);
    let body = json!({ "token": ceremony["token"], "credential": credential });
    let resp = app.post_auth("/v1/passkeys", access, Some(body)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    auth
}

async fn passkey_sign_in(app: &TestApp, auth: &mut Authenticator) -> reqwest::Response {
    let ceremony = json_of(app.post_json("/v1/login/passkey/options", json!({})).await).await;
    let credential = auth.get(&ceremony["options"]);
    app.post_json(
        "/v1/login/passkey",
        json!({ "token": ceremony["token"], "credential": credential }),
    )
    .await
}

#[tokio::test]
async fn a_passkey_signs_in_alone_on_any_instance_and_a_clone_is_refused() {
    let a = passkey_app(None).await;
    let b = passkey_app(Some(&a)).await;
    let (email, tokens) = a.new_user().await;

    // Options from one instance, the answer to the other.
    let ceremony = json_of(
        a.post_auth("/v1/passkeys/register/options", &tokens.access, None)
            .await,
    )
    .await;
    assert_eq!(ceremony["options"]["publicKey"]["rp"]["id"], "localhost");
    let (mut auth, credential) =
        Authenticator::create(&ceremony["options"], &a.settings.issuer, false);
    let body = json!({ "token": ceremony["token"], "credential": credential, "name": "Test key" });
    let resp = b
        .post_auth("/v1/passkeys", &tokens.access, Some(body.clone()))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let again = b
        .post_auth("/v1/passkeys", &tokens.access, Some(body))
        .await;
    assert_eq!(
        error_of(again).await.1,
        "invalid_request",
        "the ceremony is spent"
    );
    let listed = json_of(a.get("/v1/passkeys", Some(&tokens.access)).await).await;
    assert_eq!(listed["passkeys"][0]["name"], "Test key");
    assert_eq!(listed["passkeys"][0]["last_used_at"], Value::Null);

    // Signed in with the passkey alone, the address never typed.
    let ceremony = json_of(b.post_json("/v1/login/passkey/options", json!({})).await).await;
    let answer = auth.get(&ceremony["options"]);
    let body = json!({ "token": ceremony["token"], "credential": answer });
    let resp = a.post_json("/v1/login/passkey", body.clone()).await;
    let signed_in = Tokens::from_body(json_of(resp).await);
    assert_eq!(
        decode_segment(&signed_in.access, 1)["amr"],
        json!(["hwk", "mfa"])
    );
    let me: Value = json_of(b.me(&signed_in.access).await).await;
    assert_eq!(me["email"], email.as_str());
    let replay = b.post_json("/v1/login/passkey", body).await;
    assert_eq!(error_of(replay).await.0, StatusCode::BAD_REQUEST);

    // A copy of the key that signs with a counter already seen: refused.
    let ceremony = json_of(a.post_json("/v1/login/passkey/options", json!({})).await).await;
    let cloned = auth.assert_with(&ceremony["options"], auth.counter);
    let body = json!({ "token": ceremony["token"], "credential": cloned });
    assert_refused(
        b.post_json("/v1/login/passkey", body).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "cloned",
    )
    .await;
    let kinds = a.event_kinds(&signed_in.access).await;
    for kind in ["passkey_added", "passkey_clone_suspected"] {
        assert!(kinds.contains(&kind.to_string()), "{kind} in {kinds:?}");
    }
    // The genuine authenticator, ahead of the stored counter, still works.
    assert_eq!(
        passkey_sign_in(&b, &mut auth).await.status(),
        StatusCode::OK
    );
    let listed = json_of(a.get("/v1/passkeys", Some(&tokens.access)).await).await;
    assert!(listed["passkeys"][0]["last_used_at"].is_string());

    // Disabled, the account cannot sign in with it.
    assert!(a.cli(&["users", "disable", &email], None).status.success());
    let resp = passkey_sign_in(&a, &mut auth).await;
    assert_eq!(error_of(resp).await.1, "invalid_grant");
}

#[tokio::test]
async fn a_passkey_is_a_second_step_for_an_account_with_an_authenticator_app() {
    let app = passkey_app(None).await;
    let user = crate::mfa::enrolled(&app).await;
    let mut auth = register(&app, &user.tokens.access).await;

    let resp = app.login(&user.email, PASSWORD).await;
    let (_, code, body) = error_of(resp).await;
    assert_eq!(code, "mfa_required");
    assert_eq!(body["methods"], json!(["totp", "recovery_code", "passkey"]));
    let mfa_token = body["mfa_token"].as_str().expect("mfa_token");
    let ceremony = json_of(
        app.post_json(
            "/v1/login/mfa/passkey/options",
            json!({ "mfa_token": mfa_token }),
        )
        .await,
    )
    .await;
    let allowed = &ceremony["options"]["publicKey"]["allowCredentials"];
    assert_eq!(allowed.as_array().map(Vec::len), Some(1), "{allowed}");
    let answer = auth.get(&ceremony["options"]);
    let passkey = json!({ "token": ceremony["token"], "credential": answer });
    let resp = crate::mfa::second_step(&app, mfa_token, json!({ "passkey": passkey })).await;
    let signed_in = Tokens::from_body(json_of(resp).await);
    assert_eq!(
        decode_segment(&signed_in.access, 1)["amr"],
        json!(["pwd", "hwk", "mfa"])
    );
}

#[tokio::test]
async fn passkeys_are_the_owners_and_their_changes_need_a_recent_proof() {
    let app = passkey_app(None).await;
    let (_, owner) = app.new_user().await;
    let (_, other) = app.new_user().await;
    let mut auth = register(&app, &owner.access).await;
    let id = B64.encode(&auth.id);
    let path = format!("/v1/passkeys/{id}");

    // The same authenticator again is excluded by the options, and refused.
    let ceremony = json_of(
        app.post_auth("/v1/passkeys/register/options", &owner.access, None)
            .await,
    )
    .await;
    let excluded = &ceremony["options"]["publicKey"]["excludeCredentials"];
    assert_eq!(excluded[0]["id"], id.as_str());

    assert_eq!(
        app.delete_auth(&path, &other.access).await.status(),
        StatusCode::NOT_FOUND,
        "another user's passkey"
    );
    let rename = app
        .client
        .patch(app.url(&path))
        .bearer_auth(&owner.access)
        .json(&json!({ "name": "Laptop" }))
        .send()
        .await
        .expect("request");
    assert_eq!(rename.status(), StatusCode::NO_CONTENT);
    let listed = json_of(app.get("/v1/passkeys", Some(&owner.access)).await).await;
    assert_eq!(listed["passkeys"][0]["name"], "Laptop");

    app.clock.advance(11 * 60);
    let stale = app.refresh_ok(&owner.refresh).await;
    let resp = app.delete_auth(&path, &stale.access).await;
    assert_eq!(error_of(resp).await.1, "reauthentication_required");
    let resp = app
        .post_auth("/v1/passkeys/register/options", &stale.access, None)
        .await;
    assert_eq!(error_of(resp).await.1, "reauthentication_required");
    let right = json!({ "password": PASSWORD });
    let renewed = json_of(
        app.post_auth("/v1/reauthenticate", &stale.access, Some(right))
            .await,
    )
    .await;
    let renewed = renewed["access_token"].as_str().expect("token");
    assert_eq!(
        app.delete_auth(&path, renewed).await.status(),
        StatusCode::NO_CONTENT
    );
    let resp = passkey_sign_in(&app, &mut auth).await;
    assert_eq!(error_of(resp).await.1, "invalid_grant", "removed");
    assert!(
        app.event_kinds(renewed)
            .await
            .contains(&"passkey_removed".to_string())
    );
}

#[tokio::test]
async fn without_a_domain_passkeys_are_off_and_say_so() {
    let app = spawn_app().await;
    let resp = app.post_json("/v1/login/passkey/options", json!({})).await;
    assert_refused(
        resp,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "passkey_rp_id",
    )
    .await;
}

#[tokio::test]
async fn operators_reset_the_second_factors_of_a_user_who_lost_them() {
    let app = passkey_app(None).await;
    let user = crate::mfa::enrolled(&app).await;
    let mut auth = register(&app, &user.tokens.access).await;
    let (id, secret) = crate::admin::admin_client(&app, "support");

    let show = |email: String| {
        app.client
            .get(app.url(&format!("/admin/v1/users/{email}")))
            .basic_auth(&id, Some(&secret))
            .send()
    };
    let shown = json_of(show(user.email.clone()).await.expect("request")).await;
    assert_eq!(
        (&shown["two_step"], &shown["passkeys"]),
        (&json!(true), &json!(1))
    );

    let path = format!("/admin/v1/users/{}/mfa", user.email);
    let resp = app
        .client
        .delete(app.url(&path))
        .basic_auth(&id, Some(&secret))
        .send()
        .await
        .expect("request");
    let body = json_of(resp).await;
    assert_eq!(body["totp_removed"], true);
    assert_eq!(body["passkeys_removed"], 1);
    assert_eq!(body["user"]["email"], user.email.as_str());
    let shown = json_of(show(user.email.clone()).await.expect("request")).await;
    assert_eq!(
        (&shown["two_step"], &shown["passkeys"]),
        (&json!(false), &json!(0))
    );

    // The password alone signs in again; the old passkey does not.
    let tokens = app.login_ok(&user.email, PASSWORD).await;
    let status = json_of(app.get("/v1/mfa", Some(&tokens.access)).await).await;
    assert_eq!(status["recovery_codes_left"], 0);
    let resp = passkey_sign_in(&app, &mut auth).await;
    assert_eq!(error_of(resp).await.1, "invalid_grant");
    let rows = app.rows().await;
    let reset = rows
        .events
        .iter()
        .find(|e| e.kind == "mfa_disabled")
        .expect("an mfa_disabled event");
    assert_eq!(
        reset.actor.as_deref(),
        Some(format!("client:{id}").as_str())
    );

    // The same from the command line, for another user.
    let other = crate::mfa::enrolled(&app).await;
    let shown = stdout(&app.cli(&["users", "show", &other.email], None));
    assert!(shown.contains("two-step:       on"), "{shown}");
    assert!(shown.contains("passkeys:       0"), "{shown}");
    let out = app.cli(&["users", "reset-mfa", &other.email], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("authenticator app removed; 0 passkey(s) removed"),
        "{}",
        stdout(&out)
    );
    app.login_ok(&other.email, PASSWORD).await;
}

#[tokio::test]
async fn a_synced_passkey_is_told_apart_from_a_device_bound_one() {
    let app = passkey_app(None).await;
    let (email, tokens) = app.new_user().await;
    let mut auth = register_as(&app, &tokens.access, true).await;
    let listed = json_of(app.get("/v1/passkeys", Some(&tokens.access)).await).await;
    assert_eq!(listed["passkeys"][0]["backup_eligible"], true);
    assert_eq!(listed["passkeys"][0]["backed_up"], true);
    let resp = passkey_sign_in(&app, &mut auth).await;
    let signed_in = Tokens::from_body(json_of(resp).await);
    assert_eq!(
        decode_segment(&signed_in.access, 1)["amr"],
        json!(["swk", "mfa"])
    );

    // A device seen before says so with its device token, as for a password.
    let notices = || {
        crate::mail::outbox_files(&app)
            .iter()
            .filter(|(p, m)| {
                m.to.contains(&email) && p.to_string_lossy().ends_with("-new_device.eml")
            })
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while notices() == 0 {
        assert!(std::time::Instant::now() < deadline, "no new-device notice");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let device = signed_in.body["device_token"]
        .as_str()
        .expect("device_token");
    let ceremony = json_of(app.post_json("/v1/login/passkey/options", json!({})).await).await;
    let answer = auth.get(&ceremony["options"]);
    let body = json!({ "token": ceremony["token"], "credential": answer, "device_token": device });
    let again = Tokens::from_body(json_of(app.post_json("/v1/login/passkey", body).await).await);
    assert_eq!(again.body["device_token"], device);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(notices(), 1, "no notice for a known device");
}
