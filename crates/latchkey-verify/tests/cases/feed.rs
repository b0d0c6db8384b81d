//! The revocation follower against the fake feed: revocations reach
//! `verify` within a poll, repeats and expired cursors are handled, and a
//! stale feed fails closed (or open, when asked).

use std::sync::atomic::Ordering;
use std::time::Duration;

use latchkey_verify::{Claims, SetupError, SigningAlg, Verifier, VerifyError};

use crate::support::{self, FakeLatchkey, Signer, claims, eventually};

async fn setup() -> (FakeLatchkey, Signer, Verifier) {
    let signer = Signer::generate(SigningAlg::EdDSA, "k1");
    let fake = FakeLatchkey::spawn(&[&signer]).await;
    let verifier = fake.builder().build().await.unwrap();
    (fake, signer, verifier)
}

#[tokio::test]
async fn a_revoked_session_is_refused_after_the_next_poll() {
    let (fake, signer, verifier) = setup().await;
    let s1 = signer.sign(&claims(&fake.issuer, "u1", "s1"));
    let s2 = signer.sign(&claims(&fake.issuer, "u1", "s2"));
    assert!(verifier.verify(&s1).await.is_ok());

    fake.state.revoke_session("u1", "s1");
    eventually("the revocation reaches the verifier", || async {
        verifier.verify(&s1).await == Err(VerifyError::Revoked)
    })
    .await;
    assert!(verifier.verify(&s2).await.is_ok(), "other sessions live on");
}

#[tokio::test]
async fn a_user_cut_off_refuses_older_tokens_but_not_newer_ones() {
    let (fake, signer, verifier) = setup().await;
    let now = support::now();
    let older = Claims {
        iat: now - 200,
        ..claims(&fake.issuer, "u1", "s1")
    };
    let newer = Claims {
        iat: now - 50,
        ..claims(&fake.issuer, "u1", "s2")
    };
    let (older, newer) = (signer.sign(&older), signer.sign(&newer));
    fake.state.revoke_user("u1", now - 100);
    eventually("the cut-off reaches the verifier", || async {
        verifier.verify(&older).await == Err(VerifyError::Revoked)
    })
    .await;
    assert!(verifier.verify(&newer).await.is_ok());
    let someone_else = Claims {
        iat: now - 200,
        ..claims(&fake.issuer, "u2", "s3")
    };
    assert!(verifier.verify(&signer.sign(&someone_else)).await.is_ok());
}

#[tokio::test]
async fn the_first_sync_reads_every_page_before_build_returns() {
    let signer = Signer::generate(SigningAlg::EdDSA, "k1");
    let fake = FakeLatchkey::spawn(&[&signer]).await;
    for i in 0..7 {
        fake.state.revoke_session("u1", &format!("s{i}"));
    }
    let verifier = fake.builder().build().await.unwrap();
    let token = signer.sign(&claims(&fake.issuer, "u1", "s6"));
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::Revoked));
    let feed = verifier.status().feed.unwrap();
    assert_eq!((feed.revoked_sessions, feed.cursor), (7, 7));
    assert!(fake.feed_requests() >= 4, "pages of two entries");
}

#[tokio::test]
async fn repeated_entries_are_harmless() {
    let (fake, signer, verifier) = setup().await;
    let now = support::now();
    fake.state.repeat.store(true, Ordering::SeqCst);
    fake.state.revoke_session("u1", "s1");
    fake.state.revoke_session("u1", "s1");
    fake.state.revoke_user("u2", now - 100);
    fake.state.revoke_user("u2", now - 1000);
    let revoked = signer.sign(&claims(&fake.issuer, "u1", "s1"));
    let old_u2 = Claims {
        iat: now - 200,
        ..claims(&fake.issuer, "u2", "s5")
    };
    let old_u2 = signer.sign(&old_u2);
    let live = signer.sign(&claims(&fake.issuer, "u1", "s2"));
    eventually("the entries are applied", || async {
        verifier.status().feed.unwrap().cursor == 4
    })
    .await;
    let polls = fake.feed_requests();
    eventually("a few more polls with repeats", || async {
        fake.feed_requests() > polls + 3
    })
    .await;
    assert_eq!(verifier.verify(&revoked).await, Err(VerifyError::Revoked));
    assert_eq!(
        verifier.verify(&old_u2).await,
        Err(VerifyError::Revoked),
        "a repeat with an older cut-off does not lower it"
    );
    assert!(verifier.verify(&live).await.is_ok());
    let feed = verifier.status().feed.unwrap();
    assert_eq!((feed.revoked_sessions, feed.revoked_users), (1, 1));
    assert!(!feed.stale);
}

#[tokio::test]
async fn an_expired_cursor_drops_the_state_and_resyncs_from_the_start() {
    let (fake, signer, verifier) = setup().await;
    fake.state.revoke_session("u1", "gone");
    fake.state.revoke_session("u1", "gone-too");
    eventually("the first entries are applied", || async {
        verifier.status().feed.unwrap().cursor == 2
    })
    .await;
    // The server compacts its log past the verifier's cursor.
    fake.state.entries.lock().unwrap().clear();
    fake.state.oldest_cursor.store(5, Ordering::SeqCst);
    let entry = latchkey_verify::wire::RevocationEntry::Session {
        cursor: 5,
        sid: "s5".into(),
        sub: "u1".into(),
        revoked_at: support::now(),
    };
    fake.state.entries.lock().unwrap().push(entry);
    let s5 = signer.sign(&claims(&fake.issuer, "u1", "s5"));
    eventually("the verifier resyncs", || async {
        verifier.verify(&s5).await == Err(VerifyError::Revoked)
    })
    .await;
    let feed = verifier.status().feed.unwrap();
    assert_eq!(
        (feed.revoked_sessions, feed.cursor),
        (1, 5),
        "old state dropped"
    );
    assert!(support::FakeState::count(&fake.state.gone_responses) >= 1);
    assert!(!feed.stale);
}

