//! The key cache: the trusted [`KeySet`], replaced whole (never edited in
//! place) by the periodic refresh and by the refetch an unknown `kid`
//! triggers. A failed fetch keeps the keys already trusted. Readers take the
//! lock only to clone an `Arc`; no lock is ever held across an await.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use reqwest::Url;
use serde::Deserialize;

use crate::cache::VerifiedTokens;
use crate::claims::Claims;
use crate::fetch::{self, FetchError};
use crate::keys::{KeySet, VerifyKey};
use crate::token::{self, Rules, VerifyError};

/// How often the background task re-reads the JWKS when the issuer's answer
/// says nothing (no `Cache-Control: max-age`).
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// Bounds on the refresh interval a `max-age` may set: never hammer the
/// issuer, never trust a key set for more than an hour.
pub(crate) const REFRESH_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(3600));

/// An unknown `kid` causes at most one fetch per this interval: a stream of
/// tokens with made-up `kid`s costs the issuer one request per interval.
pub(crate) const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(10);

/// Verified tokens remembered, so a repeated one skips its signature check.
const VERIFIED_TOKENS: usize = 4096;

/// How long a request with an unknown `kid` waits for the refetch.
pub(crate) const UNKNOWN_KID_TIMEOUT: Duration = Duration::from_secs(2);

/// The trusted keys and, unless they were given statically, where they come from.
#[derive(Debug)]
pub(crate) struct KeyCache {
    current: RwLock<Arc<KeySet>>,
    source: Option<Source>,
    verified: VerifiedTokens,
    /// When to re-read the JWKS next, from the last answer's `max-age`, in seconds.
    refresh_secs: AtomicU64,
}

