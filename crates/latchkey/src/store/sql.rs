//! The statements both backends run word for word, and one binder per
//! record. Placeholders are written `$N`, which PostgreSQL and sqlx's SQLite
//! driver both read; every statement is a static string. What truly differs
//! between the backends (row locks, data-modifying CTEs, sequences, the
//! database's own clock) stays in each backend's file.

use sqlx::{Database, Encode, FromRow, Type};

use super::{
    ClientRecord, EventQuery, EventRecord, KeyRecord, NewEvent, SessionRecord, UserRecord,
};
use super::{RevocationRecord, Snapshot, ThrottleRecord};

// Column lists as macros, so that statements built from them stay static.
macro_rules! user_columns {
    () => {
        "id, email, email_normalized, name, password_hash, email_verified, disabled, not_before, created_at, credential_version, locale"
    };
}
macro_rules! prefixed_user_columns {
    () => {
        "u.id, u.email, u.email_normalized, u.name, u.password_hash, u.email_verified, u.disabled, u.not_before, u.created_at, u.credential_version, u.locale"
    };
}
macro_rules! session_columns {
    () => {
        "id, user_id, salt, generation, rotated_at, created_at, last_used_at, idle_expires_at, expires_at, revoked_at, user_agent, ip, auth_time, amr"
    };
}
macro_rules! prefixed_session_columns {
    () => {
        "s.id, s.user_id, s.salt, s.generation, s.rotated_at, s.created_at, s.last_used_at, s.idle_expires_at, s.expires_at, s.revoked_at, s.user_agent, s.ip, s.auth_time, s.amr"
    };
}
macro_rules! throttle_columns {
    () => {
        "key, failures, blocked_until, updated_at, pending, pending_until, day_started_at, day_failures"
    };
}
macro_rules! event_columns {
    () => {
        "id, user_id, session_id, kind, ip, user_agent, detail, created_at, actor"
    };
}
macro_rules! key_columns {
    () => {
        "kid, alg, public_jwk, private_key, created_at, activates_at, retired_at, expires_at"
    };
}
macro_rules! revocation_columns {
    () => {
        "cursor, kind, session_id, user_id, not_before, revoked_at, kid"
    };
}
macro_rules! client_columns {
    () => {
        "id, name, secret_hash, created_at, admin"
    };
}
pub(super) use prefixed_session_columns;
pub(super) use prefixed_user_columns;
pub(super) use session_columns;
pub(super) use throttle_columns;

pub const PING: &str = "SELECT 1";

// Users.
pub const INSERT_USER: &str = concat!(
    "INSERT INTO users (",
    user_columns!(),
    ", updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $9)"
);
pub const USER_BY_EMAIL: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE email_normalized = $1"
);
pub const USER_BY_ID: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
/// $1 limit, $2 offset, $3 a prefix of the normalised address ('' for all).
pub const LIST_USERS: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE substr(email_normalized, 1, length($3)) = $3
     ORDER BY created_at, id LIMIT $1 OFFSET $2"
);
/// A rehash: only while the hash is still the one that was verified.
pub const REPLACE_PASSWORD_HASH: &str =
    "UPDATE users SET password_hash = $3, updated_at = $4 WHERE id = $1 AND password_hash = $2";
/// A new password: only while the credential version is still the one read.
pub const SET_PASSWORD: &str = "UPDATE users SET password_hash = $3, updated_at = $4
     WHERE id = $1 AND credential_version = $2";
pub const SET_USER_DISABLED: &str = "UPDATE users SET disabled = $2, updated_at = $3 WHERE id = $1";
/// Raises a user's credential version and `not_before` ($2, never lowered).
pub const CUT_USER: &str = "UPDATE users SET credential_version = credential_version + 1,
     not_before = CASE WHEN not_before > $2 THEN not_before ELSE $2 END
     WHERE id = $1 RETURNING credential_version";
/// The feed entry of a user-wide revocation: $1 user, $2 not_before, $3 now.
pub const FEED_USER: &str = "INSERT INTO revocations (kind, user_id, not_before, revoked_at)
     VALUES ('user', $1, $2, $3)";

// Sessions.
pub const INSERT_SESSION: &str = concat!(
    "INSERT INTO sessions (",
    session_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
);
pub const SESSION: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE id = $1"
);
pub const SET_SESSION_AUTH: &str =
    "UPDATE sessions SET auth_time = $2, amr = $3 WHERE id = $1 AND revoked_at IS NULL";
