//! Signing keys: generated here, stored in the database with the private part
//! sealed under the master key, loaded into memory by every instance. The
//! newest unretired key signs; retired keys stay published (and trusted) until
//! every token they signed has expired.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse,
};
use latchkey_verify::{Claims, KeySet, Rules, SigningAlg, VerifiedTokens, VerifyError, VerifyKey};

use super::secrets::{MasterKey, SecretError, random_b64};
use crate::store::{KeyRecord, Outgoing, Store, StoreError};

/// What can go wrong with the signing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("no active signing key")]
    NoActiveKey,
    #[error("signing key {kid}: {reason}")]
    Unusable { kid: String, reason: String },
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("signing an access token failed")]
    Sign,
    #[error("encoding a key or token as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reloads triggered by unknown `kid`s happen at most this often.
const UNKNOWN_KID_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// Verified access tokens remembered at most (about 2 MiB of tokens).
const VERIFIED_TOKENS: usize = 4096;

/// The current signing key, parsed once when the keys are loaded.
struct Signer {
    kid: String,
    key: SigningKey,
    /// The token's first segment, the same for every token this key signs.
    header: String,
}

enum SigningKey {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
}

struct Loaded {
    signer: Signer,
    trusted: KeySet,
    jwks: Arc<String>,
}

/// The keys of this deployment as currently loaded.
pub struct KeyRing {
    master: MasterKey,
    loaded: RwLock<Arc<Loaded>>,
    last_reload: Mutex<Instant>,
    /// The latest moment the keys were chosen for. Reloads overlap (the
    /// periodic one, the JWKS, an unknown `kid`, a rotation) and take this
    /// lock in turn, so each reads the keys after the one before has put its
    /// own in place; one that read the clock earlier but runs later chooses
    /// the keys for this later moment, never for its own, or a key that has
    /// begun signing would stop.
    chosen_for: tokio::sync::Mutex<i64>,
    /// Access tokens already verified here: the same token presented again
    /// skips the signature check (most of the cost of authenticating a
    /// request). Emptied when a trusted key goes away.
    verified: VerifiedTokens,
}

/// A signing key in a form the CLI can list.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
    pub expires_at: Option<i64>,
}

impl KeyRing {
    /// Loads the keys, creating the first one with `alg` if there is none.
    pub async fn open(
        store: &dyn Store,
        master: MasterKey,
        alg: SigningAlg,
        now: i64,
    ) -> Result<Self, KeyError> {
        if !store
            .signing_keys()
            .await?
            .iter()
            .any(|k| k.retired_at.is_none())
        {
            add_key(store, &master, alg, now, now, now, |_| Outgoing::default()).await?;
        }
        let loaded = build(&master, &store.signing_keys().await?, now)?;
        Ok(Self {
            master,
            verified: VerifiedTokens::new(VERIFIED_TOKENS, &loaded.trusted),
            loaded: RwLock::new(Arc::new(loaded)),
            last_reload: Mutex::new(Instant::now()),
            chosen_for: tokio::sync::Mutex::new(now),
        })
    }

