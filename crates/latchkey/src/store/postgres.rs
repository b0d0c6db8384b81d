//! The PostgreSQL backend, shared by every instance of a scaled-out
//! deployment. It answers exactly as the SQLite backend does; atomicity comes
//! from single statements (compare-and-set updates, data-modifying CTEs) or
//! one transaction per call, with row locks where order matters (the
//! throttle row, the user row against session inserts, the feed position
//! that keeps revocation cursors in commit order). It uses nothing that
//! CockroachDB or YugabyteDB lack: no LISTEN/NOTIFY, no advisory locks
//! outside the migrator.

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{FromRow, PgPool};

use super::*;

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Prepares a pool of `max_connections` for `url` (which may carry
    /// `sslmode` and the like), every connection with `statement_timeout`.
    /// Connections open on first use, so an instance can start and report
    /// itself not ready while the database is still coming up.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        statement_timeout: Duration,
    ) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("invalid postgres url: {e}")))?;
        // Milliseconds as text; "0" disables the timeout, as in PostgreSQL.
        let timeout = statement_timeout.as_millis().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            // set_config instead of SET keeps the statement static and bindable.
            .after_connect(move |conn, _meta| {
                let timeout = timeout.clone();
                Box::pin(async move {
                    sqlx::query("SELECT set_config('statement_timeout', $1, false)")
                        .bind(timeout)
                        .execute(conn)
                        .await
                        .map(drop)
                })
            })
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// Applies the embedded migrations. Instances starting together are safe:
    /// sqlx holds a migration lock while it works. It runs on a connection of
    /// its own, outside the pool, so that neither a long migration (an index
    /// on a large table) nor the wait for another instance's lock is cut
    /// short by `statement_timeout`.
    pub async fn migrate(&self) -> StoreResult<()> {
        // A pool of one rather than a bare connection: the migrator's future
        // is only provably Send when it acquires from a pool.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with((*self.pool.connect_options()).clone());
        let applied = sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(inner) => match map_err(inner) {
                    StoreError::Other(m) => StoreError::Other(format!("migration failed: {m}")),
                    other => other,
                },
                e => StoreError::Other(format!("migration failed: {e}")),
            });
        pool.close().await;
        applied
    }
}

/// SQLSTATEs of a connection that failed or ended, or of a server that
/// cannot take the work now.
fn is_unavailable(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "57014" | "40001" | "40P01" | "40003"
        )
}

fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(db) if db.code().is_some_and(|c| is_unavailable(&c)) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Other(e.to_string()),
    }
}

/// Whether an operation may run again when its first outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Reads, and writes whose second run leaves the same rows and gives the
    /// same answer as the first.
    Idempotent,
    /// Writes whose second run would answer differently had the first
    /// committed: an insert would report `Conflict`, a compare-and-set
    /// `false` (read as refresh-token reuse), a counter would count twice.
    OnlyIfNotApplied,
}

/// Whether an error leaves the operation's effect known.
enum Fault {
    /// Nothing was applied: the server rolled the transaction back
    /// (serialization failure, deadlock) or refused the connection before
    /// any statement was sent. Every method here is one statement or one
    /// transaction, so such a failure left no trace and a rerun is safe.
    NotApplied,
    /// The connection broke mid-flight, perhaps after the commit landed.
    Unknown,
    /// Retrying cannot help (constraint, bad SQL) or would only pile more
    /// waiting on an overloaded database (pool or statement timeout).
    Final,
}

fn fault(e: &sqlx::Error) -> Fault {
    match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("40001" | "40P01" | "53300" | "57P03" | "08001" | "08004") => Fault::NotApplied,
            Some(c) if c.starts_with("08") || matches!(c, "57P01" | "57P02" | "40003") => {
                Fault::Unknown
            }
            _ => Fault::Final,
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => Fault::Unknown,
        _ => Fault::Final,
    }
}

/// Pauses before the second and third attempts.
const BACKOFF: [Duration; 2] = [Duration::from_millis(20), Duration::from_millis(60)];

