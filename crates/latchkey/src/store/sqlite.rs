//! The embedded SQLite backend: one file in WAL mode with full synchronous
//! writes, so a refresh answered 200 survives a crash. Every multi-statement
//! write begins with a write, which takes SQLite's single writer lock at once
//! (no read-to-write upgrade that could fail with SQLITE_BUSY mid-transaction).
//! Every transaction ends in a commit or an explicit rollback: one merely
//! dropped is rolled back only at its connection's next use, and keeps the
//! lock until then — other processes (the CLI) would wait on it.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::batch::Batcher;
use super::factors;
use super::hooks;
use super::imports;
use super::outbox;
use super::quick_reads::QuickReads;
use super::rotations::{self, Rotation, SqliteRotations};
use super::sql::{self, bind_session, bind_throttle};
use super::*;

/// The page cache of each pooled read connection, in KiB.
const READER_CACHE_KIB: u32 = 512;

/// Reads run on a pool of connections; writes on one writer connection, so
/// they queue in the process instead of in SQLite's busy handler, whose
/// back-off sleeps would otherwise put milliseconds-to-seconds tails on
/// refreshes under load. WAL lets readers proceed while the writer writes.
pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
    rotations: Batcher<SqliteRotations>,
    /// None for an in-memory database, which only the sqlx pool can see.
    quick: Option<QuickReads>,
    /// Set when a write failed because the disk is full, read-only or
    /// failing: readiness then asks for a write that succeeds.
    storage_failed: AtomicBool,
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
        let pool_of = |size: u32, options: SqliteConnectOptions| {
            SqlitePoolOptions::new()
                .max_connections(size)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
        };
        // An in-memory database exists per connection: one pool must serve all.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            make_private(options.get_filename())?;
        }
        let writer = pool_of(1, options.clone()).await.map_err(map_err)?;
        let pool = if in_memory {
            writer.clone()
        } else {
            // The hot reads go through the quick readers; each of the pool's
            // connections keeps a small page cache of its own (the kernel's
            // page cache is behind it) instead of SQLite's 2 MiB default.
            let reader = options
                .clone()
                .pragma("cache_size", format!("-{READER_CACHE_KIB}"));
            pool_of(max_connections.max(1), reader)
                .await
                .map_err(map_err)?
        };
        let rotations = Batcher::start(SqliteRotations(writer.clone()), rotations::MAX_BATCH);
        let quick = (!in_memory).then(|| QuickReads::new(options.get_filename()));
        Ok(Self {
            pool,
            writer,
            rotations,
            quick,
            storage_failed: AtomicBool::new(false),
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

/// Creates the database file private (0600), or makes an existing one and
/// its WAL files so: they hold every password hash. SQLite creates its WAL
/// and shared-memory files with the database file's own permissions.
fn make_private(path: &std::path::Path) -> StoreResult<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let failed =
        |e: std::io::Error| StoreError::Other(format!("making {} private: {e}", path.display()));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(failed)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// SQLite's primary result codes (the low byte of an extended code) that
/// mean the database cannot be used now but may be soon: busy or locked, and
/// storage failures — read-only, I/O error, disk full, cannot open.
const BUSY: [i64; 2] = [5, 6];
const STORAGE: [i64; 4] = [8, 10, 13, 14];

fn primary_code(e: &sqlx::Error) -> Option<i64> {
    match e {
        sqlx::Error::Database(db) => db.code()?.parse::<i64>().ok().map(|c| c & 0xff),
        _ => None,
    }
}

/// A write that leaves nothing behind but needs room on the disk.
const PROBE_WRITE: [&str; 2] = [
    "INSERT INTO storage_probe (id, filler) VALUES (1, zeroblob(262144))",
    "DELETE FROM storage_probe",
];

impl SqliteStore {
    /// Maps an error, noting a storage failure for the readiness probe.
    fn fail(&self, e: sqlx::Error) -> StoreError {
        if primary_code(&e).is_some_and(|c| STORAGE.contains(&c)) {
            self.storage_failed.store(true, Ordering::Release);
        }
        map_err(e)
    }
}

pub(super) fn map_err(e: sqlx::Error) -> StoreError {
    let code = primary_code(&e);
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ if code.is_some_and(|c| BUSY.contains(&c) || STORAGE.contains(&c)) => {
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
const LIVE_SESSIONS: &str = concat!(
    "SELECT ",
    sql::session_columns!(),
    " FROM sessions WHERE user_id = $1 AND revoked_at IS NULL
     AND expires_at > MAX($2, unixepoch()) AND idle_expires_at > MAX($2, unixepoch())
     ORDER BY created_at DESC, id"
);
/// A new session, only while its user is enabled and at credential version $15.
const START_SESSION: &str = concat!(
    "INSERT INTO sessions (",
    sql::session_columns!(),
    ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
     WHERE EXISTS (SELECT 1 FROM users WHERE id = $2 AND credential_version = $15 AND disabled = 0)"
);
const THROTTLE: &str = concat!(
    "SELECT ",
    sql::throttle_columns!(),
    " FROM login_throttle WHERE key = $1"
);
/// SQLite has no data-modifying CTEs: the ended sessions are read back and
/// fed one by one.
const END_SESSION: &str = "UPDATE sessions SET revoked_at = $2, revoke_reason = $3
     WHERE id = $1 AND revoked_at IS NULL RETURNING user_id";
const END_SESSIONS_OF: &str = "UPDATE sessions SET revoked_at = $2, revoke_reason = $3
     WHERE user_id = $1 AND revoked_at IS NULL AND id IS NOT $4 RETURNING id";
const FEED_SESSION: &str = "INSERT INTO revocations (kind, session_id, user_id, revoked_at)
     VALUES ('session', $1, $2, $3)";
const DELETE_USER: &str = "DELETE FROM users WHERE id = $1";
const REVOCATION_CURSOR: &str =
    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'revocations'), 0)";
/// AUTOINCREMENT continues above sqlite_sequence's value.
const SET_REVOCATION_CURSOR: [&str; 2] = [
    "UPDATE sqlite_sequence SET seq = MAX(seq, $1) WHERE name = 'revocations'",
    "INSERT INTO sqlite_sequence (name, seq) SELECT 'revocations', $1
     WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'revocations')",
];

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

const TALLY_POSITION: &str = "SELECT tallied_until FROM event_tallies WHERE kind = $1";

/// Takes due mail: $1 now, $2 lease end, $3 limit. SQLite's one writer
/// serialises takers.
const CLAIM_MAIL: &str = concat!(
    "UPDATE mail_outbox SET next_attempt_at = $2, attempts = attempts + 1
     WHERE id IN (SELECT id FROM mail_outbox
                  WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
                  ORDER BY next_attempt_at, id LIMIT $3)
     RETURNING ",
    outbox::mail_columns!()
);

/// Takes due deliveries: $1 now, $2 lease end, $3 limit, oldest first;
/// about one user, an endpoint gets the next only once the one before is done.
const CLAIM_DELIVERIES: &str = concat!(
    "UPDATE webhook_deliveries SET next_attempt_at = $2, attempts = attempts + 1
     WHERE id IN (SELECT id FROM webhook_deliveries d
                  WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
                    AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o
                                    WHERE o.webhook_id = d.webhook_id AND o.user_id = d.user_id
                                      AND o.id < d.id
                                      AND o.delivered_at IS NULL AND o.failed_at IS NULL)
                  ORDER BY next_attempt_at, id LIMIT $3)
     RETURNING ",
    hooks::delivery_columns!()
);

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        if !self.storage_failed.load(Ordering::Acquire) {
            sqlx::query(sql::PING)
                .execute(&self.writer)
                .await
                .map_err(|e| self.fail(e))?;
            return Ok(());
        }
        // After a storage failure, ready again only once a write of a
        // request's size reaches the disk.
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        for statement in PROBE_WRITE {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.fail(e))?;
        }
        tx.commit().await.map_err(|e| self.fail(e))?;
        self.storage_failed.store(false, Ordering::Release);
        Ok(())
    }

    async fn insert_user(&self, u: &UserRecord, outgoing: &Outgoing) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        sql::bind_user(sqlx::query(sql::INSERT_USER), u)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        outbox::write::<sqlx::Sqlite>(&mut tx, outgoing, &[])
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))
    }

    async fn set_email_verified(&self, user_id: &str, now: i64) -> StoreResult<()> {
        sqlx::query(outbox::SET_VERIFIED)
            .bind(user_id)
            .bind(true)
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn send(&self, outgoing: &Outgoing) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        outbox::write::<sqlx::Sqlite>(&mut tx, outgoing, &[])
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))
    }

    async fn email_token(
        &self,
        digest: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> StoreResult<Option<EmailTokenRecord>> {
        sqlx::query_as(outbox::LIVE_TOKEN)
            .bind(digest)
            .bind(purpose.as_str())
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn drop_email_tokens(&self, user_id: &str, purpose: TokenPurpose) -> StoreResult<u64> {
        let done = sqlx::query(outbox::DROP_TOKENS)
            .bind(user_id)
            .bind(purpose.as_str())
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(done.rows_affected())
    }

    async fn redeem_email_token(
        &self,
        digest: &str,
        user_id: &str,
        redeem: Redeem<'_>,
        now: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        if !outbox::redeem::<sqlx::Sqlite>(&mut tx, digest, user_id, redeem, now)
            .await
            .map_err(|e| self.fail(e))?
        {
            tx.rollback().await.map_err(|e| self.fail(e))?;
            return Ok(false);
        }
        let mut ended = Vec::new();
        if let Some(reason) = redeem.ends_sessions() {
            sql::cut_user::<sqlx::Sqlite>(&mut tx, user_id, now, now)
                .await
                .map_err(|e| self.fail(e))?;
            ended = revoke_sessions_of(&mut tx, user_id, None, reason, now).await?;
        }
        outbox::write::<sqlx::Sqlite>(&mut tx, outgoing, &ended)
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(true)
    }

    async fn claim_mail(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<MailRecord>> {
        sqlx::query_as(CLAIM_MAIL)
            .bind(now)
            .bind(lease_until)
            .bind(limit)
            .fetch_all(&self.writer)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn finish_mail(&self, id: i64, delivery: &Delivery) -> StoreResult<()> {
        outbox::bind_delivery(id, delivery)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn unsent_mail(&self, limit: i64) -> StoreResult<Vec<MailRecord>> {
        sqlx::query_as(outbox::UNSENT_MAIL)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn retry_failed_mail(&self, now: i64) -> StoreResult<u64> {
        let done = sqlx::query(outbox::RETRY_FAILED_MAIL)
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(done.rows_affected())
    }

    async fn user_by_email(&self, email_normalized: &str) -> StoreResult<Option<UserRecord>> {
        sqlx::query_as(sql::USER_BY_EMAIL)
            .bind(email_normalized)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        if let Some(found) = self.quick(|q| q.user_by_id(id)) {
            return Ok(found);
        }
        sqlx::query_as(sql::USER_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn list_users(
        &self,
        limit: i64,
        offset: i64,
        email_prefix: &str,
    ) -> StoreResult<Vec<UserRecord>> {
        sqlx::query_as(sql::LIST_USERS)
            .bind(limit)
            .bind(offset)
            .bind(email_prefix)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn replace_password_hash(
        &self,
        user_id: &str,
        expected: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(sql::REPLACE_PASSWORD_HASH)
            .bind(user_id)
            .bind(expected)
            .bind(hash)
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn change_password(
        &self,
        user_id: &str,
        expected: i64,
        hash: &str,
        now: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        let changed = sqlx::query(sql::SET_PASSWORD)
            .bind(user_id)
            .bind(expected)
            .bind(hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        if changed.rows_affected() == 0 {
            tx.rollback().await.map_err(|e| self.fail(e))?;
            return Ok(None);
        }
        let version = sql::cut_user::<sqlx::Sqlite>(&mut tx, user_id, now, now)
            .await
            .map_err(|e| self.fail(e))?;
        let ended =
            revoke_sessions_of(&mut tx, user_id, None, RevokeReason::PasswordChanged, now).await?;
        // A reset link mailed before the change must not undo it.
        sqlx::query(outbox::DROP_TOKENS)
            .bind(user_id)
            .bind(TokenPurpose::ResetPassword.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        outbox::write::<sqlx::Sqlite>(&mut tx, outgoing, &ended)
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(Some(version))
    }

    async fn insert_webhook(&self, hook: &WebhookRecord) -> StoreResult<()> {
        sqlx::query(hooks::INSERT_WEBHOOK)
            .bind(&hook.id)
            .bind(&hook.url)
            .bind(&hook.events)
            .bind(&hook.secret)
            .bind(hook.created_at)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn webhooks(&self) -> StoreResult<Vec<WebhookRecord>> {
        sqlx::query_as(hooks::WEBHOOKS)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn delete_webhook(&self, id: &str) -> StoreResult<bool> {
        let done = sqlx::query(hooks::DELETE_WEBHOOK)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_webhook_disabled(&self, id: &str, disabled_at: Option<i64>) -> StoreResult<bool> {
        let done = sqlx::query(hooks::SET_DISABLED)
            .bind(id)
            .bind(disabled_at)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        sqlx::query_as(CLAIM_DELIVERIES)
            .bind(now)
            .bind(lease_until)
            .bind(limit)
            .fetch_all(&self.writer)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn finish_delivery(&self, id: i64, attempt: &HookAttempt) -> StoreResult<()> {
        hooks::bind_attempt(id, attempt)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn replay_delivery(&self, id: i64, now: i64) -> StoreResult<Option<i64>> {
        sqlx::query_scalar(hooks::REPLAY)
            .bind(id)
            .bind(now)
            .fetch_optional(&self.writer)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn tally_events(
        &self,
        kind: &str,
        start: i64,
        until: i64,
        every: i64,
        build: TallyBuild<'_>,
    ) -> StoreResult<i64> {
        // Begins with a write, so the transaction holds the writer lock throughout.
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        let position = hooks::tally::<sqlx::Sqlite>(
            &mut tx,
            TALLY_POSITION,
            kind,
            (start, until, every),
            build,
        )
        .await
        .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(position)
    }

    async fn deliveries(&self, webhook_id: &str, limit: i64) -> StoreResult<Vec<DeliveryRecord>> {
        sqlx::query_as(hooks::DELIVERIES)
            .bind(webhook_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn import_user(
        &self,
        user: &UserRecord,
        from: &ImportSource,
        now: i64,
    ) -> StoreResult<Imported> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        let done =
            imports::import_user::<sqlx::Sqlite>(&mut tx, imports::FIND_SQLITE, user, from, now)
                .await
                .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(done)
    }

    async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        now: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        let done = sqlx::query(sql::SET_USER_DISABLED)
            .bind(user_id)
            .bind(disabled)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        if done.rows_affected() == 0 {
            tx.rollback().await.map_err(|e| self.fail(e))?;
            return Ok(false);
        }
        let mut ended = Vec::new();
        if disabled {
            sql::cut_user::<sqlx::Sqlite>(&mut tx, user_id, now, now)
                .await
                .map_err(|e| self.fail(e))?;
            ended =
                revoke_sessions_of(&mut tx, user_id, None, RevokeReason::UserDisabled, now).await?;
        }
        outbox::write::<sqlx::Sqlite>(&mut tx, outgoing, &ended)
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(true)
    }

    async fn delete_user(&self, user_id: &str, now: i64, outgoing: &Outgoing) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        let done = sqlx::query(DELETE_USER)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        if done.rows_affected() == 0 {
            tx.rollback().await.map_err(|e| self.fail(e))?;
            return Ok(false);
        }
        sqlx::query(sql::FEED_USER)
            .bind(user_id)
            .bind(now + 1)
            .bind(now + 1)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        outbox::write::<sqlx::Sqlite>(&mut tx, outgoing, &[])
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(true)
    }

    async fn insert_session(
        &self,
        s: &SessionRecord,
        credential_version: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool> {
        let start = bind_session(sqlx::query(START_SESSION), s).bind(credential_version);
        if outgoing.is_empty() {
            let done = start
                .execute(&self.writer)
                .await
                .map_err(|e| self.fail(e))?;
            return Ok(done.rows_affected() > 0);
        }
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        let done = start.execute(&mut *tx).await.map_err(|e| self.fail(e))?;
        if done.rows_affected() == 0 {
            tx.rollback().await.map_err(|e| self.fail(e))?;
            return Ok(false);
        }
        outbox::write::<sqlx::Sqlite>(&mut tx, outgoing, &[])
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(true)
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        if let Some(found) = self.quick(|q| q.session(id)) {
            return Ok(found);
        }
        sqlx::query_as(sql::SESSION)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn factors(&self, user_id: &str) -> StoreResult<Factors> {
        let row: Option<factors::FactorsRow> = sqlx::query_as(factors::FACTORS)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(row.into())
    }

    async fn enrol_totp(&self, user_id: &str, secret: &[u8], now: i64) -> StoreResult<bool> {
        let enrolled: Option<(String,)> = sqlx::query_as(factors::ENROL_TOTP)
            .bind(user_id)
            .bind(secret)
            .bind(now)
            .fetch_optional(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(enrolled.is_some())
    }

    async fn use_totp_step(
        &self,
        user_id: &str,
        step: i64,
        confirming: Option<(&[String], i64)>,
    ) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        let accepted = factors::use_totp_step::<sqlx::Sqlite>(&mut tx, user_id, step, confirming)
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(accepted)
    }

    async fn remove_totp(&self, user_id: &str) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        let removed = factors::remove_totp::<sqlx::Sqlite>(&mut tx, user_id)
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(removed)
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        digests: &[String],
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        let replaced = factors::replace_codes::<sqlx::Sqlite>(&mut tx, user_id, digests, now)
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(replaced)
    }

    async fn use_recovery_code(&self, user_id: &str, digest: &str, now: i64) -> StoreResult<bool> {
        let used: Option<(String,)> = sqlx::query_as(factors::USE_CODE)
            .bind(user_id)
            .bind(digest)
            .bind(now)
            .fetch_optional(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(used.is_some())
    }

    async fn insert_challenge(&self, c: &ChallengeRecord) -> StoreResult<()> {
        factors::insert_challenge::<sqlx::Sqlite>(c)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn try_challenge(
        &self,
        digest: &str,
        now: i64,
        max_attempts: i64,
    ) -> StoreResult<Option<ChallengeRecord>> {
        sqlx::query_as(factors::TRY_CHALLENGE)
            .bind(digest)
            .bind(now)
            .bind(max_attempts)
            .fetch_optional(&self.writer)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn take_challenge(&self, digest: &str) -> StoreResult<bool> {
        let taken: Option<(String,)> = sqlx::query_as(factors::TAKE_CHALLENGE)
            .bind(digest)
            .fetch_optional(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(taken.is_some())
    }

    async fn passkeys(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>> {
        sqlx::query_as(factors::PASSKEYS)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn passkey(&self, id: &str) -> StoreResult<Option<PasskeyRecord>> {
        sqlx::query_as(factors::PASSKEY)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn insert_passkey(&self, p: &PasskeyRecord) -> StoreResult<()> {
        factors::insert_passkey::<sqlx::Sqlite>(p)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn rename_passkey(&self, user_id: &str, id: &str, name: &str) -> StoreResult<bool> {
        let renamed: Option<(String,)> = sqlx::query_as(factors::RENAME_PASSKEY)
            .bind(user_id)
            .bind(id)
            .bind(name)
            .fetch_optional(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(renamed.is_some())
    }

    async fn delete_passkey(&self, user_id: &str, id: &str) -> StoreResult<bool> {
        let deleted: Option<(String,)> = sqlx::query_as(factors::DELETE_PASSKEY)
            .bind(user_id)
            .bind(id)
            .fetch_optional(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(deleted.is_some())
    }

    async fn use_passkey(&self, p: &PasskeyRecord) -> StoreResult<bool> {
        let used: Option<(String,)> = factors::use_passkey::<sqlx::Sqlite>(p)
            .fetch_optional(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(used.is_some())
    }

    async fn insert_ceremony(&self, c: &CeremonyRecord) -> StoreResult<()> {
        factors::insert_ceremony::<sqlx::Sqlite>(c)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn take_ceremony(
        &self,
        digest: &str,
        purpose: &str,
    ) -> StoreResult<Option<CeremonyRecord>> {
        sqlx::query_as(factors::TAKE_CEREMONY)
            .bind(digest)
            .bind(purpose)
            .fetch_optional(&self.writer)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn set_session_auth(&self, id: &str, auth_time: i64, amr: &str) -> StoreResult<bool> {
        let done = sqlx::query(sql::SET_SESSION_AUTH)
            .bind(id)
            .bind(auth_time)
            .bind(amr)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn advance_session(
        &self,
        id: &str,
        from: i64,
        now: i64,
        idle_expires_at: i64,
    ) -> StoreResult<bool> {
        let rotation = Rotation::new(id, from, now, idle_expires_at);
        self.rotations.call(rotation).await
    }

    async fn revoke_session(
        &self,
        id: &str,
        reason: RevokeReason,
        now: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        let user: Option<(String,)> = sqlx::query_as(END_SESSION)
            .bind(id)
            .bind(now)
            .bind(reason.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        if let Some((user_id,)) = &user {
            feed_session(&mut tx, id, user_id, now).await?;
            outbox::write::<sqlx::Sqlite>(&mut tx, outgoing, &[id.to_string()])
                .await
                .map_err(|e| self.fail(e))?;
        }
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(user.is_some())
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        reason: RevokeReason,
        now: i64,
        not_before: Option<i64>,
        outgoing: &Outgoing,
    ) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        if let Some(nbf) = not_before {
            sql::cut_user::<sqlx::Sqlite>(&mut tx, user_id, nbf, now)
                .await
                .map_err(|e| self.fail(e))?;
        }
        let ended = revoke_sessions_of(&mut tx, user_id, keep, reason, now).await?;
        outbox::write::<sqlx::Sqlite>(&mut tx, outgoing, &ended)
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(ended.len() as u64)
    }

    async fn live_sessions(&self, user_id: &str, now: i64) -> StoreResult<Vec<SessionRecord>> {
        sqlx::query_as(LIVE_SESSIONS)
            .bind(user_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))
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
        sqlx::query_as(sql::ACCESS_STATE)
            .bind(user_id)
            .bind(session_id)
            .bind(kid)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn step_throttle(
        &self,
        key: &str,
        step: ThrottleStep<'_>,
    ) -> StoreResult<ThrottleRecord> {
        // Begins with a write, so the transaction holds the writer lock throughout.
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        sqlx::query(sql::INSERT_THROTTLE)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        let before: ThrottleRecord = sqlx::query_as(THROTTLE)
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        let next = step(&before);
        // A look that changes nothing writes nothing (waiting attempts look often).
        if next != before {
            bind_throttle(sqlx::query(sql::UPDATE_THROTTLE), &next)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.fail(e))?;
        }
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(before)
    }

    async fn insert_event(&self, e: &NewEvent, outgoing: &Outgoing) -> StoreResult<()> {
        let insert = sql::bind_new_event(sqlx::query(sql::INSERT_EVENT), e);
        if outgoing.is_empty() {
            insert
                .execute(&self.writer)
                .await
                .map_err(|e| self.fail(e))?;
            return Ok(());
        }
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        insert.execute(&mut *tx).await.map_err(|e| self.fail(e))?;
        outbox::write::<sqlx::Sqlite>(&mut tx, outgoing, &[])
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))
    }

    async fn search_events(&self, q: &EventQuery) -> StoreResult<Vec<EventRecord>> {
        sql::bind_event_query(sqlx::query_as(sql::SEARCH_EVENTS), q)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn user_events(
        &self,
        user_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        sqlx::query_as(sql::USER_EVENTS)
            .bind(user_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn signing_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        sqlx::query_as(sql::SIGNING_KEYS)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn withdraw_signing_key(
        &self,
        kid: &str,
        now: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        for statement in [sql::WITHDRAW_KEY, sql::FEED_KEY] {
            let done = sqlx::query(statement)
                .bind(kid)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.fail(e))?;
            if done.rows_affected() == 0 {
                tx.rollback().await.map_err(|e| self.fail(e))?;
                return Ok(false);
            }
        }
        outbox::write::<sqlx::Sqlite>(&mut tx, outgoing, &[])
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(true)
    }

    async fn add_signing_key(
        &self,
        key: &KeyRecord,
        retired_expire_at: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        sqlx::query(sql::RETIRE_KEYS)
            .bind(key.activates_at)
            .bind(retired_expire_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        sql::bind_key(sqlx::query(sql::INSERT_KEY), key)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        outbox::write::<sqlx::Sqlite>(&mut tx, outgoing, &[])
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))
    }

    async fn prune(&self, before: PruneBefore, batch: i64) -> StoreResult<u64> {
        let mut total = 0;
        for (statement, cutoff) in sql::PRUNE.into_iter().zip(sql::prune_cutoffs(&before)) {
            let done = sqlx::query(statement)
                .bind(cutoff)
                .bind(batch)
                .execute(&self.writer)
                .await
                .map_err(|e| self.fail(e))?;
            total += done.rows_affected();
        }
        Ok(total)
    }

    async fn export(&self) -> StoreResult<Snapshot> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        let mut snapshot = sql::read_all::<sqlx::Sqlite>(&mut tx)
            .await
            .map_err(|e| self.fail(e))?;
        snapshot.revocation_cursor = sqlx::query_scalar(REVOCATION_CURSOR)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(snapshot)
    }

    async fn import(&self, snap: &Snapshot) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        let existing: i64 = sqlx::query_scalar(sql::HOLDS_DATA)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        if existing > 0 {
            return Err(StoreError::Conflict);
        }
        sql::load::<sqlx::Sqlite>(&mut tx, snap)
            .await
            .map_err(|e| self.fail(e))?;
        for statement in SET_REVOCATION_CURSOR {
            sqlx::query(statement)
                .bind(snap.revocation_cursor)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.fail(e))?;
        }
        tx.commit().await.map_err(|e| self.fail(e))
    }

    async fn insert_client(&self, c: &ClientRecord) -> StoreResult<()> {
        sql::bind_client(sqlx::query(sql::INSERT_CLIENT), c)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRecord>> {
        if let Some(found) = self.quick(|q| q.client(id)) {
            return Ok(found);
        }
        sqlx::query_as(sql::CLIENT)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        sqlx::query_as(sql::LIST_CLIENTS)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn delete_client(&self, id: &str) -> StoreResult<bool> {
        let done = sqlx::query(sql::DELETE_CLIENT)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn restore_guard(&self) -> StoreResult<(String, i64)> {
        sqlx::query_as(sql::RESTORE_GUARD)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn advance_restore_guard(&self) -> StoreResult<(String, i64)> {
        sqlx::query_as(sql::ADVANCE_RESTORE_GUARD)
            .fetch_one(&self.writer)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn revoke_everything(&self, now: i64, database_id: &str) -> StoreResult<(u64, u64)> {
        let mut tx = self.writer.begin().await.map_err(|e| self.fail(e))?;
        let mut counts = [0; 3];
        for (count, statement) in counts.iter_mut().zip([
            sql::CUT_EVERY_USER,
            sql::FEED_EVERY_USER,
            sql::END_EVERY_SESSION,
        ]) {
            *count = sqlx::query(statement)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.fail(e))?
                .rows_affected();
        }
        sqlx::query(sql::RENAME_DATABASE)
            .bind(database_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        let [users, _, sessions] = counts;
        Ok((sessions, users))
    }

    async fn revocations_after(
        &self,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<RevocationRecord>> {
        sqlx::query_as(sql::REVOCATIONS_AFTER)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn oldest_revocation(&self) -> StoreResult<Option<i64>> {
        sqlx::query_scalar(sql::OLDEST_REVOCATION)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }
}

/// Revokes the user's live sessions but `keep`, each with its feed entry.
async fn revoke_sessions_of(
    tx: &mut Tx,
    user_id: &str,
    keep: Option<&str>,
    reason: RevokeReason,
    now: i64,
) -> StoreResult<Vec<String>> {
    let revoked: Vec<String> = sqlx::query_scalar(END_SESSIONS_OF)
        .bind(user_id)
        .bind(now)
        .bind(reason.as_str())
        .bind(keep)
        .fetch_all(&mut **tx)
        .await
        .map_err(map_err)?;
    for sid in &revoked {
        feed_session(tx, sid, user_id, now).await?;
    }
    Ok(revoked)
}

async fn feed_session(tx: &mut Tx, session_id: &str, user_id: &str, now: i64) -> StoreResult<()> {
    sqlx::query(FEED_SESSION)
        .bind(session_id)
        .bind(user_id)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(())
}
