//! Keys and tokens as the real server makes them: aws-lc-rs key pairs
//! (Ed25519 PKCS#8 v1, P-256), their public JWKs with `kid` and `use`, and
//! access tokens signed by `jsonwebtoken::encode` with `typ` `at+jwt`.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse,
};
use jsonwebtoken::{EncodingKey, Header};
use latchkey_verify::{Claims, SigningAlg};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A private signing key and its public JWK.
pub struct Signer {
    pub kid: String,
    pub alg: SigningAlg,
    key: EncodingKey,
    pub jwk: Jwk,
}

impl Signer {
    pub fn generate(alg: SigningAlg, kid: &str) -> Self {
        let rng = SystemRandom::new();
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let (key, params, key_algorithm) = match alg {
            SigningAlg::EdDSA => {
                let doc = Ed25519KeyPair::generate_pkcs8v1(&rng).unwrap();
                let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
                let params = AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: b64(pair.public_key().as_ref()),
                });
                (
                    EncodingKey::from_ed_der(doc.as_ref()),
                    params,
                    KeyAlgorithm::EdDSA,
                )
            }
            SigningAlg::ES256 => {
                let doc =
                    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                    .unwrap();
                let point = pair.public_key().as_ref();
                let params = AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: b64(&point[1..33]),
                    y: b64(&point[33..65]),
                });
                (
                    EncodingKey::from_ec_der(doc.as_ref()),
                    params,
                    KeyAlgorithm::ES256,
                )
            }
        };
        let common = CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(key_algorithm),
            key_id: Some(kid.to_string()),
            ..Default::default()
        };
        let jwk = Jwk {
            common,
            algorithm: params,
        };
        Self {
            kid: kid.to_string(),
            alg,
            key,
            jwk,
        }
    }

    /// Signs `claims` as an access token: `typ` `at+jwt` and this key's `kid`.
    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(self.alg.jose());
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// Claims of a fresh token for `sub`'s session `sid` at `issuer`.
pub fn claims(issuer: &str, sub: &str, sid: &str) -> Claims {
    let now = now();
    Claims {
        iss: issuer.into(),
        sub: sub.into(),
        aud: issuer.into(),
        exp: now + 300,
        iat: now,
        nbf: None,
        jti: format!("jti-{sub}-{sid}-{now}"),
        sid: sid.into(),
        client_id: "web".into(),
        auth_time: None,
        amr: None,
    }
}
