//! The calls on the request path of every refresh, authenticated call and
//! introspection, many at a time (see [`crate::store::batch`]): rotations by
//! one `UPDATE … FROM UNNEST(…)`, reads by `= ANY($1)`. Each statement is
//! prepared once per connection, whatever the number of calls in it.
//!
//! A rotation is still a compare-and-set decided by PostgreSQL: a row another
//! instance updated first is re-checked against its committed version (the
//! `WHERE` runs again on it under READ COMMITTED) and updated only if it is
//! still at the generation the caller read. Two batches of two instances
//! that lock the same sessions in opposite orders can deadlock; PostgreSQL
//! then rolls one back and it runs again (see [`super::retry`]).

use std::collections::HashMap;

use sqlx::{FromRow, PgPool};

use super::retry::{Replay, retry};
use crate::store::batch::Batch;
use crate::store::rotations::{Rotation, answers};
use crate::store::{AccessState, ClientRecord, SessionRecord, StoreResult, sql};

/// Calls in one statement at most: arrays are bound whole, so this bounds
/// only the work of one statement.
pub(super) const MAX_BATCH: usize = 256;

const ADVANCE_SESSIONS: &str = "UPDATE sessions s SET generation = s.generation + 1,
     rotated_at = v.now, last_used_at = v.now, idle_expires_at = v.idle_expires_at
     FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[])
         AS v (id, from_generation, now, idle_expires_at)
     WHERE s.id = v.id AND s.generation = v.from_generation AND s.revoked_at IS NULL
     AND s.expires_at > GREATEST(v.now, FLOOR(EXTRACT(EPOCH FROM statement_timestamp()))::BIGINT)
     AND s.idle_expires_at > GREATEST(v.now, FLOOR(EXTRACT(EPOCH FROM statement_timestamp()))::BIGINT)
     RETURNING s.id";

/// $1 sessions, $2 signing kids; which kids were withdrawn is computed once.
const ACCESS_STATES: &str = concat!(
    "SELECT s.id AS state_of, ",
    sql::prefixed_user_columns!(),
    ", s.revoked_at IS NOT NULL AS session_revoked, s.expires_at AS session_expires_at,
     FALSE AS key_withdrawn,
     ARRAY(SELECT kid FROM revocations WHERE kid = ANY($2::TEXT[])) AS withdrawn
     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ANY($1::TEXT[])"
);

const SESSIONS_AND_OWNERS: &str = concat!(
    "SELECT ",
    sql::prefixed_session_columns!(),
    ", NOT u.disabled AS owner_usable FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.id = ANY($1::TEXT[])"
);

const CLIENTS: &str = concat!(
    "SELECT ",
    sql::client_columns!(),
    " FROM clients WHERE id = ANY($1::TEXT[])"
);

pub(super) struct Rotations(pub PgPool);

impl Batch for Rotations {
    type Item = Rotation;
    type Output = bool;
    const NAME: &'static str = "rotation";

    /// One statement updates a row once, so two rotations of one session
    /// go in different statements (and the second one loses).
    fn key(item: &Rotation) -> Option<&str> {
        Some(&item.session_id)
    }

    async fn apply(&self, batch: Vec<Rotation>) -> StoreResult<Vec<bool>> {
        let ids: Vec<&str> = batch.iter().map(|r| r.session_id.as_str()).collect();
        let from: Vec<i64> = batch.iter().map(|r| r.from).collect();
        let now: Vec<i64> = batch.iter().map(|r| r.now).collect();
        let idle: Vec<i64> = batch.iter().map(|r| r.idle_expires_at).collect();
        let won = retry(Replay::OnlyIfNotApplied, || {
            sqlx::query_scalar::<_, String>(ADVANCE_SESSIONS)
                .bind(&ids)
                .bind(&from)
                .bind(&now)
                .bind(&idle)
                .fetch_all(&self.0)
        })
        .await?;
        Ok(answers(&batch, won))
    }
}

/// What an access-token check needs: (user, session, kid).
pub(super) struct AccessStates(pub PgPool);

impl Batch for AccessStates {
    type Item = (String, String, String);
    type Output = Option<AccessState>;
    const NAME: &'static str = "access_state";

    async fn apply(&self, batch: Vec<Self::Item>) -> StoreResult<Vec<Option<AccessState>>> {
        #[derive(FromRow)]
        struct Row {
            state_of: String,
            #[sqlx(flatten)]
            state: AccessState,
            withdrawn: Vec<String>,
        }
        let sessions: Vec<&str> = batch.iter().map(|(_, s, _)| s.as_str()).collect();
        let kids: Vec<&str> = batch.iter().map(|(_, _, k)| k.as_str()).collect();
        let rows: Vec<Row> = retry(Replay::Idempotent, || {
            sqlx::query_as(ACCESS_STATES)
                .bind(&sessions)
                .bind(&kids)
                .fetch_all(&self.0)
        })
        .await?;
        let withdrawn = rows
            .first()
            .map(|r| r.withdrawn.clone())
            .unwrap_or_default();
        let by_session: HashMap<String, AccessState> =
            rows.into_iter().map(|r| (r.state_of, r.state)).collect();
        Ok(batch
            .iter()
            .map(|(user, session, kid)| {
                let state = by_session.get(session).filter(|s| &s.user.id == user)?;
                Some(AccessState {
                    key_withdrawn: withdrawn.contains(kid),
                    ..state.clone()
                })
            })
            .collect())
    }
}

/// A session with whether its owner may still use it, by session id.
pub(super) struct SessionsAndOwners(pub PgPool);

impl Batch for SessionsAndOwners {
    type Item = String;
    type Output = Option<(SessionRecord, bool)>;
    const NAME: &'static str = "session_and_owner";

    async fn apply(&self, batch: Vec<String>) -> StoreResult<Vec<Self::Output>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            session: SessionRecord,
            owner_usable: bool,
        }
        let rows: Vec<Row> = retry(Replay::Idempotent, || {
            sqlx::query_as(SESSIONS_AND_OWNERS)
                .bind(&batch)
                .fetch_all(&self.0)
        })
        .await?;
        let by_id: HashMap<String, (SessionRecord, bool)> = rows
            .into_iter()
            .map(|r| (r.session.id.clone(), (r.session, r.owner_usable)))
            .collect();
        Ok(batch.iter().map(|id| by_id.get(id).cloned()).collect())
    }
}

/// Resource clients by id (every introspection authenticates one).
pub(super) struct Clients(pub PgPool);

impl Batch for Clients {
    type Item = String;
    type Output = Option<ClientRecord>;
    const NAME: &'static str = "client";

    async fn apply(&self, batch: Vec<String>) -> StoreResult<Vec<Option<ClientRecord>>> {
        let rows: Vec<ClientRecord> = retry(Replay::Idempotent, || {
            sqlx::query_as(CLIENTS).bind(&batch).fetch_all(&self.0)
        })
        .await?;
        let by_id: HashMap<String, ClientRecord> =
            rows.into_iter().map(|c| (c.id.clone(), c)).collect();
        Ok(batch.iter().map(|id| by_id.get(id).cloned()).collect())
    }
}
