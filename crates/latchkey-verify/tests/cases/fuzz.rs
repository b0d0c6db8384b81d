//! Property-based fuzzing of access-token verification: whatever the input,
//! `verify` never panics and refuses anything but a genuine token, and a
//! genuine token's claims come back exactly. `PROPTEST_CASES` sets the number
//! of cases (the long run's command is in docs/security.md).

use std::sync::OnceLock;

use latchkey_verify::{Claims, KeySet, Rules, SigningAlg, VerifyKey, verify};
use proptest::prelude::*;

use crate::support::{Signer, now};

const ISSUER: &str = "https://auth.example.com";

fn rules() -> Rules {
    Rules {
        issuer: ISSUER.into(),
        audience: ISSUER.into(),
        leeway: 5,
    }
}

/// A key of each algorithm and the key set trusting it, made once.
fn signer_and_keys(alg: SigningAlg) -> &'static (Signer, KeySet) {
    static KEYS: OnceLock<[(Signer, KeySet); 2]> = OnceLock::new();
    let both = KEYS.get_or_init(|| {
        [SigningAlg::EdDSA, SigningAlg::ES256].map(|alg| {
            let signer = Signer::generate(alg, "k1");
            let mut keys = KeySet::new();
            keys.insert("k1", VerifyKey::from_jwk(&signer.jwk).expect("jwk"));
            (signer, keys)
        })
    });
    &both[usize::from(alg == SigningAlg::ES256)]
}

fn claims_from(sub: String, sid: String, jti: String, client_id: String) -> Claims {
    let now = now();
    Claims {
        iss: ISSUER.into(),
        sub,
        aud: ISSUER.into(),
        exp: now + 300,
        iat: now,
        nbf: None,
        jti,
        sid,
        client_id,
        auth_time: None,
        amr: None,
    }
}

/// Text that looks like a token: three dot-separated base64url-ish segments,
/// or anything at all.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_=+/-]{0,80}\\.[A-Za-z0-9_=+/-]{0,200}\\.[A-Za-z0-9_=+/-]{0,100}",
        "eyJ[A-Za-z0-9_-]{0,60}\\.eyJ[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,90}",
        any::<String>(),
        proptest::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

proptest! {
    #[test]
    fn arbitrary_text_is_refused_without_a_panic(token in token_like()) {
        let (_, keys) = signer_and_keys(SigningAlg::EdDSA);
        prop_assert!(verify(&token, keys, &rules(), now()).is_err());
    }

    #[test]
    fn any_change_to_a_genuine_token_is_refused(
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        es256 in any::<bool>(),
    ) {
        let alg = if es256 { SigningAlg::ES256 } else { SigningAlg::EdDSA };
        let (signer, keys) = signer_and_keys(alg);
        let token = signer.sign(&claims_from("u".into(), "s".into(), "j".into(), "web".into()));
        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        let verdict = verify(&changed, keys, &rules(), now());
        if changed == token {
            prop_assert!(verdict.is_ok());
        } else {
            prop_assert!(verdict.is_err(), "accepted a changed token: {changed}");
        }
    }

    #[test]
    fn a_genuine_token_round_trips_its_claims(
        sub in "[^\\u{0}]{1,40}",
        sid in "[a-z0-9-]{1,36}",
        jti in "[A-Za-z0-9_-]{1,40}",
        client_id in "[a-z0-9_]{1,20}",
        es256 in any::<bool>(),
    ) {
        let alg = if es256 { SigningAlg::ES256 } else { SigningAlg::EdDSA };
        let (signer, keys) = signer_and_keys(alg);
        let claims = claims_from(sub, sid, jti, client_id);
        let verified = verify(&signer.sign(&claims), keys, &rules(), now());
        prop_assert_eq!(verified.expect("genuine"), claims);
    }
}
