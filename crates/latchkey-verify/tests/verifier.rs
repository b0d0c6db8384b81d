//! The verifier against a fake Latchkey on 127.0.0.1: discovery and keys
//! here, the revocation feed in `cases/feed.rs`, the axum extractor and
//! layer in `cases/web.rs`, property-based fuzzing of verification in
//! `cases/fuzz.rs`, https with a private root in `cases/tls.rs`. One test
//! binary for the crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "cases/feed.rs"]
mod feed;
#[path = "cases/fuzz.rs"]
mod fuzz;
mod support;
#[path = "cases/tls.rs"]
mod tls;
#[path = "cases/web.rs"]
mod web;

use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey_verify::{Claims, KeySet, SetupError, SigningAlg, Verifier, VerifyError};
use support::{FakeLatchkey, Signer, claims, ready_now};

#[tokio::test]
async fn discovery_finds_the_keys_and_valid_tokens_of_both_algorithms_pass() {
    let ed = Signer::generate(SigningAlg::EdDSA, "ed-1");
    let ec = Signer::generate(SigningAlg::ES256, "ec-1");
    let fake = FakeLatchkey::spawn(&[&ed, &ec]).await;
    let verifier = Verifier::builder(&fake.issuer).build().await.unwrap();
    for signer in [&ed, &ec] {
        let expected = claims(&fake.issuer, "u1", "s1");
        let got = verifier.verify(&signer.sign(&expected)).await.unwrap();
        assert_eq!(got, expected);
    }
    assert_eq!(verifier.status().keys, 2);
    assert_eq!(verifier.status().feed, None);
}

#[tokio::test]
async fn forged_expired_and_misaddressed_tokens_are_refused() {
    let signer = Signer::generate(SigningAlg::EdDSA, "k1");
    let fake = FakeLatchkey::spawn(&[&signer]).await;
    let verifier = Verifier::builder(&fake.issuer).build().await.unwrap();
    let good = claims(&fake.issuer, "u1", "s1");

    let forger = Signer::generate(SigningAlg::EdDSA, "k1");
    let forged = forger.sign(&good);
    assert_eq!(
        verifier.verify(&forged).await,
        Err(VerifyError::BadSignature)
    );

    let expired = Claims {
        exp: support::now() - 60,
        iat: support::now() - 360,
        ..good.clone()
    };
    let result = verifier.verify(&signer.sign(&expired)).await;
    assert_eq!(result, Err(VerifyError::Expired));

    let elsewhere = Claims {
        aud: "https://other-api.example".into(),
        ..good.clone()
    };
    let result = verifier.verify(&signer.sign(&elsewhere)).await;
    assert_eq!(result, Err(VerifyError::Audience));

    let other_issuer = Claims {
        iss: "https://evil.example".into(),
        ..good.clone()
    };
    let result = verifier.verify(&signer.sign(&other_issuer)).await;
    assert_eq!(result, Err(VerifyError::Issuer));

    let tampered = signer.sign(&good).replacen('.', ".e30", 1);
    assert!(verifier.verify(&tampered).await.is_err());
}

#[tokio::test]
async fn the_audience_is_configurable() {
    let signer = Signer::generate(SigningAlg::EdDSA, "k1");
    let fake = FakeLatchkey::spawn(&[&signer]).await;
    let verifier = Verifier::builder(&fake.issuer)
        .audience("https://api.example")
        .build()
        .await
        .unwrap();
    let mut token = claims(&fake.issuer, "u1", "s1");
    let result = verifier.verify(&signer.sign(&token)).await;
    assert_eq!(result, Err(VerifyError::Audience));
    token.aud = "https://api.example".into();
    assert!(verifier.verify(&signer.sign(&token)).await.is_ok());
}

