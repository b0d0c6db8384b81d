//! What the account flows send: mail composed in its reader's language,
//! the security notices (each when the operator has it on), the allowance
//! of mails per address, and the writing of it all to the outbox with a
//! word to the delivery workers. See docs/email.md.

use std::future::Future;
use std::sync::Arc;

use minijinja::Value;
use serde_json::json;

use super::email::parse_email;
use super::events::EventKind;
use super::mail::{MailKind, Notice, show_time};
use super::{Auth, AuthError, Client};
use crate::store::{NewMail, Outgoing, RevokeReason, StoreError, ThrottleRecord, UserRecord};

/// Mails of one kind one address may be sent per window.
const MAILS_PER_WINDOW: i64 = 5;
const MAIL_WINDOW: i64 = 3600;
/// The longest user agent a notice quotes.
const MAX_DEVICE_CHARS: usize = 120;

impl Auth {
    /// Writes tokens, mail and events, and tells the delivery workers.
    pub(super) async fn post(&self, outgoing: &Outgoing) -> Result<(), StoreError> {
        self.store.send(outgoing).await?;
        self.written(outgoing);
        Ok(())
    }

    /// What a new password set by `how` (change, reset or admin) sends with
    /// it: the notice, when on, and the webhook event.
    pub(super) fn password_news(&self, user: &UserRecord, client: &Client, how: &str) -> Outgoing {
        let kind = (Notice::PasswordChanged, MailKind::PasswordChanged);
        Outgoing {
            tokens: vec![],
            mails: self
                .notice(user, client, kind, vec![])
                .into_iter()
                .collect(),
            events: vec![self.hook_event(
                "user.password_changed",
                Some(&user.id),
                json!({ "user_id": user.id, "reason": how }),
            )],
            // A new password ends every session.
            ended: Some(self.sessions_ended(
                &user.id,
                match how {
                    "reset" => RevokeReason::PasswordReset,
                    _ => RevokeReason::PasswordChanged,
                },
            )),
        }
    }

