//! Operator actions behind the admin CLI: finding, disabling, enabling and
//! deleting users, revoking their sessions and rotating signing keys. Each
//! takes effect for access tokens at once, like the user-facing flows.

use std::sync::Arc;

use super::events::EventKind;
use super::keys;
use super::mail::{MailKind, Notice};
use super::{Auth, AuthError, Client, ResourceClient};
use super::{Event, Session, User};
use crate::store::{EndedEvents, EventQuery, MailRecord, Outgoing, RevokeReason, UserRecord};

/// Who performs an operator's action: the shell on the server's machine or
/// an admin client, recorded with every event the action writes.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `cli`, or `client:ID` for an admin client.
    pub id: String,
    /// Where the request came from (nothing for the shell).
    pub from: Client,
}

impl Actor {
    /// The `latchkey` command on the server's machine.
    pub fn cli() -> Self {
        Actor {
            id: "cli".to_string(),
            from: Client::default(),
        }
    }

    /// An admin client calling the admin API from `from`.
    pub fn client(client: &ResourceClient, from: Client) -> Self {
        Actor {
            id: format!("client:{}", client.id),
            from,
        }
    }
}

impl Auth {
    /// Users ordered by creation, `limit` of them after the first `offset`,
    /// whose address starts with `email_prefix` (case-insensitive).
    pub async fn list_users(
        &self,
        limit: i64,
        offset: i64,
        email_prefix: &str,
    ) -> Result<Vec<User>, AuthError> {
        let prefix = email_prefix.trim().to_lowercase();
        let users = self.store.list_users(limit, offset, &prefix).await?;
        Ok(users.iter().map(User::from).collect())
    }

    /// Security events of every user matching `query`, newest first.
    pub async fn search_events(&self, query: &EventQuery) -> Result<Vec<Event>, AuthError> {
        let events = self.store.search_events(query).await?;
        Ok(events.into_iter().map(Event::from).collect())
    }

    /// A user by id or by email (case-insensitive).
    pub async fn find_user(&self, email_or_id: &str) -> Result<Option<User>, AuthError> {
        Ok(self
            .find_record(email_or_id)
            .await?
            .as_ref()
            .map(User::from))
    }

    /// A user by id or by email (case-insensitive), as stored.
    async fn find_record(&self, email_or_id: &str) -> Result<Option<UserRecord>, AuthError> {
        if let Some(user) = self.store.user_by_id(email_or_id).await? {
            return Ok(Some(user));
        }
        match super::email::parse_email(email_or_id) {
            Ok(email) => Ok(self.store.user_by_email(&email.normalized).await?),
            Err(_) => Ok(None),
        }
    }

    async fn require_user(&self, email_or_id: &str) -> Result<UserRecord, AuthError> {
        self.find_record(email_or_id)
            .await?
            .ok_or(AuthError::NotFound)
    }

    /// Disables a user and ends all their sessions; returns the user as now.
    pub async fn disable_user(&self, email_or_id: &str, actor: &Actor) -> Result<User, AuthError> {
        let user = self.require_user(email_or_id).await?;
        let now = self.now();
        // While disabled, every token of the user is refused by the flag
        // itself; the revocations, in the same transaction, carry the news
        // to other verifiers.
        let notice = (Notice::AccountDisabled, MailKind::AccountDisabled);
        let sessions = self.sessions_ended(&user.id, RevokeReason::UserDisabled);
        let user_id = user.id.clone();
        let told = Outgoing {
            mails: self
                .notice(&user, &Client::default(), notice, vec![])
                .into_iter()
                .collect(),
            ended: Some(EndedEvents(Arc::new(move |ids: &[String]| {
                let data = serde_json::json!({ "user_id": user_id, "sessions_ended": ids.len() });
                let mut events = vec![super::webhooks::event(
                    "user.disabled",
                    Some(&user_id),
                    data,
                    now,
                )];
                events.extend((sessions.0)(ids));
                events
            }))),
            ..Default::default()
        };
        if !self
            .store
            .set_user_disabled(&user.id, true, now, &told)
            .await?
        {
            return Err(AuthError::NotFound);
        }
        self.written(&told);
        metrics::counter!("latchkey_revocations_total").increment(1);
        self.audit_admin(actor, EventKind::UserDisabled, Some(&user.id), None, None)
            .await;
        Ok(User {
            disabled: true,
            ..User::from(&user)
        })
    }