#[tokio::test]
async fn metadata_for_another_issuer_is_refused() {
    let signer = Signer::generate(SigningAlg::EdDSA, "k1");
    let fake = FakeLatchkey::spawn(&[&signer]).await;
    *fake.state.metadata_issuer.lock().unwrap() = Some("https://evil.example".into());
    let result = Verifier::builder(&fake.issuer).build().await;
    assert!(
        matches!(result, Err(SetupError::IssuerMismatch { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn static_keys_need_no_server() {
    let signer = Signer::generate(SigningAlg::ES256, "k1");
    let issuer = "http://127.0.0.1:9";
    let jwks = latchkey_verify::JwkSet {
        keys: vec![signer.jwk.clone()],
    };
    let verifier = Verifier::builder(issuer)
        .static_jwks(&jwks)
        .build()
        .await
        .unwrap();
    let token = signer.sign(&claims(issuer, "u1", "s1"));
    assert!(ready_now(verifier.verify(&token)).is_ok());
    let unknown = Signer::generate(SigningAlg::ES256, "k2").sign(&claims(issuer, "u1", "s1"));
    assert_eq!(
        ready_now(verifier.verify(&unknown)),
        Err(VerifyError::UnknownKey)
    );

    let empty = Verifier::builder(issuer).static_keys(KeySet::new()).build();
    assert!(matches!(empty.await, Err(SetupError::Config(_))));
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_on_first_sight_and_unknown_kids_are_rate_limited() {
    let old = Signer::generate(SigningAlg::EdDSA, "old");
    let fake = FakeLatchkey::spawn(&[&old]).await;
    let verifier = Verifier::builder(&fake.issuer).build().await.unwrap();
    assert_eq!(fake.jwks_requests(), 1);

    let new = Signer::generate(SigningAlg::ES256, "new");
    fake.state.publish(&new);
    let token = new.sign(&claims(&fake.issuer, "u1", "s1"));
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(
        fake.jwks_requests(),
        2,
        "one fetch on first sight of the new kid"
    );
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(fake.jwks_requests(), 2);

    let stranger = Signer::generate(SigningAlg::EdDSA, "stranger");
    fake.state.publish(&stranger);
    let token = stranger.sign(&claims(&fake.issuer, "u1", "s1"));
    let started = Instant::now();
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::UnknownKey));
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(fake.jwks_requests(), 2, "no second fetch within 10 s");
}

#[tokio::test]
async fn a_token_seen_before_is_refused_once_its_key_is_withdrawn() {
    let old = Signer::generate(SigningAlg::EdDSA, "old");
    let fake = FakeLatchkey::spawn(&[&old]).await;
    let verifier = Verifier::builder(&fake.issuer).build().await.unwrap();
    let token = old.sign(&claims(&fake.issuer, "u1", "s1"));
    assert!(verifier.verify(&token).await.is_ok());
    assert!(verifier.verify(&token).await.is_ok(), "again, remembered");
    // The issuer withdraws the key for another; the first token of the new
    // key makes the verifier fetch the JWKS again.
    let new = Signer::generate(SigningAlg::EdDSA, "new");
    fake.state.jwks.lock().unwrap().clear();
    fake.state.publish(&new);
    assert!(
        verifier
            .verify(&new.sign(&claims(&fake.issuer, "u2", "s2")))
            .await
            .is_ok()
    );
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::UnknownKey));
}

#[tokio::test]
async fn callers_meeting_a_new_kid_together_share_one_fetch() {
    let old = Signer::generate(SigningAlg::EdDSA, "old");
    let fake = FakeLatchkey::spawn(&[&old]).await;
    let verifier = Verifier::builder(&fake.issuer).build().await.unwrap();
    let new = Arc::new(Signer::generate(SigningAlg::EdDSA, "new"));
    fake.state.publish(&new);
    let token = Arc::new(new.sign(&claims(&fake.issuer, "u1", "s1")));
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (verifier, token) = (verifier.clone(), token.clone());
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().is_ok());
    }
    assert_eq!(fake.jwks_requests(), 2);
}

#[tokio::test]
async fn a_warm_verifier_makes_no_request_and_never_waits() {
    let signer = Signer::generate(SigningAlg::EdDSA, "k1");
    let fake = FakeLatchkey::spawn(&[&signer]).await;
    fake.state.revoke_session("u9", "s9");
    let verifier = fake
        .builder()
        .poll_interval(Duration::from_secs(60))
        .max_staleness(Duration::from_secs(120))
        .build()
        .await
        .unwrap();
    let before = fake.requests();
    let good = signer.sign(&claims(&fake.issuer, "u1", "s1"));
    let revoked = signer.sign(&claims(&fake.issuer, "u9", "s9"));
    for _ in 0..500 {
        assert!(ready_now(verifier.verify(&good)).is_ok());
        assert_eq!(
            ready_now(verifier.verify(&revoked)),
            Err(VerifyError::Revoked)
        );
    }
    assert_eq!(fake.requests(), before);
}

#[tokio::test]
async fn dropping_the_last_clone_stops_the_background_tasks() {
    let signer = Signer::generate(SigningAlg::EdDSA, "k1");
    let fake = FakeLatchkey::spawn(&[&signer]).await;
    let verifier = fake.builder().build().await.unwrap();
    let clone = verifier.clone();
    drop(verifier);
    let polls = fake.feed_requests();
    support::eventually("the clone keeps polling", || async {
        fake.feed_requests() > polls
    })
    .await;
    drop(clone);
    let after_drop = fake.feed_requests();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Polling every 50 ms would have made about eight more requests; one
    // already on its way when the task stopped may still arrive.
    assert!(fake.feed_requests() <= after_drop + 1);
}
