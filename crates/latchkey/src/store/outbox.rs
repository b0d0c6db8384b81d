//! Mailed tokens and the mail outbox: the statements both backends run word
//! for word, and the steps of writing what a change sends and of redeeming
//! a token, run on the caller's transaction. Taking due mail differs (row
//! locks on PostgreSQL) and stays in each backend.

use sqlx::{Database, Encode, FromRow, Type};

use super::{EmailTokenRecord, Outgoing, Redeem, TokenPurpose};

macro_rules! mail_columns {
    () => {
        "id, recipient, kind, sealed, created_at, next_attempt_at, attempts, sent_at, failed_at, last_error"
    };
}
pub(super) use mail_columns;

const INSERT_TOKEN: &str =
    "INSERT INTO email_tokens (digest, user_id, purpose, email, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6)";
pub const DROP_TOKENS: &str = "DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2";
const DROP_EVERY_TOKEN: &str = "DELETE FROM email_tokens WHERE user_id = $1";
/// A move of the address leaves only the way back: $2 = the cancellation purpose.
const DROP_TOKENS_BUT: &str = "DELETE FROM email_tokens WHERE user_id = $1 AND purpose <> $2";
/// $1 digest, $2 purpose, $3 now.
pub const LIVE_TOKEN: &str = "SELECT digest, user_id, purpose, email, created_at, expires_at
     FROM email_tokens WHERE digest = $1 AND purpose = $2 AND expires_at > $3";
/// $1 digest, $2 user, $3 purpose, $4 now.
const TAKE_TOKEN: &str = "DELETE FROM email_tokens
     WHERE digest = $1 AND user_id = $2 AND purpose = $3 AND expires_at > $4 RETURNING email";
/// $2 the address the mail went to, $3 true.
const VERIFY_ADDRESS: &str =
    "UPDATE users SET email_verified = $3, updated_at = $4 WHERE id = $1 AND email = $2";
/// $1 user, $2 true, $3 now.
pub const SET_VERIFIED: &str =
    "UPDATE users SET email_verified = $2, updated_at = $3 WHERE id = $1";
/// The mail that carried the token proves the address it went to.
const RESET_PASSWORD: &str = "UPDATE users SET password_hash = $2,
     email_verified = CASE WHEN email = $3 THEN $4 ELSE email_verified END, updated_at = $5
     WHERE id = $1";
const MOVE_EMAIL: &str = "UPDATE users SET email = $2, email_normalized = $3, email_verified = $4,
     updated_at = $5 WHERE id = $1";
const RESTORE_EMAIL: &str =
    "UPDATE users SET email = $2, email_normalized = $3, email_verified = $4,
     updated_at = $5 WHERE id = $1 AND email_normalized <> $3";

const INSERT_MAIL: &str =
    "INSERT INTO mail_outbox (recipient, kind, sealed, created_at, next_attempt_at)
     VALUES ($1, $2, $3, $4, $4)";
const MAIL_SENT: &str =
    "UPDATE mail_outbox SET sent_at = $2, sealed = NULL, last_error = NULL WHERE id = $1";
const MAIL_RETRY: &str =
    "UPDATE mail_outbox SET next_attempt_at = $2, last_error = $3 WHERE id = $1";
const MAIL_FAILED: &str = "UPDATE mail_outbox SET failed_at = $2, last_error = $3 WHERE id = $1";
pub const UNSENT_MAIL: &str = concat!(
    "SELECT ",
    mail_columns!(),
    " FROM mail_outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1"
);
pub const RETRY_FAILED_MAIL: &str =
    "UPDATE mail_outbox SET failed_at = NULL, next_attempt_at = $1, attempts = 0
     WHERE failed_at IS NOT NULL AND sealed IS NOT NULL";

