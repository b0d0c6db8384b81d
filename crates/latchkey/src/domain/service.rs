//! The [`Auth`] service: the one object that holds the store, clock, keys and
//! hasher, and the shared steps every flow uses — starting a session, issuing a
//! token pair and authenticating an access token.

use std::sync::Arc;

use latchkey_verify::{Claims, Rules};
use uuid::Uuid;

use super::AuthError;
use super::clock::Clock;
use super::devices::DeviceKey;
use super::keys::KeyRing;
use super::mail::Mailer;
use super::password::{Hasher, PasswordPolicy};
use super::refresh::{RefreshKey, RefreshToken};
use super::secrets::{MasterKey, random};
use super::webhooks::{HookWaker, WebhookPolicy};
use crate::store::{AccessState, Outgoing, SessionRecord, Store, UserRecord};

/// Why a session was not started for credentials that verified.
const CREDENTIALS_CHANGED: &str =
    "the account's credentials changed while signing in; sign in again";

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
    /// Seconds within which a sign-in or re-authentication counts as recent.
    pub reauth_max_age: i64,
    pub leeway: i64,
    pub account_failure_limit: u32,
    pub account_daily_failure_limit: u32,
}

/// Who is calling: recorded with sessions and events.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The request's `Accept-Language`, for mail to users with no stored locale.
    pub accept_language: Option<String>,
}

/// A fresh access token and refresh token for one session.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: RefreshToken,
    pub session_id: String,
    /// When the session ends at the latest (Unix seconds).
    pub session_expires_at: i64,
    /// The session's CSRF token, for browser (cookie) mode.
    pub csrf_token: String,
    /// On login and registration: the device token to present at the next
    /// login from this device (see [`super::devices`]).
    pub device_token: Option<String>,
}

/// The caller behind a verified, unrevoked access token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: Claims,
    /// The caller's account as stored; the domain's own.
    pub(super) record: UserRecord,
}

impl Authenticated {
    /// The caller's account.
    pub fn user(&self) -> super::User {
        super::User::from(&self.record)
    }
}

/// The domain's one service. Its parts are the domain's own: callers above
/// reach the store, keys and hasher only through its methods.
pub struct Auth {
    pub(super) store: Arc<dyn Store>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) keys: Arc<KeyRing>,
    pub(super) hasher: Hasher,
    pub(super) policy: PasswordPolicy,
    pub(super) refresh_key: RefreshKey,
    pub(super) device_key: DeviceKey,
    csrf_key: aws_lc_rs::hmac::Key,
    pub(super) config: AuthConfig,
    pub(super) rules: Rules,
    pub(super) mail: Mailer,
    /// Seals what the service keeps secret at rest (webhook secrets).
    pub(super) master: MasterKey,
    pub(super) hook_policy: WebhookPolicy,
    pub(super) hooks_wake: HookWaker,
    /// The passkeys' relying party; None when passkeys are off.
    pub(super) webauthn: Option<webauthn_rs::Webauthn>,
}

/// What the service is built from, besides its configuration and the
/// master key its own keys derive from.
pub struct Parts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<KeyRing>,
    pub hasher: Hasher,
    pub policy: PasswordPolicy,
    pub mail: Mailer,
    pub hook_policy: WebhookPolicy,
    /// See [`super::passkeys::relying_party`].
    pub webauthn: Option<webauthn_rs::Webauthn>,
}

impl Auth {
    pub fn new(parts: Parts, master: &MasterKey, config: AuthConfig) -> Self {
        let Parts {
            store,
            clock,
            keys,
            hasher,
            policy,
            mail,
            hook_policy,
            webauthn,
        } = parts;
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
            refresh_key: RefreshKey::new(&master.derive("refresh-token-mac")),
            device_key: DeviceKey::new(&master.derive("device-token")),
            csrf_key: aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                &master.derive("csrf-token"),
            ),
            config,
            rules,
            mail,
            master: master.clone(),
            hook_policy,
            hooks_wake: HookWaker::default(),
            webauthn,
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The CSRF token of a session: an HMAC of its id, so it cannot be
    /// planted (signed double submit) and needs no storage.
    pub fn csrf_token(&self, session_id: &str) -> String {
        use base64::Engine as _;
        let tag = aws_lc_rs::hmac::sign(&self.csrf_key, session_id.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// Whether `presented` is the CSRF token of the session that
    /// `refresh_token` belongs to (compared in constant time).
    pub fn csrf_matches(&self, refresh_token: &str, presented: &str) -> bool {
        let Some(parsed) = super::refresh::parse(refresh_token) else {
            return false;
        };
        let expected = self.csrf_token(&parsed.session_id);
        subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), presented.as_bytes()).into()
    }

