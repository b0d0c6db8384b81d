//! Persistence behind one domain-level trait, [`Store`]. Each backend
//! implements it with its own SQL and migrations; nothing above this module
//! sees SQL, and nothing here knows about HTTP.

mod batch;
mod factors;
mod hooks;
mod imports;
mod outbox;
pub mod postgres;
mod quick_reads;
mod rotations;
pub mod snapshot;
mod sql;
pub mod sqlite;

pub use factors::{
    CeremonyRecord, ChallengeRecord, Factors, PasskeyRecord, RecoveryCodeRecord, TotpRecord,
};
pub use imports::{ImportSource, Imported};
pub use snapshot::{ClientRecord, RevocationRecord, Snapshot, ThrottleRecord};

/// The next state of a throttle row, computed from the current one.
pub type ThrottleStep<'a> = &'a (dyn Fn(&ThrottleRecord) -> ThrottleRecord + Send + Sync);

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A stored user, password hash included (but never in its `Debug`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub email_normalized: String,
    pub name: Option<String>,
    pub password_hash: String,
    pub email_verified: bool,
    pub disabled: bool,
    pub not_before: i64,
    pub created_at: i64,
    /// Rises with every user-wide revocation (password change, disable,
    /// logout everywhere): a session is only started while the version its
    /// login verified is still current.
    #[serde(default)]
    pub credential_version: i64,
    /// The language the user's mail is written in (a BCP 47 tag), if known.
    #[serde(default)]
    pub locale: Option<String>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A stored session: one login on one device and its refresh-token chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    #[serde(with = "snapshot::b64")]
    pub salt: Vec<u8>,
    pub generation: i64,
    pub rotated_at: Option<i64>,
    pub created_at: i64,
    pub last_used_at: i64,
    pub idle_expires_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// When the user last proved who they are in this session (sign-in or
    /// re-authentication).
    #[serde(default)]
    pub auth_time: i64,
    /// How (`amr` values, space-separated), e.g. `pwd`.
    #[serde(default = "password_amr")]
    pub amr: String,
}

fn password_amr() -> String {
    "pwd".to_string()
}

/// What an access-token check needs to know about its user, its session
/// and the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccessState {
    #[sqlx(flatten)]
    pub user: UserRecord,
    pub session_revoked: bool,
    pub session_expires_at: i64,
    /// The signing key was withdrawn (`latchkey keys revoke`).
    pub key_withdrawn: bool,
}

/// An audit event to record.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub kind: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
    /// Who acted, for an operator's action: `cli` or `client:ID`.
    pub actor: Option<String>,
}

/// A recorded audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct EventRecord {
    pub id: i64,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub kind: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
    #[serde(default)]
    pub actor: Option<String>,
}

/// Which events to find, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub user_id: Option<String>,
    pub kind: Option<String>,
    /// From this time (inclusive).
    pub since: Option<i64>,
    /// Before this time.
    pub until: Option<i64>,
    /// Ids below this one (the previous page's last).
    pub before: Option<i64>,
    pub limit: i64,
}

/// A signing key; `private_key` is sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    pub public_jwk: String,
    #[serde(with = "snapshot::b64")]
    pub private_key: Vec<u8>,
    pub created_at: i64,
    /// When the key starts signing; it is published from `created_at`.
    #[serde(default)]
    pub activates_at: i64,
    /// When it stopped (or stops) signing.
    pub retired_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// What a token sent by mail lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// Prove that the user receives mail at `email`.
    VerifyEmail,
    /// Set a new password.
    ResetPassword,
    /// Move the account to `email`.
    ChangeEmail,
    /// Undo an email change, restoring `email`, and end every session.
    CancelEmailChange,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::ResetPassword => "reset_password",
            TokenPurpose::ChangeEmail => "change_email",
            TokenPurpose::CancelEmailChange => "cancel_email_change",
        }
    }
}

/// A single-use token carried by a mail, known only by its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EmailTokenRecord {
    /// Hex SHA-256 of the token.
    pub digest: String,
    pub user_id: String,
    pub purpose: String,
    /// The address the token proves or moves to (display form); for a
    /// cancellation, the address to restore.
    pub email: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A message to send; its content (which may hold a token) is sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    pub recipient: String,
    pub kind: String,
    pub sealed: Vec<u8>,
    pub created_at: i64,
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MailRecord {
    pub id: i64,
    pub recipient: String,
    pub kind: String,
    /// Erased once the message is sent.
    pub sealed: Option<Vec<u8>>,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub attempts: i64,
    pub sent_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub last_error: Option<String>,
}

