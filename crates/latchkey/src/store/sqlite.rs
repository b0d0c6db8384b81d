//! The embedded SQLite backend: one file in WAL mode with full synchronous
//! writes, so a refresh answered 200 survives a crash. Every multi-statement
//! write begins with a write, which takes SQLite's single writer lock at once
//! (no read-to-write upgrade that could fail with SQLITE_BUSY mid-transaction).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

use super::quick_reads::{self, QuickReads};
use super::rotations::Rotations;
use super::*;

/// Reads run on a pool of connections; writes on one writer connection, so
/// they queue in the process instead of in SQLite's busy handler, whose
/// back-off sleeps would otherwise put milliseconds-to-seconds tails on
/// refreshes under load. WAL lets readers proceed while the writer writes.
pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
    rotations: Rotations,
    /// None for an in-memory database, which only the sqlx pool can see.
    quick: Option<QuickReads>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://PATH`).
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("invalid sqlite url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool_of = |size: u32| {
            SqlitePoolOptions::new()
                .max_connections(size)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options.clone())
        };
        let writer = pool_of(1).await.map_err(map_err)?;
        // An in-memory database exists per connection: one pool must serve all.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = if in_memory {
            writer.clone()
        } else {
            pool_of(max_connections.max(1)).await.map_err(map_err)?
        };
        let rotations = Rotations::start(writer.clone());
        let quick = (!in_memory).then(|| QuickReads::new(options.get_filename()));
        Ok(Self {
            pool,
            writer,
            rotations,
            quick,
        })
    }

    /// A quick read's answer, or None to take the sqlx path (in-memory
    /// database, or the quick read failed).
    fn quick<T>(&self, read: impl FnOnce(&QuickReads) -> rusqlite::Result<T>) -> Option<T> {
        match read(self.quick.as_ref()?) {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::debug!(error = %e, "quick read failed; reading through the pool");
                None
            }
        }
    }

    /// Applies the embedded migrations.
    pub async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Other(format!("migration failed: {e}")))
    }
}

pub(super) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("5" | "6" | "517")) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