/// Writes the tokens (each replacing the user's earlier ones of its
/// purpose), messages and events of `outgoing` on the transaction `conn` is
/// in; `ended` names the sessions the change ended, for the events about them.
pub async fn write<DB>(
    conn: &mut DB::Connection,
    outgoing: &Outgoing,
    ended: &[String],
) -> Result<(), sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    for<'e> &'e [u8]: Encode<'e, DB> + Type<DB>,
    for<'e> Option<&'e str>: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    bool: for<'e> Encode<'e, DB> + Type<DB>,
{
    for t in &outgoing.tokens {
        sqlx::query(DROP_TOKENS)
            .bind(t.user_id.as_str())
            .bind(t.purpose.as_str())
            .execute(&mut *conn)
            .await?;
        sqlx::query(INSERT_TOKEN)
            .bind(t.digest.as_str())
            .bind(t.user_id.as_str())
            .bind(t.purpose.as_str())
            .bind(t.email.as_str())
            .bind(t.created_at)
            .bind(t.expires_at)
            .execute(&mut *conn)
            .await?;
    }
    super::hooks::fan_out::<DB>(conn, &outgoing.events).await?;
    super::hooks::fan_out::<DB>(conn, &outgoing.ended_events(ended)).await?;
    for m in &outgoing.mails {
        sqlx::query(INSERT_MAIL)
            .bind(m.recipient.as_str())
            .bind(m.kind.as_str())
            .bind(m.sealed.as_slice())
            .bind(m.created_at)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Uses up a live token of `user_id` and applies `redeem` to the user, on
/// the transaction `conn` is in; ending sessions is the caller's part.
/// Returns false, changing nothing, when there is no such token.
pub async fn redeem<DB>(
    conn: &mut DB::Connection,
    digest: &str,
    user_id: &str,
    redeem: Redeem<'_>,
    now: i64,
) -> Result<bool, sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    bool: for<'e> Encode<'e, DB> + Type<DB>,
    (String,): for<'r> FromRow<'r, DB::Row>,
{
    let email: Option<String> = sqlx::query_scalar(TAKE_TOKEN)
        .bind(digest)
        .bind(user_id)
        .bind(redeem.purpose().as_str())
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(email) = email else {
        return Ok(false);
    };
    let (change, then_drop, keep) = match redeem {
        Redeem::VerifyEmail => (
            sqlx::query(VERIFY_ADDRESS)
                .bind(user_id)
                .bind(email.as_str())
                .bind(true)
                .bind(now),
            DROP_TOKENS,
            Some(TokenPurpose::VerifyEmail),
        ),
        Redeem::ResetPassword { hash } => (
            sqlx::query(RESET_PASSWORD)
                .bind(user_id)
                .bind(hash)
                .bind(email.as_str())
                .bind(true)
                .bind(now),
            DROP_TOKENS,
            Some(TokenPurpose::ResetPassword),
        ),
        Redeem::ChangeEmail { email_normalized } => (
            sqlx::query(MOVE_EMAIL)
                .bind(user_id)
                .bind(email.as_str())
                .bind(email_normalized)
                .bind(true)
                .bind(now),
            DROP_TOKENS_BUT,
            Some(TokenPurpose::CancelEmailChange),
        ),
        Redeem::CancelEmailChange { email_normalized } => (
            sqlx::query(RESTORE_EMAIL)
                .bind(user_id)
                .bind(email.as_str())
                .bind(email_normalized)
                .bind(true)
                .bind(now),
            DROP_EVERY_TOKEN,
            None,
        ),
    };
    change.execute(&mut *conn).await?;
    let drop = sqlx::query(then_drop).bind(user_id);
    let drop = match keep {
        Some(purpose) => drop.bind(purpose.as_str()),
        None => drop,
    };
    drop.execute(&mut *conn).await?;
    Ok(true)
}

impl EmailTokenRecord {
    /// A token record for `purpose`.
    pub fn new(
        digest: String,
        user_id: &str,
        purpose: TokenPurpose,
        email: &str,
        now: i64,
        ttl: i64,
    ) -> Self {
        Self {
            digest,
            user_id: user_id.to_string(),
            purpose: purpose.as_str().to_string(),
            email: email.to_string(),
            created_at: now,
            expires_at: now + ttl,
        }
    }
}

/// The statement that records how an attempt to send message `id` ended.
pub fn bind_delivery<DB>(id: i64, delivery: &super::Delivery) -> super::sql::Query<'_, DB>
where
    DB: Database,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
{
    use super::Delivery;
    match delivery {
        Delivery::Sent { at } => sqlx::query(MAIL_SENT).bind(id).bind(*at),
        Delivery::Retry { at, error } => sqlx::query(MAIL_RETRY)
            .bind(id)
            .bind(*at)
            .bind(error.as_str()),
        Delivery::Failed { at, error } => sqlx::query(MAIL_FAILED)
            .bind(id)
            .bind(*at)
            .bind(error.as_str()),
    }
}