/// What an access-token check needs: $1 user, $2 session, $3 signing kid.
pub const ACCESS_STATE: &str = concat!(
    "SELECT ",
    prefixed_user_columns!(),
    ", s.revoked_at IS NOT NULL AS session_revoked, s.expires_at AS session_expires_at,
     EXISTS (SELECT 1 FROM revocations WHERE kid = $3) AS key_withdrawn
     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $2 AND u.id = $1"
);

// The steps of revoking everything, users first; each binds $1 = now.
pub const CUT_EVERY_USER: &str = "UPDATE users SET credential_version = credential_version + 1,
     not_before = CASE WHEN not_before > $1 + 1 THEN not_before ELSE $1 + 1 END";
pub const FEED_EVERY_USER: &str = "INSERT INTO revocations (kind, user_id, not_before, revoked_at)
     SELECT 'user', id, $1 + 1, $1 FROM users ORDER BY id";
pub const END_EVERY_SESSION: &str =
    "UPDATE sessions SET revoked_at = $1, revoke_reason = 'admin' WHERE revoked_at IS NULL";
pub const RENAME_DATABASE: &str =
    "UPDATE restore_guard SET database_id = $1, counter = counter + 1";

// Throttles.
/// A throttle row with nothing counted, unless the key has one already.
pub const INSERT_THROTTLE: &str =
    "INSERT INTO login_throttle (key, failures, blocked_until, updated_at)
     VALUES ($1, 0, 0, 0) ON CONFLICT (key) DO NOTHING";
pub const UPDATE_THROTTLE: &str =
    "UPDATE login_throttle SET failures = $2, blocked_until = $3, updated_at = $4,
     pending = $5, pending_until = $6, day_started_at = $7, day_failures = $8 WHERE key = $1";
pub const LOAD_THROTTLE: &str = concat!(
    "INSERT INTO login_throttle (",
    throttle_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
);

// Events.
pub const INSERT_EVENT: &str =
    "INSERT INTO events (user_id, session_id, kind, ip, user_agent, detail, created_at, actor)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
/// $1 user, $2 the id to stay below, $3 limit.
pub const USER_EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
);
/// Every user's events, newest first: $1 user (or NULL), $2 kind (or NULL),
/// from $3 to before $4, ids below $5, $6 at most.
pub const SEARCH_EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR kind = $2)
     AND created_at >= $3 AND created_at < $4 AND id < $5 ORDER BY id DESC LIMIT $6"
);
pub const LOAD_EVENT: &str = concat!(
    "INSERT INTO events (",
    event_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
);

// Signing keys.
pub const SIGNING_KEYS: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM signing_keys ORDER BY activates_at, kid"
);
/// A published key stops signing and leaves the JWKS now ($2).
pub const WITHDRAW_KEY: &str = "UPDATE signing_keys
     SET retired_at = CASE WHEN retired_at IS NULL OR retired_at > $2 THEN $2 ELSE retired_at END,
         expires_at = $2
     WHERE kid = $1 AND (expires_at IS NULL OR expires_at > $2)";
pub const FEED_KEY: &str =
    "INSERT INTO revocations (kind, user_id, revoked_at, kid) VALUES ('key', '', $2, $1)";
/// The keys signing now retire at $1 and leave the JWKS at $2.
pub const RETIRE_KEYS: &str =
    "UPDATE signing_keys SET retired_at = $1, expires_at = $2 WHERE retired_at IS NULL";
pub const INSERT_KEY: &str = concat!(
    "INSERT INTO signing_keys (",
    key_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
);

// Clients.
pub const INSERT_CLIENT: &str = concat!(
    "INSERT INTO clients (",
    client_columns!(),
    ") VALUES ($1, $2, $3, $4, $5)"
);
pub const CLIENT: &str = concat!("SELECT ", client_columns!(), " FROM clients WHERE id = $1");
pub const LIST_CLIENTS: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM clients ORDER BY created_at, id"
);
pub const DELETE_CLIENT: &str = "DELETE FROM clients WHERE id = $1";

// The restore guard.
pub const RESTORE_GUARD: &str = "SELECT database_id, counter FROM restore_guard";
pub const ADVANCE_RESTORE_GUARD: &str =
    "UPDATE restore_guard SET counter = counter + 1 RETURNING database_id, counter";

