//! The account's life over email: proving an address, resetting a
//! forgotten password, moving to a new address (with a way back for the
//! old one). What they send, notices included, is made in `notices`. See
//! docs/email.md.
//!
//! Every link carries a single-use token of 256 random bits, stored as a
//! digest, that expires, and that a newer request of its kind replaces.
//! What a change mails is written in the change's own transaction (the
//! outbox), so a mail server that is down delays mail and never fails or
//! undoes the change. Asking for a reset or for a verification mail by
//! address answers at once, the same way, whether or not the address has
//! an account: the work happens after the answer (see docs/security.md).

use std::sync::Arc;

use serde_json::json;

use super::email::parse_email;
use super::events::EventKind;
use super::mail::{LinkToken, MailKind, Notice, Verification, digest};
use super::password::normalize;
use super::throttle::session_key;
use super::{Auth, AuthError, Authenticated, Client, User};
use crate::store::{
    EmailTokenRecord, Outgoing, Redeem, RevokeReason, StoreError, TokenPurpose, UserRecord,
};

impl Auth {
    /// Whether registration and sign-in ask for a verified address.
    pub fn verification(&self) -> Verification {
        self.mail.config().verification
    }

    /// The verification mail of a new account, written with the account.
    pub(super) fn welcome(&self, user: &UserRecord, client: &Client) -> Outgoing {
        if self.verification() == Verification::Off {
            return Outgoing::default();
        }
        self.verification_mail(user, client)
            .inspect_err(|e| tracing::error!(error = %e, "composing a verification mail failed"))
            .unwrap_or_default()
    }

    fn verification_mail(&self, user: &UserRecord, client: &Client) -> Result<Outgoing, AuthError> {
        let now = self.now();
        let ttl = self.mail.config().verify_ttl;
        let link = LinkToken::new()?;
        let token = EmailTokenRecord::new(
            link.digest,
            &user.id,
            TokenPurpose::VerifyEmail,
            &user.email,
            now,
            ttl,
        );
        let mail = self.compose_for(
            user,
            &user.email,
            client,
            MailKind::VerifyEmail,
            vec![
                ("link", self.mail.link("/verify-email", &link.token).into()),
                ("valid_hours", (ttl / 3600).max(1).into()),
            ],
        )?;
        Ok(Outgoing {
            tokens: vec![token],
            mails: vec![mail],
            ..Default::default()
        })
    }

    /// Sends the caller a new verification mail.
    pub async fn resend_verification(
        &self,
        caller: &Authenticated,
        client: &Client,
    ) -> Result<(), AuthError> {
        if caller.record.email_verified {
            return Err(AuthError::InvalidRequest(
                "the email address is already verified".into(),
            ));
        }
        if self.verification() == Verification::Off {
            return Err(AuthError::InvalidRequest(
                "email verification is turned off on this server".into(),
            ));
        }
        if !self
            .mail_allowed(TokenPurpose::VerifyEmail.as_str(), &caller.record.id)
            .await?
        {
            return Err(AuthError::Throttled { retry_after: 60 });
        }
        self.post(&self.verification_mail(&caller.record, client)?)
            .await?;
        Ok(())
    }

    /// Asks, by address, for a verification mail: for an account that
    /// cannot sign in before it verifies. Answers at once; see the module.
    pub fn request_verification(
        self: &Arc<Self>,
        email: &str,
        client: &Client,
    ) -> Result<(), AuthError> {
        let email = parse_email(email).map_err(AuthError::InvalidRequest)?;
        let (auth, client) = (self.clone(), client.clone());
        Self::after_answer(
            "a verification mail asked for by address was not sent",
            async move {
                let Some(user) = auth.store.user_by_email(&email.normalized).await? else {
                    return Ok(());
                };
                if user.email_verified
                    || user.disabled
                    || auth.verification() == Verification::Off
                    || !auth
                        .mail_allowed(TokenPurpose::VerifyEmail.as_str(), &user.id)
                        .await?
                {
                    return Ok(());
                }
                auth.post(&auth.verification_mail(&user, &client)?).await?;
                Ok(())
            },
        );
        Ok(())
    }

    /// Marks the address a verification link went to as verified.
    pub async fn confirm_verification(
        &self,
        token: &str,
        client: &Client,
    ) -> Result<User, AuthError> {
        let (record, user) = self.live_token(token, TokenPurpose::VerifyEmail).await?;
        let event = Outgoing {
            events: vec![self.hook_event(
                "user.email_verified",
                Some(&user.id),
                json!({ "user_id": user.id, "email": record.email }),
            )],
            ..Default::default()
        };
        if !self
            .store
            .redeem_email_token(
                &record.digest,
                &user.id,
                Redeem::VerifyEmail,
                self.now(),
                &event,
            )
            .await?
        {
            return Err(AuthError::InvalidLink);
        }
        self.written(&event);
        self.audit(EventKind::EmailVerified, Some(&user.id), None, client)
            .await;
        self.current_user(&user.id).await
    }