    /// Starts a new session for `user` and returns its first token pair —
    /// unless the user's credentials changed (or the account was disabled)
    /// since `user` was read: a login that verified an old password must
    /// never outlive the change. What `news` makes of the session is
    /// written with it.
    pub(super) async fn start_session(
        &self,
        user: &UserRecord,
        amr: &str,
        client: &Client,
        news: impl FnOnce(&SessionRecord) -> Outgoing,
    ) -> Result<TokenPair, AuthError> {
        let now = self.now();
        let mut salt = vec![0u8; 16];
        random(&mut salt)?;
        let expires_at = now + self.config.session_ttl;
        let session = SessionRecord {
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
            auth_time: now,
            amr: amr.to_string(),
        };
        let outgoing = news(&session);
        if !self
            .store
            .insert_session(&session, user.credential_version, &outgoing)
            .await?
        {
            return Err(AuthError::InvalidGrant(CREDENTIALS_CHANGED));
        }
        self.written(&outgoing);
        self.token_pair(&session, 0)
    }

    /// The token pair of generation `generation` of a session.
    pub(super) fn token_pair(
        &self,
        session: &SessionRecord,
        generation: i64,
    ) -> Result<TokenPair, AuthError> {
        let session_id = session.id.as_str();
        Ok(TokenPair {
            access_token: self.access_token(session)?,
            expires_in: self.config.access_ttl,
            refresh_token: self.refresh_key.mint(session_id, &session.salt, generation),
            session_id: session_id.to_string(),
            session_expires_at: session.expires_at,
            csrf_token: self.csrf_token(session_id),
            device_token: None,
        })
    }

    /// A fresh access token of `session`, carrying when and how its user
    /// last proved who they are.
    pub(super) fn access_token(&self, session: &SessionRecord) -> Result<String, AuthError> {
        let now = self.now();
        let session_id = session.id.as_str();
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: session.user_id.clone(),
            aud: self.config.audience.clone(),
            exp: now + self.config.access_ttl,
            iat: now,
            nbf: None,
            jti: Uuid::new_v4().to_string(),
            sid: session_id.to_string(),
            client_id: FIRST_PARTY_CLIENT_ID.to_string(),
            auth_time: Some(session.auth_time.max(session.created_at)),
            amr: Some(session.amr.split_whitespace().map(str::to_string).collect()),
        };
        Ok(self.keys.sign(&claims)?)
    }

    /// Verifies an access token and checks, against the database, that its
    /// session is live and its user enabled: revocation takes effect on the
    /// very next request.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, AuthError> {
        let now = self.now();
        let (claims, kid) = self.verify_access_token(token, now).await?;
        let state = self
            .store
            .access_state(&claims.sub, &claims.sid, &kid)
            .await?;
        self.admit(claims, &kid, state, now)
    }

    /// An access token's claims and the kid of the key that signed it, if
    /// its signature and claims hold (without the database's say).
    pub(super) async fn verify_access_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(Claims, String), AuthError> {
        let claims = self
            .keys
            .verify(self.store.as_ref(), token, &self.rules, now)
            .await
            .map_err(|e| AuthError::InvalidToken(verify_message(&e)))?;
        // Verified above, so the header names the key that signed it.
        let kid = latchkey_verify::token::header_kid(token).unwrap_or_default();
        Ok((claims, kid))
    }

    /// The database's say on a verified access token: its session live, its
    /// user enabled and not revoked since, its key not withdrawn.
    pub(super) fn admit(
        &self,
        claims: Claims,
        kid: &str,
        state: Option<AccessState>,
        now: i64,
    ) -> Result<Authenticated, AuthError> {
        let state = state.ok_or(AuthError::InvalidToken("the session has ended"))?;
        if state.key_withdrawn {
            // Another instance withdrew it: forget its tokens here too, now.
            self.keys.withdraw(kid);
            return Err(AuthError::InvalidToken("the access token is invalid"));
        }
        if state.session_revoked || state.session_expires_at <= now {
            return Err(AuthError::InvalidToken("the session has ended"));
        }
        if state.user.disabled || claims.iat < state.user.not_before {
            return Err(AuthError::InvalidToken("the token has been revoked"));
        }
        Ok(Authenticated {
            claims,
            record: state.user,
        })
    }
}

fn verify_message(e: &latchkey_verify::VerifyError) -> &'static str {
    use latchkey_verify::VerifyError as V;
    match e {
        V::Expired => "the access token has expired",
        V::Malformed(_)
        | V::Header(_)
        | V::UnknownKey
        | V::BadSignature
        | V::Claims
        | V::TooLongLived => "the access token is invalid",
        V::Issuer | V::Audience | V::NotYetValid => "the access token is not valid here",
        // Produced only by verifiers that follow the revocation feed.
        V::Revoked | V::RevocationsUnavailable => "the access token has been revoked",
    }
}