/// Runs `op` up to three times while it fails transiently (see [`Fault`]);
/// a failure of unknown outcome is retried only for [`Replay::Idempotent`].
async fn retry<T, F, Fut>(replay: Replay, mut op: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut attempt = 0;
    loop {
        let e = match op().await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let again = match fault(&e) {
            Fault::NotApplied => true,
            Fault::Unknown => replay == Replay::Idempotent,
            Fault::Final => false,
        };
        let Some(pause) = BACKOFF.get(attempt).filter(|_| again) else {
            return Err(map_err(e));
        };
        // Up to 10 ms of jitter, so that transactions that failed together
        // (serialization failures) do not collide again in step.
        let jitter = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() % 10_000_000);
        tokio::time::sleep(*pause + Duration::from_nanos(u64::from(jitter))).await;
        attempt += 1;
    }
}

/// SQLite reads a negative LIMIT as "no limit" and a negative OFFSET as 0;
/// PostgreSQL rejects both.
fn sql_limit(n: i64) -> i64 {
    if n < 0 { i64::MAX } else { n }
}

// Deadlines are judged at the later of the caller's time and the database's,
// so an instance whose clock stepped back cannot revive an expired session.
macro_rules! live {
    () => {
        "revoked_at IS NULL
         AND expires_at > GREATEST($2, FLOOR(EXTRACT(EPOCH FROM statement_timestamp()))::BIGINT)
         AND idle_expires_at > GREATEST($2, FLOOR(EXTRACT(EPOCH FROM statement_timestamp()))::BIGINT)"
    };
}