    /// Asks for a password reset mail. Answers at once and the same way
    /// for every address; see the module.
    pub fn request_password_reset(
        self: &Arc<Self>,
        email: &str,
        client: &Client,
    ) -> Result<(), AuthError> {
        let email = parse_email(email).map_err(AuthError::InvalidRequest)?;
        let (auth, client) = (self.clone(), client.clone());
        Self::after_answer("a password reset mail was not sent", async move {
            auth.send_password_reset(&email.normalized, &client).await
        });
        Ok(())
    }

    async fn send_password_reset(
        &self,
        email_normalized: &str,
        client: &Client,
    ) -> Result<(), AuthError> {
        let Some(user) = self.store.user_by_email(email_normalized).await? else {
            return Ok(());
        };
        if user.disabled
            || !self
                .mail_allowed(TokenPurpose::ResetPassword.as_str(), &user.id)
                .await?
        {
            return Ok(());
        }
        let now = self.now();
        let ttl = self.mail.config().reset_ttl;
        let link = LinkToken::new()?;
        let mail = self.compose_for(
            &user,
            &user.email,
            client,
            MailKind::PasswordReset,
            vec![
                (
                    "link",
                    self.mail.link("/reset-password", &link.token).into(),
                ),
                ("valid_minutes", (ttl / 60).max(1).into()),
                ("ip", client.ip.clone().into()),
            ],
        )?;
        let token = EmailTokenRecord::new(
            link.digest,
            &user.id,
            TokenPurpose::ResetPassword,
            &user.email,
            now,
            ttl,
        );
        self.post(&Outgoing {
            tokens: vec![token],
            mails: vec![mail],
            ..Default::default()
        })
        .await?;
        self.audit(
            EventKind::PasswordResetRequested,
            Some(&user.id),
            None,
            client,
        )
        .await;
        Ok(())
    }

