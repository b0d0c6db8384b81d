//! Second factors — TOTP secrets, recovery codes and the challenges of a
//! two-step sign-in: the records, the statements both backends run word for
//! word, and the changes that take several statements in one transaction.
//!
//! Single use is the database's to enforce, so that it holds across
//! instances: a TOTP step is accepted by a compare-and-set on `last_step`, a
//! recovery code by setting `used_at` where it is NULL, a challenge attempt
//! by counting where the count is below the limit.

use serde::{Deserialize, Serialize};
use sqlx::{Database, Encode, Type};

use super::snapshot::b64;

/// A user's TOTP factor; `secret` is sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TotpRecord {
    pub user_id: String,
    #[serde(with = "b64")]
    pub secret: Vec<u8>,
    pub created_at: i64,
    /// None until a first code confirmed the enrolment.
    pub confirmed_at: Option<i64>,
    /// The highest time step a code was accepted for.
    pub last_step: i64,
}

/// One recovery code, as the SHA-256 digest of its normalised text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RecoveryCodeRecord {
    pub user_id: String,
    pub digest: String,
    pub created_at: i64,
    pub used_at: Option<i64>,
}

/// The second step of a sign-in, owed once the password was right.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChallengeRecord {
    pub digest: String,
    pub user_id: String,
    /// The user's credentials as the password step saw them: a change since
    /// voids the challenge.
    pub credential_version: i64,
    pub created_at: i64,
    pub expires_at: i64,
    /// Codes tried so far, the one being judged included.
    pub attempts: i64,
    pub user_agent: Option<String>,
    /// Whether the password step came with this account's device token.
    pub known_device: bool,
}

/// A passkey: a WebAuthn credential of one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PasskeyRecord {
    /// The credential id, base64url.
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// The credential as the WebAuthn library keeps it, JSON.
    pub credential: String,
    pub counter: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A WebAuthn ceremony's state, between its options and its answer.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CeremonyRecord {
    pub digest: String,
    /// The user it is for; None for a sign-in that does not know yet.
    pub user_id: Option<String>,
    pub purpose: String,
    pub state: String,
    pub expires_at: i64,
}

/// A user's second factors at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Factors {
    pub totp: Option<TotpRecord>,
    /// Recovery codes not used yet.
    pub recovery_codes_left: i64,
}

impl Factors {
    /// Whether two-step sign-in is on: a TOTP factor, confirmed.
    pub fn totp_on(&self) -> bool {
        self.totp.as_ref().is_some_and(|t| t.confirmed_at.is_some())
    }
}

/// The row of [`FACTORS`].
#[derive(sqlx::FromRow)]
pub struct FactorsRow {
    #[sqlx(flatten)]
    totp: TotpRecord,
    codes_left: i64,
}

impl From<Option<FactorsRow>> for Factors {
    fn from(row: Option<FactorsRow>) -> Self {
        row.map_or_else(Factors::default, |r| Factors {
            totp: Some(r.totp),
            recovery_codes_left: r.codes_left,
        })
    }
}

/// A user's TOTP factor with its unused recovery codes counted, in one
/// round trip (recovery codes exist only with a factor).
pub const FACTORS: &str = "SELECT t.user_id, t.secret, t.created_at, t.confirmed_at, t.last_step,
         (SELECT COUNT(*) FROM recovery_codes c
          WHERE c.user_id = t.user_id AND c.used_at IS NULL) AS codes_left
     FROM totp_factors t WHERE t.user_id = $1";
/// A new, unconfirmed secret for user $1, replacing an unconfirmed one; a
/// confirmed factor stays (nothing is returned then).
pub const ENROL_TOTP: &str =
    "INSERT INTO totp_factors (user_id, secret, created_at, confirmed_at, last_step)
     VALUES ($1, $2, $3, NULL, 0)
     ON CONFLICT (user_id) DO UPDATE
       SET secret = excluded.secret, created_at = excluded.created_at, last_step = 0
       WHERE totp_factors.confirmed_at IS NULL
     RETURNING user_id";
/// Accepts step $2 for user $1 once: only above every step accepted before.
/// With $3 the factor is being confirmed (it must not be yet), otherwise it
/// must be.
pub const USE_TOTP_STEP: &str = "UPDATE totp_factors
     SET last_step = $2, confirmed_at = COALESCE(confirmed_at, $4)
     WHERE user_id = $1 AND last_step < $2 AND (confirmed_at IS NULL) = $3
     RETURNING user_id";
pub const DELETE_TOTP: &str = "DELETE FROM totp_factors WHERE user_id = $1 RETURNING user_id";
pub const DELETE_CODES: &str = "DELETE FROM recovery_codes WHERE user_id = $1";
pub const INSERT_CODE: &str =
    "INSERT INTO recovery_codes (user_id, digest, created_at, used_at) VALUES ($1, $2, $3, $4)";
