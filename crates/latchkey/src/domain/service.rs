//! The [`Auth`] service: the one object that holds the store, clock, keys and
//! hasher, and the shared steps every flow uses — starting a session, issuing a
//! token pair and authenticating an access token.

use std::sync::Arc;

use latchkey_verify::{Claims, Rules};
use uuid::Uuid;

use super::AuthError;
use super::clock::Clock;
use super::keys::KeyRing;
use super::password::{Hasher, PasswordPolicy};
use super::refresh::{RefreshKey, RefreshToken};
use super::secrets::random;
use crate::store::{Store, ThrottlePolicy, UserRecord};

/// The `client_id` claim of tokens issued to first-party clients.
pub const FIRST_PARTY_CLIENT_ID: &str = "latchkey";

/// Lifetimes and limits the flows obey, in seconds.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: i64,
    pub refresh_idle_ttl: i64,
    pub session_ttl: i64,
    pub reuse_grace: i64,
    pub leeway: i64,
    pub account_failure_limit: u32,
}

/// Who is calling: recorded with sessions and events.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A fresh access token and refresh token for one session.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: RefreshToken,
    pub session_id: String,
}

/// The caller behind a verified, unrevoked access token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: Claims,
    pub user: UserRecord,
}

pub struct Auth {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<KeyRing>,
    pub hasher: Hasher,
    pub policy: PasswordPolicy,
    pub(super) refresh_key: RefreshKey,
    pub config: AuthConfig,
    pub(super) rules: Rules,
}

impl Auth {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        keys: Arc<KeyRing>,
        hasher: Hasher,
        policy: PasswordPolicy,
        refresh_secret: &[u8; 32],
        config: AuthConfig,
    ) -> Self {
        let rules = Rules {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway,
        };
        Self {
            store,
            clock,
            keys,
            hasher,
            policy,
            refresh_key: RefreshKey::new(refresh_secret),
            config,
            rules,
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub(super) fn throttle_policy(&self) -> Option<ThrottlePolicy> {
        (self.config.account_failure_limit > 0).then(|| ThrottlePolicy {
            free_failures: i64::from(self.config.account_failure_limit),
            base_delay: 1,
            max_delay: 15 * 60,
        })
    }

    /// Starts a new session for `user` and returns its first token pair.
    pub(super) async fn start_session(
        &self,
        user: &UserRecord,
        client: &Client,
    ) -> Result<TokenPair, AuthError> {
        let now = self.now();
        let mut salt = vec![0u8; 16];
        random(&mut salt)?;
        let expires_at = now + self.config.session_ttl;
        let session = crate::store::SessionRecord {
            id: Uuid::new_v4().to_string(),
            user_id: user.id.clone(),
            salt,
            generation: 0,
            rotated_at: None,
            created_at: now,
            last_used_at: now,
            idle_expires_at: (now + self.config.refresh_idle_ttl).min(expires_at),
            expires_at,
            revoked_at: None,
            user_agent: client.user_agent.clone(),
            ip: client.ip.clone(),
        };
        self.store.insert_session(&session).await?;
        self.token_pair(&user.id, &session.id, &session.salt, 0)
    }

    /// The token pair of generation `generation` of a session.
    pub(super) fn token_pair(
        &self,
        user_id: &str,
        session_id: &str,
        salt: &[u8],
        generation: i64,
    ) -> Result<TokenPair, AuthError> {
        let now = self.now();
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: user_id.to_string(),
            aud: self.config.audience.clone(),
            exp: now + self.config.access_ttl,
            iat: now,
            nbf: None,
            jti: Uuid::new_v4().to_string(),
            sid: session_id.to_string(),
            client_id: FIRST_PARTY_CLIENT_ID.to_string(),
        };
        Ok(TokenPair {
            access_token: self.keys.sign(&claims)?,
            expires_in: self.config.access_ttl,
            refresh_token: self.refresh_key.mint(session_id, salt, generation),
            session_id: session_id.to_string(),
        })
    }

    /// Verifies an access token and checks, against the database, that its
    /// session is live and its user enabled: revocation takes effect on the
    /// very next request.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, AuthError> {
        let now = self.now();
        let claims = self
            .keys
            .verify(self.store.as_ref(), token, &self.rules, now)
            .await
            .map_err(|e| AuthError::InvalidToken(verify_message(&e)))?;
        let state = self
            .store
            .access_state(&claims.sub, &claims.sid)
            .await?
            .ok_or(AuthError::InvalidToken("the session has ended"))?;
        if state.session_revoked || state.session_expires_at <= now {
            return Err(AuthError::InvalidToken("the session has ended"));
        }
        if state.user.disabled || claims.iat < state.user.not_before {
            return Err(AuthError::InvalidToken("the token has been revoked"));
        }
        Ok(Authenticated {
            claims,
            user: state.user,
        })
    }
}

fn verify_message(e: &latchkey_verify::VerifyError) -> &'static str {
    use latchkey_verify::VerifyError as V;
    match e {
        V::Expired => "the access token has expired",
        V::Malformed(_) | V::Header(_) | V::UnknownKey | V::BadSignature | V::Claims => {
            "the access token is invalid"
        }
        V::Issuer | V::Audience | V::NotYetValid => "the access token is not valid here",
        // Produced only by verifiers that follow the revocation feed.
        V::Revoked | V::RevocationsUnavailable => "the access token has been revoked",
    }
}