    /// Sets a new password with a reset link: every session and access
    /// token of the user ends, and the address the link went to counts as
    /// verified.
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        password: &str,
        client: &Client,
    ) -> Result<(), AuthError> {
        let (record, user) = self.live_token(token, TokenPurpose::ResetPassword).await?;
        let ticket = self.hasher.ticket()?;
        let password = self
            .check_new_password(password, &user.email_normalized, user.name.as_deref())
            .await?;
        let hash = ticket.hash(&password).await?;
        let outgoing = self.password_news(&user, client, "reset");
        let redeemed = self
            .store
            .redeem_email_token(
                &record.digest,
                &user.id,
                Redeem::ResetPassword { hash: &hash },
                self.now(),
                &outgoing,
            )
            .await?;
        if !redeemed {
            return Err(AuthError::InvalidLink);
        }
        self.written(&outgoing);
        metrics::counter!("latchkey_revocations_total").increment(1);
        self.audit(EventKind::PasswordReset, Some(&user.id), None, client)
            .await;
        Ok(())
    }

    /// Asks to move the caller's account to `new_email`: a link to the new
    /// address confirms, and the old address hears of it with a way back.
    pub async fn request_email_change(
        &self,
        caller: &Authenticated,
        password: &str,
        new_email: &str,
        client: &Client,
    ) -> Result<(), AuthError> {
        let user = &caller.record;
        self.require_proof_with_password(caller).await?;
        let new = parse_email(new_email).map_err(AuthError::InvalidRequest)?;
        if new.normalized == user.email_normalized {
            return Err(AuthError::InvalidRequest(
                "the new email address is the current one".into(),
            ));
        }
        let ticket = self.hasher.ticket()?;
        let password = normalize(password).map_err(|_| AuthError::InvalidCredentials)?;
        let key = session_key(&caller.claims.sid);
        let (attempt, ticket) = self
            .begin_attempt(key, Some(&user.id), client, ticket)
            .await?;
        let check = ticket.verify(&password, &user.password_hash);
        if !self.judge(attempt, check).await? {
            self.audit(
                EventKind::EmailChangeFailed,
                Some(&user.id),
                Some(&caller.claims.sid),
                client,
            )
            .await;
            return Err(AuthError::InvalidCredentials);
        }
        if self.store.user_by_email(&new.normalized).await?.is_some() {
            return Err(AuthError::EmailTaken);
        }
        let now = self.now();
        let config = self.mail.config();
        let confirm = LinkToken::new()?;
        let cancel = LinkToken::new()?;
        let mut outgoing = Outgoing {
            tokens: vec![
                EmailTokenRecord::new(
                    confirm.digest,
                    &user.id,
                    TokenPurpose::ChangeEmail,
                    &new.display,
                    now,
                    config.email_change_ttl,
                ),
                EmailTokenRecord::new(
                    cancel.digest,
                    &user.id,
                    TokenPurpose::CancelEmailChange,
                    &user.email,
                    now,
                    config.cancel_ttl,
                ),
            ],
            mails: vec![],
            ..Default::default()
        };
        let to_new = self.compose_for(
            user,
            &new.display,
            client,
            MailKind::EmailChange,
            vec![
                (
                    "link",
                    self.mail.link("/confirm-email", &confirm.token).into(),
                ),
                ("new_email", new.display.clone().into()),
                (
                    "valid_minutes",
                    (config.email_change_ttl / 60).max(1).into(),
                ),
            ],
        )?;
        outgoing.mails.push(to_new);
        outgoing.mails.extend(self.notice(
            user,
            client,
            (Notice::EmailChanged, MailKind::EmailChangeRequested),
            vec![
                ("new_email", new.display.clone().into()),
                (
                    "cancel_link",
                    self.mail.link("/cancel-email-change", &cancel.token).into(),
                ),
            ],
        ));
        self.post(&outgoing).await?;
        self.audit_detail(
            EventKind::EmailChangeRequested,
            Some(&user.id),
            Some(&caller.claims.sid),
            client,
            Some(new.display),
        )
        .await;
        Ok(())
    }

    /// Moves the account to the address a change link went to. The old
    /// address gets a fresh way back.
    pub async fn confirm_email_change(
        &self,
        token: &str,
        client: &Client,
    ) -> Result<User, AuthError> {
        let (record, user) = self.live_token(token, TokenPurpose::ChangeEmail).await?;
        let new = parse_email(&record.email).map_err(AuthError::InvalidRequest)?;
        let now = self.now();
        let cancel = LinkToken::new()?;
        let mut outgoing = Outgoing {
            tokens: vec![EmailTokenRecord::new(
                cancel.digest,
                &user.id,
                TokenPurpose::CancelEmailChange,
                &user.email,
                now,
                self.mail.config().cancel_ttl,
            )],
            mails: vec![],
            ..Default::default()
        };
        outgoing.mails.extend(self.notice(
            &user,
            client,
            (Notice::EmailChanged, MailKind::EmailChanged),
            vec![
                ("new_email", new.display.clone().into()),
                (
                    "cancel_link",
                    self.mail.link("/cancel-email-change", &cancel.token).into(),
                ),
                (
                    "valid_hours",
                    (self.mail.config().cancel_ttl / 3600).max(1).into(),
                ),
            ],
        ));
        outgoing.events.push(self.hook_event(
            "user.email_changed",
            Some(&user.id),
            json!({ "user_id": user.id, "old_email": user.email, "new_email": new.display }),
        ));
        let redeem = Redeem::ChangeEmail {
            email_normalized: &new.normalized,
        };
        match self
            .store
            .redeem_email_token(&record.digest, &user.id, redeem, now, &outgoing)
            .await
        {
            Ok(true) => self.written(&outgoing),
            Ok(false) => return Err(AuthError::InvalidLink),
            Err(StoreError::Conflict) => return Err(AuthError::EmailTaken),
            Err(e) => return Err(e.into()),
        }
        self.audit_detail(
            EventKind::EmailChanged,
            Some(&user.id),
            None,
            client,
            Some(format!("{} -> {}", user.email, new.display)),
        )
        .await;
        self.current_user(&user.id).await
    }

    /// "This wasn't me": puts the old address back, drops pending changes
    /// and ends every session of the account.
    pub async fn cancel_email_change(
        &self,
        token: &str,
        client: &Client,
    ) -> Result<User, AuthError> {
        let (record, user) = self
            .live_token(token, TokenPurpose::CancelEmailChange)
            .await?;
        let old = parse_email(&record.email).map_err(AuthError::InvalidRequest)?;
        let redeem = Redeem::CancelEmailChange {
            email_normalized: &old.normalized,
        };
        let mut outgoing = Outgoing {
            ended: Some(self.sessions_ended(&user.id, RevokeReason::EmailChangeCancelled)),
            ..Default::default()
        };
        if user.email_normalized != old.normalized {
            outgoing.events.push(self.hook_event(
                "user.email_changed",
                Some(&user.id),
                json!({
                    "user_id": user.id,
                    "old_email": user.email,
                    "new_email": old.display,
                    "cancelled": true,
                }),
            ));
        }
        match self
            .store
            .redeem_email_token(&record.digest, &user.id, redeem, self.now(), &outgoing)
            .await
        {
            Ok(true) => self.written(&outgoing),
            Ok(false) => return Err(AuthError::InvalidLink),
            Err(StoreError::Conflict) => return Err(AuthError::EmailTaken),
            Err(e) => return Err(e.into()),
        }
        metrics::counter!("latchkey_revocations_total").increment(1);
        self.audit(
            EventKind::EmailChangeCancelled,
            Some(&user.id),
            None,
            client,
        )
        .await;
        self.current_user(&user.id).await
    }

    /// The live token `token` of `purpose` and its user, or `InvalidLink`.
    async fn live_token(
        &self,
        token: &str,
        purpose: TokenPurpose,
    ) -> Result<(EmailTokenRecord, UserRecord), AuthError> {
        if token.is_empty() || token.len() > 128 {
            return Err(AuthError::InvalidLink);
        }
        let record = self
            .store
            .email_token(&digest(token), purpose, self.now())
            .await?
            .ok_or(AuthError::InvalidLink)?;
        let user = self
            .store
            .user_by_id(&record.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(AuthError::InvalidLink)?;
        Ok((record, user))
    }

    async fn current_user(&self, id: &str) -> Result<User, AuthError> {
        let user = self
            .store
            .user_by_id(id)
            .await?
            .ok_or(AuthError::NotFound)?;
        Ok(User::from(&user))
    }
}
