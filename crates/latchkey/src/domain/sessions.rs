//! Session flows: refresh-token rotation with reuse detection and a grace
//! window, logout, logout-everywhere, listing and revoking sessions.
//!
//! Rotation is a compare-and-set on the session's generation, so concurrent
//! refreshes of one token — on one instance or many — advance the chain once.
//! A loser presenting the immediately previous generation within the grace
//! window receives the same successor the winner got; any other use of an old
//! generation is theft and revokes the session.

use super::events::EventKind;
use super::refresh::{self, Presented};
use super::{Auth, AuthError, Authenticated, Client, TokenPair};
use crate::store::{EventRecord, RevokeReason, SessionRecord};

const BAD_REFRESH: &str = "the refresh token is invalid, expired or revoked";
const REUSED: &str = "the refresh token was already used; the session has been revoked";

impl Auth {
    /// Exchanges a refresh token for a new pair.
    pub async fn refresh(&self, token: &str, client: &Client) -> Result<TokenPair, AuthError> {
        let (presented, mut session) = self.authentic_session(token).await?.ok_or(AuthError::InvalidGrant(BAD_REFRESH))?;
        let user = self.store.user_by_id(&session.user_id).await?;
        if user.as_ref().is_none_or(|u| u.disabled) {
            return Err(AuthError::InvalidGrant(BAD_REFRESH));
        }
        let now = self.now();
        if presented.generation == session.generation {
            let idle_until = (now + self.config.refresh_idle_ttl).min(session.expires_at);
            if self.is_live(&session, now)
                && self.store.advance_session(&session.id, presented.generation, now, idle_until).await?
            {
                metrics::counter!("latchkey_refreshes_total").increment(1);
                return self.token_pair(&session.user_id, &session.id, &session.salt, presented.generation + 1);
            }
            // Lost a race, or the session is not live: decide on fresh state.
            session = self.store.session(&session.id).await?.ok_or(AuthError::InvalidGrant(BAD_REFRESH))?;
        }
        if !self.is_live(&session, now) {
            return Err(AuthError::InvalidGrant(BAD_REFRESH));
        }
        if presented.generation + 1 == session.generation && self.within_grace(&session, now) {
            metrics::counter!("latchkey_refreshes_total").increment(1);
            return self.token_pair(&session.user_id, &session.id, &session.salt, session.generation);
        }
        if presented.generation < session.generation {
            self.end_session_for_reuse(&session, client).await?;
            return Err(AuthError::InvalidGrant(REUSED));
        }
        Err(AuthError::InvalidGrant(BAD_REFRESH))
    }

    /// The session a refresh token belongs to, only if the token's MAC is
    /// authentic: a malformed or guessed token never touches any session.
    async fn authentic_session(&self, token: &str) -> Result<Option<(Presented, SessionRecord)>, AuthError> {
        let Some(presented) = refresh::parse(token) else { return Ok(None) };
        let Some(session) = self.store.session(&presented.session_id).await? else { return Ok(None) };
        if !self.refresh_key.check(&presented, &session.salt) {
            return Ok(None);
        }
        Ok(Some((presented, session)))
    }

    fn is_live(&self, s: &SessionRecord, now: i64) -> bool {
        s.revoked_at.is_none() && s.expires_at > now && s.idle_expires_at > now
    }

    fn within_grace(&self, s: &SessionRecord, now: i64) -> bool {
        self.config.reuse_grace > 0 && s.rotated_at.is_some_and(|at| now - at <= self.config.reuse_grace)
    }

    async fn end_session_for_reuse(&self, session: &SessionRecord, client: &Client) -> Result<(), AuthError> {
        let now = self.now();
        if self.store.revoke_session(&session.id, RevokeReason::RefreshReuse, now).await? {
            metrics::counter!("latchkey_refresh_reuse_detected_total").increment(1);
            metrics::counter!("latchkey_revocations_total").increment(1);
            tracing::warn!(user_id = %session.user_id, session_id = %session.id, "refresh token reuse detected");
            self.audit(EventKind::RefreshReuse, Some(&session.user_id), Some(&session.id), client).await;
        }
        Ok(())
    }

    /// Ends the session of a refresh token. Unknown, malformed or already
    /// revoked tokens are accepted silently: logout is idempotent.
    pub async fn logout_refresh(&self, token: &str, client: &Client) -> Result<(), AuthError> {
        if let Some((_, session)) = self.authentic_session(token).await? {
            self.end_session(&session.user_id, &session.id, RevokeReason::Logout, client).await?;
        }
        Ok(())
    }

    /// Ends the caller's own session.
    pub async fn logout(&self, caller: &Authenticated, client: &Client) -> Result<(), AuthError> {
        self.end_session(&caller.user.id, &caller.claims.sid, RevokeReason::Logout, client).await?;
        Ok(())
    }

    async fn end_session(&self, user_id: &str, sid: &str, reason: RevokeReason, client: &Client) -> Result<bool, AuthError> {
        let ended = self.store.revoke_session(sid, reason, self.now()).await?;
        if ended {
            metrics::counter!("latchkey_revocations_total").increment(1);
            let kind = if reason == RevokeReason::Logout { EventKind::Logout } else { EventKind::SessionRevoked };
            self.audit(kind, Some(user_id), Some(sid), client).await;
        }
        Ok(ended)
    }

    /// Ends every session of the caller's user.
    pub async fn logout_all(&self, caller: &Authenticated, client: &Client) -> Result<(), AuthError> {
        let now = self.now();
        let revoked =
            self.store.revoke_user_sessions(&caller.user.id, None, RevokeReason::LogoutAll, now, Some(now)).await?;
        metrics::counter!("latchkey_revocations_total").increment(revoked);
        self.audit(EventKind::LogoutAll, Some(&caller.user.id), Some(&caller.claims.sid), client).await;
        Ok(())
    }

    /// The caller's live sessions, newest first.
    pub async fn sessions(&self, caller: &Authenticated) -> Result<Vec<SessionRecord>, AuthError> {
        Ok(self.store.live_sessions(&caller.user.id, self.now()).await?)
    }

    /// Revokes one of the caller's live sessions; anything else is not found.
    pub async fn revoke_own_session(&self, caller: &Authenticated, sid: &str, client: &Client) -> Result<(), AuthError> {
        let session = self.store.session(sid).await?.filter(|s| s.user_id == caller.user.id);
        match session {
            Some(s) if self.is_live(&s, self.now()) => {
                self.end_session(&s.user_id, &s.id, RevokeReason::SessionDeleted, client).await?;
                Ok(())
            }
            _ => Err(AuthError::NotFound),
        }
    }

    /// RFC 7009 revocation: a refresh token or an access token ends its
    /// session; anything unrecognised is ignored, as the RFC asks.
    pub async fn revoke_token(&self, token: &str, client: &Client) -> Result<(), AuthError> {
        if token.starts_with(refresh::PREFIX) {
            if let Some((_, s)) = self.authentic_session(token).await? {
                self.end_session(&s.user_id, &s.id, RevokeReason::Admin, client).await?;
            }
            return Ok(());
        }
        let now = self.now();
        if let Ok(claims) = self.keys.verify(self.store.as_ref(), token, &self.rules, now).await {
            self.end_session(&claims.sub, &claims.sid, RevokeReason::Admin, client).await?;
        }
        Ok(())
    }

    /// The caller's security events, newest first.
    pub async fn events(&self, caller: &Authenticated, before: Option<i64>, limit: i64) -> Result<Vec<EventRecord>, AuthError> {
        Ok(self.store.user_events(&caller.user.id, before, limit).await?)
    }
}