// The revocation feed.
/// $1 the cursor to read after, $2 limit.
pub const REVOCATIONS_AFTER: &str = concat!(
    "SELECT ",
    revocation_columns!(),
    " FROM revocations WHERE cursor > $1 ORDER BY cursor LIMIT $2"
);
pub const OLDEST_REVOCATION: &str = "SELECT MIN(cursor) FROM revocations";
pub const LOAD_REVOCATION: &str = concat!(
    "INSERT INTO revocations (",
    revocation_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
);

/// The pruner's statements, each deleting at most $2 rows older than $1.
/// Key-based sub-selects: DELETE has no LIMIT on PostgreSQL, and
/// CockroachDB has no ctid.
pub const PRUNE: [&str; 9] = [
    "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at < $1 OR idle_expires_at < $1 OR revoked_at < $1 LIMIT $2)",
    "DELETE FROM revocations WHERE cursor IN (SELECT cursor FROM revocations WHERE revoked_at < $1 LIMIT $2)",
    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < $1 LIMIT $2)",
    "DELETE FROM login_throttle WHERE key IN (SELECT key FROM login_throttle WHERE updated_at < $1 AND blocked_until < $1 LIMIT $2)",
    "DELETE FROM signing_keys WHERE kid IN (SELECT kid FROM signing_keys WHERE expires_at < $1 LIMIT $2)",
    "DELETE FROM mail_outbox WHERE id IN (SELECT id FROM mail_outbox WHERE (sent_at < $1 OR failed_at < $1) LIMIT $2)",
    "DELETE FROM email_tokens WHERE digest IN (SELECT digest FROM email_tokens WHERE expires_at < $1 LIMIT $2)",
    "DELETE FROM mfa_challenges WHERE digest IN (SELECT digest FROM mfa_challenges WHERE expires_at < $1 LIMIT $2)",
    "DELETE FROM passkey_ceremonies WHERE digest IN (SELECT digest FROM passkey_ceremonies WHERE expires_at < $1 LIMIT $2)",
];

/// Whether the database holds a deployment already (users or keys).
pub const HOLDS_DATA: &str =
    "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM signing_keys)";

// Every table in full, for `export`.
pub const ALL_USERS: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users ORDER BY created_at, id"
);
pub const ALL_SESSIONS: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions ORDER BY created_at, id"
);
pub const ALL_REVOCATIONS: &str = concat!(
    "SELECT ",
    revocation_columns!(),
    " FROM revocations ORDER BY cursor"
);
pub const ALL_EVENTS: &str = concat!("SELECT ", event_columns!(), " FROM events ORDER BY id");
pub const ALL_THROTTLES: &str = concat!(
    "SELECT ",
    throttle_columns!(),
    " FROM login_throttle ORDER BY key"
);
pub const ALL_KEYS: &str = SIGNING_KEYS;
pub const ALL_CLIENTS: &str = LIST_CLIENTS;

/// The prune cut-offs in the order of [`PRUNE`].
pub fn prune_cutoffs(before: &super::PruneBefore) -> [i64; 9] {
    [
        before.sessions,
        before.revocations,
        before.events,
        before.throttles,
        before.keys,
        before.mail,
        before.tokens,
        before.tokens,
        before.tokens,
    ]
}

/// A query of either backend.
pub type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as Database>::Arguments>;

