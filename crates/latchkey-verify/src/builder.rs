//! [`VerifierBuilder`]: the settings of a [`Verifier`] and the warm-up that
//! `build` performs (discovery, first JWKS fetch, first full feed sync), so
//! that a verifier, once built, never has to wait for the network.

use std::sync::{Arc, Weak};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use secrecy::SecretString;

use crate::discovery;
use crate::fetch::{self, Credentials, FetchError};
use crate::follower::{FeedSource, Follower};
use crate::jwks::KeyCache;
use crate::keys::KeySet;
use crate::token::Rules;
use crate::verifier::Verifier;

/// The largest clock leeway accepted.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// Why a verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A setting is unusable (issuer not an http(s) URL, leeway above 60 s,
    /// staleness not above the poll interval, empty static key set, …).
    #[error("invalid verifier configuration: {0}")]
    Config(String),
    /// The HTTP client could not be built.
    #[error("building the HTTP client failed")]
    HttpClient(#[source] reqwest::Error),
    /// The authorization server metadata could not be read.
    #[error("reading the authorization server metadata at {url} failed")]
    Discovery {
        /// The metadata address tried last.
        url: String,
        /// What went wrong.
        #[source]
        source: FetchError,
    },
    /// The metadata describes another issuer (RFC 8414 §3.3).
    #[error("the metadata is for issuer {found:?}, not {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The `issuer` of the metadata.
        found: String,
    },
    /// The JWKS could not be read, or holds no usable key.
    #[error("reading the JWKS at {url} failed")]
    Jwks {
        /// The JWKS address.
        url: String,
        /// What went wrong.
        #[source]
        source: FetchError,
    },
    /// The revocation feed could not be read to its end (wrong client
    /// credentials show as a 401 here).
    #[error("reading the revocation feed at {url} failed")]
    Revocations {
        /// The feed address.
        url: String,
        /// What went wrong.
        #[source]
        source: FetchError,
    },
}

/// Settings of a [`Verifier`]; see [`Verifier::builder`].
#[derive(Debug)]
pub struct VerifierBuilder {
    issuer: String,
    audience: Option<String>,
    leeway: Duration,
    keys: Option<Result<KeySet, String>>,
    feed: Option<Credentials>,
    poll_interval: Duration,
    max_staleness: Duration,
    fail_open: bool,
    max_lifetime: Duration,
    client: Option<reqwest::Client>,
}

impl VerifierBuilder {
    pub(crate) fn new(issuer: String) -> Self {
        Self {
            issuer,
            audience: None,
            leeway: Duration::from_secs(5),
            keys: None,
            feed: None,
            poll_interval: Duration::from_secs(2),
            max_staleness: Duration::from_secs(30),
            fail_open: false,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            client: None,
        }
    }

    /// The longest lifetime (`exp - iat`) a token may claim; longer ones are
    /// refused with [`TooLongLived`](crate::VerifyError::TooLongLived).
    /// Default 1 h: Latchkey's access tokens live minutes, so only a token
    /// forged with a leaked key would claim more.
    pub fn max_token_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// The exact `aud` tokens must carry. Default: the issuer (Latchkey's
    /// own default audience).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Tolerated clock skew for `exp`, `nbf` and `iat`, in whole seconds.
    /// Default 5 s; at most 60 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Trusts exactly these keys: no discovery, no JWKS fetch, no refresh.
    pub fn static_keys(mut self, keys: KeySet) -> Self {
        self.keys = Some(Ok(keys));
        self
    }

    /// Trusts exactly the keys of this JWKS (every key must be usable): no
    /// discovery, no JWKS fetch, no refresh.
    pub fn static_jwks(mut self, jwks: &JwkSet) -> Self {
        self.keys = Some(KeySet::from_jwks(jwks));
        self
    }

    /// Follows the issuer's revocation feed (`GET {issuer}/v1/revocations`)
    /// with these client credentials (made by `latchkey clients add NAME`),
    /// so that revoked sessions and logged-out users are refused within
    /// seconds.
    pub fn revocation_feed(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        self.feed = Some(Credentials {
            id: client_id.into(),
            secret: SecretString::from(client_secret.into()),
        });
        self
    }