const INSERT_USER: &str = "INSERT INTO users (id, email, email_normalized, name, password_hash, email_verified, disabled, not_before, created_at, updated_at, credential_version)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)";
const INSERT_SESSION: &str = "INSERT INTO sessions (id, user_id, salt, generation, rotated_at, created_at, last_used_at, idle_expires_at, expires_at, revoked_at, user_agent, ip)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
/// A new session, only while its user is enabled and at credential version
/// $13. FOR SHARE conflicts with the row lock of a concurrent revocation,
/// which raises the version first: this waits for it to commit and then sees
/// the new version (or, having locked first, makes the revocation wait and
/// then revoke this session too).
const START_SESSION: &str = "INSERT INTO sessions (id, user_id, salt, generation, rotated_at, created_at, last_used_at, idle_expires_at, expires_at, revoked_at, user_agent, ip)
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM users
     WHERE id = $2 AND credential_version = $13 AND NOT disabled FOR SHARE";

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

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

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        retry(Replay::Idempotent, move || async move {
            sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
        })
        .await
    }

    async fn insert_user(&self, u: &UserRecord) -> StoreResult<()> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            bind_user(sqlx::query(INSERT_USER), u)
                .execute(&self.pool)
                .await
                .map(drop)
        })
        .await
    }

    async fn user_by_email(&self, email_normalized: &str) -> StoreResult<Option<UserRecord>> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE email_normalized = $1"
        );
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql)
                .bind(email_normalized)
                .fetch_optional(&self.pool)
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql).bind(id).fetch_optional(&self.pool)
        })
        .await
    }

    async fn list_users(&self, limit: i64, offset: i64) -> StoreResult<Vec<UserRecord>> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2"
        );
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql)
                .bind(sql_limit(limit))
                .bind(offset.max(0))
                .fetch_all(&self.pool)
        })
        .await
    }

    async fn replace_password_hash(
        &self,
        user_id: &str,
        expected: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        // A rerun after a lost commit matches nothing and answers false; the
        // caller only logs that, so Idempotent is safe enough.
        retry(Replay::Idempotent, move || async move {
            let done = sqlx::query(
                "UPDATE users SET password_hash = $3, updated_at = $4 WHERE id = $1 AND password_hash = $2",
            )
            .bind(user_id)
            .bind(expected)
            .bind(hash)
            .bind(now)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn change_password(
        &self,
        user_id: &str,
        expected: i64,
        hash: &str,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            let changed = sqlx::query(
                "UPDATE users SET password_hash = $3, updated_at = $4 WHERE id = $1 AND credential_version = $2",
            )
            .bind(user_id)
            .bind(expected)
            .bind(hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if changed.rows_affected() == 0 {
                return Ok(None);
            }
            let version = cut_user(&mut tx, user_id, now, now).await?;
            revoke_sessions_of(&mut tx, user_id, None, RevokeReason::PasswordChanged, now).await?;
            tx.commit().await?;
            Ok(Some(version))
        })
        .await
    }

    async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        now: i64,
    ) -> StoreResult<bool> {
        // PostgreSQL counts matched rows, so a rerun answers the same.
        retry(Replay::Idempotent, move || async move {
            let done = sqlx::query("UPDATE users SET disabled = $2, updated_at = $3 WHERE id = $1")
                .bind(user_id)
                .bind(disabled)
                .bind(now)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn delete_user(&self, user_id: &str, now: i64) -> StoreResult<bool> {
        // One statement: the revocation is written only if the user was there.
        retry(Replay::OnlyIfNotApplied, move || async move {
            let done = sqlx::query(
                "WITH gone AS (DELETE FROM users WHERE id = $1 RETURNING id)
                 INSERT INTO revocations (kind, user_id, not_before, revoked_at)
                 SELECT 'user', id, $2, $2 FROM gone",
            )
            .bind(user_id)
            .bind(now + 1)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn insert_session(
        &self,
        s: &SessionRecord,
        credential_version: i64,
    ) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let done = bind_session(sqlx::query(START_SESSION), s)
                .bind(credential_version)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let sql = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = $1"
        );
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql).bind(id).fetch_optional(&self.pool)
        })
        .await
    }

    async fn session_and_owner(&self, id: &str) -> StoreResult<Option<(SessionRecord, bool)>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            session: SessionRecord,
            owner_usable: bool,
        }
        let sql = concat!(
            "SELECT ",
            prefixed_session_columns!(),
            ", NOT u.disabled AS owner_usable FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1"
        );
        let row: Option<Row> = retry(Replay::Idempotent, move || {
            sqlx::query_as(sql).bind(id).fetch_optional(&self.pool)
        })
        .await?;
        Ok(row.map(|r| (r.session, r.owner_usable)))
    }

    async fn advance_session(
        &self,
        id: &str,
        from: i64,
        now: i64,
        idle_expires_at: i64,
    ) -> StoreResult<bool> {
        // A concurrent winner holds the row lock; the loser re-checks the
        // WHERE against the committed row, sees the new generation, and
        // updates nothing.
        let sql = concat!(
            "UPDATE sessions SET generation = generation + 1, rotated_at = $2, last_used_at = $2, idle_expires_at = $4
             WHERE id = $1 AND generation = $3 AND ",
            live!()
        );
        retry(Replay::OnlyIfNotApplied, move || async move {
            let done = sqlx::query(sql)
                .bind(id)
                .bind(now)
                .bind(from)
                .bind(idle_expires_at)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    async fn revoke_session(&self, id: &str, reason: RevokeReason, now: i64) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let done = sqlx::query(
                "WITH revoked AS (
                     UPDATE sessions SET revoked_at = $2, revoke_reason = $3
                     WHERE id = $1 AND revoked_at IS NULL RETURNING user_id)
                 INSERT INTO revocations (kind, session_id, user_id, revoked_at)
                 SELECT 'session', $1, user_id, $2 FROM revoked",
            )
            .bind(id)
            .bind(now)
            .bind(reason.as_str())
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        reason: RevokeReason,
        now: i64,
        not_before: Option<i64>,
    ) -> StoreResult<u64> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            // The user row first: its lock orders this against session inserts.
            if let Some(nbf) = not_before {
                cut_user(&mut tx, user_id, nbf, now).await?;
            }
            let revoked = revoke_sessions_of(&mut tx, user_id, keep, reason, now).await?;
            tx.commit().await?;
            Ok(revoked)
        })
        .await
    }

    async fn live_sessions(&self, user_id: &str, now: i64) -> StoreResult<Vec<SessionRecord>> {
        let sql = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE user_id = $1 AND ",
            live!(),
            " ORDER BY created_at DESC, id"
        );
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql)
                .bind(user_id)
                .bind(now)
                .fetch_all(&self.pool)
        })
        .await
    }

    async fn access_state(
        &self,
        user_id: &str,
        session_id: &str,
        kid: &str,
    ) -> StoreResult<Option<AccessState>> {
        let sql = concat!(
            "SELECT ",
            prefixed_user_columns!(),
            ", s.revoked_at IS NOT NULL AS session_revoked, s.expires_at AS session_expires_at,
             EXISTS (SELECT 1 FROM revocations WHERE kid = $3) AS key_withdrawn
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $2 AND u.id = $1"
        );
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql)
                .bind(user_id)
                .bind(session_id)
                .bind(kid)
                .fetch_optional(&self.pool)
        })
        .await
    }

    async fn step_throttle(
        &self,
        key: &str,
        step: ThrottleStep<'_>,
    ) -> StoreResult<ThrottleRecord> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            sqlx::query(INSERT_THROTTLE)
                .bind(key)
                .execute(&mut *tx)
                .await?;
            let before: ThrottleRecord = sqlx::query_as(concat!(
                "SELECT ",
                throttle_columns!(),
                " FROM login_throttle WHERE key = $1 FOR UPDATE"
            ))
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            let next = step(&before);
            // A look that changes nothing writes nothing (waiting attempts look often).
            if next != before {
                bind_throttle(sqlx::query(UPDATE_THROTTLE), &next)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(before)
        })
        .await
    }

    async fn insert_event(&self, e: &NewEvent) -> StoreResult<()> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            sqlx::query(
                "INSERT INTO events (user_id, session_id, kind, ip, user_agent, detail, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&e.user_id)
            .bind(&e.session_id)
            .bind(&e.kind)
            .bind(&e.ip)
            .bind(&e.user_agent)
            .bind(&e.detail)
            .bind(e.created_at)
            .execute(&self.pool)
            .await
            .map(drop)
        })
        .await
    }

    async fn user_events(
        &self,
        user_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(
                "SELECT id, user_id, session_id, kind, ip, user_agent, detail, created_at FROM events
                 WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(user_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(sql_limit(limit))
            .fetch_all(&self.pool)
        })
        .await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(
                "SELECT kid, alg, public_jwk, private_key, created_at, activates_at, retired_at, expires_at FROM signing_keys ORDER BY activates_at, kid",
            )
            .fetch_all(&self.pool)
        })
        .await
    }

    async fn withdraw_signing_key(&self, kid: &str, now: i64) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(
                "UPDATE signing_keys SET retired_at = LEAST(COALESCE(retired_at, $2), $2), expires_at = $2
                 WHERE kid = $1 AND (expires_at IS NULL OR expires_at > $2)",
            )
            .bind(kid)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO revocations (kind, user_id, revoked_at, kid) VALUES ('key', '', $2, $1)",
            )
            .bind(kid)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn add_signing_key(&self, key: &KeyRecord, retired_expire_at: i64) -> StoreResult<()> {
        // SERIALIZABLE, as SQLite's single writer is: two rotations (or two
        // instances creating the first key) at once must not both leave their
        // key unretired; the loser fails with 40001 and reruns after the winner.
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE")
                .await?;
            sqlx::query(
                "UPDATE signing_keys SET retired_at = $1, expires_at = $2 WHERE retired_at IS NULL",
            )
            .bind(key.activates_at)
            .bind(retired_expire_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO signing_keys (kid, alg, public_jwk, private_key, created_at, activates_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&key.kid)
            .bind(&key.alg)
            .bind(&key.public_jwk)
            .bind(&key.private_key)
            .bind(key.created_at)
            .bind(key.activates_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
        .await
    }

    async fn prune(&self, before: PruneBefore, batch: i64) -> StoreResult<u64> {
        // Key-based sub-selects: DELETE has no LIMIT here, and CockroachDB has no ctid.
        let statements = [
            (
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at < $1 OR idle_expires_at < $1 OR revoked_at < $1 LIMIT $2)",
                before.sessions,
            ),
            (
                "DELETE FROM revocations WHERE cursor IN (SELECT cursor FROM revocations WHERE revoked_at < $1 LIMIT $2)",
                before.revocations,
            ),
            (
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < $1 LIMIT $2)",
                before.events,
            ),
            (
                "DELETE FROM login_throttle WHERE key IN (SELECT key FROM login_throttle WHERE updated_at < $1 AND blocked_until < $1 LIMIT $2)",
                before.throttles,
            ),
            (
                "DELETE FROM signing_keys WHERE kid IN (SELECT kid FROM signing_keys WHERE expires_at < $1 LIMIT $2)",
                before.keys,
            ),
        ];
        let mut total = 0;
        for (sql, cutoff) in statements {
            total += retry(Replay::Idempotent, move || async move {
                let done = sqlx::query(sql)
                    .bind(cutoff)
                    .bind(sql_limit(batch))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            })
            .await?;
        }
        Ok(total)
    }

    async fn export(&self) -> StoreResult<Snapshot> {
        // One snapshot of every table, as SQLite's transaction gives.
        retry(Replay::Idempotent, move || async move {
            let mut tx = self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
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
                    "SELECT last FROM feed_position",
                )
                .fetch_one(&mut *tx)
                .await?,
            };
            tx.commit().await?;
            Ok(snapshot)
        })
        .await
    }

    async fn import(&self, snap: &Snapshot) -> StoreResult<()> {
        // SERIALIZABLE so that two imports at once cannot both find the
        // database empty and both load.
        let loaded = retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE")
                .await?;
            let (existing,): (i64,) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM signing_keys)",
            )
            .fetch_one(&mut *tx)
            .await?;
            if existing > 0 {
                return Ok(false);
            }
            load(&mut tx, snap).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await?;
        if loaded {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn insert_client(&self, c: &ClientRecord) -> StoreResult<()> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            sqlx::query(INSERT_CLIENT)
                .bind(&c.id)
                .bind(&c.name)
                .bind(&c.secret_hash)
                .bind(c.created_at)
                .execute(&self.pool)
                .await
                .map(drop)
        })
        .await
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as("SELECT id, name, secret_hash, created_at FROM clients WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
        })
        .await
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(
                "SELECT id, name, secret_hash, created_at FROM clients ORDER BY created_at, id",
            )
            .fetch_all(&self.pool)
        })
        .await
    }

    async fn delete_client(&self, id: &str) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let done = sqlx::query("DELETE FROM clients WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn restore_guard(&self) -> StoreResult<(String, i64)> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as("SELECT database_id, counter FROM restore_guard").fetch_one(&self.pool)
        })
        .await
    }

    async fn advance_restore_guard(&self) -> StoreResult<(String, i64)> {
        // A rerun after a lost commit only raises the counter once more.
        retry(Replay::Idempotent, move || {
            sqlx::query_as(
                "UPDATE restore_guard SET counter = counter + 1 RETURNING database_id, counter",
            )
            .fetch_one(&self.pool)
        })
        .await
    }

    async fn revoke_everything(&self, now: i64, database_id: &str) -> StoreResult<(u64, u64)> {
        // Rerunning after a lost commit revokes nothing more: Idempotent.
        retry(Replay::Idempotent, move || async move {
            let mut tx = self.pool.begin().await?;
            // User rows before feed entries, the order every writer takes.
            let users = sqlx::query(
                "UPDATE users SET credential_version = credential_version + 1,
                     not_before = GREATEST(not_before, $1 + 1)",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "INSERT INTO revocations (kind, user_id, not_before, revoked_at)
                 SELECT 'user', id, $1 + 1, $1 FROM users ORDER BY id",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let sessions = sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoke_reason = 'admin' WHERE revoked_at IS NULL",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("UPDATE restore_guard SET database_id = $1, counter = counter + 1")
                .bind(database_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok((sessions, users))
        })
        .await
    }

    async fn revocations_after(
        &self,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<RevocationRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(
                "SELECT cursor, kind, session_id, user_id, not_before, revoked_at, kid FROM revocations
                 WHERE cursor > $1 ORDER BY cursor LIMIT $2",
            )
            .bind(after)
            .bind(sql_limit(limit))
            .fetch_all(&self.pool)
        })
        .await
    }

    async fn oldest_revocation(&self) -> StoreResult<Option<i64>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_scalar("SELECT MIN(cursor) FROM revocations").fetch_one(&self.pool)
        })
        .await
    }
}