    pub async fn enable_user(&self, email_or_id: &str, actor: &Actor) -> Result<User, AuthError> {
        let user = self.require_user(email_or_id).await?;
        self.store
            .set_user_disabled(&user.id, false, self.now(), &Outgoing::default())
            .await?;
        self.audit_admin(actor, EventKind::UserEnabled, Some(&user.id), None, None)
            .await;
        Ok(User {
            disabled: false,
            ..User::from(&user)
        })
    }

    /// Creates a user on an operator's behalf (no session), audited.
    pub async fn add_user(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
        actor: &Actor,
    ) -> Result<User, AuthError> {
        let user = self.create_user(email, password, name, None, None).await?;
        let detail = Some(format!("created by an administrator as {}", user.email));
        self.audit_admin(actor, EventKind::UserCreated, Some(&user.id), None, detail)
            .await;
        Ok(User::from(&user))
    }

    /// Sets a user's password on an operator's behalf, under the password
    /// policy; every session of the user ends, as with a change.
    pub async fn set_password(
        &self,
        email_or_id: &str,
        password: &str,
        actor: &Actor,
    ) -> Result<User, AuthError> {
        let user = self.require_user(email_or_id).await?;
        let ticket = self.hasher.ticket()?;
        let password = self
            .check_new_password(password, &user.email_normalized, user.name.as_deref())
            .await?;
        let hash = ticket.hash(&password).await?;
        let notice = self.password_news(&user, &Client::default(), "admin");
        self.store
            .change_password(
                &user.id,
                user.credential_version,
                &hash,
                self.now(),
                &notice,
            )
            .await
            .inspect(|_| self.written(&notice))?
            .ok_or_else(|| {
                AuthError::Unavailable("the account changed meanwhile; try again".into())
            })?;
        metrics::counter!("latchkey_revocations_total").increment(1);
        let detail = Some("password set by an administrator".to_string());
        self.audit_admin(
            actor,
            EventKind::PasswordChanged,
            Some(&user.id),
            None,
            detail,
        )
        .await;
        Ok(User::from(&user))
    }

    /// Marks a user's address verified on an operator's behalf.
    pub async fn verify_email(&self, email_or_id: &str, actor: &Actor) -> Result<User, AuthError> {
        let user = self.require_user(email_or_id).await?;
        self.store.set_email_verified(&user.id, self.now()).await?;
        let detail = Some("verified by an administrator".to_string());
        self.audit_admin(
            actor,
            EventKind::EmailVerified,
            Some(&user.id),
            None,
            detail,
        )
        .await;
        let user = self.require_user(&user.id).await?;
        Ok(User::from(&user))
    }

    /// Whether a user has two-step sign-in on, and how many passkeys they hold.
    pub async fn second_factors_of(&self, user_id: &str) -> Result<(bool, usize), AuthError> {
        let totp = self.store.factors(user_id).await?.totp_on();
        Ok((totp, self.store.passkeys(user_id).await?.len()))
    }

    /// Removes every second factor of a user (authenticator app, recovery
    /// codes, passkeys) for one who lost them: their password alone signs in
    /// again, and they are told. Returns the user and what was removed.
    pub async fn reset_second_factors(
        &self,
        email_or_id: &str,
        actor: &Actor,
    ) -> Result<(User, bool, usize), AuthError> {
        let user = self.require_user(email_or_id).await?;
        let totp = self.store.remove_totp(&user.id).await?;
        let mut passkeys = 0;
        for p in self.store.passkeys(&user.id).await? {
            if self.store.delete_passkey(&user.id, &p.id).await? {
                passkeys += 1;
            }
        }
        let detail = Some(format!(
            "second factors reset by an administrator: authenticator app {}, {passkeys} passkey(s) removed",
            if totp { "removed" } else { "absent" }
        ));
        let kind = EventKind::MfaDisabled;
        self.audit_admin(actor, kind, Some(&user.id), None, detail)
            .await;
        if totp || passkeys > 0 {
            self.tell_mfa_changed(&user, &actor.from, "disabled").await;
        }
        Ok((User::from(&user), totp, passkeys))
    }

