//! How the PostgreSQL backend meets a failing database: which errors mean
//! "unavailable", and which operations may run again when one breaks off.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::store::{StoreError, StoreResult};

/// SQLSTATEs of a connection that failed or ended, or of a server that
/// cannot take the work now.
fn is_unavailable(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "57014" | "40001" | "40P01" | "40003"
        )
}

pub(super) fn map_err(e: sqlx::Error) -> StoreError {
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
pub(super) enum Replay {
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

/// How long after a connection broke every pooled connection is pinged
/// before use (a restarted database ends all of them at once).
const SUSPECT_FOR: Duration = Duration::from_secs(5);

/// When a connection last broke, in milliseconds since [`since`] plus one
/// (0: never). Process-wide: a hint for the pool, not state of a store.
static BROKEN_AT: AtomicU64 = AtomicU64::new(0);

fn since() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn millis_since_start() -> u64 {
    u64::try_from(since().elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

fn note_broken_connection() {
    BROKEN_AT.store(millis_since_start(), Ordering::Relaxed);
}

/// Whether a connection broke in the last [`SUSPECT_FOR`].
pub(super) fn connections_suspect() -> bool {
    let at = BROKEN_AT.load(Ordering::Relaxed);
    let window = u64::try_from(SUSPECT_FOR.as_millis()).unwrap_or(u64::MAX);
    at != 0 && millis_since_start().saturating_sub(at) < window
}

/// Pauses before the second and third attempts.
const BACKOFF: [Duration; 2] = [Duration::from_millis(20), Duration::from_millis(60)];

/// Runs `op` up to three times while it fails transiently (see [`Fault`]);
/// a failure of unknown outcome is retried only for [`Replay::Idempotent`].
pub(super) async fn retry<T, F, Fut>(replay: Replay, mut op: F) -> StoreResult<T>
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
            Fault::Unknown => {
                note_broken_connection();
                replay == Replay::Idempotent
            }
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
