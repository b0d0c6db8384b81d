//! Account flows: register, login and password change. Login answers an
//! unknown user, a wrong password and a disabled account with the same error
//! after the same amount of hashing work, so neither the answer nor its timing
//! tells who has an account.

use secrecy::SecretString;
use uuid::Uuid;

use super::email::parse_email;
use super::events::EventKind;
use super::password::{PasswordError, normalize};
use super::{Auth, AuthError, Authenticated, Client, TokenPair};
use crate::store::{Attempt, RevokeReason, StoreError, UserRecord};

const LOGIN_FAILED: &str = "invalid email or password";
/// Longest display name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;

impl Auth {
    /// Creates an account and its first session.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
        client: &Client,
    ) -> Result<(UserRecord, TokenPair), AuthError> {
        let user = self.create_user(email, password, name).await?;
        let pair = self.start_session(&user, client).await?;
        self.audit(
            EventKind::Register,
            Some(&user.id),
            Some(&pair.session_id),
            client,
        )
        .await;
        metrics::counter!("latchkey_registrations_total").increment(1);
        Ok((user, pair))
    }

    /// Validates, hashes and stores a new user (also used by the admin CLI).
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
    ) -> Result<UserRecord, AuthError> {
        let email = parse_email(email).map_err(AuthError::InvalidRequest)?;
        let name = clean_name(name)?;
        // Overload is refused before the password policy and the database.
        let ticket = self.hasher.ticket()?;
        let password = self
            .check_new_password(password, &email.normalized, name.as_deref())
            .await?;
        let now = self.now();
        let user = UserRecord {
            id: Uuid::now_v7().to_string(),
            email: email.display,
            email_normalized: email.normalized,
            name,
            password_hash: ticket.hash(&password).await?,
            email_verified: false,
            disabled: false,
            not_before: 0,
            created_at: now,
        };
        match self.store.insert_user(&user).await {
            Err(StoreError::Conflict) => Err(AuthError::EmailTaken),
            other => other.map(|()| user).map_err(Into::into),
        }
    }

    /// Checks credentials and starts a session.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: &Client,
    ) -> Result<TokenPair, AuthError> {
        let email = parse_email(email).map_err(AuthError::InvalidRequest)?;
        let password = normalize(password).map_err(|_| AuthError::InvalidGrant(LOGIN_FAILED))?;
        // Overload is refused before the database and the throttle count it.
        let ticket = self.hasher.ticket()?;
        let user = self.store.user_by_email(&email.normalized).await?;
        let user_id = user.as_ref().map(|u| u.id.as_str());
        self.reserve_attempt(&email.normalized, user_id, client)
            .await?;
        // Unknown and known accounts do the same work — one Argon2id
        // verification and one audit write — so timing tells nothing.
        let verified = match &user {
            Some(u) => ticket.verify(&password, &u.password_hash).await? && !u.disabled,
            None => ticket.verify_dummy(&password).await?,
        };
        let Some(user) = user.as_ref().filter(|_| verified) else {
            self.audit(EventKind::LoginFailed, user_id, None, client)
                .await;
            metrics::counter!("latchkey_logins_total", "result" => "failed").increment(1);
            return Err(AuthError::InvalidGrant(LOGIN_FAILED));
        };
        self.store.clear_login_failures(&email.normalized).await?;
        self.rehash_if_needed(user, &password).await;
        let pair = self.start_session(user, client).await?;
        self.audit(
            EventKind::Login,
            Some(&user.id),
            Some(&pair.session_id),
            client,
        )
        .await;
        metrics::counter!("latchkey_logins_total", "result" => "ok").increment(1);
        Ok(pair)
    }

    /// Counts an attempt against the per-account throttle, refusing it while
    /// the account is in a back-off delay.
    async fn reserve_attempt(
        &self,
        key: &str,
        user_id: Option<&str>,
        client: &Client,
    ) -> Result<(), AuthError> {
        let Some(policy) = self.throttle_policy() else {
            return Ok(());
        };
        let now = self.now();
        match self.store.reserve_login_attempt(key, now, policy).await? {
            Attempt::Allowed => Ok(()),
            Attempt::Blocked { until } => {
                self.audit(EventKind::LoginThrottled, user_id, None, client)
                    .await;
                metrics::counter!("latchkey_logins_total", "result" => "throttled").increment(1);
                Err(AuthError::Throttled {
                    retry_after: (until - now).max(1) as u64,
                })
            }
        }
    }

    /// Stores a fresh hash when the stored one used weaker parameters. A
    /// failure only delays the upgrade to the next login.
    async fn rehash_if_needed(&self, user: &UserRecord, password: &SecretString) {
        if !self.hasher.needs_rehash(&user.password_hash) {
            return;
        }
        let result = match self.hasher.hash(password).await {
            Ok(hash) => self
                .store
                .set_password_hash(&user.id, &hash, self.now())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!(user_id = %user.id, error = %e, "rehashing a password failed");
        }
    }

    /// Changes the caller's password, ends every session of the user and
    /// returns a pair for a fresh session.
    pub async fn change_password(
        &self,
        caller: &Authenticated,
        current: &str,
        new: &str,
        client: &Client,
    ) -> Result<TokenPair, AuthError> {
        let user = &caller.user;
        let ticket = self.hasher.ticket()?;
        let new = self
            .check_new_password(new, &user.email_normalized, user.name.as_deref())
            .await?;
        let current = normalize(current).map_err(|_| AuthError::InvalidCredentials)?;
        self.reserve_attempt(&user.email_normalized, Some(&user.id), client)
            .await?;
        if !ticket.verify(&current, &user.password_hash).await? {
            self.audit(
                EventKind::PasswordChangeFailed,
                Some(&user.id),
                Some(&caller.claims.sid),
                client,
            )
            .await;
            return Err(AuthError::InvalidCredentials);
        }
        self.store
            .clear_login_failures(&user.email_normalized)
            .await?;
        let now = self.now();
        self.store
            .set_password_hash(&user.id, &self.hasher.hash(&new).await?, now)
            .await?;
        let revoked = self
            .store
            .revoke_user_sessions(
                &user.id,
                None,
                RevokeReason::PasswordChanged,
                now,
                Some(now),
            )
            .await?;
        metrics::counter!("latchkey_revocations_total").increment(revoked);
        let pair = self.start_session(user, client).await?;
        self.audit(
            EventKind::PasswordChanged,
            Some(&user.id),
            Some(&pair.session_id),
            client,
        )
        .await;
        Ok(pair)
    }
}

impl Auth {
    /// Applies the password policy off the async runtime (judging
    /// guessability can take milliseconds), with the account's own email, its
    /// local part and name counted as guessable words.
    async fn check_new_password(
        &self,
        raw: &str,
        email: &str,
        name: Option<&str>,
    ) -> Result<SecretString, AuthError> {
        let policy = self.policy;
        let raw = raw.to_string();
        let local = email.split('@').next().unwrap_or_default().to_string();
        let inputs: Vec<String> = [
            Some(email.to_string()),
            Some(local),
            name.map(str::to_string),
        ]
        .into_iter()
        .flatten()
        .collect();
        tokio::task::spawn_blocking(move || {
            let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            policy.check_new(&raw, &inputs)
        })
        .await
        .map_err(|e| AuthError::Internal(format!("password check failed: {e}")))?
        .map_err(|e: PasswordError| AuthError::WeakPassword(e.to_string()))
    }
}

fn clean_name(name: Option<&str>) -> Result<Option<String>, AuthError> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AuthError::InvalidRequest(format!(
            "name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(AuthError::InvalidRequest(
            "name must not contain control characters".into(),
        ));
    }
    Ok(Some(name.to_string()))
}
