//! Session flows: refresh-token rotation with reuse detection and a grace
//! window, logout, logout-everywhere, listing and revoking sessions.
//!
//! Rotation is a compare-and-set on the session's generation, so concurrent
//! refreshes of one token — on one instance or many — advance the chain once.
//! A loser presenting the immediately previous generation within the grace
//! window receives the same successor the winner got; any other use of an old
//! generation is theft and revokes the session.

use super::events::EventKind;
use serde_json::json;

use super::clock::rfc3339;
use super::mail::{MailKind, Notice};
use super::refresh::{self, Presented};
use super::{Auth, AuthError, Authenticated, Client, Event, Session, TokenPair};
use crate::store::{Outgoing, RevokeReason, SessionRecord};

const BAD_REFRESH: &str = "the refresh token is invalid, expired or revoked";
const REUSED: &str = "the refresh token was already used; the session has been revoked";

impl Auth {
    /// Exchanges a refresh token for a new pair.
    pub async fn refresh(&self, token: &str, client: &Client) -> Result<TokenPair, AuthError> {
        let (presented, mut session, owner_usable) = self
            .authentic_session(token)
            .await?
            .ok_or(AuthError::InvalidGrant(BAD_REFRESH))?;
        if !owner_usable {
            return Err(AuthError::InvalidGrant(BAD_REFRESH));
        }
        let now = self.now();
        let grace = self.config.reuse_grace;
        if classify(presented.generation, &session, now, grace) == Verdict::Rotate {
            let idle_until = (now + self.config.refresh_idle_ttl).min(session.expires_at);
            if self
                .store
                .advance_session(&session.id, presented.generation, now, idle_until)
                .await?
            {
                metrics::counter!("latchkey_refreshes_total").increment(1);
                return self.token_pair(&session, presented.generation + 1);
            }
            // Another refresh of the same token won the race: judge again on fresh state.
            session = self
                .store
                .session(&session.id)
                .await?
                .ok_or(AuthError::InvalidGrant(BAD_REFRESH))?;
        }
        match classify(presented.generation, &session, now, grace) {
            Verdict::Grace => {
                metrics::counter!("latchkey_refreshes_total").increment(1);
                self.token_pair(&session, session.generation)
            }
            Verdict::Reuse => {
                self.end_session_for_reuse(&session, client).await?;
                Err(AuthError::InvalidGrant(REUSED))
            }
            Verdict::Rotate | Verdict::Dead => Err(AuthError::InvalidGrant(BAD_REFRESH)),
        }
    }

    /// The session a refresh token belongs to, only if the token's MAC is
    /// authentic (a malformed or guessed token never touches any session), and
    /// whether its user may still use it.
    async fn authentic_session(
        &self,
        token: &str,
    ) -> Result<Option<(Presented, SessionRecord, bool)>, AuthError> {
        let Some(presented) = refresh::parse(token) else {
            return Ok(None);
        };
        let Some((session, owner_usable)) =
            self.store.session_and_owner(&presented.session_id).await?
        else {
            return Ok(None);
        };
        if !self.refresh_key.check(&presented, &session.salt) {
            return Ok(None);
        }
        Ok(Some((presented, session, owner_usable)))
    }

    async fn end_session_for_reuse(
        &self,
        session: &SessionRecord,
        client: &Client,
    ) -> Result<(), AuthError> {
        let now = self.now();
        // The notice names the session that is ended: its device and
        // address, not those of whoever presented the old token. It is
        // written with the revocation, so it goes out whatever happens next.
        let mut notice = Outgoing::default();
        if let Some(user) = self.store.user_by_id(&session.user_id).await? {
            let ended = Client {
                ip: session.ip.clone(),
                user_agent: session.user_agent.clone(),
                accept_language: client.accept_language.clone(),
            };
            let kind = (Notice::RefreshReuse, MailKind::RefreshReuse);
            notice.events.push(self.hook_event(
                "session.theft_detected",
                Some(&user.id),
                json!({
                    "user_id": user.id,
                    "session_id": session.id,
                    "device": session.user_agent,
                    "ip": session.ip,
                    "session_started_at": rfc3339(session.created_at),
                    "last_refresh_at": session.rotated_at.map(rfc3339),
                    "reused_at": rfc3339(now),
                    "reused_from_ip": client.ip,
                }),
            ));
            notice
                .mails
                .extend(self.notice(&user, &ended, kind, vec![]));
        }
        if self
            .store
            .revoke_session(&session.id, RevokeReason::RefreshReuse, now, &notice)
            .await?
        {
            self.written(&notice);
            metrics::counter!("latchkey_refresh_reuse_detected_total").increment(1);
            metrics::counter!("latchkey_revocations_total").increment(1);
            tracing::warn!(user_id = %session.user_id, session_id = %session.id, "refresh token reuse detected");
            self.audit(
                EventKind::RefreshReuse,
                Some(&session.user_id),
                Some(&session.id),
                client,
            )
            .await;
        }
        Ok(())
    }