const INSERT_CLIENT: &str =
    "INSERT INTO clients (id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4)";

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

const LOAD_REVOCATION: &str =
    "INSERT INTO revocations (cursor, kind, session_id, user_id, not_before, revoked_at, kid)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
const LOAD_EVENT: &str =
    "INSERT INTO events (id, user_id, session_id, kind, ip, user_agent, detail, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const LOAD_THROTTLE: &str = concat!(
    "INSERT INTO login_throttle (",
    throttle_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
);
/// A throttle row with nothing counted, unless the key has one already.
const INSERT_THROTTLE: &str =
    "INSERT INTO login_throttle (key, failures, blocked_until, updated_at)
     VALUES ($1, 0, 0, 0) ON CONFLICT (key) DO NOTHING";
const UPDATE_THROTTLE: &str =
    "UPDATE login_throttle SET failures = $2, blocked_until = $3, updated_at = $4,
     pending = $5, pending_until = $6, day_started_at = $7, day_failures = $8 WHERE key = $1";
const LOAD_KEY: &str = "INSERT INTO signing_keys (kid, alg, public_jwk, private_key, created_at, retired_at, expires_at, activates_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
/// Loaded rows already moved the position past their cursors; pruned ones
/// are only known from the snapshot's high-water mark.
const RESET_REVOCATION_CURSOR: &str = "UPDATE feed_position SET last = GREATEST(last, $1)";
const RESET_EVENT_ID: &str =
    "SELECT setval(pg_get_serial_sequence('events', 'id'), COALESCE(MAX(id), 0) + 1, false)
     FROM events";

