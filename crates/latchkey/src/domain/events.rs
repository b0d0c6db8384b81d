//! The audit trail: every security event goes to the events table (visible to
//! its user) and to the `latchkey::audit` log target. Recording never fails the
//! request it describes; a failure to record is itself logged.

use super::{Actor, Auth, Client};
use crate::store::{NewEvent, Outgoing};

/// Kinds of security events, as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Register,
    Login,
    LoginFailed,
    LoginThrottled,
    RefreshReuse,
    Logout,
    LogoutAll,
    PasswordChanged,
    PasswordChangeFailed,
    SessionRevoked,
    UserDisabled,
    UserEnabled,
    UserCreated,
    UserDeleted,
    KeyRotated,
    KeyRevoked,
    EmailVerified,
    PasswordResetRequested,
    PasswordReset,
    EmailChangeRequested,
    EmailChangeFailed,
    EmailChanged,
    EmailChangeCancelled,
    RegistrationAttempted,
    UserImported,
    ClientAdded,
    ClientRemoved,
    WebhookAdded,
    WebhookRemoved,
    WebhookEnabled,
    WebhookDisabled,
    WebhookTested,
    DeliveryReplayed,
    /// The password proved again within a session (step-up).
    Reauthenticated,
    /// A password hash of another system replaced by Argon2id at sign-in.
    PasswordUpgraded,
    MfaEnabled,
    MfaDisabled,
    /// A wrong second-factor code (sign-in, confirmation or step-up).
    MfaFailed,
    RecoveryCodeUsed,
    RecoveryCodesRegenerated,
    PasskeyAdded,
    PasskeyRemoved,
    /// A passkey whose signature counter went back: refused.
    PasskeyCloneSuspected,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Register => "register",
            EventKind::Login => "login",
            EventKind::LoginFailed => "login_failed",
            EventKind::LoginThrottled => "login_throttled",
            EventKind::RefreshReuse => "refresh_reuse",
            EventKind::Logout => "logout",
            EventKind::LogoutAll => "logout_all",
            EventKind::PasswordChanged => "password_changed",
            EventKind::PasswordChangeFailed => "password_change_failed",
            EventKind::SessionRevoked => "session_revoked",
            EventKind::UserDisabled => "user_disabled",
            EventKind::UserEnabled => "user_enabled",
            EventKind::UserCreated => "user_created",
            EventKind::UserDeleted => "user_deleted",
            EventKind::KeyRotated => "key_rotated",
            EventKind::KeyRevoked => "key_revoked",
            EventKind::EmailVerified => "email_verified",
            EventKind::PasswordResetRequested => "password_reset_requested",
            EventKind::PasswordReset => "password_reset",
            EventKind::EmailChangeRequested => "email_change_requested",
            EventKind::EmailChangeFailed => "email_change_failed",
            EventKind::EmailChanged => "email_changed",
            EventKind::EmailChangeCancelled => "email_change_cancelled",
            EventKind::RegistrationAttempted => "registration_attempted",
            EventKind::UserImported => "user_imported",
            EventKind::ClientAdded => "client_added",
            EventKind::ClientRemoved => "client_removed",
            EventKind::WebhookAdded => "webhook_added",
            EventKind::WebhookRemoved => "webhook_removed",
            EventKind::WebhookEnabled => "webhook_enabled",
            EventKind::WebhookDisabled => "webhook_disabled",
            EventKind::WebhookTested => "webhook_tested",
            EventKind::DeliveryReplayed => "delivery_replayed",
            EventKind::Reauthenticated => "reauthenticated",
            EventKind::PasswordUpgraded => "password_upgraded",
            EventKind::MfaEnabled => "mfa_enabled",
            EventKind::MfaDisabled => "mfa_disabled",
            EventKind::MfaFailed => "mfa_failed",
            EventKind::RecoveryCodeUsed => "recovery_code_used",
            EventKind::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            EventKind::PasskeyAdded => "passkey_added",
            EventKind::PasskeyRemoved => "passkey_removed",
            EventKind::PasskeyCloneSuspected => "passkey_clone_suspected",
        }
    }
}

impl Auth {
    /// Records a security event for `user_id` (and `session_id`).
    pub async fn audit(
        &self,
        kind: EventKind,
        user_id: Option<&str>,
        session_id: Option<&str>,
        client: &Client,
    ) {
        self.audit_detail(kind, user_id, session_id, client, None)
            .await;
    }

    pub async fn audit_detail(
        &self,
        kind: EventKind,
        user_id: Option<&str>,
        session_id: Option<&str>,
        client: &Client,
        detail: Option<String>,
    ) {
        self.audit_sending(
            kind,
            user_id,
            session_id,
            client,
            detail,
            &Outgoing::default(),
        )
        .await;
    }

    /// Records a security event and, in the same transaction, what it sends.
    pub(super) async fn audit_sending(
        &self,
        kind: EventKind,
        user_id: Option<&str>,
        session_id: Option<&str>,
        client: &Client,
        detail: Option<String>,
        outgoing: &Outgoing,
    ) {
        let event = self.new_event(kind, user_id, session_id, client, detail);
        self.record(event, outgoing).await;
    }

    /// Records an operator's action, naming who acted.
    pub(super) async fn audit_admin(
        &self,
        actor: &Actor,
        kind: EventKind,
        user_id: Option<&str>,
        session_id: Option<&str>,
        detail: Option<String>,
    ) {
        let event = NewEvent {
            actor: Some(actor.id.clone()),
            ..self.new_event(kind, user_id, session_id, &actor.from, detail)
        };
        self.record(event, &Outgoing::default()).await;
    }

    /// An event of `kind` now, from `from`, by no operator.
    fn new_event(
        &self,
        kind: EventKind,
        user_id: Option<&str>,
        session_id: Option<&str>,
        from: &Client,
        detail: Option<String>,
    ) -> NewEvent {
        NewEvent {
            user_id: user_id.map(str::to_string),
            session_id: session_id.map(str::to_string),
            kind: kind.as_str().to_string(),
            ip: from.ip.clone(),
            user_agent: from.user_agent.clone(),
            detail,
            created_at: self.now(),
            actor: None,
        }
    }

    async fn record(&self, event: NewEvent, outgoing: &Outgoing) {
        tracing::info!(
            target: "latchkey::audit",
            event = event.kind.as_str(),
            user_id = event.user_id.as_deref().unwrap_or("-"),
            session_id = event.session_id.as_deref().unwrap_or("-"),
            ip = event.ip.as_deref().unwrap_or("-"),
            actor = event.actor.as_deref().unwrap_or("-"),
            detail = event.detail.as_deref().unwrap_or(""),
        );
        match self.store.insert_event(&event, outgoing).await {
            Ok(()) => self.written(outgoing),
            Err(e) => {
                tracing::error!(error = %e, event = %event.kind, "recording a security event failed")
            }
        }
    }
}