    /// Mail not sent yet: waiting and given up, oldest first.
    pub async fn unsent_mail(&self, limit: i64) -> Result<Vec<MailRecord>, AuthError> {
        Ok(self.store.unsent_mail(limit).await?)
    }

    /// Makes every message given up due again; returns how many.
    pub async fn retry_failed_mail(&self) -> Result<u64, AuthError> {
        Ok(self.store.retry_failed_mail(self.now()).await?)
    }

    /// Deletes a user with their sessions; their tokens stop working at once.
    /// Their events stay, under their id, for operators to read.
    pub async fn delete_user(&self, email_or_id: &str, actor: &Actor) -> Result<User, AuthError> {
        let user = self.require_user(email_or_id).await?;
        self.remove_user(&user).await?;
        let detail = Some(format!("deleted by an administrator; was {}", user.email));
        self.audit_admin(actor, EventKind::UserDeleted, Some(&user.id), None, detail)
            .await;
        Ok(User::from(&user))
    }

    /// Deletes `user` with their sessions; the caller records who did it.
    pub(super) async fn remove_user(&self, user: &UserRecord) -> Result<(), AuthError> {
        let data = serde_json::json!({ "user_id": user.id, "email": user.email });
        let news = self.news("user.deleted", Some(&user.id), data);
        if !self.store.delete_user(&user.id, self.now(), &news).await? {
            return Err(AuthError::NotFound);
        }
        self.written(&news);
        metrics::counter!("latchkey_revocations_total").increment(1);
        Ok(())
    }

    /// The security events of a user, newest first, by email or id; the id
    /// also finds a deleted user's events.
    pub async fn user_events(
        &self,
        email_or_id: &str,
        limit: i64,
    ) -> Result<Vec<Event>, AuthError> {
        let id = match self.find_record(email_or_id).await? {
            Some(user) => user.id,
            None => email_or_id.to_string(),
        };
        let events = self.store.user_events(&id, None, limit).await?;
        Ok(events.into_iter().map(Event::from).collect())
    }

    pub async fn user_sessions(
        &self,
        email_or_id: &str,
    ) -> Result<(User, Vec<Session>), AuthError> {
        let user = self.require_user(email_or_id).await?;
        let sessions = self.store.live_sessions(&user.id, self.now()).await?;
        Ok((
            User::from(&user),
            sessions.iter().map(Session::from).collect(),
        ))
    }

    /// Revokes one session of a user, or all of them; returns how many ended.
    pub async fn admin_revoke_sessions(
        &self,
        email_or_id: &str,
        session: Option<&str>,
        actor: &Actor,
    ) -> Result<u64, AuthError> {
        let user = self.require_user(email_or_id).await?;
        let now = self.now();
        let news = Outgoing {
            ended: Some(self.sessions_ended(&user.id, RevokeReason::Admin)),
            ..Default::default()
        };
        let revoked = match session {
            Some(sid) => {
                let owned = self
                    .store
                    .session(sid)
                    .await?
                    .is_some_and(|s| s.user_id == user.id);
                if !owned {
                    return Err(AuthError::NotFound);
                }
                u64::from(
                    self.store
                        .revoke_session(sid, RevokeReason::Admin, now, &news)
                        .await?,
                )
            }
            None => {
                self.store
                    .revoke_user_sessions(
                        &user.id,
                        None,
                        RevokeReason::Admin,
                        now,
                        Some(now),
                        &news,
                    )
                    .await?
            }
        };
        if revoked > 0 {
            self.written(&news);
            metrics::counter!("latchkey_revocations_total").increment(revoked);
            let detail = Some(format!("{revoked} session(s) revoked by an administrator"));
            self.audit_admin(
                actor,
                EventKind::SessionRevoked,
                Some(&user.id),
                session,
                detail,
            )
            .await;
        }
        Ok(revoked)
    }