#[derive(Debug)]
struct Source {
    url: Url,
    client: reqwest::Client,
    /// When an unknown `kid` last caused a fetch. The async lock is held
    /// across that fetch, so callers that meet the same new `kid` meanwhile
    /// wait for its result instead of failing or fetching again.
    last_unknown_kid_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl KeyCache {
    /// A cache of keys given by the application: never refreshed.
    pub(crate) fn fixed(keys: KeySet) -> Self {
        Self {
            verified: VerifiedTokens::new(VERIFIED_TOKENS, &keys),
            current: RwLock::new(Arc::new(keys)),
            source: None,
            refresh_secs: AtomicU64::new(REFRESH_INTERVAL.as_secs()),
        }
    }

    /// A cache filled from `url`, which must answer now.
    pub(crate) async fn remote(client: reqwest::Client, url: Url) -> Result<Self, FetchError> {
        let (keys, max_age) = fetch_keys(&client, &url).await?;
        Ok(Self {
            verified: VerifiedTokens::new(VERIFIED_TOKENS, &keys),
            current: RwLock::new(Arc::new(keys)),
            refresh_secs: AtomicU64::new(refresh_after(max_age).as_secs()),
            source: Some(Source {
                url,
                client,
                last_unknown_kid_fetch: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Whether the keys come from the network (and so need refreshing).
    pub(crate) fn is_remote(&self) -> bool {
        self.source.is_some()
    }

    /// The keys trusted right now.
    pub(crate) fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Stops trusting `kid` for good: withdrawn by the issuer (a leaked key),
    /// it is dropped now and never taken back from a later (stale) JWKS.
    pub(crate) fn withdraw(&self, kid: &str) {
        if self.verified.is_withdrawn(kid) {
            return;
        }
        self.verified.withdraw(kid);
        let mut keys = (*self.current()).clone();
        keys.remove(kid);
        self.replace(keys);
        tracing::warn!(
            kid,
            "the issuer withdrew a signing key; its tokens are refused"
        );
    }

    fn replace(&self, mut keys: KeySet) {
        let withdrawn: Vec<String> = keys
            .kids()
            .filter(|kid| self.verified.is_withdrawn(kid))
            .map(str::to_owned)
            .collect();
        for kid in &withdrawn {
            keys.remove(kid);
        }
        self.verified.forget_unless_trusted(&keys);
        let fresh = Arc::new(keys);
        // The old set is dropped after the lock is released.
        let _old = match self.current.write() {
            Ok(mut guard) => std::mem::replace(&mut *guard, fresh),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), fresh),
        };
    }

    /// Re-reads the JWKS; on failure the current keys stay.
    pub(crate) async fn refresh(&self) -> Result<(), FetchError> {
        let Some(source) = &self.source else {
            return Ok(());
        };
        let (keys, max_age) = fetch_keys(&source.client, &source.url).await?;
        self.refresh_secs
            .store(refresh_after(max_age).as_secs(), Ordering::Relaxed);
        self.replace(keys);
        Ok(())
    }

    /// How long to wait before the next periodic refresh.
    pub(crate) fn refresh_interval(&self) -> Duration {
        Duration::from_secs(self.refresh_secs.load(Ordering::Relaxed))
    }

    /// Strict verification with the cached keys. Only a token whose `kid`
    /// is unknown (and whose header is otherwise acceptable) ever waits:
    /// for one rate-limited refetch, then it is verified once more.
    pub(crate) async fn verify(
        &self,
        token: &str,
        rules: &Rules,
        now: i64,
    ) -> Result<Claims, VerifyError> {
        self.verified
            .get_or_verify(token, rules, now, self.verify_in_full(token, rules, now))
            .await
    }

    async fn verify_in_full(
        &self,
        token: &str,
        rules: &Rules,
        now: i64,
    ) -> Result<Claims, VerifyError> {
        let first = token::verify(token, &self.current(), rules, now);
        let (Err(VerifyError::UnknownKey), Some(source)) = (&first, &self.source) else {
            return first;
        };
        let mut last = source.last_unknown_kid_fetch.lock().await;
        // Someone may have fetched the key while this caller waited.
        let again = token::verify(token, &self.current(), rules, now);
        if !matches!(again, Err(VerifyError::UnknownKey))
            || last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_INTERVAL)
        {
            return again;
        }
        *last = Some(Instant::now());
        let fetched =
            tokio::time::timeout(UNKNOWN_KID_TIMEOUT, fetch_keys(&source.client, &source.url))
                .await
                .unwrap_or(Err(FetchError::TimedOut));
        match fetched {
            Ok((keys, _)) => self.replace(keys),
            Err(e) => tracing::warn!(
                url = %source.url,
                error = %fetch::chain(&e),
                "refetching the JWKS for an unknown kid failed; keeping the current keys"
            ),
        }
        drop(last);
        token::verify(token, &self.current(), rules, now)
    }
}

/// The refresh interval a JWKS answer's `max-age` asks for, within bounds.
fn refresh_after(max_age: Option<Duration>) -> Duration {
    max_age
        .unwrap_or(REFRESH_INTERVAL)
        .clamp(REFRESH_BOUNDS.0, REFRESH_BOUNDS.1)
}

/// Fetches and parses a JWKS, with the answer's `max-age`.
async fn fetch_keys(
    client: &reqwest::Client,
    url: &Url,
) -> Result<(KeySet, Option<Duration>), FetchError> {
    let (document, max_age): (JwksDocument, _) =
        fetch::get_json_cached(client, url.clone(), None).await?;
    Ok((parse_jwks(document)?, max_age))
}

/// A JWKS whose keys are kept as raw JSON, so that one key of a kind this
/// crate does not know spoils only itself, not the whole set.
#[derive(Debug, Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

/// The usable signature keys of a JWKS. Keys without a `kid`, of another
/// type or use, or with a `kid` seen before are skipped (with a warning):
/// skipping only ever trusts less. A set with no usable key is an error.
fn parse_jwks(document: JwksDocument) -> Result<KeySet, FetchError> {
    let mut keys = KeySet::new();
    for value in document.keys {
        match usable_key(value) {
            Ok((kid, _)) if keys.get(&kid).is_some() => {
                tracing::warn!(%kid, "skipping a JWK whose kid repeats");
            }
            Ok((kid, key)) => keys.insert(kid, key),
            Err(reason) => tracing::warn!(%reason, "skipping an unusable JWK"),
        }
    }
    if keys.is_empty() {
        return Err(FetchError::Invalid("the JWKS holds no usable key".into()));
    }
    Ok(keys)
}

fn usable_key(value: serde_json::Value) -> Result<(String, VerifyKey), String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("not a JWK: {e}"))?;
    let kid = jwk.common.key_id.clone().ok_or("JWK without kid")?;
    Ok((kid, VerifyKey::from_jwk(&jwk)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(json: &str) -> JwksDocument {
        serde_json::from_str(json).unwrap()
    }

    const ED: &str = r#"{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig","kid":"k1",
        "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

    #[test]
    fn unusable_keys_are_skipped_and_the_rest_trusted() {
        let json = format!(
            r#"{{"keys":[{ED},
              {{"kty":"RSA","alg":"RS256","kid":"rsa","n":"AQAB","e":"AQAB"}},
              {{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"enc","kid":"k2",
                "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}},
              {{"kty":"made-up"}}]}}"#
        );
        let keys = parse_jwks(document(&json)).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys.get("k1").is_some());
    }

    #[test]
    fn a_jwks_without_a_usable_key_is_an_error() {
        assert!(parse_jwks(document(r#"{"keys":[]}"#)).is_err());
        assert!(parse_jwks(document(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#)).is_err());
    }

    #[test]
    fn the_refresh_interval_follows_max_age_within_bounds() {
        assert_eq!(refresh_after(None), REFRESH_INTERVAL);
        assert_eq!(
            refresh_after(Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert_eq!(refresh_after(Some(Duration::ZERO)), REFRESH_BOUNDS.0);
        assert_eq!(
            refresh_after(Some(Duration::from_secs(86_400))),
            REFRESH_BOUNDS.1
        );
        let max_age = crate::fetch::max_age;
        assert_eq!(max_age("public, max-age=60"), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
    }

    #[test]
    fn a_repeated_kid_keeps_the_first_key() {
        let json = format!(r#"{{"keys":[{ED},{ED}]}}"#);
        assert_eq!(parse_jwks(document(&json)).unwrap().len(), 1);
    }
}
