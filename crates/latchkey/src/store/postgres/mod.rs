//! The PostgreSQL backend, shared by every instance of a scaled-out
//! deployment. It answers exactly as the SQLite backend does; atomicity comes
//! from single statements (compare-and-set updates, data-modifying CTEs) or
//! one transaction per call, with row locks where order matters (the
//! throttle row, the user row against session inserts, the feed position
//! that keeps revocation cursors in commit order). It uses nothing that
//! CockroachDB or YugabyteDB lack: no LISTEN/NOTIFY, no advisory locks
//! outside the migrator.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgPool};

use self::batched::Lane;
use self::retry::{Replay, map_err, retry};
use super::batch::Batcher;
use super::factors;
use super::hooks;
use super::imports;
use super::outbox;
use super::rotations::Rotation;
use super::sql::{self, bind_session, bind_throttle};

use super::*;

mod batched;
mod retry;

/// A pooled connection idle this long is pinged before it is used.
const PING_IF_IDLE: Duration = Duration::from_secs(1);

pub struct PgStore {
    pool: PgPool,
    rotations: Batcher<batched::Rotations>,
    access_checks: Batcher<batched::AccessChecks>,
    sessions_and_owners: Batcher<batched::SessionsAndOwners>,
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
            // sqlx pings a connection every time it leaves the pool, which
            // doubled the round trips of every statement. One used within
            // the last second is taken as live; one idle longer is pinged
            // first, as the database may have restarted meanwhile, and so is
            // every one for a few seconds after any broke (a read that met
            // the broken one runs again, see `retry`).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE || retry::connections_suspect() {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
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
        let most = batched::MAX_BATCH;
        Ok(Self {
            rotations: Batcher::start(batched::Rotations(Lane::new(pool.clone())), most),
            access_checks: Batcher::start(batched::AccessChecks(Lane::new(pool.clone())), most),
            sessions_and_owners: Batcher::start(
                batched::SessionsAndOwners(Lane::new(pool.clone())),
                most,
            ),
            pool,
        })
    }

    /// Applies the embedded migrations. Instances starting together are safe:
    /// sqlx holds a migration lock while it works. It runs on a connection of
    /// its own, outside the pool, so that neither a long migration (an index
    /// on a large table) nor the wait for another instance's lock is cut
    /// short by `statement_timeout`.
    pub async fn migrate(&self) -> StoreResult<()> {
        self.migrate_locking(true).await
    }

    /// Applies the embedded migrations, without sqlx's advisory lock when
    /// `lock` is false: for databases that lack `pg_advisory_lock`
    /// (CockroachDB), run once from one host before any instance starts.
    pub async fn migrate_locking(&self, lock: bool) -> StoreResult<()> {
        // A pool of one rather than a bare connection: the migrator's future
        // is only provably Send when it acquires from a pool.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with((*self.pool.connect_options()).clone());
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        migrator.set_locking(lock);
        let applied = migrator.run(&pool).await.map_err(|e| match e {
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
const LIVE_SESSIONS: &str = concat!(
    "SELECT ",
    sql::session_columns!(),
    " FROM sessions WHERE user_id = $1 AND ",
    live!(),
    " ORDER BY created_at DESC, id"
);
/// A new session, only while its user is enabled and at credential version
/// $15. FOR SHARE conflicts with the row lock of a concurrent revocation,
/// which raises the version first: this waits for it to commit and then sees
/// the new version (or, having locked first, makes the revocation wait and
/// then revoke this session too).
const START_SESSION: &str = concat!(
    "INSERT INTO sessions (",
    sql::session_columns!(),
    ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM users
     WHERE id = $2 AND credential_version = $15 AND NOT disabled FOR SHARE"
);
const THROTTLE_FOR_UPDATE: &str = concat!(
    "SELECT ",
    sql::throttle_columns!(),
    " FROM login_throttle WHERE key = $1 FOR UPDATE"
);
/// One statement: the revocation is written only if the user was there.
const DELETE_USER: &str = "WITH gone AS (DELETE FROM users WHERE id = $1 RETURNING id)
     INSERT INTO revocations (kind, user_id, not_before, revoked_at)
     SELECT 'user', id, $2, $2 FROM gone";
const END_SESSION: &str = "WITH revoked AS (
         UPDATE sessions SET revoked_at = $2, revoke_reason = $3
         WHERE id = $1 AND revoked_at IS NULL RETURNING user_id)
     INSERT INTO revocations (kind, session_id, user_id, revoked_at)
     SELECT 'session', $1, user_id, $2 FROM revoked";
const END_SESSIONS_OF: &str = "WITH revoked AS (
         UPDATE sessions SET revoked_at = $2, revoke_reason = $3
         WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $4 RETURNING id)
     INSERT INTO revocations (kind, session_id, user_id, revoked_at)
     SELECT 'session', id, $1, $2 FROM revoked RETURNING session_id";
const REVOCATION_CURSOR: &str = "SELECT last FROM feed_position";
/// Loaded rows already moved the position past their cursors; pruned ones
/// are only known from the snapshot's high-water mark.
const RESET_REVOCATION_CURSOR: &str = "UPDATE feed_position SET last = GREATEST(last, $1)";
const RESET_EVENT_ID: &str =
    "SELECT setval(pg_get_serial_sequence('events', 'id'), COALESCE(MAX(id), 0) + 1, false)
     FROM events";

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Locked: a second instance summarising at once waits, then finds the
/// position moved.
const TALLY_POSITION: &str = "SELECT tallied_until FROM event_tallies WHERE kind = $1 FOR UPDATE";

/// Takes due mail: $1 now, $2 lease end, $3 limit. SKIP LOCKED lets
/// instances take different messages at once instead of queueing.
const CLAIM_MAIL: &str = concat!(
    "UPDATE mail_outbox SET next_attempt_at = $2, attempts = attempts + 1
     WHERE id IN (SELECT id FROM mail_outbox
                  WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
                  ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
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
                  ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
     RETURNING ",
    hooks::delivery_columns!()
);

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        retry(Replay::Idempotent, move || async move {
            sqlx::query(sql::PING).execute(&self.pool).await.map(drop)
        })
        .await
    }

    async fn insert_user(&self, u: &UserRecord, outgoing: &Outgoing) -> StoreResult<()> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            sql::bind_user(sqlx::query(sql::INSERT_USER), u)
                .execute(&mut *tx)
                .await?;
            outbox::write::<sqlx::Postgres>(&mut tx, outgoing, &[]).await?;
            tx.commit().await
        })
        .await
    }

    async fn set_email_verified(&self, user_id: &str, now: i64) -> StoreResult<()> {
        retry(Replay::Idempotent, move || async move {
            sqlx::query(outbox::SET_VERIFIED)
                .bind(user_id)
                .bind(true)
                .bind(now)
                .execute(&self.pool)
                .await
                .map(drop)
        })
        .await
    }

    async fn send(&self, outgoing: &Outgoing) -> StoreResult<()> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            outbox::write::<sqlx::Postgres>(&mut tx, outgoing, &[]).await?;
            tx.commit().await
        })
        .await
    }

    async fn email_token(
        &self,
        digest: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> StoreResult<Option<EmailTokenRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(outbox::LIVE_TOKEN)
                .bind(digest)
                .bind(purpose.as_str())
                .bind(now)
                .fetch_optional(&self.pool)
        })
        .await
    }

    async fn drop_email_tokens(&self, user_id: &str, purpose: TokenPurpose) -> StoreResult<u64> {
        retry(Replay::Idempotent, move || async move {
            let done = sqlx::query(outbox::DROP_TOKENS)
                .bind(user_id)
                .bind(purpose.as_str())
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn redeem_email_token(
        &self,
        digest: &str,
        user_id: &str,
        redeem: Redeem<'_>,
        now: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            if !outbox::redeem::<sqlx::Postgres>(&mut tx, digest, user_id, redeem, now).await? {
                tx.rollback().await?;
                return Ok(false);
            }
            let mut ended = Vec::new();
            if let Some(reason) = redeem.ends_sessions() {
                sql::cut_user::<sqlx::Postgres>(&mut tx, user_id, now, now).await?;
                ended = revoke_sessions_of(&mut tx, user_id, None, reason, now).await?;
            }
            outbox::write::<sqlx::Postgres>(&mut tx, outgoing, &ended).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn claim_mail(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<MailRecord>> {
        // A rerun after a lost answer only takes other messages; the ones
        // taken by the lost run come back when their lease ends.
        retry(Replay::Idempotent, move || {
            sqlx::query_as(CLAIM_MAIL)
                .bind(now)
                .bind(lease_until)
                .bind(limit)
                .fetch_all(&self.pool)
        })
        .await
    }

    async fn finish_mail(&self, id: i64, delivery: &Delivery) -> StoreResult<()> {
        retry(Replay::Idempotent, move || async move {
            outbox::bind_delivery(id, delivery)
                .execute(&self.pool)
                .await
                .map(drop)
        })
        .await
    }

    async fn unsent_mail(&self, limit: i64) -> StoreResult<Vec<MailRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(outbox::UNSENT_MAIL)
                .bind(limit)
                .fetch_all(&self.pool)
        })
        .await
    }

    async fn retry_failed_mail(&self, now: i64) -> StoreResult<u64> {
        retry(Replay::Idempotent, move || async move {
            let done = sqlx::query(outbox::RETRY_FAILED_MAIL)
                .bind(now)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn user_by_email(&self, email_normalized: &str) -> StoreResult<Option<UserRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql::USER_BY_EMAIL)
                .bind(email_normalized)
                .fetch_optional(&self.pool)
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql::USER_BY_ID)
                .bind(id)
                .fetch_optional(&self.pool)
        })
        .await
    }

    async fn list_users(
        &self,
        limit: i64,
        offset: i64,
        email_prefix: &str,
    ) -> StoreResult<Vec<UserRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql::LIST_USERS)
                .bind(sql_limit(limit))
                .bind(offset.max(0))
                .bind(email_prefix)
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
            let done = sqlx::query(sql::REPLACE_PASSWORD_HASH)
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
        outgoing: &Outgoing,
    ) -> StoreResult<Option<i64>> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            let changed = sqlx::query(sql::SET_PASSWORD)
                .bind(user_id)
                .bind(expected)
                .bind(hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if changed.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(None);
            }
            let version = sql::cut_user::<sqlx::Postgres>(&mut tx, user_id, now, now).await?;
            let ended =
                revoke_sessions_of(&mut tx, user_id, None, RevokeReason::PasswordChanged, now)
                    .await?;
            // A reset link mailed before the change must not undo it.
            sqlx::query(outbox::DROP_TOKENS)
                .bind(user_id)
                .bind(TokenPurpose::ResetPassword.as_str())
                .execute(&mut *tx)
                .await?;
            outbox::write::<sqlx::Postgres>(&mut tx, outgoing, &ended).await?;
            tx.commit().await?;
            Ok(Some(version))
        })
        .await
    }

    async fn insert_webhook(&self, hook: &WebhookRecord) -> StoreResult<()> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            sqlx::query(hooks::INSERT_WEBHOOK)
                .bind(&hook.id)
                .bind(&hook.url)
                .bind(&hook.events)
                .bind(&hook.secret)
                .bind(hook.created_at)
                .execute(&self.pool)
                .await
                .map(drop)
        })
        .await
    }

    async fn webhooks(&self) -> StoreResult<Vec<WebhookRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(hooks::WEBHOOKS).fetch_all(&self.pool)
        })
        .await
    }

    async fn delete_webhook(&self, id: &str) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let done = sqlx::query(hooks::DELETE_WEBHOOK)
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn set_webhook_disabled(&self, id: &str, disabled_at: Option<i64>) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let done = sqlx::query(hooks::SET_DISABLED)
                .bind(id)
                .bind(disabled_at)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        // A rerun after a lost answer only takes other deliveries; those the
        // lost run took come back when their lease ends.
        retry(Replay::Idempotent, move || {
            sqlx::query_as(CLAIM_DELIVERIES)
                .bind(now)
                .bind(lease_until)
                .bind(limit)
                .fetch_all(&self.pool)
        })
        .await
    }

    async fn finish_delivery(&self, id: i64, attempt: &HookAttempt) -> StoreResult<()> {
        retry(Replay::Idempotent, move || async move {
            hooks::bind_attempt(id, attempt)
                .execute(&self.pool)
                .await
                .map(drop)
        })
        .await
    }

    async fn replay_delivery(&self, id: i64, now: i64) -> StoreResult<Option<i64>> {
        retry(Replay::OnlyIfNotApplied, move || {
            sqlx::query_scalar(hooks::REPLAY)
                .bind(id)
                .bind(now)
                .fetch_optional(&self.pool)
        })
        .await
    }

    async fn tally_events(
        &self,
        kind: &str,
        start: i64,
        until: i64,
        every: i64,
        build: TallyBuild<'_>,
    ) -> StoreResult<i64> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            let position = hooks::tally::<sqlx::Postgres>(
                &mut tx,
                TALLY_POSITION,
                kind,
                (start, until, every),
                build,
            )
            .await?;
            tx.commit().await?;
            Ok(position)
        })
        .await
    }

    async fn deliveries(&self, webhook_id: &str, limit: i64) -> StoreResult<Vec<DeliveryRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(hooks::DELIVERIES)
                .bind(webhook_id)
                .bind(limit)
                .fetch_all(&self.pool)
        })
        .await
    }

    async fn import_user(
        &self,
        user: &UserRecord,
        from: &ImportSource,
        now: i64,
    ) -> StoreResult<Imported> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            let done = imports::import_user::<sqlx::Postgres>(
                &mut tx,
                imports::FIND_POSTGRES,
                user,
                from,
                now,
            )
            .await?;
            tx.commit().await?;
            Ok(done)
        })
        .await
    }

    async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        now: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            // The user row first: its lock orders this against session inserts.
            let done = sqlx::query(sql::SET_USER_DISABLED)
                .bind(user_id)
                .bind(disabled)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            let mut ended = Vec::new();
            if disabled {
                sql::cut_user::<sqlx::Postgres>(&mut tx, user_id, now, now).await?;
                ended = revoke_sessions_of(&mut tx, user_id, None, RevokeReason::UserDisabled, now)
                    .await?;
            }
            outbox::write::<sqlx::Postgres>(&mut tx, outgoing, &ended).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn delete_user(&self, user_id: &str, now: i64, outgoing: &Outgoing) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(DELETE_USER)
                .bind(user_id)
                .bind(now + 1)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            outbox::write::<sqlx::Postgres>(&mut tx, outgoing, &[]).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn insert_session(
        &self,
        s: &SessionRecord,
        credential_version: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let start = bind_session(sqlx::query(START_SESSION), s).bind(credential_version);
            if outgoing.is_empty() {
                let done = start.execute(&self.pool).await?;
                return Ok(done.rows_affected() > 0);
            }
            let mut tx = self.pool.begin().await?;
            if start.execute(&mut *tx).await?.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            outbox::write::<sqlx::Postgres>(&mut tx, outgoing, &[]).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql::SESSION)
                .bind(id)
                .fetch_optional(&self.pool)
        })
        .await
    }

    async fn factors(&self, user_id: &str) -> StoreResult<Factors> {
        let row: Option<factors::FactorsRow> = retry(Replay::Idempotent, move || {
            sqlx::query_as(factors::FACTORS)
                .bind(user_id)
                .fetch_optional(&self.pool)
        })
        .await?;
        Ok(row.into())
    }

    async fn enrol_totp(&self, user_id: &str, secret: &[u8], now: i64) -> StoreResult<bool> {
        let enrolled: Option<(String,)> = retry(Replay::Idempotent, move || {
            sqlx::query_as(factors::ENROL_TOTP)
                .bind(user_id)
                .bind(secret)
                .bind(now)
                .fetch_optional(&self.pool)
        })
        .await?;
        Ok(enrolled.is_some())
    }

    async fn use_totp_step(
        &self,
        user_id: &str,
        step: i64,
        confirming: Option<(&[String], i64)>,
    ) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            let accepted =
                factors::use_totp_step::<sqlx::Postgres>(&mut tx, user_id, step, confirming)
                    .await?;
            tx.commit().await?;
            Ok(accepted)
        })
        .await
    }

    async fn remove_totp(&self, user_id: &str) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            let removed = factors::remove_totp::<sqlx::Postgres>(&mut tx, user_id).await?;
            tx.commit().await?;
            Ok(removed)
        })
        .await
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        digests: &[String],
        now: i64,
    ) -> StoreResult<bool> {
        retry(Replay::Idempotent, move || async move {
            let mut tx = self.pool.begin().await?;
            let replaced =
                factors::replace_codes::<sqlx::Postgres>(&mut tx, user_id, digests, now).await?;
            tx.commit().await?;
            Ok(replaced)
        })
        .await
    }

    async fn use_recovery_code(&self, user_id: &str, digest: &str, now: i64) -> StoreResult<bool> {
        let used: Option<(String,)> = retry(Replay::OnlyIfNotApplied, move || {
            sqlx::query_as(factors::USE_CODE)
                .bind(user_id)
                .bind(digest)
                .bind(now)
                .fetch_optional(&self.pool)
        })
        .await?;
        Ok(used.is_some())
    }

    async fn insert_challenge(&self, c: &ChallengeRecord) -> StoreResult<()> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            factors::insert_challenge::<sqlx::Postgres>(c)
                .execute(&self.pool)
                .await
                .map(drop)
        })
        .await
    }

    async fn try_challenge(
        &self,
        digest: &str,
        now: i64,
        max_attempts: i64,
    ) -> StoreResult<Option<ChallengeRecord>> {
        retry(Replay::OnlyIfNotApplied, move || {
            sqlx::query_as(factors::TRY_CHALLENGE)
                .bind(digest)
                .bind(now)
                .bind(max_attempts)
                .fetch_optional(&self.pool)
        })
        .await
    }

    async fn take_challenge(&self, digest: &str) -> StoreResult<bool> {
        let taken: Option<(String,)> = retry(Replay::OnlyIfNotApplied, move || {
            sqlx::query_as(factors::TAKE_CHALLENGE)
                .bind(digest)
                .fetch_optional(&self.pool)
        })
        .await?;
        Ok(taken.is_some())
    }

    async fn passkeys(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(factors::PASSKEYS)
                .bind(user_id)
                .fetch_all(&self.pool)
        })
        .await
    }

    async fn passkey(&self, id: &str) -> StoreResult<Option<PasskeyRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(factors::PASSKEY)
                .bind(id)
                .fetch_optional(&self.pool)
        })
        .await
    }

    async fn insert_passkey(&self, p: &PasskeyRecord) -> StoreResult<()> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            factors::insert_passkey::<sqlx::Postgres>(p)
                .execute(&self.pool)
                .await
                .map(drop)
        })
        .await
    }

    async fn rename_passkey(&self, user_id: &str, id: &str, name: &str) -> StoreResult<bool> {
        let renamed: Option<(String,)> = retry(Replay::Idempotent, move || {
            sqlx::query_as(factors::RENAME_PASSKEY)
                .bind(user_id)
                .bind(id)
                .bind(name)
                .fetch_optional(&self.pool)
        })
        .await?;
        Ok(renamed.is_some())
    }

    async fn delete_passkey(&self, user_id: &str, id: &str) -> StoreResult<bool> {
        let deleted: Option<(String,)> = retry(Replay::OnlyIfNotApplied, move || {
            sqlx::query_as(factors::DELETE_PASSKEY)
                .bind(user_id)
                .bind(id)
                .fetch_optional(&self.pool)
        })
        .await?;
        Ok(deleted.is_some())
    }

    async fn use_passkey(&self, p: &PasskeyRecord) -> StoreResult<bool> {
        let used: Option<(String,)> = retry(Replay::OnlyIfNotApplied, move || {
            factors::use_passkey::<sqlx::Postgres>(p).fetch_optional(&self.pool)
        })
        .await?;
        Ok(used.is_some())
    }

    async fn insert_ceremony(&self, c: &CeremonyRecord) -> StoreResult<()> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            factors::insert_ceremony::<sqlx::Postgres>(c)
                .execute(&self.pool)
                .await
                .map(drop)
        })
        .await
    }

    async fn take_ceremony(
        &self,
        digest: &str,
        purpose: &str,
    ) -> StoreResult<Option<CeremonyRecord>> {
        retry(Replay::OnlyIfNotApplied, move || {
            sqlx::query_as(factors::TAKE_CEREMONY)
                .bind(digest)
                .bind(purpose)
                .fetch_optional(&self.pool)
        })
        .await
    }

    async fn set_session_auth(&self, id: &str, auth_time: i64, amr: &str) -> StoreResult<bool> {
        let done = retry(Replay::Idempotent, move || {
            sqlx::query(sql::SET_SESSION_AUTH)
                .bind(id)
                .bind(auth_time)
                .bind(amr)
                .execute(&self.pool)
        })
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn session_and_owner(&self, id: &str) -> StoreResult<Option<(SessionRecord, bool)>> {
        self.sessions_and_owners.call(id.to_owned()).await
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
        let quiet = outgoing.is_empty();
        retry(Replay::OnlyIfNotApplied, move || async move {
            if quiet {
                // One statement, no transaction: the common case (logout).
                let done = sqlx::query(END_SESSION)
                    .bind(id)
                    .bind(now)
                    .bind(reason.as_str())
                    .execute(&self.pool)
                    .await?;
                return Ok(done.rows_affected() > 0);
            }
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(END_SESSION)
                .bind(id)
                .bind(now)
                .bind(reason.as_str())
                .execute(&mut *tx)
                .await?;
            let ended = done.rows_affected() > 0;
            if ended {
                outbox::write::<sqlx::Postgres>(&mut tx, outgoing, &[id.to_string()]).await?;
            }
            tx.commit().await?;
            Ok(ended)
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
        outgoing: &Outgoing,
    ) -> StoreResult<u64> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            // The user row first: its lock orders this against session inserts.
            if let Some(nbf) = not_before {
                sql::cut_user::<sqlx::Postgres>(&mut tx, user_id, nbf, now).await?;
            }
            let ended = revoke_sessions_of(&mut tx, user_id, keep, reason, now).await?;
            outbox::write::<sqlx::Postgres>(&mut tx, outgoing, &ended).await?;
            tx.commit().await?;
            Ok(ended.len() as u64)
        })
        .await
    }

    async fn live_sessions(&self, user_id: &str, now: i64) -> StoreResult<Vec<SessionRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(LIVE_SESSIONS)
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
        let check = batched::AccessCheck {
            access: Some((user_id.to_owned(), session_id.to_owned(), kid.to_owned())),
            client: None,
        };
        Ok(self.access_checks.call(check).await?.0)
    }

    async fn access_state_and_client(
        &self,
        user_id: &str,
        session_id: &str,
        kid: &str,
        client_id: &str,
    ) -> StoreResult<(Option<AccessState>, Option<ClientRecord>)> {
        let check = batched::AccessCheck {
            access: Some((user_id.to_owned(), session_id.to_owned(), kid.to_owned())),
            client: Some(client_id.to_owned()),
        };
        self.access_checks.call(check).await
    }

    async fn step_throttle(
        &self,
        key: &str,
        step: ThrottleStep<'_>,
    ) -> StoreResult<ThrottleRecord> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            sqlx::query(sql::INSERT_THROTTLE)
                .bind(key)
                .execute(&mut *tx)
                .await?;
            let before: ThrottleRecord = sqlx::query_as(THROTTLE_FOR_UPDATE)
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
            let next = step(&before);
            // A look that changes nothing writes nothing (waiting attempts look often).
            if next != before {
                bind_throttle(sqlx::query(sql::UPDATE_THROTTLE), &next)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(before)
        })
        .await
    }

    async fn insert_event(&self, e: &NewEvent, outgoing: &Outgoing) -> StoreResult<()> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let insert = sql::bind_new_event(sqlx::query(sql::INSERT_EVENT), e);
            if outgoing.is_empty() {
                return insert.execute(&self.pool).await.map(drop);
            }
            let mut tx = self.pool.begin().await?;
            insert.execute(&mut *tx).await?;
            outbox::write::<sqlx::Postgres>(&mut tx, outgoing, &[]).await?;
            tx.commit().await
        })
        .await
    }

    async fn search_events(&self, q: &EventQuery) -> StoreResult<Vec<EventRecord>> {
        retry(Replay::Idempotent, move || {
            sql::bind_event_query(sqlx::query_as(sql::SEARCH_EVENTS), q).fetch_all(&self.pool)
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
            sqlx::query_as(sql::USER_EVENTS)
                .bind(user_id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(sql_limit(limit))
                .fetch_all(&self.pool)
        })
        .await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql::SIGNING_KEYS).fetch_all(&self.pool)
        })
        .await
    }

    async fn withdraw_signing_key(
        &self,
        kid: &str,
        now: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self.pool.begin().await?;
            for statement in [sql::WITHDRAW_KEY, sql::FEED_KEY] {
                let done = sqlx::query(statement)
                    .bind(kid)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
            }
            outbox::write::<sqlx::Postgres>(&mut tx, outgoing, &[]).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn add_signing_key(
        &self,
        key: &KeyRecord,
        retired_expire_at: i64,
        outgoing: &Outgoing,
    ) -> StoreResult<()> {
        // SERIALIZABLE, as SQLite's single writer is: two rotations (or two
        // instances creating the first key) at once must not both leave their
        // key unretired; the loser fails with 40001 and reruns after the winner.
        retry(Replay::OnlyIfNotApplied, move || async move {
            let mut tx = self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE")
                .await?;
            sqlx::query(sql::RETIRE_KEYS)
                .bind(key.activates_at)
                .bind(retired_expire_at)
                .execute(&mut *tx)
                .await?;
            sql::bind_key(sqlx::query(sql::INSERT_KEY), key)
                .execute(&mut *tx)
                .await?;
            outbox::write::<sqlx::Postgres>(&mut tx, outgoing, &[]).await?;
            tx.commit().await
        })
        .await
    }

    async fn prune(&self, before: PruneBefore, batch: i64) -> StoreResult<u64> {
        let mut total = 0;
        for (statement, cutoff) in sql::PRUNE.into_iter().zip(sql::prune_cutoffs(&before)) {
            total += retry(Replay::Idempotent, move || async move {
                let done = sqlx::query(statement)
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
            let mut snapshot = sql::read_all::<sqlx::Postgres>(&mut tx).await?;
            snapshot.revocation_cursor = sqlx::query_scalar(REVOCATION_CURSOR)
                .fetch_one(&mut *tx)
                .await?;
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
            let existing: i64 = sqlx::query_scalar(sql::HOLDS_DATA)
                .fetch_one(&mut *tx)
                .await?;
            if existing > 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            sql::load::<sqlx::Postgres>(&mut tx, snap).await?;
            // New rows must never reuse a cursor a verifier holds, or an event id.
            sqlx::query(RESET_REVOCATION_CURSOR)
                .bind(snap.revocation_cursor)
                .execute(&mut *tx)
                .await?;
            sqlx::query(RESET_EVENT_ID).execute(&mut *tx).await?;
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
            sql::bind_client(sqlx::query(sql::INSERT_CLIENT), c)
                .execute(&self.pool)
                .await
                .map(drop)
        })
        .await
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRecord>> {
        let check = batched::AccessCheck {
            access: None,
            client: Some(id.to_owned()),
        };
        Ok(self.access_checks.call(check).await?.1)
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql::LIST_CLIENTS).fetch_all(&self.pool)
        })
        .await
    }

    async fn delete_client(&self, id: &str) -> StoreResult<bool> {
        retry(Replay::OnlyIfNotApplied, move || async move {
            let done = sqlx::query(sql::DELETE_CLIENT)
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn restore_guard(&self) -> StoreResult<(String, i64)> {
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql::RESTORE_GUARD).fetch_one(&self.pool)
        })
        .await
    }

    async fn advance_restore_guard(&self) -> StoreResult<(String, i64)> {
        // A rerun after a lost commit only raises the counter once more.
        retry(Replay::Idempotent, move || {
            sqlx::query_as(sql::ADVANCE_RESTORE_GUARD).fetch_one(&self.pool)
        })
        .await
    }

    async fn revoke_everything(&self, now: i64, database_id: &str) -> StoreResult<(u64, u64)> {
        // Rerunning after a lost commit revokes nothing more: Idempotent.
        retry(Replay::Idempotent, move || async move {
            let mut tx = self.pool.begin().await?;
            // User rows before feed entries, the order every writer takes.
            let mut counts = [0; 3];
            for (count, statement) in counts.iter_mut().zip([
                sql::CUT_EVERY_USER,
                sql::FEED_EVERY_USER,
                sql::END_EVERY_SESSION,
            ]) {
                *count = sqlx::query(statement)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            sqlx::query(sql::RENAME_DATABASE)
                .bind(database_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            let [users, _, sessions] = counts;
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
            sqlx::query_as(sql::REVOCATIONS_AFTER)
                .bind(after)
                .bind(sql_limit(limit))
                .fetch_all(&self.pool)
        })
        .await
    }

    async fn oldest_revocation(&self) -> StoreResult<Option<i64>> {
        retry(Replay::Idempotent, move || {
            sqlx::query_scalar(sql::OLDEST_REVOCATION).fetch_one(&self.pool)
        })
        .await
    }
}

/// Revokes the user's live sessions but `keep`, each with its feed entry.
async fn revoke_sessions_of(
    tx: &mut Tx,
    user_id: &str,
    keep: Option<&str>,
    reason: RevokeReason,
    now: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(END_SESSIONS_OF)
        .bind(user_id)
        .bind(now)
        .bind(reason.as_str())
        .bind(keep)
        .fetch_all(&mut **tx)
        .await
}
