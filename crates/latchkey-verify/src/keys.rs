//! Public verification keys. Each key is bound to exactly one algorithm: a
//! token is only checked with the algorithm its key names, never the one the
//! token's header asks for (RFC 8725 §3.1).

use std::collections::HashMap;
use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};

/// The signature algorithms Latchkey signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// Ed25519 signatures (RFC 8037).
    EdDSA,
    /// ECDSA on P-256 with SHA-256.
    ES256,
}

impl SigningAlg {
    /// The JOSE name of the algorithm, as written in `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::ES256 => "ES256",
        }
    }

    /// The algorithm as the JOSE library names it.
    pub fn jose(self) -> Algorithm {
        match self {
            SigningAlg::EdDSA => Algorithm::EdDSA,
            SigningAlg::ES256 => Algorithm::ES256,
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SigningAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "EdDSA" => Ok(SigningAlg::EdDSA),
            "ES256" => Ok(SigningAlg::ES256),
            other => Err(format!(
                "unsupported signing algorithm {other:?} (expected EdDSA or ES256)"
            )),
        }
    }
}

/// One public key with the single algorithm it may verify.
#[derive(Clone)]
pub struct VerifyKey {
    /// The only algorithm this key accepts.
    pub alg: SigningAlg,
    pub(crate) key: DecodingKey,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyKey {
    /// Builds a key from a public JWK; the JWK must name its algorithm, and
    /// only Ed25519 (`EdDSA`) and P-256 (`ES256`) keys are accepted.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, String> {
        let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(KeyAlgorithm::EdDSA), AlgorithmParameters::OctetKeyPair(p))
                if p.curve == EllipticCurve::Ed25519 =>
            {
                SigningAlg::EdDSA
            }
            (Some(KeyAlgorithm::ES256), AlgorithmParameters::EllipticCurve(p))
                if p.curve == EllipticCurve::P256 =>
            {
                SigningAlg::ES256
            }
            _ => {
                return Err("unsupported key: expected an Ed25519 EdDSA or P-256 ES256 JWK".into());
            }
        };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            return Err("key is not a signature key".into());
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("invalid JWK: {e}"))?;
        Ok(VerifyKey { alg, key })
    }
}

/// The keys a verifier trusts, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyKey>,
}

impl KeySet {
    /// An empty key set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the key named `kid`.
    pub fn insert(&mut self, kid: impl Into<String>, key: VerifyKey) {
        self.keys.insert(kid.into(), key);
    }

    /// Stops trusting the key named `kid`.
    pub fn remove(&mut self, kid: &str) {
        self.keys.remove(kid);
    }

    /// The key named `kid`, if trusted.
    pub fn get(&self, kid: &str) -> Option<&VerifyKey> {
        self.keys.get(kid)
    }

    /// The `kid`s of the trusted keys, in no particular order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Builds a key set from the JWKs of a JWKS document; every key needs a `kid`.
    pub fn from_jwks(jwks: &jsonwebtoken::jwk::JwkSet) -> Result<Self, String> {
        let mut set = KeySet::new();
        for jwk in &jwks.keys {
            let kid = jwk.common.key_id.clone().ok_or("JWK without kid")?;
            set.insert(kid, VerifyKey::from_jwk(jwk)?);
        }
        Ok(set)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
