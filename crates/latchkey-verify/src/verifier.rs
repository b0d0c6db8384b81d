//! The [`Verifier`] a resource server keeps: strict offline verification
//! ([`token::verify`](crate::token::verify)) against cached keys, then the
//! revocation feed's verdict. Its background tasks (JWKS refresh, feed
//! polling) belong to it and stop when the last clone is dropped.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;

use crate::builder::VerifierBuilder;
use crate::claims::Claims;
use crate::follower::{FeedState, unix_now};
use crate::jwks::KeyCache;
use crate::token::{Rules, VerifyError};

/// Verifies Latchkey access tokens for a resource server.
///
/// Built (and warmed: keys fetched, revocation feed read) by
/// [`Verifier::builder`]. Cheap to clone: clones share the caches and the
/// background tasks, which stop when the last clone is dropped or on
/// [`shutdown`](Verifier::shutdown).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    rules: Rules,
    /// Longest `exp - iat` accepted, seconds.
    max_lifetime: i64,
    keys: Arc<KeyCache>,
    feed: Option<Arc<FeedState>>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A point-in-time view of a verifier's caches, for health checks and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Number of keys trusted.
    pub keys: usize,
    /// The revocation feed, when the verifier follows one.
    pub feed: Option<FeedStatus>,
}

/// The state of a followed revocation feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedStatus {
    /// Time since the last fully successful poll began.
    pub since_last_sync: Duration,
    /// Whether that is longer than `max_staleness` (a fail-closed verifier
    /// then refuses every token).
    pub stale: bool,
    /// Revoked sessions remembered.
    pub revoked_sessions: usize,
    /// Users with a `not_before` cut-off remembered.
    pub revoked_users: usize,
    /// The cursor the next poll starts after.
    pub cursor: i64,
}

impl Verifier {
    /// Starts configuring a verifier for tokens issued by `issuer` (the exact
    /// `iss` of its tokens, such as `https://auth.example.com`).
    pub fn builder(issuer: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder::new(issuer.into())
    }

    pub(crate) fn from_parts(
        rules: Rules,
        max_lifetime: i64,
        keys: Arc<KeyCache>,
        feed: Option<Arc<FeedState>>,
        tasks: Vec<AbortHandle>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                rules,
                max_lifetime,
                keys,
                feed,
                tasks,
            }),
        }
    }

    /// Verifies an access token (the bare JWT, without `Bearer `) and
    /// returns its claims.
    ///
    /// The signature, header and claims are checked strictly, as by
    /// [`token::verify`](crate::token::verify), against the cached keys at the
    /// current wall-clock time; then, when the revocation feed is followed,
    /// a revoked session or a token issued before its user's `not_before` is
    /// [`Revoked`](VerifyError::Revoked), and while the feed is stale a
    /// fail-closed verifier answers
    /// [`RevocationsUnavailable`](VerifyError::RevocationsUnavailable).
    ///
    /// A token verified before (the last 4,096, by exact text) skips the
    /// signature check; its times and the feed are checked on every call,
    /// and a key leaving the JWKS forgets every remembered token.
    ///
    /// With warm caches this never waits on the network. The one exception
    /// is a `kid` the cache does not know: that triggers one JWKS refetch
    /// (at most one every 10 s, awaited for at most 2 s), after which the
    /// token is verified once more; within those 10 s another unknown `kid`
    /// fails at once with [`UnknownKey`](VerifyError::UnknownKey).
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let inner = &self.inner;
        let claims = inner.keys.verify(token, &inner.rules, unix_now()).await?;
        if claims.exp.saturating_sub(claims.iat) > inner.max_lifetime {
            return Err(VerifyError::TooLongLived);
        }
        if let Some(feed) = &inner.feed {
            feed.check(&claims)?;
        }
        Ok(claims)
    }

    /// Stops the background tasks of this verifier and all its clones.
    /// Verification goes on with the cached keys; a followed feed goes
    /// stale, so once `max_staleness` has passed a fail-closed verifier
    /// refuses every token. Dropping the last clone does the same.
    pub fn shutdown(&self) {
        for task in &self.inner.tasks {
            task.abort();
        }
    }

    /// The expected `iss`.
    pub fn issuer(&self) -> &str {
        &self.inner.rules.issuer
    }

    /// The expected `aud`.
    pub fn audience(&self) -> &str {
        &self.inner.rules.audience
    }

    /// What the caches hold now.
    pub fn status(&self) -> Status {
        Status {
            keys: self.inner.keys.current().len(),
            feed: self.inner.feed.as_ref().map(|feed| {
                let list = feed.snapshot();
                FeedStatus {
                    since_last_sync: feed.since_last_sync(),
                    stale: feed.is_stale(),
                    revoked_sessions: list.sessions(),
                    revoked_users: list.users(),
                    cursor: list.cursor(),
                }
            }),
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.rules.issuer)
            .field("audience", &self.inner.rules.audience)
            .field("leeway", &self.inner.rules.leeway)
            .field("keys", &self.inner.keys.current().len())
            .field("follows_revocations", &self.inner.feed.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shareable<T: Clone + Send + Sync + 'static>() {}
    fn sendable<T: Send>(_: &T) {}

    #[test]
    fn a_verifier_and_its_futures_cross_threads() {
        shareable::<Verifier>();
        let verifier = Verifier::from_parts(
            Rules {
                issuer: "https://auth.example.com".into(),
                audience: "https://auth.example.com".into(),
                leeway: 5,
            },
            3600,
            Arc::new(KeyCache::fixed(crate::KeySet::new())),
            None,
            Vec::new(),
        );
        sendable(&verifier.verify("a.b.c"));
    }
}