pub const USE_CODE: &str = "UPDATE recovery_codes SET used_at = $3
     WHERE user_id = $1 AND digest = $2 AND used_at IS NULL RETURNING user_id";
pub const CONFIRMED: &str =
    "SELECT user_id FROM totp_factors WHERE user_id = $1 AND confirmed_at IS NOT NULL";

pub const INSERT_CHALLENGE: &str = "INSERT INTO mfa_challenges
     (digest, user_id, credential_version, created_at, expires_at, attempts, user_agent, known_device)
     VALUES ($1, $2, $3, $4, $5, 0, $6, $7)";
/// Counts one attempt at challenge $1 unless it expired (at $2) or used its
/// $3 attempts; returns it as it now is.
pub const TRY_CHALLENGE: &str = "UPDATE mfa_challenges SET attempts = attempts + 1
     WHERE digest = $1 AND expires_at > $2 AND attempts < $3
     RETURNING digest, user_id, credential_version, created_at, expires_at, attempts, user_agent, known_device";
pub const TAKE_CHALLENGE: &str = "DELETE FROM mfa_challenges WHERE digest = $1 RETURNING digest";

macro_rules! passkey_columns {
    () => {
        "id, user_id, name, credential, counter, backup_eligible, backup_state, created_at, last_used_at"
    };
}

pub const PASSKEYS: &str = concat!(
    "SELECT ",
    passkey_columns!(),
    " FROM passkeys WHERE user_id = $1 ORDER BY created_at, id"
);
pub const PASSKEY: &str = concat!(
    "SELECT ",
    passkey_columns!(),
    " FROM passkeys WHERE id = $1"
);
pub const INSERT_PASSKEY: &str = concat!(
    "INSERT INTO passkeys (",
    passkey_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
);
pub const RENAME_PASSKEY: &str =
    "UPDATE passkeys SET name = $3 WHERE user_id = $1 AND id = $2 RETURNING id";
pub const DELETE_PASSKEY: &str = "DELETE FROM passkeys WHERE user_id = $1 AND id = $2 RETURNING id";
/// Records a use of passkey $1: its credential and flags as now verified,
/// only while its stored counter is below the new one ($3), or both are 0
/// (authenticators without a counter).
pub const USE_PASSKEY: &str = "UPDATE passkeys
     SET credential = $2, counter = $3, backup_eligible = $4, backup_state = $5, last_used_at = $6
     WHERE id = $1 AND (counter < $3 OR (counter = 0 AND $3 = 0))
     RETURNING id";
pub const INSERT_CEREMONY: &str = "INSERT INTO passkey_ceremonies
     (digest, user_id, purpose, state, expires_at) VALUES ($1, $2, $3, $4, $5)";
/// Takes ceremony $1 of purpose $2, once, expired or not.
pub const TAKE_CEREMONY: &str = "DELETE FROM passkey_ceremonies WHERE digest = $1 AND purpose = $2
     RETURNING digest, user_id, purpose, state, expires_at";

// Every row, for `export`; challenges and ceremonies are not carried (they
// last minutes).
pub const ALL_PASSKEYS: &str = concat!(
    "SELECT ",
    passkey_columns!(),
    " FROM passkeys ORDER BY user_id, created_at, id"
);
pub const ALL_TOTP: &str = "SELECT user_id, secret, created_at, confirmed_at, last_step
     FROM totp_factors ORDER BY user_id";
pub const ALL_CODES: &str = "SELECT user_id, digest, created_at, used_at
     FROM recovery_codes ORDER BY user_id, digest";
pub const LOAD_TOTP: &str =
    "INSERT INTO totp_factors (user_id, secret, created_at, confirmed_at, last_step)
     VALUES ($1, $2, $3, $4, $5)";

/// Accepts TOTP step `step` for `user_id` (see [`USE_TOTP_STEP`]). When
/// `confirming`, the factor is confirmed at `now` and `codes` (digests)
/// become its recovery codes, all in the one transaction `conn` is in.
pub async fn use_totp_step<DB>(
    conn: &mut DB::Connection,
    user_id: &str,
    step: i64,
    confirming: Option<(&[String], i64)>,
) -> Result<bool, sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    Option<i64>: for<'e> Encode<'e, DB> + Type<DB>,
    bool: for<'e> Encode<'e, DB> + Type<DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let accepted: Option<(String,)> = sqlx::query_as(USE_TOTP_STEP)
        .bind(user_id)
        .bind(step)
        .bind(confirming.is_some())
        .bind(confirming.map(|(_, now)| now))
        .fetch_optional(&mut *conn)
        .await?;
    if let (Some(_), Some((codes, now))) = (&accepted, confirming) {
        put_codes::<DB>(conn, user_id, codes, now).await?;
    }
    Ok(accepted.is_some())
}

