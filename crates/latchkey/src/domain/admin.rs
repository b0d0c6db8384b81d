//! Operator actions behind the admin CLI: finding, disabling, enabling and
//! deleting users, revoking their sessions and rotating signing keys. Each
//! takes effect for access tokens at once, like the user-facing flows.

use super::events::EventKind;
use super::keys;
use super::secrets::MasterKey;
use super::{Auth, AuthError, Client};
use crate::store::{RevokeReason, SessionRecord, UserRecord};

impl Auth {
    /// A user by id or by email (case-insensitive).
    pub async fn find_user(&self, email_or_id: &str) -> Result<Option<UserRecord>, AuthError> {
        if let Some(user) = self.store.user_by_id(email_or_id).await? {
            return Ok(Some(user));
        }
        match super::email::parse_email(email_or_id) {
            Ok(email) => Ok(self.store.user_by_email(&email.normalized).await?),
            Err(_) => Ok(None),
        }
    }

    async fn require_user(&self, email_or_id: &str) -> Result<UserRecord, AuthError> {
        self.find_user(email_or_id)
            .await?
            .ok_or(AuthError::NotFound)
    }

    /// Disables a user and ends all their sessions.
    pub async fn disable_user(&self, email_or_id: &str) -> Result<UserRecord, AuthError> {
        let user = self.require_user(email_or_id).await?;
        let now = self.now();
        self.store.set_user_disabled(&user.id, true, now).await?;
        // While disabled, every token of the user is refused by the flag
        // itself; the revocations carry the news to other verifiers.
        let revoked = self
            .store
            .revoke_user_sessions(&user.id, None, RevokeReason::UserDisabled, now, Some(now))
            .await?;
        metrics::counter!("latchkey_revocations_total").increment(revoked);
        self.audit(
            EventKind::UserDisabled,
            Some(&user.id),
            None,
            &Client::default(),
        )
        .await;
        Ok(user)
    }

    pub async fn enable_user(&self, email_or_id: &str) -> Result<UserRecord, AuthError> {
        let user = self.require_user(email_or_id).await?;
        self.store
            .set_user_disabled(&user.id, false, self.now())
            .await?;
        self.audit(
            EventKind::UserEnabled,
            Some(&user.id),
            None,
            &Client::default(),
        )
        .await;
        Ok(user)
    }

    /// Deletes a user with their sessions; their tokens stop working at once.
    pub async fn delete_user(&self, email_or_id: &str) -> Result<UserRecord, AuthError> {
        let user = self.require_user(email_or_id).await?;
        self.store.delete_user(&user.id, self.now()).await?;
        metrics::counter!("latchkey_revocations_total").increment(1);
        Ok(user)
    }

    pub async fn user_sessions(
        &self,
        email_or_id: &str,
    ) -> Result<(UserRecord, Vec<SessionRecord>), AuthError> {
        let user = self.require_user(email_or_id).await?;
        let sessions = self.store.live_sessions(&user.id, self.now()).await?;
        Ok((user, sessions))
    }

    /// Revokes one session of a user, or all of them; returns how many ended.
    pub async fn admin_revoke_sessions(
        &self,
        email_or_id: &str,
        session: Option<&str>,
    ) -> Result<u64, AuthError> {
        let user = self.require_user(email_or_id).await?;
        let now = self.now();
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
                        .revoke_session(sid, RevokeReason::Admin, now)
                        .await?,
                )
            }
            None => {
                self.store
                    .revoke_user_sessions(&user.id, None, RevokeReason::Admin, now, Some(now))
                    .await?
            }
        };
        if revoked > 0 {
            metrics::counter!("latchkey_revocations_total").increment(revoked);
            let detail = Some(format!("{revoked} session(s) revoked by an administrator"));
            self.audit_detail(
                EventKind::SessionRevoked,
                Some(&user.id),
                session,
                &Client::default(),
                detail,
            )
            .await;
        }
        Ok(revoked)
    }

    /// Starts signing with a new key; the old ones stay published until the
    /// tokens they signed have expired.
    pub async fn rotate_keys(
        &self,
        master: &MasterKey,
        alg: latchkey_verify::SigningAlg,
    ) -> Result<String, AuthError> {
        let now = self.now();
        let retire_at = now + self.config.access_ttl + self.config.leeway;
        let kid = keys::add_key(self.store.as_ref(), master, alg, now, retire_at).await?;
        self.keys.reload(self.store.as_ref(), now).await?;
        self.audit_detail(
            EventKind::KeyRotated,
            None,
            None,
            &Client::default(),
            Some(kid.clone()),
        )
        .await;
        Ok(kid)
    }
}
