//! Account flows: register, login and password change. Login answers an
//! unknown user, a wrong password and a disabled account with the same error
//! after the same amount of hashing work, so neither the answer nor its timing
//! tells who has an account.

use std::sync::Arc;

use secrecy::SecretString;
use uuid::Uuid;

use super::email::parse_email;
use serde_json::json;

use super::events::EventKind;
use super::mail::{MailKind, Notice, Verification};
use super::mfa::SignIn;
use super::password::legacy::Format;
use super::password::{PasswordError, Ticket, normalize};
use super::throttle::{account_key, device_key, session_key};
use super::{Auth, AuthError, Authenticated, Client, TokenPair, User};
use crate::store::{Outgoing, SessionRecord, StoreError, TokenPurpose, UserRecord};

const LOGIN_FAILED: &str = "invalid email or password";
/// Longest display name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;

impl Auth {
    /// Creates an account, mails the link that verifies its address and,
    /// unless verification is required first, starts its first session.
    /// With verification required, None: the account waits for its link —
    /// and an address that has an account answers the same, its owner being
    /// told by mail instead (see docs/security.md, "User enumeration").
    pub async fn register(
        self: &Arc<Self>,
        email: &str,
        password: &str,
        name: Option<&str>,
        locale: Option<&str>,
        client: &Client,
    ) -> Result<Option<(User, TokenPair)>, AuthError> {
        let Some(user) = self
            .create_account(email, password, name, locale, client)
            .await?
        else {
            return Ok(None);
        };
        if self.verification() == Verification::Required {
            self.audit(EventKind::Register, Some(&user.id), None, client)
                .await;
            return Ok(None);
        }
        let mut pair = self
            .start_session(&user, "pwd", client, |_| Outgoing::default())
            .await?;
        pair.device_token = Some(self.device_key.mint(&user.id)?);
        self.audit(
            EventKind::Register,
            Some(&user.id),
            Some(&pair.session_id),
            client,
        )
        .await;
        Ok(Some((User::from(&user), pair)))
    }

    /// Creates an account and mails the link that verifies its address, not
    /// signed in. None, with verification required, when the address has
    /// an account: its owner is told by mail instead, and the caller must
    /// answer as for a new account.
    pub async fn create_account(
        self: &Arc<Self>,
        email: &str,
        password: &str,
        name: Option<&str>,
        locale: Option<&str>,
        client: &Client,
    ) -> Result<Option<UserRecord>, AuthError> {
        let locale = match locale {
            Some(tag) => Some(clean_locale(tag)?),
            None => client
                .accept_language
                .as_deref()
                .and_then(|h| self.mail.templates().negotiate(h)),
        };
        let required = self.verification() == Verification::Required;
        let user = match self
            .create_user(email, password, name, locale, Some(client))
            .await
        {
            Err(AuthError::EmailTaken) if required => {
                self.tell_owner_of(email, client).await;
                return Ok(None);
            }
            other => other?,
        };
        metrics::counter!("latchkey_registrations_total").increment(1);
        Ok(Some(user))
    }