/// Replaces the recovery codes of `user_id` with `codes` (digests), if the
/// user has a confirmed factor.
pub async fn replace_codes<DB>(
    conn: &mut DB::Connection,
    user_id: &str,
    codes: &[String],
    now: i64,
) -> Result<bool, sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    Option<i64>: for<'e> Encode<'e, DB> + Type<DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let confirmed: Option<(String,)> = sqlx::query_as(CONFIRMED)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
    if confirmed.is_some() {
        put_codes::<DB>(conn, user_id, codes, now).await?;
    }
    Ok(confirmed.is_some())
}

async fn put_codes<DB>(
    conn: &mut DB::Connection,
    user_id: &str,
    codes: &[String],
    now: i64,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    Option<i64>: for<'e> Encode<'e, DB> + Type<DB>,
{
    sqlx::query(DELETE_CODES)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    for digest in codes {
        sqlx::query(INSERT_CODE)
            .bind(user_id)
            .bind(digest.as_str())
            .bind(now)
            .bind(None::<i64>)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Removes the TOTP factor of `user_id` and its recovery codes.
pub async fn remove_totp<DB>(conn: &mut DB::Connection, user_id: &str) -> Result<bool, sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let removed: Option<(String,)> = sqlx::query_as(DELETE_TOTP)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
    sqlx::query(DELETE_CODES)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(removed.is_some())
}

/// The statement that stores a new passkey.
pub fn insert_passkey<'q, DB>(p: &'q PasskeyRecord) -> super::sql::Query<'q, DB>
where
    DB: Database,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    Option<i64>: for<'e> Encode<'e, DB> + Type<DB>,
    bool: for<'e> Encode<'e, DB> + Type<DB>,
{
    sqlx::query(INSERT_PASSKEY)
        .bind(p.id.as_str())
        .bind(p.user_id.as_str())
        .bind(p.name.as_str())
        .bind(p.credential.as_str())
        .bind(p.counter)
        .bind(p.backup_eligible)
        .bind(p.backup_state)
        .bind(p.created_at)
        .bind(p.last_used_at)
}

/// The statement that stores a new sign-in challenge.
pub fn insert_challenge<'q, DB>(c: &'q ChallengeRecord) -> super::sql::Query<'q, DB>
where
    DB: Database,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    for<'e> Option<&'e str>: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    bool: for<'e> Encode<'e, DB> + Type<DB>,
{
    sqlx::query(INSERT_CHALLENGE)
        .bind(c.digest.as_str())
        .bind(c.user_id.as_str())
        .bind(c.credential_version)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(c.user_agent.as_deref())
        .bind(c.known_device)
}

/// The statement that records a verified use of a passkey ([`USE_PASSKEY`]).
pub fn use_passkey<'q, DB>(
    p: &'q PasskeyRecord,
) -> sqlx::query::QueryAs<'q, DB, (String,), <DB as Database>::Arguments>
where
    DB: Database,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    Option<i64>: for<'e> Encode<'e, DB> + Type<DB>,
    bool: for<'e> Encode<'e, DB> + Type<DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    sqlx::query_as(USE_PASSKEY)
        .bind(p.id.as_str())
        .bind(p.credential.as_str())
        .bind(p.counter)
        .bind(p.backup_eligible)
        .bind(p.backup_state)
        .bind(p.last_used_at)
}

/// The statement that stores a ceremony's state.
pub fn insert_ceremony<'q, DB>(c: &'q CeremonyRecord) -> super::sql::Query<'q, DB>
where
    DB: Database,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    for<'e> Option<&'e str>: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
{
    sqlx::query(INSERT_CEREMONY)
        .bind(c.digest.as_str())
        .bind(c.user_id.as_deref())
        .bind(c.purpose.as_str())
        .bind(c.state.as_str())
        .bind(c.expires_at)
}

/// Loads exported factors into an empty database.
pub async fn load<DB>(
    conn: &mut DB::Connection,
    totp: &[TotpRecord],
    codes: &[RecoveryCodeRecord],
    passkeys: &[PasskeyRecord],
) -> Result<(), sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    for<'e> &'e [u8]: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    Option<i64>: for<'e> Encode<'e, DB> + Type<DB>,
    bool: for<'e> Encode<'e, DB> + Type<DB>,
{
    for p in passkeys {
        insert_passkey::<DB>(p).execute(&mut *conn).await?;
    }
    for t in totp {
        sqlx::query(LOAD_TOTP)
            .bind(t.user_id.as_str())
            .bind(t.secret.as_slice())
            .bind(t.created_at)
            .bind(t.confirmed_at)
            .bind(t.last_step)
            .execute(&mut *conn)
            .await?;
    }
    for c in codes {
        sqlx::query(INSERT_CODE)
            .bind(c.user_id.as_str())
            .bind(c.digest.as_str())
            .bind(c.created_at)
            .bind(c.used_at)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