    /// Runs `work` after the request is answered (so its timing tells
    /// nothing); a failure is logged as `what`.
    pub(super) fn after_answer<F>(what: &'static str, work: F)
    where
        F: Future<Output = Result<(), AuthError>> + Send + 'static,
    {
        tokio::spawn(async move {
            if let Err(e) = work.await {
                tracing::warn!(error = %e, "{what}");
            }
        });
    }

    /// Someone registered an address that has an account, while
    /// verification is required: the answer looked like a new account's,
    /// and the owner hears of it by mail (at most five an hour). The
    /// attempt is recorded at once, as a new account's registration is, so
    /// both take about the same time; the mail follows.
    pub(super) async fn tell_owner_of(self: &Arc<Self>, email: &str, client: &Client) {
        let Ok(email) = parse_email(email) else {
            return;
        };
        let owner = match self.store.user_by_email(&email.normalized).await {
            Ok(Some(owner)) => owner,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "looking up the owner of a registered address failed");
                return;
            }
        };
        self.audit(
            EventKind::RegistrationAttempted,
            Some(&owner.id),
            None,
            client,
        )
        .await;
        let (auth, client) = (self.clone(), client.clone());
        let failed = "telling an address's owner of a second registration failed";
        Self::after_answer(failed, async move {
            if owner.disabled || !auth.mail_allowed("account_exists", &owner.id).await? {
                return Ok(());
            }
            let values = vec![
                ("time", show_time(auth.now()).into()),
                ("ip", client.ip.clone().into()),
                ("reset_link", auth.mail.reset_page().into()),
            ];
            let kind = MailKind::AccountExists;
            let mail = auth.compose_for(&owner, &owner.email, &client, kind, values)?;
            auth.post(&Outgoing {
                tokens: vec![],
                mails: vec![mail],
                ..Default::default()
            })
            .await
            .map_err(Into::into)
        });
    }

    /// A security notice for `user`, when the operator has it turned on.
    /// A notice that cannot be made is logged, never in the way.
    pub(super) fn notice(
        &self,
        user: &UserRecord,
        client: &Client,
        (notice, kind): (Notice, MailKind),
        mut values: Vec<(&'static str, Value)>,
    ) -> Option<NewMail> {
        if !self.mail.notifies(notice) {
            return None;
        }
        values.push(("time", show_time(self.now()).into()));
        values.push(("ip", client.ip.clone().into()));
        values.push(("device", device(client).into()));
        values.push(("reset_link", self.mail.reset_page().into()));
        self.compose_for(user, &user.email, client, kind, values)
            .inspect_err(|e| tracing::error!(error = %e, notice = notice.as_str(), "composing a notice failed"))
            .ok()
    }

    /// Sends a notice on its own, for changes made elsewhere (a theft
    /// detected during a refresh, a sign-in from a new device).
    pub(super) async fn send_notice(
        &self,
        user: &UserRecord,
        client: &Client,
        notice: (Notice, MailKind),
        values: Vec<(&'static str, Value)>,
    ) {
        let Some(mail) = self.notice(user, client, notice, values) else {
            return;
        };
        let outgoing = Outgoing {
            tokens: vec![],
            mails: vec![mail],
            ..Default::default()
        };
        if let Err(e) = self.post(&outgoing).await {
            tracing::error!(error = %e, notice = notice.0.as_str(), "queueing a notice failed");
        }
    }

    /// Queues a test message to `to` (`latchkey mail test`).
    pub async fn send_test_mail(&self, to: &str) -> Result<(), AuthError> {
        let to = parse_email(to).map_err(AuthError::InvalidRequest)?;
        let mail = self
            .mail
            .compose(
                MailKind::Test,
                &to.display,
                super::mail::templates::DEFAULT_LANGUAGE,
                vec![("time", show_time(self.now()).into())],
                self.now(),
            )
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        self.post(&Outgoing {
            tokens: vec![],
            mails: vec![mail],
            ..Default::default()
        })
        .await?;
        Ok(())
    }

    /// Renders `kind` for `user` in their language, to `to`, and seals it.
    pub(super) fn compose_for(
        &self,
        user: &UserRecord,
        to: &str,
        client: &Client,
        kind: MailKind,
        mut values: Vec<(&'static str, Value)>,
    ) -> Result<NewMail, AuthError> {
        let lang = self
            .mail
            .templates()
            .pick(user.locale.as_deref(), client.accept_language.as_deref());
        let name = user
            .name
            .clone()
            .unwrap_or_else(|| user.email.split('@').next().unwrap_or_default().to_string());
        values.push(("name", name.into()));
        values.push(("email", user.email.clone().into()));
        self.mail
            .compose(kind, to, &lang, values, self.now())
            .map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// Counts a mail of kind `what` to a user; false once the window's
    /// allowance is spent (across instances: the count is in the store).
    pub(super) async fn mail_allowed(&self, what: &str, user_id: &str) -> Result<bool, AuthError> {
        let now = self.now();
        let key = format!("mail:{what}:{user_id}");
        let step = move |row: &ThrottleRecord| {
            let fresh = now - row.day_started_at >= MAIL_WINDOW;
            let (start, count) = if fresh {
                (now, 0)
            } else {
                (row.day_started_at, row.day_failures)
            };
            ThrottleRecord {
                day_started_at: start,
                day_failures: (count + 1).min(MAILS_PER_WINDOW + 1),
                updated_at: now,
                ..row.clone()
            }
        };
        let before = self.store.step_throttle(&key, &step).await?;
        let fresh = now - before.day_started_at >= MAIL_WINDOW;
        Ok(fresh || before.day_failures < MAILS_PER_WINDOW)
    }
}

/// The device a notice names: the user agent, shortened.
fn device(client: &Client) -> Option<String> {
    client
        .user_agent
        .as_deref()
        .map(|ua| ua.chars().take(MAX_DEVICE_CHARS).collect())
}
