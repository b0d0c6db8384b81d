//! Step-up: changes that reach beyond the current device (revoking other
//! sessions, logging out everywhere) need a proof of identity younger than
//! `reauth_max_age`. Access tokens carry `auth_time` and `amr` from their
//! session; a re-authentication proves the password again and moves the
//! session's `auth_time` to now without starting a new session; an account
//! with a second factor proves that too. Changes that
//! take the current password themselves (password and email change, account
//! deletion) are their own proof.

use super::events::EventKind;
use super::mfa::{MFA_AMR, Proof};
use super::{Auth, AuthError, Authenticated, Client};

const CODE_NEEDED: &str = "this account has two-step sign-in: send `code` (from the authenticator app) or `recovery_code` with the password";

/// A new access token after a re-authentication.
#[derive(Debug, Clone)]
pub struct Reauthenticated {
    pub access_token: String,
    pub expires_in: i64,
    pub session_id: String,
    pub auth_time: i64,
}

impl Auth {
    /// Refuses unless the caller's token proves a sign-in or
    /// re-authentication within `reauth_max_age`; the refusal says whether
    /// a code is needed besides the password.
    pub async fn require_recent_auth(&self, caller: &Authenticated) -> Result<(), AuthError> {
        let proved = caller.claims.auth_time.unwrap_or(i64::MIN);
        let max_age = self.config.reauth_max_age;
        if self.now().saturating_sub(proved) <= max_age {
            return Ok(());
        }
        let with_code = self.needs_second_factor(&caller.record).await?;
        Err(AuthError::ReauthenticationRequired { max_age, with_code })
    }

    /// For changes that take the current password (password and email
    /// change): that password is a fresh proof for an account without a
    /// second factor; an account with one must have proved it recently too,
    /// or a stolen session and a phished password would be enough.
    pub(super) async fn require_proof_with_password(
        &self,
        caller: &Authenticated,
    ) -> Result<(), AuthError> {
        match self.needs_second_factor(&caller.record).await? {
            true => self.require_recent_auth(caller).await,
            false => Ok(()),
        }
    }

    /// Proves the caller's password again: the session's `auth_time` becomes
    /// now and a fresh access token carries it. Wrong passwords are
    /// throttled per session, as for a password change; an account with a
    /// second factor must present it too (`proof`), on its own throttle.
    pub async fn reauthenticate(
        &self,
        caller: &Authenticated,
        password: &str,
        proof: Option<Proof<'_>>,
        client: &Client,
    ) -> Result<Reauthenticated, AuthError> {
        let ticket = self.hasher.ticket()?;
        if !self
            .current_password_matches(caller, password, client, ticket)
            .await?
        {
            return Err(AuthError::InvalidCredentials);
        }
        let sid = caller.claims.sid.as_str();
        let amr = match (self.needs_second_factor(&caller.record).await?, proof) {
            (false, _) => "pwd",
            (true, None) => return Err(AuthError::InvalidRequest(CODE_NEEDED.into())),
            (true, Some(proof)) => {
                if !self.prove(&caller.record, proof, Some(sid), client).await? {
                    return Err(AuthError::WrongCode);
                }
                MFA_AMR
            }
        };
        let now = self.now();
        if !self.store.set_session_auth(sid, now, amr).await? {
            return Err(AuthError::InvalidToken("the session has ended"));
        }
        let session = self
            .store
            .session(sid)
            .await?
            .ok_or(AuthError::InvalidToken("the session has ended"))?;
        let access_token = self.access_token(&session)?;
        self.audit(
            EventKind::Reauthenticated,
            Some(&caller.record.id),
            Some(sid),
            client,
        )
        .await;
        Ok(Reauthenticated {
            access_token,
            expires_in: self.config.access_ttl,
            session_id: sid.to_string(),
            auth_time: now,
        })
    }
}
