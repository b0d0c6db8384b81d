//! Group commit for refresh-token rotations on SQLite.
//!
//! Every rotation is a compare-and-set on one session row that must be on disk
//! before the new refresh token is handed out. Committed one at a time, each
//! pays its own trip to SQLite's connection thread and its own `fsync`, and
//! the single writer caps rotations at a few thousand per second. Here the
//! rotations waiting at any moment are applied by one `UPDATE … FROM (VALUES
//! …)` statement (see [`super::batch`]): one commit, one `fsync`, and each
//! caller still learns whether *its* compare-and-set won. A batch never holds
//! two rotations of the same session, so two racing refreshes of one token are
//! still decided one after the other, exactly as before.

use std::collections::HashSet;

use sqlx::SqlitePool;

use super::StoreResult;
use super::batch::Batch;

/// Rotations applied by one statement at most (four bound values each, far
/// below SQLite's limit on variables).
pub(super) const MAX_BATCH: usize = 256;

/// Moves a session from generation `from` to the next one if it is live and
/// still at `from`.
pub(super) struct Rotation {
    pub session_id: String,
    pub from: i64,
    pub now: i64,
    pub idle_expires_at: i64,
}

impl Rotation {
    pub(super) fn new(session_id: &str, from: i64, now: i64, idle_expires_at: i64) -> Self {
        Self {
            session_id: session_id.to_owned(),
            from,
            now,
            idle_expires_at,
        }
    }
}

/// The sessions among `batch` whose compare-and-set won, as each caller's answer.
pub(super) fn answers(batch: &[Rotation], won: Vec<String>) -> Vec<bool> {
    let won: HashSet<String> = won.into_iter().collect();
    batch.iter().map(|r| won.contains(&r.session_id)).collect()
}

/// Rotations through SQLite's single writer.
pub(super) struct SqliteRotations(pub SqlitePool);

impl Batch for SqliteRotations {
    type Item = Rotation;
    type Output = bool;
    const NAME: &'static str = "rotation";

    fn key(item: &Rotation) -> Option<&str> {
        Some(&item.session_id)
    }

    async fn apply(&self, batch: Vec<Rotation>) -> StoreResult<Vec<bool>> {
        let values = vec!["(?, ?, ?, ?)"; batch.len()].join(", ");
        let sql = format!(
            "UPDATE sessions SET generation = generation + 1, rotated_at = v.column3, \
             last_used_at = v.column3, idle_expires_at = v.column4 \
             FROM (VALUES {values}) AS v \
             WHERE sessions.id = v.column1 AND sessions.generation = v.column2 \
             AND sessions.revoked_at IS NULL AND sessions.expires_at > MAX(v.column3, unixepoch()) \
             AND sessions.idle_expires_at > MAX(v.column3, unixepoch()) \
             RETURNING sessions.id"
        );
        // Only the number of placeholders varies; every value is bound.
        let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for r in &batch {
            query = query
                .bind(&r.session_id)
                .bind(r.from)
                .bind(r.now)
                .bind(r.idle_expires_at);
        }
        let won = query
            .fetch_all(&self.0)
            .await
            .map_err(super::sqlite::map_err)?;
        Ok(answers(&batch, won))
    }
}
