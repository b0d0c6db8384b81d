//! Group commit for refresh-token rotations on SQLite.
//!
//! Every rotation is a compare-and-set on one session row that must be on disk
//! before the new refresh token is handed out. Committed one at a time, each
//! pays its own trip to SQLite's connection thread and its own `fsync`, and
//! the single writer caps rotations at a few thousand per second. Here the
//! rotations waiting at any moment are applied by one `UPDATE … FROM (VALUES
//! …)` statement: one commit, one `fsync`, and each caller still learns
//! whether *its* compare-and-set won. A batch never holds two rotations of the
//! same session, so two racing refreshes of one token are still decided one
//! after the other, exactly as before.

use std::collections::{HashSet, VecDeque};

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, StoreResult};

/// Rotations applied by one statement at most (four bound values each, far
/// below SQLite's limit on variables).
const MAX_BATCH: usize = 256;
/// Rotations that may wait for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

struct Rotation {
    session_id: String,
    from: i64,
    now: i64,
    idle_expires_at: i64,
    reply: oneshot::Sender<StoreResult<bool>>,
}

/// The handle callers use; the batching task stops when it is dropped.
pub(super) struct Rotations {
    queue: mpsc::Sender<Rotation>,
}

impl Rotations {
    /// Starts the batching task on the current runtime, writing through `writer`.
    pub(super) fn start(writer: SqlitePool) -> Self {
        let (queue, incoming) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, incoming));
        Self { queue }
    }

    /// Moves the session from generation `from` to the next one if it is
    /// live and still at `from`; false (nothing changed) otherwise.
    pub(super) async fn advance(
        &self,
        session_id: &str,
        from: i64,
        now: i64,
        idle_expires_at: i64,
    ) -> StoreResult<bool> {
        let (reply, answer) = oneshot::channel();
        let rotation = Rotation {
            session_id: session_id.to_owned(),
            from,
            now,
            idle_expires_at,
            reply,
        };
        let stopped = || StoreError::Unavailable("the database writer has stopped".into());
        self.queue.send(rotation).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(writer: SqlitePool, mut incoming: mpsc::Receiver<Rotation>) {
    let mut waiting: VecDeque<Rotation> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match incoming.recv().await {
                Some(rotation) => waiting.push_back(rotation),
                None => return,
            }
        }
        while waiting.len() < 2 * MAX_BATCH {
            match incoming.try_recv() {
                Ok(rotation) => waiting.push_back(rotation),
                Err(_) => break,
            }
        }
        let batch = take_batch(&mut waiting);
        match apply(&writer, &batch).await {
            Ok(won) => {
                for rotation in batch {
                    let _ = rotation.reply.send(Ok(won.contains(&rotation.session_id)));
                }
            }
            Err(e) => {
                let unavailable = matches!(e, StoreError::Unavailable(_));
                let message = e.to_string();
                for rotation in batch {
                    let _ = rotation.reply.send(Err(if unavailable {
                        StoreError::Unavailable(message.clone())
                    } else {
                        StoreError::Other(message.clone())
                    }));
                }
            }
        }
    }
}

/// Takes, in arrival order, up to `MAX_BATCH` rotations of distinct sessions;
/// the rest keep their place for the next batch.
fn take_batch(waiting: &mut VecDeque<Rotation>) -> Vec<Rotation> {
    let mut batch = Vec::with_capacity(waiting.len().min(MAX_BATCH));
    let mut sessions = HashSet::with_capacity(batch.capacity());
    let mut later = VecDeque::new();
    while let Some(rotation) = waiting.pop_front() {
        if batch.len() < MAX_BATCH && sessions.insert(rotation.session_id.clone()) {
            batch.push(rotation);
        } else {
            later.push_back(rotation);
        }
    }
    *waiting = later;
    batch
}

/// Applies every rotation of `batch` in one statement; returns the sessions
/// whose compare-and-set succeeded.
async fn apply(writer: &SqlitePool, batch: &[Rotation]) -> StoreResult<HashSet<String>> {
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
    for r in batch {
        query = query
            .bind(&r.session_id)
            .bind(r.from)
            .bind(r.now)
            .bind(r.idle_expires_at);
    }
    let won = query
        .fetch_all(writer)
        .await
        .map_err(super::sqlite::map_err)?;
    Ok(won.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(id: &str) -> Rotation {
        Rotation {
            session_id: id.to_owned(),
            from: 0,
            now: 0,
            idle_expires_at: 0,
            reply: oneshot::channel().0,
        }
    }

    fn ids(rotations: &[Rotation]) -> Vec<&str> {
        rotations.iter().map(|r| r.session_id.as_str()).collect()
    }

    #[test]
    fn a_batch_holds_each_session_once_and_keeps_arrival_order() {
        let mut waiting: VecDeque<Rotation> = ["a", "b", "a", "c", "b", "a"]
            .into_iter()
            .map(rotation)
            .collect();
        let first = take_batch(&mut waiting);
        assert_eq!(ids(&first), ["a", "b", "c"]);
        assert_eq!(ids(&take_batch(&mut waiting)), ["a", "b"]);
        assert_eq!(ids(&take_batch(&mut waiting)), ["a"]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn a_batch_is_bounded() {
        let mut waiting: VecDeque<Rotation> = (0..MAX_BATCH + 3)
            .map(|i| rotation(&i.to_string()))
            .collect();
        assert_eq!(take_batch(&mut waiting).len(), MAX_BATCH);
        assert_eq!(waiting.len(), 3);
    }
}