/// Every row a static query returns, inside a transaction.
async fn all<T>(tx: &mut Tx, sql: &'static str) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    sqlx::query_as(sql).fetch_all(&mut **tx).await
}

/// Inserts every row of `snap` with its own ids and cursors, then moves the
/// identity sequences past them so new rows never reuse a cursor a verifier holds.
async fn load(tx: &mut Tx, snap: &Snapshot) -> Result<(), sqlx::Error> {
    for u in &snap.users {
        bind_user(sqlx::query(INSERT_USER), u)
            .execute(&mut **tx)
            .await?;
    }
    for s in &snap.sessions {
        bind_session(sqlx::query(INSERT_SESSION), s)
            .execute(&mut **tx)
            .await?;
    }
    for r in &snap.revocations {
        sqlx::query(LOAD_REVOCATION)
            .bind(r.cursor)
            .bind(&r.kind)
            .bind(&r.session_id)
            .bind(&r.user_id)
            .bind(r.not_before)
            .bind(r.revoked_at)
            .bind(&r.kid)
            .execute(&mut **tx)
            .await?;
    }
    for e in &snap.events {
        sqlx::query(LOAD_EVENT)
            .bind(e.id)
            .bind(&e.user_id)
            .bind(&e.session_id)
            .bind(&e.kind)
            .bind(&e.ip)
            .bind(&e.user_agent)
            .bind(&e.detail)
            .bind(e.created_at)
            .execute(&mut **tx)
            .await?;
    }
    for t in &snap.throttles {
        bind_throttle(sqlx::query(LOAD_THROTTLE), t)
            .execute(&mut **tx)
            .await?;
    }
    for k in &snap.signing_keys {
        sqlx::query(LOAD_KEY)
            .bind(&k.kid)
            .bind(&k.alg)
            .bind(&k.public_jwk)
            .bind(&k.private_key)
            .bind(k.created_at)
            .bind(k.retired_at)
            .bind(k.expires_at)
            .bind(k.activates_at)
            .execute(&mut **tx)
            .await?;
    }
    for c in &snap.clients {
        sqlx::query(INSERT_CLIENT)
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.secret_hash)
            .bind(c.created_at)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(RESET_REVOCATION_CURSOR)
        .bind(snap.revocation_cursor)
        .execute(&mut **tx)
        .await?;
    sqlx::query(RESET_EVENT_ID).execute(&mut **tx).await?;
    Ok(())
}

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
    tx: &mut Tx,
    user_id: &str,
    not_before: i64,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let (version,): (i64,) = sqlx::query_as(
        "UPDATE users SET credential_version = credential_version + 1, not_before = GREATEST(not_before, $2)
         WHERE id = $1 RETURNING credential_version",
    )
    .bind(user_id)
    .bind(not_before)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO revocations (kind, user_id, not_before, revoked_at) VALUES ('user', $1, $2, $3)",
    )
    .bind(user_id)
    .bind(not_before)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(version)
}

/// Revokes the user's live sessions but `keep`, each with its feed entry.
async fn revoke_sessions_of(
    tx: &mut Tx,
    user_id: &str,
    keep: Option<&str>,
    reason: RevokeReason,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "WITH revoked AS (
             UPDATE sessions SET revoked_at = $2, revoke_reason = $3
             WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $4 RETURNING id)
         INSERT INTO revocations (kind, session_id, user_id, revoked_at)
         SELECT 'session', id, $1, $2 FROM revoked",
    )
    .bind(user_id)
    .bind(now)
    .bind(reason.as_str())
    .bind(keep)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}