    /// Validates, hashes and stores a new user (also used by the admin
    /// CLI); with the client who registered, with the verification mail.
    pub(super) async fn create_user(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
        locale: Option<String>,
        registered_by: Option<&Client>,
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
            credential_version: 0,
            locale,
        };
        let mut outgoing = registered_by
            .map(|client| self.welcome(&user, client))
            .unwrap_or_default();
        let by = if registered_by.is_some() {
            "signup"
        } else {
            "admin"
        };
        outgoing.events.push(self.hook_event(
            "user.registered",
            Some(&user.id),
            json!({ "user_id": user.id, "email": user.email, "name": user.name, "by": by }),
        ));
        let inserted = self.store.insert_user(&user, &outgoing).await;
        if inserted.is_ok() {
            self.written(&outgoing);
        }
        match inserted {
            Err(StoreError::Conflict) => Err(AuthError::EmailTaken),
            other => other.map(|()| user).map_err(Into::into),
        }
    }

    /// Checks credentials and starts a session. A `device_token` from an
    /// earlier login of this account puts the attempt on that device's own
    /// throttle instead of the account's.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        device_token: Option<&str>,
        client: &Client,
    ) -> Result<SignIn, AuthError> {
        let email = parse_email(email).map_err(AuthError::InvalidRequest)?;
        let password = normalize(password).map_err(|_| AuthError::InvalidGrant(LOGIN_FAILED))?;
        // Overload is refused before the database and the throttle count it.
        let ticket = self.hasher.ticket()?;
        let user = self.store.user_by_email(&email.normalized).await?;
        let user_id = user.as_ref().map(|u| u.id.as_str());
        let device = user_id
            .zip(device_token)
            .and_then(|(id, token)| self.device_key.check(token, id));
        let key = device
            .as_deref()
            .map_or_else(|| account_key(&email.normalized), device_key);
        let (attempt, ticket) = self.begin_attempt(key, user_id, client, ticket).await?;
        // Unknown and known accounts do the same work — one Argon2id
        // verification and one audit write — so timing tells nothing.
        let check = async {
            match &user {
                Some(u) => Ok(ticket.verify(&password, &u.password_hash).await? && !u.disabled),
                None => ticket.verify_dummy(&password).await,
            }
        };
        let verified = self.judge(attempt, check).await?;
        let Some(user) = user.as_ref().filter(|_| verified) else {
            // For unknown addresses too (user_id null): the same write either
            // way, so the event costs no timing difference between them.
            let data = json!({
                "user_id": user_id,
                "email": email.normalized,
                "ip": client.ip,
                "device": client.user_agent,
                "throttled": false,
                "attempts": 1,
            });
            let news = self.news("user.login_failed", user_id, data);
            self.audit_sending(EventKind::LoginFailed, user_id, None, client, None, &news)
                .await;
            metrics::counter!("latchkey_logins_total", "result" => "failed").increment(1);
            return Err(AuthError::InvalidGrant(LOGIN_FAILED));
        };
        if !user.email_verified && self.verification() == Verification::Required {
            // Only after the password was right, so a guesser learns nothing.
            return Err(AuthError::EmailNotVerified);
        }
        self.rehash_if_needed(user, &password, client).await;
        if self.needs_second_factor(user).await? {
            let challenge = self.challenge(user, device.is_some(), client).await?;
            return Ok(SignIn::SecondFactor(challenge));
        }
        let known = device.and(device_token);
        self.sign_in(user, known.is_some(), known, "pwd", client)
            .await
            .map(SignIn::Done)
    }

    /// Starts the session of a sign-in whose every factor was proved (`amr`
    /// says which). A device seen before keeps its device token when it
    /// sent it, and brings no new-device notice.
    pub(super) async fn sign_in(
        &self,
        user: &UserRecord,
        known_device: bool,
        device_token: Option<&str>,
        amr: &str,
        client: &Client,
    ) -> Result<TokenPair, AuthError> {
        let news = |session: &SessionRecord| {
            let data = json!({
                "user_id": user.id,
                "session_id": session.id,
                "ip": client.ip,
                "device": client.user_agent,
                "new_device": !known_device,
            });
            self.news("user.login", Some(&user.id), data)
        };
        let mut pair = self.start_session(user, amr, client, news).await?;
        pair.device_token = match device_token {
            Some(token) => Some(token.to_string()),
            None => Some(self.device_key.mint(&user.id)?),
        };
        // Signing in proves the password was not forgotten after all.
        if let Err(e) = self
            .store
            .drop_email_tokens(&user.id, TokenPurpose::ResetPassword)
            .await
        {
            tracing::warn!(error = %e, "dropping reset links at sign-in failed");
        }
        if !known_device {
            self.send_notice(
                user,
                client,
                (Notice::NewDevice, MailKind::NewDevice),
                vec![],
            )
            .await;
        }
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

    /// Deletes the caller's own account once its password is confirmed
    /// (wrong passwords are throttled per session, as for a change).
    pub async fn delete_own_account(
        &self,
        caller: &Authenticated,
        current: &str,
        client: &Client,
    ) -> Result<(), AuthError> {
        let ticket = self.hasher.ticket()?;
        if !self
            .current_password_matches(caller, current, client, ticket)
            .await?
        {
            return Err(AuthError::InvalidCredentials);
        }
        let user = &caller.record;
        self.remove_user(user).await?;
        let detail = Some(format!("deleted by its owner; was {}", user.email));
        self.audit_detail(EventKind::UserDeleted, Some(&user.id), None, client, detail)
            .await;
        Ok(())
    }

    /// Whether `current` is the caller's password; wrong ones are throttled
    /// per session, so strangers' guesses at the login never block it.
    pub(super) async fn current_password_matches(
        &self,
        caller: &Authenticated,
        current: &str,
        client: &Client,
        ticket: Ticket,
    ) -> Result<bool, AuthError> {
        let user = &caller.record;
        let current = normalize(current).map_err(|_| AuthError::InvalidCredentials)?;
        let key = session_key(&caller.claims.sid);
        let (attempt, ticket) = self
            .begin_attempt(key, Some(&user.id), client, ticket)
            .await?;
        let check = ticket.verify(&current, &user.password_hash);
        self.judge(attempt, check).await
    }

    /// Stores a fresh hash when the stored one used weaker parameters, only
    /// while the stored hash is still the one just verified: a password
    /// changed meanwhile is never overwritten with the old one. A failure
    /// only delays the upgrade to the next login. Replacing another
    /// system's hash (an imported user's first sign-in) is a security event.
    async fn rehash_if_needed(&self, user: &UserRecord, password: &SecretString, client: &Client) {
        if !self.hasher.needs_rehash(&user.password_hash) {
            return;
        }
        let result = match self.hasher.hash(password).await {
            Ok(hash) => self
                .store
                .replace_password_hash(&user.id, &user.password_hash, &hash, self.now())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(true) => {
                let format = Format::of(&user.password_hash);
                if format != Format::Argon2 {
                    let detail = format!("{} hash replaced by Argon2id", format.as_str());
                    self.audit_detail(
                        EventKind::PasswordUpgraded,
                        Some(&user.id),
                        None,
                        client,
                        Some(detail),
                    )
                    .await;
                }
            }
            Ok(false) => {
                tracing::info!(user_id = %user.id, "password changed during login; not rehashed")
            }
            Err(e) => tracing::warn!(user_id = %user.id, error = %e, "rehashing a password failed"),
        }
    }

    /// Changes the caller's password, ends every session of the user and
    /// returns a pair for a fresh session. Wrong current passwords are
    /// throttled per session, so strangers' guesses at the login never block it.
    pub async fn change_password(
        &self,
        caller: &Authenticated,
        current: &str,
        new: &str,
        client: &Client,
    ) -> Result<TokenPair, AuthError> {
        let user = &caller.record;
        self.require_proof_with_password(caller).await?;
        let ticket = self.hasher.ticket()?;
        let new = self
            .check_new_password(new, &user.email_normalized, user.name.as_deref())
            .await?;
        if !self
            .current_password_matches(caller, current, client, ticket)
            .await?
        {
            self.audit(
                EventKind::PasswordChangeFailed,
                Some(&user.id),
                Some(&caller.claims.sid),
                client,
            )
            .await;
            return Err(AuthError::InvalidCredentials);
        }
        let hash = self.hasher.hash(&new).await?;
        let now = self.now();
        let notice = self.password_news(user, client, "change");
        // Only over the credentials just verified: of two changes racing, one wins.
        let version = self
            .store
            .change_password(&user.id, user.credential_version, &hash, now, &notice)
            .await
            .inspect(|_| self.written(&notice))?
            .ok_or(AuthError::InvalidCredentials)?;
        metrics::counter!("latchkey_revocations_total").increment(1);
        let changed = UserRecord {
            password_hash: hash,
            credential_version: version,
            ..user.clone()
        };
        let pair = self
            .start_session(&changed, &session_amr(caller), client, |_| {
                Outgoing::default()
            })
            .await?;
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
    pub(super) async fn check_new_password(
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
        self.hasher
            .run_check(move || {
                let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                policy.check_new(&raw, &inputs)
            })
            .await
            .map_err(|e| AuthError::Internal(format!("password check failed: {e}")))?
            .map_err(|e: PasswordError| AuthError::WeakPassword(e.to_string()))
    }
}

/// A language tag as given at registration (BCP 47's characters and length).
fn clean_locale(tag: &str) -> Result<String, AuthError> {
    let tag = tag.trim();
    let well_formed = !tag.is_empty()
        && tag.len() <= 35
        && tag.split('-').all(|part| {
            (1..=8).contains(&part.len()) && part.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if !well_formed {
        return Err(AuthError::InvalidRequest(
            "locale must be a language tag such as en, fr or pt-BR".into(),
        ));
    }
    Ok(tag.to_string())
}

pub(super) fn clean_name(name: Option<&str>) -> Result<Option<String>, AuthError> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AuthError::InvalidRequest(format!(
            "name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(super::text::is_hidden) {
        return Err(AuthError::InvalidRequest(
            "name must not contain control, bidirectional or invisible characters".into(),
        ));
    }
    Ok(Some(name.to_string()))
}

/// How the caller's session was proved, for a session that replaces it.
fn session_amr(caller: &Authenticated) -> String {
    match caller.claims.amr.as_deref() {
        Some(amr) if !amr.is_empty() => amr.join(" "),
        _ => "pwd".to_string(),
    }
}