// Deadlines are judged at the later of the caller's time and the database's,
// so an instance whose clock stepped back cannot revive an expired session.
macro_rules! live {
    () => {
        "revoked_at IS NULL AND expires_at > MAX(?2, unixepoch()) AND idle_expires_at > MAX(?2, unixepoch())"
    };
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn insert_user(&self, u: &UserRecord) -> StoreResult<()> {
        bind_user(sqlx::query(INSERT_USER), u)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn user_by_email(&self, email_normalized: &str) -> StoreResult<Option<UserRecord>> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE email_normalized = ?1"
        );
        let row: Option<UserRecord> = sqlx::query_as(sql)
            .bind(email_normalized)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(row)
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        if let Some(found) = self.quick(|q| q.user_by_id(id)) {
            return Ok(found);
        }
        let row: Option<UserRecord> = sqlx::query_as(quick_reads::USER_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(row)
    }

    async fn list_users(&self, limit: i64, offset: i64) -> StoreResult<Vec<UserRecord>> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY created_at, id LIMIT ?1 OFFSET ?2"
        );
        let rows: Vec<UserRecord> = sqlx::query_as(sql)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(rows)
    }

    async fn replace_password_hash(
        &self,
        user_id: &str,
        expected: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = ?3, updated_at = ?4 WHERE id = ?1 AND password_hash = ?2",
        )
        .bind(user_id)
        .bind(expected)
        .bind(hash)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn change_password(
        &self,
        user_id: &str,
        expected: i64,
        hash: &str,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let version: Option<(i64,)> = sqlx::query_as(
            "UPDATE users SET password_hash = ?3, updated_at = ?4 WHERE id = ?1 AND credential_version = ?2
             RETURNING credential_version",
        )
        .bind(user_id)
        .bind(expected)
        .bind(hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if version.is_none() {
            return Ok(None);
        }
        let version = cut_user(&mut tx, user_id, now, now).await?;
        revoke_sessions_of(&mut tx, user_id, None, RevokeReason::PasswordChanged, now).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(version))
    }

    async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        now: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET disabled = ?2, updated_at = ?3 WHERE id = ?1")
            .bind(user_id)
            .bind(disabled)
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_user(&self, user_id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let done = sqlx::query("DELETE FROM users WHERE id = ?1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() > 0 {
            sqlx::query(
                "INSERT INTO revocations (kind, user_id, not_before, revoked_at) VALUES ('user', ?1, ?2, ?2)",
            )
            .bind(user_id)
            .bind(now + 1)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_session(
        &self,
        s: &SessionRecord,
        credential_version: i64,
    ) -> StoreResult<bool> {
        let done = bind_session(sqlx::query(START_SESSION), s)
            .bind(credential_version)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        if let Some(found) = self.quick(|q| q.session(id)) {
            return Ok(found);
        }
        let row: Option<SessionRecord> = sqlx::query_as(quick_reads::SESSION)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(row)
    }

    async fn advance_session(
        &self,
        id: &str,
        from: i64,
        now: i64,
        idle_expires_at: i64,
    ) -> StoreResult<bool> {
        self.rotations.advance(id, from, now, idle_expires_at).await
    }

    async fn revoke_session(&self, id: &str, reason: RevokeReason, now: i64) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let user: Option<(String,)> = sqlx::query_as(
            "UPDATE sessions SET revoked_at = ?2, revoke_reason = ?3 WHERE id = ?1 AND revoked_at IS NULL RETURNING user_id",
        )
        .bind(id)
        .bind(now)
        .bind(reason.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some((user_id,)) = &user {
            sqlx::query(
                "INSERT INTO revocations (kind, session_id, user_id, revoked_at) VALUES ('session', ?1, ?2, ?3)",
            )
            .bind(id)
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(user.is_some())
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        reason: RevokeReason,
        now: i64,
        not_before: Option<i64>,
    ) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        if let Some(nbf) = not_before {
            cut_user(&mut tx, user_id, nbf, now).await?;
        }
        let revoked = revoke_sessions_of(&mut tx, user_id, keep, reason, now).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(revoked)
    }

    async fn live_sessions(&self, user_id: &str, now: i64) -> StoreResult<Vec<SessionRecord>> {
        let sql = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE user_id = ?1 AND ",
            live!(),
            " ORDER BY created_at DESC, id"
        );
        let rows: Vec<SessionRecord> = sqlx::query_as(sql)
            .bind(user_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(rows)
    }

    async fn access_state(
        &self,
        user_id: &str,
        session_id: &str,
        kid: &str,
    ) -> StoreResult<Option<AccessState>> {
        if let Some(found) = self.quick(|q| q.access_state(user_id, session_id, kid)) {
            return Ok(found);
        }
        sqlx::query_as(quick_reads::ACCESS_STATE)
            .bind(user_id)
            .bind(session_id)
            .bind(kid)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn step_throttle(
        &self,
        key: &str,
        step: ThrottleStep<'_>,
    ) -> StoreResult<ThrottleRecord> {
        // Begins with a write, so the transaction holds the writer lock throughout.
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        sqlx::query(INSERT_THROTTLE)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let before: ThrottleRecord = sqlx::query_as(concat!(
            "SELECT ",
            throttle_columns!(),
            " FROM login_throttle WHERE key = ?1"
        ))
        .bind(key)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        let next = step(&before);
        // A look that changes nothing writes nothing (waiting attempts look often).
        if next != before {
            bind_throttle(sqlx::query(UPDATE_THROTTLE), &next)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(before)
    }

    async fn insert_event(&self, e: &NewEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO events (user_id, session_id, kind, ip, user_agent, detail, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&e.user_id)
        .bind(&e.session_id)
        .bind(&e.kind)
        .bind(&e.ip)
        .bind(&e.user_agent)
        .bind(&e.detail)
        .bind(e.created_at)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn user_events(
        &self,
        user_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        sqlx::query_as(
            "SELECT id, user_id, session_id, kind, ip, user_agent, detail, created_at FROM events
             WHERE user_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        )
        .bind(user_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        sqlx::query_as(
            "SELECT kid, alg, public_jwk, private_key, created_at, activates_at, retired_at, expires_at FROM signing_keys ORDER BY activates_at, kid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn withdraw_signing_key(&self, kid: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let done = sqlx::query(WITHDRAW_KEY)
            .bind(kid)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO revocations (kind, user_id, revoked_at, kid) VALUES ('key', '', ?2, ?1)",
        )
        .bind(kid)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn add_signing_key(&self, key: &KeyRecord, retired_expire_at: i64) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        sqlx::query(
            "UPDATE signing_keys SET retired_at = ?1, expires_at = ?2 WHERE retired_at IS NULL",
        )
        .bind(key.activates_at)
        .bind(retired_expire_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, public_jwk, private_key, created_at, activates_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.public_jwk)
        .bind(&key.private_key)
        .bind(key.created_at)
        .bind(key.activates_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    async fn prune(&self, before: PruneBefore, batch: i64) -> StoreResult<u64> {
        let statements = [
            (
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at < ?1 OR idle_expires_at < ?1 OR revoked_at < ?1 LIMIT ?2)",
                before.sessions,
            ),
            (
                "DELETE FROM revocations WHERE cursor IN (SELECT cursor FROM revocations WHERE revoked_at < ?1 LIMIT ?2)",
                before.revocations,
            ),
            (
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < ?1 LIMIT ?2)",
                before.events,
            ),
            (
                "DELETE FROM login_throttle WHERE key IN (SELECT key FROM login_throttle WHERE updated_at < ?1 AND blocked_until < ?1 LIMIT ?2)",
                before.throttles,
            ),
            (
                "DELETE FROM signing_keys WHERE kid IN (SELECT kid FROM signing_keys WHERE expires_at < ?1 LIMIT ?2)",
                before.keys,
            ),
        ];
        let mut total = 0;
        for (sql, cutoff) in statements {
            let done = sqlx::query(sql)
                .bind(cutoff)
                .bind(batch)
                .execute(&self.writer)
                .await
                .map_err(map_err)?;
            total += done.rows_affected();
        }
        Ok(total)
    }
    async fn export(&self) -> StoreResult<Snapshot> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let snapshot = Snapshot {
            version: snapshot::SNAPSHOT_VERSION,
            users: all(&mut tx, concat!("SELECT ", user_columns!(), " FROM users ORDER BY created_at, id")).await?,
            sessions: all(&mut tx, concat!("SELECT ", session_columns!(), " FROM sessions ORDER BY created_at, id")).await?,
            revocations: all(&mut tx, "SELECT cursor, kind, session_id, user_id, not_before, revoked_at, kid FROM revocations ORDER BY cursor").await?,
            events: all(&mut tx, "SELECT id, user_id, session_id, kind, ip, user_agent, detail, created_at FROM events ORDER BY id").await?,
            throttles: all(&mut tx, concat!("SELECT ", throttle_columns!(), " FROM login_throttle ORDER BY key")).await?,
            signing_keys: all(&mut tx, "SELECT kid, alg, public_jwk, private_key, created_at, activates_at, retired_at, expires_at FROM signing_keys ORDER BY activates_at, kid").await?,
            clients: all(&mut tx, "SELECT id, name, secret_hash, created_at FROM clients ORDER BY created_at, id").await?,
            revocation_cursor: sqlx::query_scalar(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'revocations'), 0)",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?,
        };
        tx.commit().await.map_err(map_err)?;
        Ok(snapshot)
    }

    async fn import(&self, snap: &Snapshot) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let (existing,): (i64,) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM signing_keys)",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        if existing > 0 {
            return Err(StoreError::Conflict);
        }
        for u in &snap.users {
            bind_user(sqlx::query(INSERT_USER), u)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        for s in &snap.sessions {
            bind_session(sqlx::query(INSERT_SESSION), s)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        for r in &snap.revocations {
            sqlx::query("INSERT INTO revocations (cursor, kind, session_id, user_id, not_before, revoked_at, kid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .bind(r.cursor).bind(&r.kind).bind(&r.session_id).bind(&r.user_id).bind(r.not_before).bind(r.revoked_at).bind(&r.kid)
                .execute(&mut *tx).await.map_err(map_err)?;
        }
        for e in &snap.events {
            sqlx::query("INSERT INTO events (id, user_id, session_id, kind, ip, user_agent, detail, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .bind(e.id).bind(&e.user_id).bind(&e.session_id).bind(&e.kind).bind(&e.ip).bind(&e.user_agent).bind(&e.detail).bind(e.created_at)
                .execute(&mut *tx).await.map_err(map_err)?;
        }
        for t in &snap.throttles {
            bind_throttle(sqlx::query(LOAD_THROTTLE), t)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        for k in &snap.signing_keys {
            sqlx::query("INSERT INTO signing_keys (kid, alg, public_jwk, private_key, created_at, retired_at, expires_at, activates_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .bind(&k.kid).bind(&k.alg).bind(&k.public_jwk).bind(&k.private_key).bind(k.created_at).bind(k.retired_at).bind(k.expires_at).bind(k.activates_at)
                .execute(&mut *tx).await.map_err(map_err)?;
        }
        for c in &snap.clients {
            sqlx::query(INSERT_CLIENT)
                .bind(&c.id)
                .bind(&c.name)
                .bind(&c.secret_hash)
                .bind(c.created_at)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        // AUTOINCREMENT continues above sqlite_sequence's value.
        for sql in [
            "UPDATE sqlite_sequence SET seq = MAX(seq, ?1) WHERE name = 'revocations'",
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'revocations', ?1
             WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'revocations')",
        ] {
            sqlx::query(sql)
                .bind(snap.revocation_cursor)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn insert_client(&self, c: &ClientRecord) -> StoreResult<()> {
        sqlx::query(INSERT_CLIENT)
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.secret_hash)
            .bind(c.created_at)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRecord>> {
        if let Some(found) = self.quick(|q| q.client(id)) {
            return Ok(found);
        }
        sqlx::query_as(quick_reads::CLIENT)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        sqlx::query_as(
            "SELECT id, name, secret_hash, created_at FROM clients ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn delete_client(&self, id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM clients WHERE id = ?1")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn restore_guard(&self) -> StoreResult<(String, i64)> {
        sqlx::query_as("SELECT database_id, counter FROM restore_guard")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn advance_restore_guard(&self) -> StoreResult<(String, i64)> {
        sqlx::query_as(
            "UPDATE restore_guard SET counter = counter + 1 RETURNING database_id, counter",
        )
        .fetch_one(&self.writer)
        .await
        .map_err(map_err)
    }

    async fn revoke_everything(&self, now: i64, database_id: &str) -> StoreResult<(u64, u64)> {
        let mut tx = self.writer.begin().await.map_err(map_err)?;
        let users = sqlx::query(CUT_EVERY_USER)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        sqlx::query(FEED_EVERY_USER)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let sessions = sqlx::query(END_EVERY_SESSION)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        sqlx::query("UPDATE restore_guard SET database_id = ?1, counter = counter + 1")
            .bind(database_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok((sessions, users))
    }

    async fn revocations_after(
        &self,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<RevocationRecord>> {
        sqlx::query_as(
            "SELECT cursor, kind, session_id, user_id, not_before, revoked_at, kid FROM revocations
             WHERE cursor > ?1 ORDER BY cursor LIMIT ?2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn oldest_revocation(&self) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(cursor) FROM revocations")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

const INSERT_USER: &str = "INSERT INTO users (id, email, email_normalized, name, password_hash, email_verified, disabled, not_before, created_at, updated_at, credential_version)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)";
const INSERT_SESSION: &str = "INSERT INTO sessions (id, user_id, salt, generation, rotated_at, created_at, last_used_at, idle_expires_at, expires_at, revoked_at, user_agent, ip)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
/// A new session, only while its user is enabled and at credential version ?13.
const START_SESSION: &str = "INSERT INTO sessions (id, user_id, salt, generation, rotated_at, created_at, last_used_at, idle_expires_at, expires_at, revoked_at, user_agent, ip)
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12
     WHERE EXISTS (SELECT 1 FROM users WHERE id = ?2 AND credential_version = ?13 AND disabled = 0)";

fn bind_user<'q>(q: Query<'q>, u: &'q UserRecord) -> Query<'q> {
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
}

fn bind_session<'q>(q: Query<'q>, s: &'q SessionRecord) -> Query<'q> {
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
}

const INSERT_CLIENT: &str =
    "INSERT INTO clients (id, name, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4)";

/// Every row a static query returns, inside a transaction.
async fn all<T>(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    sql: &'static str,
) -> StoreResult<Vec<T>>
where
    T: for<'r> FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
{
    sqlx::query_as(sql)
        .fetch_all(&mut **tx)
        .await
        .map_err(map_err)
}

/// A throttle row with nothing counted, unless the key has one already.
const INSERT_THROTTLE: &str =
    "INSERT INTO login_throttle (key, failures, blocked_until, updated_at)
     VALUES (?1, 0, 0, 0) ON CONFLICT (key) DO NOTHING";
const UPDATE_THROTTLE: &str =
    "UPDATE login_throttle SET failures = ?2, blocked_until = ?3, updated_at = ?4,
     pending = ?5, pending_until = ?6, day_started_at = ?7, day_failures = ?8 WHERE key = ?1";
const LOAD_THROTTLE: &str = concat!(
    "INSERT INTO login_throttle (",
    throttle_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
);

fn bind_throttle<'q>(q: Query<'q>, t: &'q ThrottleRecord) -> Query<'q> {
    q.bind(&t.key)
        .bind(t.failures)
        .bind(t.blocked_until)
        .bind(t.updated_at)
        .bind(t.pending)
        .bind(t.pending_until)
        .bind(t.day_started_at)
        .bind(t.day_failures)
}

/// Raises the user's credential version and `not_before` and records the
/// user-wide revocation; returns the new version.
async fn cut_user(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    user_id: &str,
    not_before: i64,
    now: i64,
) -> StoreResult<i64> {
    let (version,): (i64,) = sqlx::query_as(
        "UPDATE users SET credential_version = credential_version + 1, not_before = MAX(not_before, ?2)
         WHERE id = ?1 RETURNING credential_version",
    )
    .bind(user_id)
    .bind(not_before)
    .fetch_one(&mut **tx)
    .await
    .map_err(map_err)?;
    sqlx::query(
        "INSERT INTO revocations (kind, user_id, not_before, revoked_at) VALUES ('user', ?1, ?2, ?3)",
    )
    .bind(user_id)
    .bind(not_before)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(version)
}

/// Revokes the user's live sessions but `keep`, each with its feed entry.
async fn revoke_sessions_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    user_id: &str,
    keep: Option<&str>,
    reason: RevokeReason,
    now: i64,
) -> StoreResult<u64> {
    let revoked: Vec<(String,)> = sqlx::query_as(
        "UPDATE sessions SET revoked_at = ?2, revoke_reason = ?3
         WHERE user_id = ?1 AND revoked_at IS NULL AND id IS NOT ?4 RETURNING id",
    )
    .bind(user_id)
    .bind(now)
    .bind(reason.as_str())
    .bind(keep)
    .fetch_all(&mut **tx)
    .await
    .map_err(map_err)?;
    for (sid,) in &revoked {
        sqlx::query(
            "INSERT INTO revocations (kind, session_id, user_id, revoked_at) VALUES ('session', ?1, ?2, ?3)",
        )
        .bind(sid)
        .bind(user_id)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    }
    Ok(revoked.len() as u64)
}

/// The steps of `revoke_everything`, users first; each binds ?1 = now.
const CUT_EVERY_USER: &str = "UPDATE users SET credential_version = credential_version + 1,
     not_before = MAX(not_before, ?1 + 1)";
const FEED_EVERY_USER: &str = "INSERT INTO revocations (kind, user_id, not_before, revoked_at)
     SELECT 'user', id, ?1 + 1, ?1 FROM users";
const END_EVERY_SESSION: &str =
    "UPDATE sessions SET revoked_at = ?1, revoke_reason = 'admin' WHERE revoked_at IS NULL";

/// A published key stops signing and leaves the JWKS now (?2).
const WITHDRAW_KEY: &str =
    "UPDATE signing_keys SET retired_at = MIN(COALESCE(retired_at, ?2), ?2), expires_at = ?2
     WHERE kid = ?1 AND (expires_at IS NULL OR expires_at > ?2)";