/// What a change sends, written in the change's own transaction: tokens
/// (each replacing the user's earlier tokens of its purpose) and messages.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub tokens: Vec<EmailTokenRecord>,
    pub mails: Vec<NewMail>,
    /// Events for the webhooks: each becomes a delivery to every enabled
    /// endpoint that subscribes to its type.
    pub events: Vec<NewWebhookEvent>,
    /// Events about the sessions the change ends, which only the store
    /// knows once it has ended them.
    pub ended: Option<EndedEvents>,
}

impl Outgoing {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
            && self.mails.is_empty()
            && self.events.is_empty()
            && self.ended.is_none()
    }

    /// Whether webhook events may be written.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty() || self.ended.is_some()
    }

    /// The events about the sessions `ended` (ids), for the store to write
    /// with the others.
    pub fn ended_events(&self, ended: &[String]) -> Vec<NewWebhookEvent> {
        match &self.ended {
            Some(build) => (build.0)(ended),
            None => Vec::new(),
        }
    }
}

/// What builds events from the ids of the sessions a change ended.
pub type EndedBuild = dyn Fn(&[String]) -> Vec<NewWebhookEvent> + Send + Sync;

/// Builds events from the ids of the sessions a change ended.
#[derive(Clone)]
pub struct EndedEvents(pub Arc<EndedBuild>);

impl std::fmt::Debug for EndedEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndedEvents")
    }
}

/// An event to deliver to the webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhookEvent {
    /// `msg_…`: the same for every endpoint (the `webhook-id` header).
    pub id: String,
    pub kind: String,
    pub user_id: Option<String>,
    /// The JSON body, as signed and sent.
    pub payload: String,
    pub created_at: i64,
    /// Only to this endpoint (a test event), not to every subscriber.
    pub only_to: Option<String>,
}

/// An operator's webhook endpoint; `secret` is sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    /// Space-separated event types, or `*`.
    pub events: String,
    pub secret: Vec<u8>,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

/// How many security events of one kind a user (or, with no user, every
/// unknown address) had from one IP address within a summary's window.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventTally {
    pub user_id: Option<String>,
    /// The user's address, when the user still exists.
    pub email: Option<String>,
    pub ip: Option<String>,
    pub count: i64,
    pub first_at: i64,
    pub last_at: i64,
}

/// What a summary of counted events sends, built from the counts and the
/// window's start.
pub type TallyBuild<'a> = &'a (dyn Fn(&[EventTally], i64) -> Outgoing + Send + Sync);

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryRecord {
    pub id: i64,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub user_id: Option<String>,
    pub payload: String,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub attempts: i64,
    pub delivered_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<i64>,
}

/// How an attempt to deliver to an endpoint ended.
#[derive(Debug, Clone)]
pub struct HookAttempt {
    pub outcome: Delivery,
    /// The endpoint's HTTP status, when it answered.
    pub status: Option<i64>,
    pub latency_ms: i64,
}