    /// How often the feed is polled. Default 2 s.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How old the last successful poll may be before the feed counts as
    /// stale. Default 30 s; must exceed the poll interval.
    pub fn max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = max;
        self
    }

    /// What to do while the feed is stale. `false` (the default) refuses
    /// every token with
    /// [`RevocationsUnavailable`](crate::VerifyError::RevocationsUnavailable):
    /// a revoked token is never accepted. `true` accepts tokens on their
    /// signature and claims alone (and the revocations already known).
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
        self
    }

    /// The HTTP client for discovery, keys and feed (for proxies, custom
    /// roots, …). Default: a rustls client with a 5 s connect timeout;
    /// every request also has a 10 s overall timeout.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Discovers the JWKS (RFC 8414) unless keys are static, fetches it, and
    /// reads the whole revocation feed if one is followed, then starts the
    /// background refresh tasks (on the current tokio runtime). The verifier
    /// returned is warm: `verify` will not wait for the network.
    pub async fn build(mut self) -> Result<Verifier, SetupError> {
        let rules = self.validate()?;
        let keys = Arc::new(self.load_keys().await?);
        let mut tasks = Vec::new();
        let mut feed = None;
        if let Some(credentials) = self.feed.take() {
            let source = FeedSource {
                url: discovery::under_issuer(&self.issuer, "/v1/revocations")?,
                client: client(&mut self.client)?,
                credentials,
                leeway: rules.leeway,
            };
            let url = source.url.to_string();
            let mut follower = Follower::new(source, &keys, self.max_staleness, self.fail_open);
            follower
                .poll()
                .await
                .map_err(|source| SetupError::Revocations { url, source })?;
            feed = Some(follower.state());
            tasks.push(tokio::spawn(follower.run(self.poll_interval)).abort_handle());
        }
        if keys.is_remote() {
            tasks.push(tokio::spawn(refresh_keys(Arc::downgrade(&keys))).abort_handle());
        }
        let max_lifetime = i64::try_from(self.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        Ok(Verifier::from_parts(rules, max_lifetime, keys, feed, tasks))
    }

    async fn load_keys(&mut self) -> Result<KeyCache, SetupError> {
        match self.keys.take() {
            Some(Ok(keys)) if keys.is_empty() => {
                Err(SetupError::Config("the static key set is empty".into()))
            }
            Some(Ok(keys)) => Ok(KeyCache::fixed(keys)),
            Some(Err(e)) => Err(SetupError::Config(format!("static JWKS: {e}"))),
            None => {
                let client = client(&mut self.client)?;
                let url = discovery::jwks_uri(&client, &self.issuer).await?;
                KeyCache::remote(client, url.clone())
                    .await
                    .map_err(|source| SetupError::Jwks {
                        url: url.to_string(),
                        source,
                    })
            }
        }
    }

    fn validate(&self) -> Result<Rules, SetupError> {
        discovery::issuer_url(&self.issuer)?;
        if self.leeway > MAX_LEEWAY {
            return Err(SetupError::Config("the leeway may be at most 60 s".into()));
        }
        if self.feed.is_some() {
            if self.poll_interval < Duration::from_millis(10) {
                return Err(SetupError::Config(
                    "the poll interval must be at least 10 ms".into(),
                ));
            }
            if self.max_staleness <= self.poll_interval {
                return Err(SetupError::Config(
                    "max_staleness must be longer than the poll interval".into(),
                ));
            }
        }
        let audience = self.audience.clone().unwrap_or_else(|| self.issuer.clone());
        Ok(Rules {
            issuer: self.issuer.clone(),
            audience,
            // At most 60 s, so the cast is exact.
            leeway: self.leeway.as_secs() as i64,
        })
    }
}

/// The configured client, or the default one, made once.
fn client(slot: &mut Option<reqwest::Client>) -> Result<reqwest::Client, SetupError> {
    if let Some(client) = slot {
        return Ok(client.clone());
    }
    let client = fetch::default_client().map_err(SetupError::HttpClient)?;
    *slot = Some(client.clone());
    Ok(client)
}

/// The default of [`VerifierBuilder::max_token_lifetime`].
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// Re-reads the JWKS while the verifier lives, as often as the issuer's
/// `Cache-Control: max-age` says (within bounds; every 5 minutes when
/// it says nothing).
async fn refresh_keys(keys: Weak<KeyCache>) {
    loop {
        let Some(wait) = keys.upgrade().map(|k| k.refresh_interval()) else {
            return;
        };
        tokio::time::sleep(wait).await;
        let Some(keys) = keys.upgrade() else {
            return;
        };
        if let Err(e) = keys.refresh().await {
            tracing::warn!(error = %fetch::chain(&e), "refreshing the JWKS failed; keeping the current keys");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn config_error(builder: VerifierBuilder) -> String {
        match builder.build().await {
            Err(SetupError::Config(reason)) => reason,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unusable_settings_are_refused_before_any_request() {
        let base = || Verifier::builder("https://auth.example.com").static_keys(KeySet::new());
        assert!(config_error(base()).await.contains("empty"));
        let leeway = base().leeway(Duration::from_secs(61));
        assert!(config_error(leeway).await.contains("leeway"));
        let staleness = base()
            .revocation_feed("api", "secret")
            .poll_interval(Duration::from_secs(5))
            .max_staleness(Duration::from_secs(5));
        assert!(config_error(staleness).await.contains("max_staleness"));
        let issuer = Verifier::builder("not a url").static_keys(KeySet::new());
        assert!(config_error(issuer).await.contains("URL"));
    }

    #[test]
    fn the_audience_defaults_to_the_issuer() {
        let rules = Verifier::builder("https://auth.example.com")
            .validate()
            .unwrap();
        assert_eq!(rules.audience, "https://auth.example.com");
        assert_eq!(rules.leeway, 5);
    }
}