    /// Ends the session of a refresh token. Unknown, malformed or already
    /// revoked tokens are accepted silently: logout is idempotent.
    pub async fn logout_refresh(&self, token: &str, client: &Client) -> Result<(), AuthError> {
        if let Some((_, session, _)) = self.authentic_session(token).await? {
            self.end_session(&session.user_id, &session.id, RevokeReason::Logout, client)
                .await?;
        }
        Ok(())
    }

    /// Ends the caller's own session.
    pub async fn logout(&self, caller: &Authenticated, client: &Client) -> Result<(), AuthError> {
        self.end_session(
            &caller.record.id,
            &caller.claims.sid,
            RevokeReason::Logout,
            client,
        )
        .await?;
        Ok(())
    }

    async fn end_session(
        &self,
        user_id: &str,
        sid: &str,
        reason: RevokeReason,
        client: &Client,
    ) -> Result<bool, AuthError> {
        let event = Outgoing {
            ended: Some(self.sessions_ended(user_id, reason)),
            ..Default::default()
        };
        let ended = self
            .store
            .revoke_session(sid, reason, self.now(), &event)
            .await?;
        if ended {
            self.written(&event);
            metrics::counter!("latchkey_revocations_total").increment(1);
            let kind = if reason == RevokeReason::Logout {
                EventKind::Logout
            } else {
                EventKind::SessionRevoked
            };
            self.audit(kind, Some(user_id), Some(sid), client).await;
        }
        Ok(ended)
    }

    /// Ends every session of the caller's user.
    pub async fn logout_all(
        &self,
        caller: &Authenticated,
        client: &Client,
    ) -> Result<(), AuthError> {
        self.require_recent_auth(caller).await?;
        let now = self.now();
        let news = Outgoing {
            ended: Some(self.sessions_ended(&caller.record.id, RevokeReason::LogoutAll)),
            ..Default::default()
        };
        let revoked = self
            .store
            .revoke_user_sessions(
                &caller.record.id,
                None,
                RevokeReason::LogoutAll,
                now,
                Some(now),
                &news,
            )
            .await?;
        self.written(&news);
        metrics::counter!("latchkey_revocations_total").increment(revoked);
        self.audit(
            EventKind::LogoutAll,
            Some(&caller.record.id),
            Some(&caller.claims.sid),
            client,
        )
        .await;
        Ok(())
    }

    /// The caller's live sessions, newest first.
    pub async fn sessions(&self, caller: &Authenticated) -> Result<Vec<Session>, AuthError> {
        let live = self
            .store
            .live_sessions(&caller.record.id, self.now())
            .await?;
        Ok(live.iter().map(Session::from).collect())
    }

    /// Revokes one of the caller's live sessions; anything else is not found.
    pub async fn revoke_own_session(
        &self,
        caller: &Authenticated,
        sid: &str,
        client: &Client,
    ) -> Result<(), AuthError> {
        if sid != caller.claims.sid {
            self.require_recent_auth(caller).await?;
        }
        let session = self
            .store
            .session(sid)
            .await?
            .filter(|s| s.user_id == caller.record.id);
        match session {
            Some(s) if is_live(&s, self.now()) => {
                self.end_session(&s.user_id, &s.id, RevokeReason::SessionDeleted, client)
                    .await?;
                Ok(())
            }
            _ => Err(AuthError::NotFound),
        }
    }

    /// RFC 7009 revocation: a refresh token or an access token ends its
    /// session; anything unrecognised is ignored, as the RFC asks.
    pub async fn revoke_token(&self, token: &str, client: &Client) -> Result<(), AuthError> {
        if token.starts_with(refresh::PREFIX) {
            if let Some((_, s, _)) = self.authentic_session(token).await? {
                self.end_session(&s.user_id, &s.id, RevokeReason::Admin, client)
                    .await?;
            }
            return Ok(());
        }
        let now = self.now();
        if let Ok(claims) = self
            .keys
            .verify(self.store.as_ref(), token, &self.rules, now)
            .await
        {
            self.end_session(&claims.sub, &claims.sid, RevokeReason::Admin, client)
                .await?;
        }
        Ok(())
    }

