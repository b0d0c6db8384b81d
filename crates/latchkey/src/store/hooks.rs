//! Webhook endpoints and deliveries: the statements both backends run word
//! for word, and the fan-out of an event to its subscribers, run on the
//! transaction of the change it reports. Taking due deliveries differs
//! (row locks on PostgreSQL) and stays in each backend.

use sqlx::{Database, Encode, Type};

use super::{Delivery, HookAttempt, NewWebhookEvent};

macro_rules! delivery_columns {
    () => {
        "id, webhook_id, event_id, event_type, user_id, payload, created_at, next_attempt_at, attempts, delivered_at, failed_at, last_status, last_error, last_latency_ms"
    };
}
pub(super) use delivery_columns;

pub const INSERT_WEBHOOK: &str =
    "INSERT INTO webhooks (id, url, events, secret, created_at) VALUES ($1, $2, $3, $4, $5)";
pub const WEBHOOKS: &str =
    "SELECT id, url, events, secret, created_at, disabled_at FROM webhooks ORDER BY created_at, id";
pub const DELETE_WEBHOOK: &str = "DELETE FROM webhooks WHERE id = $1";
/// Disables endpoint $1 at $2, or enables it with $2 NULL; only a change counts.
pub const SET_DISABLED: &str = "UPDATE webhooks SET disabled_at = $2
     WHERE id = $1 AND (disabled_at IS NULL) <> ($2 IS NULL)";
/// One delivery per enabled endpoint subscribed to the event's type ($2),
/// or only to endpoint $6 when given.
const FAN_OUT: &str = "INSERT INTO webhook_deliveries
     (webhook_id, event_id, event_type, user_id, payload, created_at, next_attempt_at)
     SELECT id, $1, $2, $3, $4, $5, $5 FROM webhooks
     WHERE disabled_at IS NULL
       AND (events = '*' OR (' ' || events || ' ') LIKE ('% ' || $2 || ' %'))
       AND (id = $6 OR $7)";
/// A new delivery of delivery $1's event to its endpoint, due at $2.
pub const REPLAY: &str = "INSERT INTO webhook_deliveries
     (webhook_id, event_id, event_type, user_id, payload, created_at, next_attempt_at)
     SELECT webhook_id, event_id, event_type, user_id, payload, $2, $2
     FROM webhook_deliveries WHERE id = $1 RETURNING id";
pub const DELIVERIES: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2"
);
const DELIVERED: &str = "UPDATE webhook_deliveries SET delivered_at = $2, last_status = $3,
     last_error = NULL, last_latency_ms = $4 WHERE id = $1";
const RETRY: &str = "UPDATE webhook_deliveries SET next_attempt_at = $2, last_status = $3,
     last_error = $5, last_latency_ms = $4 WHERE id = $1";
const GIVEN_UP: &str = "UPDATE webhook_deliveries SET failed_at = $2, last_status = $3,
     last_error = $5, last_latency_ms = $4 WHERE id = $1";

/// A summary's position, created at $2 for kind $1 the first time.
const START_TALLY: &str = "INSERT INTO event_tallies (kind, tallied_until) VALUES ($1, $2)
     ON CONFLICT (kind) DO NOTHING";
/// The events of kind $1 from $2 up to $3, counted per user and address.
const TALLY: &str = "SELECT e.user_id, u.email, e.ip, COUNT(*) AS count,
         MIN(e.created_at) AS first_at, MAX(e.created_at) AS last_at
     FROM events e LEFT JOIN users u ON u.id = e.user_id
     WHERE e.kind = $1 AND e.created_at >= $2 AND e.created_at < $3
     GROUP BY e.user_id, u.email, e.ip
     ORDER BY e.user_id, count DESC
     LIMIT 10000";
const TALLIED: &str = "UPDATE event_tallies SET tallied_until = $2 WHERE kind = $1";

/// Once `every` seconds have passed since the summary's position (read by
/// `position`, which locks it where the backend needs that), counts the
/// events of `kind` from there up to `until`, writes what `build` makes of
/// the counts and moves the position to `until`; on the transaction `conn`
/// is in. Returns the position.
pub async fn tally<DB>(
    conn: &mut DB::Connection,
    position: &'static str,
    kind: &str,
    (start, until, every): (i64, i64, i64),
    build: super::TallyBuild<'_>,
) -> Result<i64, sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    for<'e> &'e [u8]: Encode<'e, DB> + Type<DB>,
    for<'e> Option<&'e str>: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    bool: for<'e> Encode<'e, DB> + Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
    super::EventTally: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    sqlx::query(START_TALLY)
        .bind(kind)
        .bind(start)
        .execute(&mut *conn)
        .await?;
    let (from,): (i64,) = sqlx::query_as(position)
        .bind(kind)
        .fetch_one(&mut *conn)
        .await?;
    if from + every > until {
        return Ok(from);
    }
    let counts: Vec<super::EventTally> = sqlx::query_as(TALLY)
        .bind(kind)
        .bind(from)
        .bind(until)
        .fetch_all(&mut *conn)
        .await?;
    if !counts.is_empty() {
        super::outbox::write::<DB>(conn, &build(&counts, from), &[]).await?;
    }
    sqlx::query(TALLIED)
        .bind(kind)
        .bind(until)
        .execute(&mut *conn)
        .await?;
    Ok(until)
}

/// Writes a delivery of each event to each endpoint that wants it.
pub async fn fan_out<DB>(
    conn: &mut DB::Connection,
    events: &[NewWebhookEvent],
) -> Result<(), sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    for<'e> Option<&'e str>: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    bool: for<'e> Encode<'e, DB> + Type<DB>,
{
    for e in events {
        sqlx::query(FAN_OUT)
            .bind(e.id.as_str())
            .bind(e.kind.as_str())
            .bind(e.user_id.as_deref())
            .bind(e.payload.as_str())
            .bind(e.created_at)
            .bind(e.only_to.as_deref().unwrap_or(""))
            .bind(e.only_to.is_none())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The statement that records how an attempt at delivery `id` ended.
pub fn bind_attempt<DB>(id: i64, attempt: &HookAttempt) -> super::sql::Query<'_, DB>
where
    DB: Database,
    for<'e> &'e str: Encode<'e, DB> + Type<DB>,
    for<'e> Option<&'e str>: Encode<'e, DB> + Type<DB>,
    i64: for<'e> Encode<'e, DB> + Type<DB>,
    Option<i64>: for<'e> Encode<'e, DB> + Type<DB>,
{
    let (statement, at, error) = match &attempt.outcome {
        Delivery::Sent { at } => (DELIVERED, *at, None),
        Delivery::Retry { at, error } => (RETRY, *at, Some(error.as_str())),
        Delivery::Failed { at, error } => (GIVEN_UP, *at, Some(error.as_str())),
    };
    let query = sqlx::query(statement)
        .bind(id)
        .bind(at)
        .bind(attempt.status)
        .bind(attempt.latency_ms);
    match error {
        Some(error) => query.bind(error),
        None => query,
    }
}