/// Defines a binder generic over the backend: it needs exactly the column
/// types Latchkey stores, which both backends encode.
macro_rules! binder {
    ($(#[$doc:meta])* $name:ident($q:ident, $record:ident: $ty:ty) $body:block) => {
        $(#[$doc])*
        pub fn $name<'q, DB>($q: Query<'q, DB>, $record: &'q $ty) -> Query<'q, DB>
        where
            DB: Database,
            String: for<'e> Encode<'e, DB> + Type<DB>,
            Vec<u8>: for<'e> Encode<'e, DB> + Type<DB>,
            i64: for<'e> Encode<'e, DB> + Type<DB>,
            bool: for<'e> Encode<'e, DB> + Type<DB>,
    Option<String>: for<'e> Encode<'e, DB>,
    Option<i64>: for<'e> Encode<'e, DB>,
            Option<String>: for<'e> Encode<'e, DB>,
            Option<i64>: for<'e> Encode<'e, DB>,
        $body
    };
}

binder! {
    /// Binds every column of [`INSERT_USER`].
    bind_user(q, u: UserRecord) {
        q.bind(&u.id)
            .bind(&u.email)
            .bind(&u.email_normalized)
            .bind(&u.name)
            .bind(&u.password_hash)
            .bind(u.email_verified)
            .bind(u.disabled)
            .bind(u.not_before)
            .bind(u.created_at)
            .bind(u.credential_version)
            .bind(&u.locale)
    }
}

binder! {
    /// Binds every column of [`INSERT_SESSION`] (and `$1`–`$14` of a
    /// backend's conditional session insert).
    bind_session(q, s: SessionRecord) {
        q.bind(&s.id)
            .bind(&s.user_id)
            .bind(&s.salt)
            .bind(s.generation)
            .bind(s.rotated_at)
            .bind(s.created_at)
            .bind(s.last_used_at)
            .bind(s.idle_expires_at)
            .bind(s.expires_at)
            .bind(s.revoked_at)
            .bind(&s.user_agent)
            .bind(&s.ip)
            .bind(s.auth_time)
            .bind(&s.amr)
    }
}

binder! {
    /// Binds [`UPDATE_THROTTLE`] and [`LOAD_THROTTLE`].
    bind_throttle(q, t: ThrottleRecord) {
        q.bind(&t.key)
            .bind(t.failures)
            .bind(t.blocked_until)
            .bind(t.updated_at)
            .bind(t.pending)
            .bind(t.pending_until)
            .bind(t.day_started_at)
            .bind(t.day_failures)
    }
}

binder! {
    /// Binds [`INSERT_EVENT`].
    bind_new_event(q, e: NewEvent) {
        q.bind(&e.user_id)
            .bind(&e.session_id)
            .bind(&e.kind)
            .bind(&e.ip)
            .bind(&e.user_agent)
            .bind(&e.detail)
            .bind(e.created_at)
            .bind(&e.actor)
    }
}

/// Binds [`SEARCH_EVENTS`].
pub fn bind_event_query<'q, DB, O>(
    q: sqlx::query::QueryAs<'q, DB, O, <DB as Database>::Arguments>,
    e: &'q EventQuery,
) -> sqlx::query::QueryAs<'q, DB, O, <DB as Database>::Arguments>
where
    DB: Database,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    Option<String>: for<'e> Encode<'e, DB> + Type<DB>,
{
    q.bind(&e.user_id)
        .bind(&e.kind)
        .bind(e.since.unwrap_or(i64::MIN))
        .bind(e.until.unwrap_or(i64::MAX))
        .bind(e.before.unwrap_or(i64::MAX))
        .bind(e.limit)
}

binder! {
    /// Binds [`LOAD_EVENT`].
    bind_event(q, e: EventRecord) {
        q.bind(e.id)
            .bind(&e.user_id)
            .bind(&e.session_id)
            .bind(&e.kind)
            .bind(&e.ip)
            .bind(&e.user_agent)
            .bind(&e.detail)
            .bind(e.created_at)
            .bind(&e.actor)
    }
}

binder! {
    /// Binds [`INSERT_KEY`].
    bind_key(q, k: KeyRecord) {
        q.bind(&k.kid)
            .bind(&k.alg)
            .bind(&k.public_jwk)
            .bind(&k.private_key)
            .bind(k.created_at)
            .bind(k.activates_at)
            .bind(k.retired_at)
            .bind(k.expires_at)
    }
}

binder! {
    /// Binds [`LOAD_REVOCATION`].
    bind_revocation(q, r: RevocationRecord) {
        q.bind(r.cursor)
            .bind(&r.kind)
            .bind(&r.session_id)
            .bind(&r.user_id)
            .bind(r.not_before)
            .bind(r.revoked_at)
            .bind(&r.kid)
    }
}

binder! {
    /// Binds [`INSERT_CLIENT`].
    bind_client(q, c: ClientRecord) {
        q.bind(&c.id)
            .bind(&c.name)
            .bind(&c.secret_hash)
            .bind(c.created_at)
            .bind(c.admin)
    }
}

/// Every table of the database `conn` is on, as [`export`](super::Store::export)
/// gives it, but for the revocation cursor, which each backend keeps its own way.
pub async fn read_all<DB>(conn: &mut DB::Connection) -> Result<Snapshot, sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    UserRecord: for<'r> FromRow<'r, DB::Row>,
    SessionRecord: for<'r> FromRow<'r, DB::Row>,
    RevocationRecord: for<'r> FromRow<'r, DB::Row>,
    EventRecord: for<'r> FromRow<'r, DB::Row>,
    ThrottleRecord: for<'r> FromRow<'r, DB::Row>,
    KeyRecord: for<'r> FromRow<'r, DB::Row>,
    ClientRecord: for<'r> FromRow<'r, DB::Row>,
    super::TotpRecord: for<'r> FromRow<'r, DB::Row>,
    super::RecoveryCodeRecord: for<'r> FromRow<'r, DB::Row>,
    super::PasskeyRecord: for<'r> FromRow<'r, DB::Row>,
{
    Ok(Snapshot {
        version: super::snapshot::SNAPSHOT_VERSION,
        users: sqlx::query_as(ALL_USERS).fetch_all(&mut *conn).await?,
        sessions: sqlx::query_as(ALL_SESSIONS).fetch_all(&mut *conn).await?,
        revocations: sqlx::query_as(ALL_REVOCATIONS)
            .fetch_all(&mut *conn)
            .await?,
        events: sqlx::query_as(ALL_EVENTS).fetch_all(&mut *conn).await?,
        throttles: sqlx::query_as(ALL_THROTTLES).fetch_all(&mut *conn).await?,
        signing_keys: sqlx::query_as(ALL_KEYS).fetch_all(&mut *conn).await?,
        clients: sqlx::query_as(ALL_CLIENTS).fetch_all(&mut *conn).await?,
        totp_factors: sqlx::query_as(super::factors::ALL_TOTP)
            .fetch_all(&mut *conn)
            .await?,
        recovery_codes: sqlx::query_as(super::factors::ALL_CODES)
            .fetch_all(&mut *conn)
            .await?,
        passkeys: sqlx::query_as(super::factors::ALL_PASSKEYS)
            .fetch_all(&mut *conn)
            .await?,
        revocation_cursor: 0,
    })
}

/// Inserts every row of `snap` with its own ids and cursors; moving the
/// backend's sequences past them is the caller's part.
pub async fn load<DB>(conn: &mut DB::Connection, snap: &Snapshot) -> Result<(), sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    String: for<'e> Encode<'e, DB> + Type<DB>,
    Vec<u8>: for<'e> Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    bool: for<'e> Encode<'e, DB> + Type<DB>,
    Option<String>: for<'e> Encode<'e, DB>,
    Option<i64>: for<'e> Encode<'e, DB> + Type<DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    for<'e> &'e [u8]: Encode<'e, DB> + Type<DB>,
{
    for u in &snap.users {
        bind_user(sqlx::query(INSERT_USER), u)
            .execute(&mut *conn)
            .await?;
    }
    for s in &snap.sessions {
        bind_session(sqlx::query(INSERT_SESSION), s)
            .execute(&mut *conn)
            .await?;
    }
    for r in &snap.revocations {
        bind_revocation(sqlx::query(LOAD_REVOCATION), r)
            .execute(&mut *conn)
            .await?;
    }
    for e in &snap.events {
        bind_event(sqlx::query(LOAD_EVENT), e)
            .execute(&mut *conn)
            .await?;
    }
    for t in &snap.throttles {
        bind_throttle(sqlx::query(LOAD_THROTTLE), t)
            .execute(&mut *conn)
            .await?;
    }
    for k in &snap.signing_keys {
        bind_key(sqlx::query(INSERT_KEY), k)
            .execute(&mut *conn)
            .await?;
    }
    for c in &snap.clients {
        bind_client(sqlx::query(INSERT_CLIENT), c)
            .execute(&mut *conn)
            .await?;
    }
    let f = (&snap.totp_factors, &snap.recovery_codes, &snap.passkeys);
    super::factors::load::<DB>(conn, f.0, f.1, f.2).await
}

/// Raises the user's credential version and `not_before` and records the
/// user-wide revocation, on the transaction `conn` is in; returns the new
/// version.
pub async fn cut_user<DB>(
    conn: &mut DB::Connection,
    user_id: &str,
    not_before: i64,
    now: i64,
) -> Result<i64, sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    let version: i64 = sqlx::query_scalar(CUT_USER)
        .bind(user_id)
        .bind(not_before)
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(FEED_USER)
        .bind(user_id)
        .bind(not_before)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(version)
}