    /// The caller's security events, newest first.
    pub async fn events(
        &self,
        caller: &Authenticated,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Event>, AuthError> {
        let events = self
            .store
            .user_events(&caller.record.id, before, limit)
            .await?;
        Ok(events.into_iter().map(Event::from).collect())
    }
}

/// What presenting generation `presented` of a session's refresh token means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The current token of a live session: rotate it.
    Rotate,
    /// The immediately previous token, within the grace window: hand out the
    /// successor that was already issued.
    Grace,
    /// An older token of a live session: theft assumed.
    Reuse,
    /// The session is revoked or expired, or the generation is impossible.
    Dead,
}

/// Decides what a presented (authentic) refresh token means; pure, so the
/// rules are tested with any clock.
pub fn classify(presented: i64, session: &SessionRecord, now: i64, grace: i64) -> Verdict {
    if !is_live(session, now) {
        return Verdict::Dead;
    }
    let current = session.generation;
    let in_grace = grace > 0 && session.rotated_at.is_some_and(|at| now - at <= grace);
    if presented == current {
        Verdict::Rotate
    } else if presented + 1 == current && in_grace {
        Verdict::Grace
    } else if presented < current {
        Verdict::Reuse
    } else {
        Verdict::Dead
    }
}

fn is_live(s: &SessionRecord, now: i64) -> bool {
    s.revoked_at.is_none() && s.expires_at > now && s.idle_expires_at > now
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::{Clock, ManualClock};

    const GRACE: i64 = 10;

    fn session(clock: &ManualClock, generation: i64) -> SessionRecord {
        let now = clock.now();
        SessionRecord {
            id: "s".into(),
            user_id: "u".into(),
            salt: vec![0; 16],
            generation,
            rotated_at: (generation > 0).then_some(now),
            created_at: now,
            last_used_at: now,
            idle_expires_at: now + 100,
            expires_at: now + 1000,
            revoked_at: None,
            user_agent: None,
            ip: None,
            auth_time: now,
            amr: "pwd".into(),
        }
    }

    #[test]
    fn the_current_token_rotates() {
        let clock = ManualClock::new(1_000);
        assert_eq!(
            classify(0, &session(&clock, 0), clock.now(), GRACE),
            Verdict::Rotate
        );
    }

    #[test]
    fn the_previous_token_gets_the_same_successor_only_within_the_grace_window() {
        let clock = ManualClock::new(1_000);
        let s = session(&clock, 3);
        clock.advance(GRACE);
        assert_eq!(classify(2, &s, clock.now(), GRACE), Verdict::Grace);
        clock.advance(1);
        assert_eq!(classify(2, &s, clock.now(), GRACE), Verdict::Reuse);
    }

    #[test]
    fn older_generations_are_reuse_even_within_the_window() {
        let clock = ManualClock::new(1_000);
        assert_eq!(
            classify(1, &session(&clock, 3), clock.now(), GRACE),
            Verdict::Reuse
        );
    }

    #[test]
    fn a_zero_grace_window_makes_every_second_use_reuse() {
        let clock = ManualClock::new(1_000);
        assert_eq!(
            classify(2, &session(&clock, 3), clock.now(), 0),
            Verdict::Reuse
        );
    }

    #[test]
    fn idle_absolute_and_revoked_sessions_are_dead() {
        let clock = ManualClock::new(1_000);
        let s = session(&clock, 0);
        clock.advance(100);
        assert_eq!(
            classify(0, &s, clock.now(), GRACE),
            Verdict::Dead,
            "idle expiry"
        );
        let mut long_idle = s.clone();
        long_idle.idle_expires_at = long_idle.expires_at + 50;
        clock.advance(900);
        assert_eq!(
            classify(0, &long_idle, clock.now(), GRACE),
            Verdict::Dead,
            "absolute expiry"
        );
        let mut revoked = session(&ManualClock::new(1_000), 0);
        revoked.revoked_at = Some(1_000);
        assert_eq!(classify(0, &revoked, 1_000, GRACE), Verdict::Dead);
    }

    #[test]
    fn future_generations_are_never_accepted() {
        let clock = ManualClock::new(1_000);
        assert_eq!(
            classify(5, &session(&clock, 3), clock.now(), GRACE),
            Verdict::Dead
        );
    }
}
