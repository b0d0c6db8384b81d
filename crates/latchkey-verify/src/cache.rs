//! Access tokens already verified, so a token presented again skips its
//! signature check — the bulk of verifying it (tens of microseconds against
//! well under one).
//!
//! Entries are keyed by the token's exact text, so a token that differs in
//! any byte is verified afresh. Only the signature and header checks are
//! remembered: the claims are checked against the clock on every use
//! ([`token::check_claims`](crate::token::check_claims)). Every entry is
//! tagged with the `kid` that verified it: a key [`withdraw`](VerifiedTokens::withdraw)n
//! makes each of its tokens a miss at once (to be verified again, and
//! refused, since the key is gone), and whoever owns the cache must also
//! [`forget_unless_trusted`](VerifiedTokens::forget_unless_trusted) when its
//! key set changes. Revocation checks are not the cache's business; callers
//! make them on every use as before.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use quick_cache::sync::Cache;

use crate::claims::Claims;
use crate::keys::KeySet;
use crate::token::{Rules, VerifyError, check_claims, header_kid};

/// A bounded cache of verified access tokens (see the [module](self) docs).
pub struct VerifiedTokens {
    /// Token text → its claims and the kid that verified it.
    tokens: Cache<String, (Claims, String)>,
    /// The `kid`s trusted when the entries were verified.
    kids: Mutex<BTreeSet<String>>,
    /// Keys withdrawn: their tokens are never answered from here again.
    withdrawn: Mutex<BTreeSet<String>>,
}

impl VerifiedTokens {
    /// Remembers up to `capacity` tokens, verified with `keys`.
    pub fn new(capacity: usize, keys: &KeySet) -> Self {
        Self {
            tokens: Cache::new(capacity.max(1)),
            kids: Mutex::new(keys.kids().map(str::to_owned).collect()),
            withdrawn: Mutex::new(BTreeSet::new()),
        }
    }

    /// The claims of `token`: from the cache when it was verified before
    /// (its claims checked again at `now`), else from `verify_in_full`,
    /// remembered when it succeeds.
    pub async fn get_or_verify<F>(
        &self,
        token: &str,
        rules: &Rules,
        now: i64,
        verify_in_full: F,
    ) -> Result<Claims, VerifyError>
    where
        F: Future<Output = Result<Claims, VerifyError>>,
    {
        if let Some(known) = self.check(token, rules, now) {
            return known;
        }
        let claims = verify_in_full.await?;
        self.remember(token, &claims);
        Ok(claims)
    }

    /// `Some` with the outcome for a token verified before (its claims
    /// checked again at `now`), `None` for a token to verify in full.
    pub fn check(
        &self,
        token: &str,
        rules: &Rules,
        now: i64,
    ) -> Option<Result<Claims, VerifyError>> {
        let (claims, kid) = self.tokens.get(token)?;
        if self.is_withdrawn(&kid) {
            self.tokens.remove(token);
            return None;
        }
        Some(check_claims(&claims, rules, now).map(|()| claims))
    }

    /// Remembers a token that was just verified in full, tagged with the
    /// kid its header names (the key that verified it).
    pub fn remember(&self, token: &str, claims: &Claims) {
        let Some(kid) = header_kid(token) else {
            return;
        };
        if !self.is_withdrawn(&kid) {
            self.tokens.insert(token.to_owned(), (claims.clone(), kid));
        }
    }

    /// Withdraws a key: its tokens are misses from now on, for good.
    pub fn withdraw(&self, kid: &str) {
        self.withdrawn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kid.to_owned());
    }

    /// Whether `kid` was withdrawn.
    pub fn is_withdrawn(&self, kid: &str) -> bool {
        self.withdrawn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(kid)
    }

    /// Forgets every token when a key trusted before is not in `keys` (a key
    /// was withdrawn); keeps them when keys were only added.
    pub fn forget_unless_trusted(&self, keys: &KeySet) {
        let now: BTreeSet<String> = keys.kids().map(str::to_owned).collect();
        let mut kids = self.kids.lock().unwrap_or_else(PoisonError::into_inner);
        if !kids.is_subset(&now) {
            self.tokens.clear();
        }
        *kids = now;
    }
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("len", &self.tokens.len())
            .field("capacity", &self.tokens.capacity())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::keys::VerifyKey;

    fn keys(kids: &[&str]) -> KeySet {
        let mut set = KeySet::new();
        for kid in kids {
            let jwk = serde_json::from_value(serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid,
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            }))
            .unwrap();
            set.insert(*kid, VerifyKey::from_jwk(&jwk).unwrap());
        }
        set
    }

    fn rules() -> Rules {
        Rules {
            issuer: "https://auth.example.com".into(),
            audience: "https://auth.example.com".into(),
            leeway: 5,
        }
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: rules().issuer,
            sub: "u1".into(),
            aud: rules().audience,
            exp,
            iat: 1_000,
            nbf: None,
            jti: "j1".into(),
            sid: "s1".into(),
            client_id: "latchkey".into(),
            auth_time: None,
            amr: None,
        }
    }

    /// A token-shaped text whose header names `kid` (signature not needed here).
    fn token(kid: &str, n: u32) -> String {
        use base64::Engine as _;
        let header = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.p{n}.s", b64.encode(header.to_string()))
    }

    #[test]
    fn a_withdrawn_kid_turns_its_tokens_into_misses_for_good() {
        let cache = VerifiedTokens::new(8, &keys(&["k1", "k2"]));
        let (t1, t2) = (token("k1", 1), token("k2", 2));
        cache.remember(&t1, &claims(1_300));
        cache.remember(&t2, &claims(1_300));
        cache.withdraw("k1");
        assert!(
            cache.check(&t1, &rules(), 1_100).is_none(),
            "hit on a withdrawn kid"
        );
        assert!(
            cache.check(&t2, &rules(), 1_100).is_some(),
            "other keys' tokens stay"
        );
        cache.remember(&t1, &claims(1_300));
        assert!(
            cache.check(&t1, &rules(), 1_100).is_none(),
            "never remembered again"
        );
    }

    #[test]
    fn a_remembered_token_has_its_times_checked_again() {
        let cache = VerifiedTokens::new(8, &keys(&["k1"]));
        let abc = token("k1", 0);
        assert!(
            cache.check(&abc, &rules(), 1_000).is_none(),
            "unknown at first"
        );
        cache.remember(&abc, &claims(1_300));
        assert_eq!(cache.check(&abc, &rules(), 1_100), Some(Ok(claims(1_300))));
        assert_eq!(
            cache.check(&abc, &rules(), 1_306),
            Some(Err(VerifyError::Expired))
        );
        assert_eq!(
            cache.check(&abc, &rules(), 900),
            Some(Err(VerifyError::NotYetValid)),
            "a clock set back is seen too"
        );
        assert!(
            cache.check(&token("k1", 9), &rules(), 1_100).is_none(),
            "exact text only"
        );
    }

    #[test]
    fn withdrawing_a_key_forgets_every_token_and_adding_one_forgets_none() {
        let cache = VerifiedTokens::new(8, &keys(&["k1"]));
        let t1 = token("k1", 1);
        cache.remember(&t1, &claims(1_300));
        cache.forget_unless_trusted(&keys(&["k1", "k2"]));
        assert!(cache.check(&t1, &rules(), 1_100).is_some());
        cache.forget_unless_trusted(&keys(&["k2"]));
        assert!(cache.check(&t1, &rules(), 1_100).is_none());
    }
}