/// What redeeming a token changes, besides using the token up.
#[derive(Debug, Clone, Copy)]
pub enum Redeem<'a> {
    /// Marks the address verified, if it is still the user's.
    VerifyEmail,
    /// Sets the password (verifying the address the mail went to), drops
    /// the user's other reset tokens and ends every session.
    ResetPassword { hash: &'a str },
    /// Moves the account to the token's address, verified; `Conflict` when
    /// another account took it meanwhile.
    ChangeEmail { email_normalized: &'a str },
    /// Drops pending changes, puts the token's address back (when it is
    /// not the user's any more) and ends every session.
    CancelEmailChange { email_normalized: &'a str },
}

impl Redeem<'_> {
    pub fn purpose(&self) -> TokenPurpose {
        match self {
            Redeem::VerifyEmail => TokenPurpose::VerifyEmail,
            Redeem::ResetPassword { .. } => TokenPurpose::ResetPassword,
            Redeem::ChangeEmail { .. } => TokenPurpose::ChangeEmail,
            Redeem::CancelEmailChange { .. } => TokenPurpose::CancelEmailChange,
        }
    }

    /// Why the change ends every session of the user, if it does.
    pub fn ends_sessions(&self) -> Option<RevokeReason> {
        match self {
            Redeem::ResetPassword { .. } => Some(RevokeReason::PasswordReset),
            Redeem::CancelEmailChange { .. } => Some(RevokeReason::EmailChangeCancelled),
            _ => None,
        }
    }
}

/// How a delivery attempt ended.
#[derive(Debug, Clone)]
pub enum Delivery {
    Sent {
        at: i64,
    },
    /// Try again at `at`.
    Retry {
        at: i64,
        error: String,
    },
    /// Given up at `at`.
    Failed {
        at: i64,
        error: String,
    },
}

/// What the background pruner may delete: rows older than each cut-off.
#[derive(Debug, Clone, Copy)]
pub struct PruneBefore {
    pub sessions: i64,
    pub revocations: i64,
    pub events: i64,
    pub throttles: i64,
    pub keys: i64,
    /// Sent or abandoned mail.
    pub mail: i64,
    /// Mailed tokens that expired.
    pub tokens: i64,
}

/// Reasons recorded when a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Logout,
    LogoutAll,
    PasswordChanged,
    SessionDeleted,
    RefreshReuse,
    UserDisabled,
    Admin,
    PasswordReset,
    EmailChangeCancelled,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::LogoutAll => "logout_all",
            RevokeReason::PasswordChanged => "password_changed",
            RevokeReason::SessionDeleted => "session_deleted",
            RevokeReason::RefreshReuse => "refresh_reuse",
            RevokeReason::UserDisabled => "user_disabled",
            RevokeReason::Admin => "admin",
            RevokeReason::PasswordReset => "password_reset",
            RevokeReason::EmailChangeCancelled => "email_change_cancelled",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write (e.g. an email already taken).
    #[error("conflict")]
    Conflict,
    /// The database cannot be reached or is overloaded; worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else; details are for the log only.
    #[error("database error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Inserts the user and what the registration sends, in one transaction.
    async fn insert_user(&self, user: &UserRecord, outgoing: &Outgoing) -> StoreResult<()>;
    async fn user_by_email(&self, email_normalized: &str) -> StoreResult<Option<UserRecord>>;
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    /// Users ordered by creation, `limit` of them after the first `offset`.
    /// Users by creation, `limit` after the first `offset`, whose normalised
    /// address starts with `email_prefix`.
    async fn list_users(
        &self,
        limit: i64,
        offset: i64,
        email_prefix: &str,
    ) -> StoreResult<Vec<UserRecord>>;
    /// Replaces the password hash only while it is still `expected` (a
    /// rehash must never overwrite a password changed meanwhile); leaves the
    /// credential version as it is. Returns whether it replaced it.
    async fn replace_password_hash(
        &self,
        user_id: &str,
        expected: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<bool>;
    /// Sets a new password, only while the user is still at credential
    /// version `expected` (a rehash keeps the version, so it does not get in
    /// the way), and in the same transaction revokes every session of the
    /// user as [`Store::revoke_user_sessions`] does with `not_before = now`,
    /// drops their reset links and writes `outgoing`. Returns the new version, or None when the version had moved on.
    async fn change_password(
        &self,
        user_id: &str,
        expected: i64,
        hash: &str,
        now: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<Option<i64>>;
    /// Marks the user's address verified.
    async fn set_email_verified(&self, user_id: &str, now: i64) -> StoreResult<()>;
    /// Writes tokens and messages in one transaction.
    async fn send(&self, outgoing: &Outgoing) -> StoreResult<()>;
    /// A token that is live at `now`, by its digest and purpose.
    async fn email_token(
        &self,
        digest: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> StoreResult<Option<EmailTokenRecord>>;
    /// Deletes a user's tokens of one purpose; returns how many there were.
    async fn drop_email_tokens(&self, user_id: &str, purpose: TokenPurpose) -> StoreResult<u64>;
    /// Uses a live token of `user_id` up, applies `redeem` (ending the
    /// user's sessions when it says so) and writes `outgoing`, all in one
    /// transaction. Returns false, changing nothing, when no live token of
    /// that purpose and user has the digest.
    async fn redeem_email_token(
        &self,
        digest: &str,
        user_id: &str,
        redeem: Redeem<'_>,
        now: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool>;

    /// Takes up to `limit` messages due at `now` for sending, each counted
    /// as an attempt and hidden from other takers until `lease_until` (so
    /// one instance sends it; should that one die, another takes it then).
    async fn claim_mail(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<MailRecord>>;
    /// Records how an attempt ended; a sent message loses its content.
    async fn finish_mail(&self, id: i64, delivery: &Delivery) -> StoreResult<()>;
    /// Messages not sent yet (waiting or given up), oldest first.
    async fn unsent_mail(&self, limit: i64) -> StoreResult<Vec<MailRecord>>;
    /// Makes every message given up due again at `now`; returns the count.
    async fn retry_failed_mail(&self, now: i64) -> StoreResult<u64>;

    async fn insert_webhook(&self, hook: &WebhookRecord) -> StoreResult<()>;
    async fn webhooks(&self) -> StoreResult<Vec<WebhookRecord>>;
    /// Deletes an endpoint and its deliveries; false when there is none.
    async fn delete_webhook(&self, id: &str) -> StoreResult<bool>;
    /// Disables an endpoint from `disabled_at`, or enables it with None;
    /// false when there is no such endpoint or it already was so.
    async fn set_webhook_disabled(&self, id: &str, disabled_at: Option<i64>) -> StoreResult<bool>;
    /// Takes up to `limit` deliveries due at `now`, each counted as an
    /// attempt and hidden from other takers until `lease_until`.
    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRecord>>;
    async fn finish_delivery(&self, id: i64, attempt: &HookAttempt) -> StoreResult<()>;
    /// An endpoint's deliveries, newest first.
    async fn deliveries(&self, webhook_id: &str, limit: i64) -> StoreResult<Vec<DeliveryRecord>>;
    /// Delivers delivery `id`'s event to its endpoint again, from `now`;
    /// returns the new delivery's id, or None when there is no such delivery.
    async fn replay_delivery(&self, id: i64, now: i64) -> StoreResult<Option<i64>>;
    /// Once `every` seconds have passed since the last summary of the
    /// security events of `kind` (since `start` the first time), counts
    /// those recorded from then up to `until`, per user and IP address, and
    /// writes what `build` makes of the counts in the same transaction as
    /// the summary's new position — so each event is counted in one
    /// summary, across instances too. Returns the position: where the next
    /// summary starts.
    async fn tally_events(
        &self,
        kind: &str,
        start: i64,
        until: i64,
        every: i64,
        build: TallyBuild<'_>,
    ) -> StoreResult<i64>;

    /// Creates `user` (brought from another system), or updates the user an
    /// earlier import made with that address while they have not signed in
    /// to Latchkey since, in one transaction; never touches other accounts.
    async fn import_user(
        &self,
        user: &UserRecord,
        from: &ImportSource,
        now: i64,
    ) -> StoreResult<Imported>;

    /// Disables or enables a user, with what the change sends; disabling
    /// also ends every session of the user (with `not_before = now` and a
    /// new credential version) in the same transaction. Returns false,
    /// sending nothing, when no such user exists.
    async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        now: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool>;
    /// Deletes the user and their sessions, recording a user-wide
    /// revocation, with what the deletion sends; false when there is none.
    async fn delete_user(&self, user_id: &str, now: i64, outgoing: &Outgoing) -> StoreResult<bool>;

    /// Inserts the session only while its user is enabled and still at
    /// `credential_version` (checked in the same statement, which on
    /// PostgreSQL waits for a concurrent revocation of the user to commit).
    /// Returns false, inserting nothing, otherwise. `outgoing` is written
    /// with the session, or not at all.
    /// The user's TOTP factor and how many recovery codes are left.
    async fn factors(&self, user_id: &str) -> StoreResult<Factors>;
    /// Stores a new, unconfirmed TOTP secret (sealed); `false` when the user
    /// has a confirmed factor already.
    async fn enrol_totp(&self, user_id: &str, secret: &[u8], now: i64) -> StoreResult<bool>;
    /// Accepts TOTP time step `step` for the user once, only above every
    /// step accepted before, whichever instance asks. With `confirming`, the
    /// factor must be unconfirmed and becomes confirmed at the given time
    /// with the given recovery-code digests; without, it must be confirmed.
    async fn use_totp_step(
        &self,
        user_id: &str,
        step: i64,
        confirming: Option<(&[String], i64)>,
    ) -> StoreResult<bool>;
    /// Removes the user's TOTP factor and recovery codes.
    async fn remove_totp(&self, user_id: &str) -> StoreResult<bool>;
    /// Replaces the user's recovery codes; `false` without a confirmed factor.
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        digests: &[String],
        now: i64,
    ) -> StoreResult<bool>;
    /// Uses the recovery code with this digest, once.
    async fn use_recovery_code(&self, user_id: &str, digest: &str, now: i64) -> StoreResult<bool>;
    async fn insert_challenge(&self, challenge: &ChallengeRecord) -> StoreResult<()>;
    /// Counts one attempt at a challenge that has not expired at `now` nor
    /// used `max_attempts`; returns it as it now is.
    async fn try_challenge(
        &self,
        digest: &str,
        now: i64,
        max_attempts: i64,
    ) -> StoreResult<Option<ChallengeRecord>>;
    /// Ends a challenge; `true` for the one caller that ended it.
    async fn take_challenge(&self, digest: &str) -> StoreResult<bool>;
    async fn passkeys(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>>;
    /// A passkey by its credential id, whoever's.
    async fn passkey(&self, id: &str) -> StoreResult<Option<PasskeyRecord>>;
    /// `Conflict` when the credential is registered already.
    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> StoreResult<()>;
    async fn rename_passkey(&self, user_id: &str, id: &str, name: &str) -> StoreResult<bool>;
    async fn delete_passkey(&self, user_id: &str, id: &str) -> StoreResult<bool>;
    /// Records a verified use (see [`factors::USE_PASSKEY`]): `false` when
    /// another use with a higher counter was recorded meanwhile.
    async fn use_passkey(&self, used: &PasskeyRecord) -> StoreResult<bool>;
    async fn insert_ceremony(&self, ceremony: &CeremonyRecord) -> StoreResult<()>;
    /// Takes a ceremony of `purpose` once, expired or not.
    async fn take_ceremony(
        &self,
        digest: &str,
        purpose: &str,
    ) -> StoreResult<Option<CeremonyRecord>>;

    async fn insert_session(
        &self,
        session: &SessionRecord,
        credential_version: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool>;
    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>>;
    /// Records a new proof of identity (`auth_time`, `amr`) on a session
    /// that is not revoked; false when it is.
    async fn set_session_auth(&self, id: &str, auth_time: i64, amr: &str) -> StoreResult<bool>;
    /// A session and whether its user may use it (exists, not disabled): what
    /// a refresh needs, in one read where the backend gains from that.
    async fn session_and_owner(&self, id: &str) -> StoreResult<Option<(SessionRecord, bool)>> {
        let Some(session) = self.session(id).await? else {
            return Ok(None);
        };
        let usable = self
            .user_by_id(&session.user_id)
            .await?
            .is_some_and(|u| !u.disabled);
        Ok(Some((session, usable)))
    }
    /// Atomically moves a live session from generation `from` to `from + 1`.
    /// Returns false, changing nothing, when the session is not live or is
    /// not at `from` (another refresh won, or the token was already used).
    async fn advance_session(
        &self,
        id: &str,
        from: i64,
        now: i64,
        idle_expires_at: i64,
    ) -> StoreResult<bool>;
    /// Revokes one live session and records the revocation, with what the
    /// revocation sends; returns false, sending nothing, if it was not live.
    async fn revoke_session(
        &self,
        id: &str,
        reason: RevokeReason,
        now: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool>;
    /// Revokes every live session of a user except `keep`, recording each
    /// revocation and, with `not_before`, a user-wide entry and a new
    /// credential version (raised first, so logins in flight that verified
    /// the old version cannot insert a session afterwards), and what the
    /// revocation sends. Returns the count.
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        reason: RevokeReason,
        now: i64,
        not_before: Option<i64>,
        outgoing: &Outgoing,
    ) -> StoreResult<u64>;
    /// Live sessions of a user, newest first.
    async fn live_sessions(&self, user_id: &str, now: i64) -> StoreResult<Vec<SessionRecord>>;
    /// The user and session named by an access token signed by `kid`, if
    /// both exist, and whether that key was withdrawn.
    async fn access_state(
        &self,
        user_id: &str,
        session_id: &str,
        kid: &str,
    ) -> StoreResult<Option<AccessState>>;
    /// [`Store::access_state`] and [`Store::client`] at once, as an
    /// introspection needs them; PostgreSQL reads both in one statement.
    async fn access_state_and_client(
        &self,
        user_id: &str,
        session_id: &str,
        kid: &str,
        client_id: &str,
    ) -> StoreResult<(Option<AccessState>, Option<ClientRecord>)> {
        let (state, client) = futures_util::future::join(
            self.access_state(user_id, session_id, kid),
            self.client(client_id),
        )
        .await;
        Ok((state?, client?))
    }

    /// Moves the throttle row of `key` (all zeros when it has none) to
    /// `step(row)` under the row's lock, so concurrent steps on one key
    /// serialise, across instances too. Returns the row as it was.
    async fn step_throttle(&self, key: &str, step: ThrottleStep<'_>)
    -> StoreResult<ThrottleRecord>;

    /// Records a security event, and what it sends, in one transaction.
    async fn insert_event(&self, event: &NewEvent, outgoing: &Outgoing) -> StoreResult<()>;
    /// Every user's events matching `query`, newest first.
    async fn search_events(&self, query: &EventQuery) -> StoreResult<Vec<EventRecord>>;
    /// A user's events, newest first, with ids below `before` when given.
    async fn user_events(
        &self,
        user_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<EventRecord>>;

    async fn signing_keys(&self) -> StoreResult<Vec<KeyRecord>>;
    /// Withdraws a published key at `now`: it stops signing and leaves the
    /// JWKS, and a `key` entry goes to the revocation feed. Returns false
    /// when no published key has that kid (and sends nothing).
    async fn withdraw_signing_key(
        &self,
        kid: &str,
        now: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool>;
    /// Adds `key`, which signs from `key.activates_at`; the keys signing now
    /// retire at that moment and leave the JWKS at `retired_expire_at`.
    async fn add_signing_key(
        &self,
        key: &KeyRecord,
        retired_expire_at: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<()>;

    /// Deletes at most `batch` rows of each kind older than the cut-offs.
    async fn prune(&self, before: PruneBefore, batch: i64) -> StoreResult<u64>;

    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()>;
    async fn client(&self, id: &str) -> StoreResult<Option<ClientRecord>>;
    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>>;
    /// Returns false when no such client exists.
    async fn delete_client(&self, id: &str) -> StoreResult<bool>;

    /// The database's identity and its restore-guard counter (see `domain::restore`).
    async fn restore_guard(&self) -> StoreResult<(String, i64)>;
    /// Raises the restore guard's counter; returns the identity and the new counter.
    async fn advance_restore_guard(&self) -> StoreResult<(String, i64)>;
    /// Ends every session of every user in one transaction: every user's
    /// credential version rises and `not_before` becomes `now + 1` (so even
    /// tokens of this very second are refused), each with its feed entry,
    /// and the database takes the identity `database_id`. Returns how many
    /// sessions were live and how many users there are.
    async fn revoke_everything(&self, now: i64, database_id: &str) -> StoreResult<(u64, u64)>;

    /// Revocations with a cursor above `after`, in cursor order, at most `limit`.
    async fn revocations_after(&self, after: i64, limit: i64)
    -> StoreResult<Vec<RevocationRecord>>;
    /// The smallest cursor still kept, if any revocation is.
    async fn oldest_revocation(&self) -> StoreResult<Option<i64>>;

    /// Every row of every table, for moving a deployment to another backend.
    async fn export(&self) -> StoreResult<Snapshot>;
    /// Loads a snapshot into this (empty) database in one transaction, keeping
    /// ids and cursors so sessions, tokens and verifiers' cursors stay valid.
    /// Refuses with `Conflict` when the database already holds users or keys.
    async fn import(&self, snapshot: &Snapshot) -> StoreResult<()>;
}