#[tokio::test]
async fn a_feed_down_beyond_max_staleness_fails_closed_unless_told_to_fail_open() {
    let signer = Signer::generate(SigningAlg::EdDSA, "k1");
    let fake = FakeLatchkey::spawn(&[&signer]).await;
    fake.state.revoke_session("u1", "revoked");
    let closed = fake.builder().max_staleness(support::STALE_SOON);
    let closed = closed.build().await.unwrap();
    let open = fake
        .builder()
        .max_staleness(support::STALE_SOON)
        .fail_open(true);
    let open = open.build().await.unwrap();
    let good = signer.sign(&claims(&fake.issuer, "u1", "s1"));
    let revoked = signer.sign(&claims(&fake.issuer, "u1", "revoked"));

    fake.state.feed_down.store(true, Ordering::SeqCst);
    eventually("the closed verifier gives up", || async {
        closed.verify(&good).await == Err(VerifyError::RevocationsUnavailable)
    })
    .await;
    assert!(closed.status().feed.unwrap().stale);
    assert!(
        open.verify(&good).await.is_ok(),
        "fail-open accepts on signature alone"
    );
    assert_eq!(
        open.verify(&revoked).await,
        Err(VerifyError::Revoked),
        "known revocations still count"
    );
    let forged = Signer::generate(SigningAlg::EdDSA, "k1").sign(&claims(&fake.issuer, "u1", "s1"));
    assert_eq!(closed.verify(&forged).await, Err(VerifyError::BadSignature));

    fake.state.feed_down.store(false, Ordering::SeqCst);
    eventually("the closed verifier recovers", || async {
        closed.verify(&good).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn wrong_client_credentials_fail_the_build() {
    let signer = Signer::generate(SigningAlg::EdDSA, "k1");
    let fake = FakeLatchkey::spawn(&[&signer]).await;
    let result = Verifier::builder(&fake.issuer)
        .revocation_feed(support::CLIENT_ID, "wrong")
        .build()
        .await;
    match result {
        Err(SetupError::Revocations { source, .. }) => {
            assert_eq!(
                source.to_string(),
                "unexpected HTTP status 401 (invalid_client)"
            );
        }
        other => panic!("expected a feed error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_feed_that_is_down_at_start_fails_the_build() {
    let signer = Signer::generate(SigningAlg::EdDSA, "k1");
    let fake = FakeLatchkey::spawn(&[&signer]).await;
    fake.state.feed_down.store(true, Ordering::SeqCst);
    let result = fake
        .builder()
        .poll_interval(Duration::from_millis(20))
        .build()
        .await;
    assert!(matches!(result, Err(SetupError::Revocations { .. })));
}

#[tokio::test]
async fn a_key_withdrawn_in_the_feed_is_dropped_and_never_taken_back_from_a_stale_jwks() {
    let leaked = Signer::generate(SigningAlg::EdDSA, "leaked");
    let other = Signer::generate(SigningAlg::EdDSA, "other");
    let fake = FakeLatchkey::spawn(&[&leaked, &other]).await;
    let verifier = fake.builder().build().await.unwrap();
    let token = leaked.sign(&claims(&fake.issuer, "u1", "s1"));
    assert!(
        verifier.verify(&token).await.is_ok(),
        "trusted, and remembered"
    );
    // The JWKS still lists the key (a stale cache in front of the issuer).
    fake.state.withdraw_key("leaked");
    eventually("the withdrawn key's token is refused", || async {
        verifier.verify(&token).await == Err(VerifyError::UnknownKey)
    })
    .await;
    // A token with an unknown kid makes the verifier refetch the JWKS, which
    // still names the leaked key: it must not come back.
    let stranger = Signer::generate(SigningAlg::EdDSA, "stranger");
    let _ = verifier
        .verify(&stranger.sign(&claims(&fake.issuer, "u3", "s3")))
        .await;
    assert_eq!(verifier.verify(&token).await, Err(VerifyError::UnknownKey));
    let fresh = leaked.sign(&claims(&fake.issuer, "u4", "s4"));
    assert_eq!(verifier.verify(&fresh).await, Err(VerifyError::UnknownKey));
    let fine = other.sign(&claims(&fake.issuer, "u2", "s2"));
    assert!(
        verifier.verify(&fine).await.is_ok(),
        "other keys stay trusted"
    );
}

#[tokio::test]
async fn tokens_claiming_a_lifetime_over_the_maximum_are_refused() {
    let signer = Signer::generate(SigningAlg::EdDSA, "k1");
    let fake = FakeLatchkey::spawn(&[&signer]).await;
    let mut long = claims(&fake.issuer, "u1", "s1");
    long.exp = long.iat + 2 * 3600;
    let token = signer.sign(&long);
    let strict = fake.builder().build().await.unwrap();
    assert_eq!(strict.verify(&token).await, Err(VerifyError::TooLongLived));
    let lenient = fake
        .builder()
        .max_token_lifetime(Duration::from_secs(3 * 3600))
        .build()
        .await
        .unwrap();
    assert!(lenient.verify(&token).await.is_ok());
}
