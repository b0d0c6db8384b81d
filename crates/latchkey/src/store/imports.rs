//! Users brought from another system: the step that creates or updates one
//! of them, run on a transaction by both backends.

use sqlx::{Database, Encode, FromRow, Type};

use super::UserRecord;

/// Where an imported user came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSource {
    /// `django`, `jsonl`, …
    pub source: String,
    /// The user's id there.
    pub source_id: String,
    pub last_login_at: Option<i64>,
}

/// What importing one user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    Created,
    /// An earlier import's user, who has not signed in to Latchkey since.
    Updated,
    /// An earlier import's user, as the source still has them.
    Unchanged,
    /// An account of Latchkey's own (registered here): never touched.
    NotImported,
    /// An earlier import's user who has signed in to Latchkey (or changed
    /// their password) since: never overwritten.
    SignedIn,
}

/// The account an imported user would update, if any. $1 = normalised email.
macro_rules! find_existing {
    () => {
        "SELECT u.id, u.email, u.name, u.password_hash, u.email_verified, u.disabled, u.created_at,
             i.password_hash AS imported_hash,
             EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = u.id) AS signed_in
         FROM users u LEFT JOIN imported_users i ON i.user_id = u.id
         WHERE u.email_normalized = $1"
    };
}
pub const FIND_SQLITE: &str = find_existing!();
/// Locks the user, so a sign-in cannot start between the check and the update.
pub const FIND_POSTGRES: &str = concat!(find_existing!(), " FOR UPDATE OF u");
const RECORD: &str = "INSERT INTO imported_users
     (user_id, source, source_id, password_hash, last_login_at, imported_at)
     VALUES ($1, $2, $3, $4, $5, $6)";
const UPDATE_USER: &str = "UPDATE users SET email = $2, name = $3, password_hash = $4,
     email_verified = $5, disabled = $6, created_at = $7, updated_at = $8 WHERE id = $1";
const UPDATE_RECORD: &str = "UPDATE imported_users SET source = $2, source_id = $3,
     password_hash = $4, last_login_at = $5, imported_at = $6 WHERE user_id = $1";

/// The account found at an imported user's address.
#[derive(FromRow)]
pub struct Existing {
    id: String,
    email: String,
    name: Option<String>,
    password_hash: String,
    email_verified: bool,
    disabled: bool,
    created_at: i64,
    imported_hash: Option<String>,
    signed_in: bool,
}

/// Creates `user`, or updates the user an earlier import made with that
/// address while they have not signed in to Latchkey; on the transaction
/// `conn` is in. `find` is the backend's [`FIND_SQLITE`] or [`FIND_POSTGRES`].
pub async fn import_user<DB>(
    conn: &mut DB::Connection,
    find: &'static str,
    user: &UserRecord,
    from: &ImportSource,
    now: i64,
) -> Result<Imported, sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    for<'e> Option<&'e str>: Encode<'e, DB> + Type<DB>,
    String: for<'e> Encode<'e, DB> + Type<DB>,
    Vec<u8>: for<'e> Encode<'e, DB> + Type<DB>,
    Option<String>: for<'e> Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    Option<i64>: for<'e> Encode<'e, DB> + Type<DB>,
    bool: for<'e> Encode<'e, DB> + Type<DB>,
    Existing: for<'r> FromRow<'r, DB::Row>,
{
    let existing: Option<Existing> = sqlx::query_as(find)
        .bind(user.email_normalized.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(found) = existing else {
        super::sql::bind_user(sqlx::query(super::sql::INSERT_USER), user)
            .execute(&mut *conn)
            .await?;
        record(RECORD, &user.id, user, from, now)
            .execute(&mut *conn)
            .await?;
        return Ok(Imported::Created);
    };
    let Some(imported_hash) = &found.imported_hash else {
        return Ok(Imported::NotImported);
    };
    if *imported_hash != found.password_hash || found.signed_in {
        return Ok(Imported::SignedIn);
    }
    let same = found.email == user.email
        && found.name == user.name
        && found.password_hash == user.password_hash
        && found.email_verified == user.email_verified
        && found.disabled == user.disabled
        && found.created_at == user.created_at;
    if same {
        return Ok(Imported::Unchanged);
    }
    sqlx::query(UPDATE_USER)
        .bind(found.id.as_str())
        .bind(user.email.as_str())
        .bind(user.name.as_deref())
        .bind(user.password_hash.as_str())
        .bind(user.email_verified)
        .bind(user.disabled)
        .bind(user.created_at)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    record(UPDATE_RECORD, &found.id, user, from, now)
        .execute(&mut *conn)
        .await?;
    Ok(Imported::Updated)
}

/// The statement recording where `user_id` came from ([`RECORD`] or [`UPDATE_RECORD`]).
fn record<'q, DB>(
    statement: &'static str,
    user_id: &'q str,
    user: &'q UserRecord,
    from: &'q ImportSource,
    now: i64,
) -> super::sql::Query<'q, DB>
where
    DB: Database,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    Option<i64>: for<'e> Encode<'e, DB> + Type<DB>,
{
    sqlx::query(statement)
        .bind(user_id)
        .bind(from.source.as_str())
        .bind(from.source_id.as_str())
        .bind(user.password_hash.as_str())
        .bind(from.last_login_at)
        .bind(now)
}