    fn current(&self) -> Arc<Loaded> {
        match self.loaded.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the keys, picking up rotations made elsewhere.
    pub async fn reload(&self, store: &dyn Store, now: i64) -> Result<(), KeyError> {
        let mut chosen_for = self.chosen_for.lock().await;
        *chosen_for = (*chosen_for).max(now);
        let records = store.signing_keys().await?;
        let fresh = Arc::new(build(&self.master, &records, *chosen_for)?);
        self.verified.forget_unless_trusted(&fresh.trusted);
        match self.loaded.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    /// Signs `claims` as an access token (a compact JWS) with the current key.
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let loaded = self.current();
        let signer = &loaded.signer;
        let payload = serde_json::to_vec(claims)?;
        let mut token = String::with_capacity(signer.header.len() + payload.len() * 4 / 3 + 96);
        token.push_str(&signer.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = match &signer.key {
            SigningKey::Ed25519(pair) => pair.sign(token.as_bytes()),
            SigningKey::Es256(pair) => pair
                .sign(&SystemRandom::new(), token.as_bytes())
                .map_err(|_| KeyError::Sign)?,
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// Verifies an access token; an unknown `kid` triggers one (rate-limited)
    /// reload, so a key rotated by another instance is picked up at once.
    pub async fn verify(
        &self,
        store: &dyn Store,
        token: &str,
        rules: &Rules,
        now: i64,
    ) -> Result<Claims, VerifyError> {
        let in_full = async {
            match latchkey_verify::verify(token, &self.current().trusted, rules, now) {
                Err(VerifyError::UnknownKey) if self.may_reload() => {
                    if let Err(e) = self.reload(store, now).await {
                        tracing::warn!(error = %e, "reloading signing keys failed");
                    }
                    latchkey_verify::verify(token, &self.current().trusted, rules, now)
                }
                other => other,
            }
        };
        self.verified
            .get_or_verify(token, rules, now, in_full)
            .await
    }

    /// Reloads the keys unless that was done within the last second.
    pub async fn refresh_now(&self, store: &dyn Store, now: i64) {
        if self.may_reload()
            && let Err(e) = self.reload(store, now).await
        {
            tracing::warn!(error = %e, "reloading signing keys failed");
        }
    }

    fn may_reload(&self) -> bool {
        let Ok(mut last) = self.last_reload.lock() else {
            return false;
        };
        if last.elapsed() < UNKNOWN_KID_RELOAD_INTERVAL {
            return false;
        }
        *last = Instant::now();
        true
    }

    /// Refuses every token `kid` signed from now on, cached ones included;
    /// the next reload drops the key itself.
    pub fn withdraw(&self, kid: &str) {
        self.verified.withdraw(kid);
    }

    /// The JWKS document of the published keys.
    pub fn jwks(&self) -> Arc<String> {
        self.current().jwks.clone()
    }

    /// The `kid` that currently signs.
    pub fn signing_kid(&self) -> String {
        self.current().signer.kid.clone()
    }
}

/// Lists every stored key.
pub async fn list(store: &dyn Store) -> Result<Vec<KeyInfo>, KeyError> {
    Ok(store
        .signing_keys()
        .await?
        .into_iter()
        .map(|k| KeyInfo {
            kid: k.kid,
            alg: k.alg,
            created_at: k.created_at,
            activates_at: k.activates_at,
            retired_at: k.retired_at,
            expires_at: k.expires_at,
        })
        .collect())
}

/// Creates a new signing key, published from `now` and signing from
/// `activates_at`; the keys it replaces sign until then and stay published
/// until `retired_expire_at`. What `news` makes of the new kid is written
/// with the key, and returned.
pub async fn add_key(
    store: &dyn Store,
    master: &MasterKey,
    alg: SigningAlg,
    now: i64,
    activates_at: i64,
    retired_expire_at: i64,
    news: impl FnOnce(&str) -> Outgoing,
) -> Result<(String, Outgoing), KeyError> {
    let kid = random_b64(12)?;
    let outgoing = news(&kid);
    let (pkcs8, jwk) = generate(alg, &kid)?;
    let record = KeyRecord {
        private_key: master.seal(&kid, &pkcs8)?,
        public_jwk: serde_json::to_string(&jwk)?,
        kid: kid.clone(),
        alg: alg.as_str().to_string(),
        created_at: now,
        activates_at,
        retired_at: None,
        expires_at: None,
    };
    store
        .add_signing_key(&record, retired_expire_at, &outgoing)
        .await?;
    Ok((kid, outgoing))
}

fn generate(alg: SigningAlg, kid: &str) -> Result<(Vec<u8>, Jwk), KeyError> {
    let rng = SystemRandom::new();
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let (pkcs8, params) = match alg {
        SigningAlg::EdDSA => {
            let doc = Ed25519KeyPair::generate_pkcs8v1(&rng)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let x = b64(pair.public_key().as_ref());
            let params = OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x,
            };
            (
                doc.as_ref().to_vec(),
                AlgorithmParameters::OctetKeyPair(params),
            )
        }
        SigningAlg::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            // An uncompressed P-256 point: 0x04 ‖ x ‖ y.
            let point = pair.public_key().as_ref();
            let params = EllipticCurveKeyParameters {
                key_type: EllipticCurveKeyType::EC,
                curve: EllipticCurve::P256,
                x: b64(&point[1..33]),
                y: b64(&point[33..65]),
            };
            (
                doc.as_ref().to_vec(),
                AlgorithmParameters::EllipticCurve(params),
            )
        }
    };
    let common = CommonParameters {
        public_key_use: Some(PublicKeyUse::Signature),
        key_algorithm: Some(match alg {
            SigningAlg::EdDSA => KeyAlgorithm::EdDSA,
            SigningAlg::ES256 => KeyAlgorithm::ES256,
        }),
        key_id: Some(kid.to_string()),
        ..Default::default()
    };
    Ok((
        pkcs8,
        Jwk {
            common,
            algorithm: params,
        },
    ))
}

fn build(master: &MasterKey, records: &[KeyRecord], now: i64) -> Result<Loaded, KeyError> {
    let published: Vec<&KeyRecord> = records
        .iter()
        .filter(|k| k.expires_at.is_none_or(|e| e > now))
        .collect();
    // The newest key whose signing period has begun and not ended; a key
    // rotated in is published first and signs only from its activation.
    let signing = |k: &&KeyRecord| k.activates_at <= now && k.retired_at.is_none_or(|r| r > now);
    let current = records
        .iter()
        .filter(signing)
        .max_by_key(|k| (k.activates_at, k.kid.clone()))
        .or_else(|| {
            records
                .iter()
                .filter(|k| k.retired_at.is_none())
                .max_by_key(|k| k.activates_at)
        })
        .ok_or(KeyError::NoActiveKey)?;
    let unusable = |kid: &str| {
        let kid = kid.to_owned();
        move |reason: String| KeyError::Unusable { kid, reason }
    };
    let alg: SigningAlg = current.alg.parse().map_err(unusable(&current.kid))?;
    let pkcs8 = master.open(&current.kid, &current.private_key)?;
    let key = match alg {
        SigningAlg::EdDSA => SigningKey::Ed25519(
            Ed25519KeyPair::from_pkcs8(&pkcs8)
                .map_err(|e| unusable(&current.kid)(e.to_string()))?,
        ),
        SigningAlg::ES256 => SigningKey::Es256(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                .map_err(|e| unusable(&current.kid)(e.to_string()))?,
        ),
    };
    let header = serde_json::json!({
        "alg": alg.as_str(),
        "typ": latchkey_verify::claims::ACCESS_TOKEN_TYP,
        "kid": current.kid,
    });
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
    let mut trusted = KeySet::new();
    let mut jwks = JwkSet { keys: Vec::new() };
    for record in &published {
        let jwk: Jwk = serde_json::from_str(&record.public_jwk)
            .map_err(|e| unusable(&record.kid)(format!("stored JWK is invalid: {e}")))?;
        trusted.insert(
            record.kid.clone(),
            VerifyKey::from_jwk(&jwk).map_err(|e| unusable(&record.kid)(e.to_string()))?,
        );
        jwks.keys.push(jwk);
    }
    Ok(Loaded {
        signer: Signer {
            kid: current.kid.clone(),
            key,
            header,
        },
        trusted,
        jwks: Arc::new(serde_json::to_string(&jwks)?),
    })
}