    /// Ends every session of every user and refuses every access token
    /// issued so far, for the server and (through the feed) for verifiers;
    /// gives the database a new identity, which acknowledges a restore (see
    /// [`super::restore`]). Returns the sessions ended and the users cut.
    pub async fn revoke_everything(&self, actor: &Actor) -> Result<(u64, u64), AuthError> {
        let database_id = super::secrets::random_b64(16)?;
        let (sessions, users) = self
            .store
            .revoke_everything(self.now(), &database_id)
            .await?;
        metrics::counter!("latchkey_revocations_total").increment(sessions);
        let detail = format!(
            "every session revoked by an administrator: {sessions} session(s) of {users} user(s)"
        );
        self.audit_admin(actor, EventKind::SessionRevoked, None, None, Some(detail))
            .await;
        Ok((sessions, users))
    }

    /// Adds a new signing key. It is published at once and signs after
    /// `KEY_PUBLISH_LEAD` (or at once when `immediately`, for emergencies),
    /// so verifiers with a cached JWKS meet it before any token it signed;
    /// the old keys stay published until their last tokens have expired.
    pub async fn rotate_keys(
        &self,
        alg: latchkey_verify::SigningAlg,
        immediately: bool,
        actor: &Actor,
    ) -> Result<(String, i64), AuthError> {
        let now = self.now();
        let activates_at = if immediately {
            now
        } else {
            now + KEY_PUBLISH_LEAD
        };
        let retire_at = activates_at + self.config.access_ttl + self.config.leeway;
        let news = |kid: &str| {
            let data = serde_json::json!({
                "kid": kid,
                "activates_at": super::clock::rfc3339(activates_at),
            });
            self.news("key.rotated", None, data)
        };
        let (kid, news) = keys::add_key(
            self.store.as_ref(),
            &self.master,
            alg,
            now,
            activates_at,
            retire_at,
            news,
        )
        .await?;
        self.written(&news);
        self.keys.reload(self.store.as_ref(), now).await?;
        let detail = Some(format!("{kid} signs from {activates_at}"));
        self.audit_admin(actor, EventKind::KeyRotated, None, None, detail)
            .await;
        Ok((kid, activates_at))
    }
}

impl Auth {
    /// Withdraws a leaked signing key at once: it leaves the JWKS, every
    /// instance refuses its tokens on their next use, and verifiers following
    /// the revocation feed drop it within their poll interval. A key that
    /// signs now (or was about to) is first replaced by a fresh key that
    /// signs at once, so the server never stops issuing tokens.
    pub async fn withdraw_key(
        &self,
        alg: latchkey_verify::SigningAlg,
        kid: &str,
        actor: &Actor,
    ) -> Result<Option<String>, AuthError> {
        let record = self
            .store
            .signing_keys()
            .await?
            .into_iter()
            .find(|k| k.kid == kid && k.expires_at.is_none_or(|e| e > self.now()))
            .ok_or(AuthError::NotFound)?;
        // A key retiring later (a rotation's lead time) still signs now.
        let replacement = match record.retired_at {
            Some(at) if at <= self.now() => None,
            _ => Some(self.rotate_keys(alg, true, actor).await?.0),
        };
        let now = self.now();
        let data = serde_json::json!({ "kid": kid, "replaced_by": replacement });
        let news = self.news("key.revoked", None, data);
        if !self.store.withdraw_signing_key(kid, now, &news).await? {
            return Err(AuthError::NotFound);
        }
        self.written(&news);
        self.keys.withdraw(kid);
        self.keys.reload(self.store.as_ref(), now).await?;
        metrics::counter!("latchkey_keys_withdrawn_total").increment(1);
        let detail = Some(format!("{kid} withdrawn; its tokens are refused"));
        self.audit_admin(actor, EventKind::KeyRevoked, None, None, detail)
            .await;
        Ok(replacement)
    }
}

/// How long a rotated-in key is published before it signs: longer than the
/// JWKS `max-age` (60 s) plus the 30 s that common verifiers wait between
/// refetches triggered by an unknown `kid`.
pub const KEY_PUBLISH_LEAD: i64 = 120;
