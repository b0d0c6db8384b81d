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

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Executor as _, FromRow, PgPool, Postgres, Row as _};
use tokio::sync::Mutex;

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

/// The columns [`Found::decode`] reads as an [`AccessState`], from `s` and `u`.
macro_rules! access_state_columns {
    () => {
        concat!(
            "s.id AS state_of, ",
            sql::prefixed_user_columns!(),
            ", s.revoked_at IS NOT NULL AS session_revoked,
             s.expires_at AS session_expires_at, FALSE AS key_withdrawn"
        )
    };
}

/// $1 sessions, $2 signing kids; which kids were withdrawn is computed once.
const ACCESS_STATES: &str = concat!(
    "SELECT ",
    access_state_columns!(),
    ", ARRAY(SELECT kid FROM revocations WHERE kid = ANY($2::TEXT[])) AS withdrawn
     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ANY($1::TEXT[])"
);

/// [`ACCESS_STATES`] and $3 clients. One row per session found, and one with
/// no session when none is: the withdrawn kids and the clients ride on every
/// row, so access-token checks and client credentials share a trip (an
/// introspection needs both).
const ACCESS_CHECKS: &str = concat!(
    "SELECT ",
    access_state_columns!(),
    ", x.*
     FROM (SELECT ARRAY(SELECT kid FROM revocations WHERE kid = ANY($2::TEXT[])) AS withdrawn,
         COALESCE(array_agg(c.id), '{}') AS client_ids,
         COALESCE(array_agg(c.name), '{}') AS client_names,
         COALESCE(array_agg(c.secret_hash), '{}') AS client_secret_hashes,
         COALESCE(array_agg(c.created_at), '{}') AS client_created_ats,
         COALESCE(array_agg(c.admin), '{}') AS client_admins
         FROM clients c WHERE c.id = ANY($3::TEXT[])) x
     LEFT JOIN (sessions s JOIN users u ON u.id = s.user_id) ON s.id = ANY($1::TEXT[])"
);

const SESSIONS_AND_OWNERS: &str = concat!(
    "SELECT ",
    sql::prefixed_session_columns!(),
    ", NOT u.disabled AS owner_usable FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.id = ANY($1::TEXT[])"
);

/// Where one kind of call's statements run: a pooled connection, kept from
/// one statement to the next while calls keep coming, and given back when
/// none waits or when the pool has no other left for the rest of the server.
/// A connection given back to the pool is checked with a round trip of its
/// own (sqlx's release ping); under load, taking and giving back one per
/// statement doubled the trips to the database.
pub(super) struct Lane {
    pool: PgPool,
    held: Mutex<Option<PoolConnection<Postgres>>>,
}

impl Lane {
    pub(super) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            held: Mutex::new(None),
        }
    }

    /// Runs `query` on the lane's connection, taking one from the pool if it
    /// holds none. A connection whose statement failed goes back to the
    /// pool, which checks it; the next statement takes another.
    async fn fetch_all(
        &self,
        query: Query<'_, Postgres, PgArguments>,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        let mut held = self.held.lock().await;
        let connection = match held.as_mut() {
            Some(connection) => connection,
            None => held.insert(self.pool.acquire().await?),
        };
        let rows = connection.fetch_all(query).await;
        if rows.is_err() || self.pool_exhausted() {
            *held = None;
        }
        rows
    }

    /// Whether every connection the pool may open is out: another caller
    /// may be waiting for one.
    fn pool_exhausted(&self) -> bool {
        self.pool.num_idle() == 0 && self.pool.size() >= self.pool.options().get_max_connections()
    }

    /// Gives the connection back to the pool.
    fn release(&self) {
        if let Ok(mut held) = self.held.try_lock() {
            *held = None;
        }
    }
}

pub(super) struct Rotations(pub Lane);

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
        let won = retry(Replay::OnlyIfNotApplied, || async {
            let query = sqlx::query(ADVANCE_SESSIONS)
                .bind(&ids)
                .bind(&from)
                .bind(&now)
                .bind(&idle);
            let rows = self.0.fetch_all(query).await?;
            rows.iter()
                .map(|row| row.try_get::<String, _>(0))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        Ok(answers(&batch, won))
    }

    fn idle(&self) {
        self.0.release();
    }
}

/// One read of [`ACCESS_CHECKS`]: what an access-token check needs (user,
/// session, kid), a client by id, or both.
pub(super) struct AccessCheck {
    pub access: Option<(String, String, String)>,
    pub client: Option<String>,
}

/// Access-token checks and client credentials, by one statement.
pub(super) struct AccessChecks(pub Lane);

impl Batch for AccessChecks {
    type Item = AccessCheck;
    type Output = (Option<AccessState>, Option<ClientRecord>);
    const NAME: &'static str = "access_check";

    async fn apply(&self, batch: Vec<AccessCheck>) -> StoreResult<Vec<Self::Output>> {
        let access = batch.iter().filter_map(|c| c.access.as_ref());
        let sessions: Vec<&str> = access.clone().map(|(_, s, _)| s.as_str()).collect();
        let kids: Vec<&str> = access.map(|(_, _, k)| k.as_str()).collect();
        let clients: Vec<&str> = batch.iter().filter_map(|c| c.client.as_deref()).collect();
        // Without a client to read, the lighter statement (the common case:
        // authenticated calls).
        let with_clients = !clients.is_empty();
        let statement = if with_clients {
            ACCESS_CHECKS
        } else {
            ACCESS_STATES
        };
        let found = retry(Replay::Idempotent, || async {
            let query = sqlx::query(statement).bind(&sessions).bind(&kids);
            let query = if with_clients {
                query.bind(&clients)
            } else {
                query
            };
            let rows = self.0.fetch_all(query).await?;
            Found::decode(&rows, with_clients)
        })
        .await?;
        Ok(batch.iter().map(|check| found.answer(check)).collect())
    }

    fn idle(&self) {
        self.0.release();
    }
}

/// What one [`ACCESS_STATES`] or [`ACCESS_CHECKS`] statement found.
struct Found {
    states: HashMap<String, AccessState>,
    withdrawn: Vec<String>,
    clients: HashMap<String, ClientRecord>,
}

impl Found {
    fn decode(rows: &[PgRow], with_clients: bool) -> Result<Found, sqlx::Error> {
        let mut states = HashMap::new();
        for row in rows {
            if let Some(session) = row.try_get::<Option<String>, _>("state_of")? {
                states.insert(session, AccessState::from_row(row)?);
            }
        }
        let (mut withdrawn, mut clients) = (Vec::new(), HashMap::new());
        if let Some(row) = rows.first() {
            withdrawn = row.try_get("withdrawn")?;
        }
        // With clients there is always a row: the left join keeps `x`'s.
        if let Some(row) = rows.first().filter(|_| with_clients) {
            let ids: Vec<String> = row.try_get("client_ids")?;
            let names: Vec<String> = row.try_get("client_names")?;
            let hashes: Vec<Vec<u8>> = row.try_get("client_secret_hashes")?;
            let created: Vec<i64> = row.try_get("client_created_ats")?;
            let admins: Vec<bool> = row.try_get("client_admins")?;
            // One aggregate over the same rows: the arrays are in one order.
            for ((((id, name), secret_hash), created_at), admin) in ids
                .into_iter()
                .zip(names)
                .zip(hashes)
                .zip(created)
                .zip(admins)
            {
                let client = ClientRecord {
                    id: id.clone(),
                    name,
                    secret_hash,
                    created_at,
                    admin,
                };
                clients.insert(id, client);
            }
        }
        Ok(Found {
            states,
            withdrawn,
            clients,
        })
    }

    fn answer(&self, check: &AccessCheck) -> (Option<AccessState>, Option<ClientRecord>) {
        let state = check.access.as_ref().and_then(|(user, session, kid)| {
            let state = self.states.get(session).filter(|s| &s.user.id == user)?;
            Some(AccessState {
                key_withdrawn: self.withdrawn.contains(kid),
                ..state.clone()
            })
        });
        let client = check.client.as_ref().and_then(|id| self.clients.get(id));
        (state, client.cloned())
    }
}

/// A session with whether its owner may still use it, by session id.
pub(super) struct SessionsAndOwners(pub Lane);

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
        let rows: Vec<Row> = retry(Replay::Idempotent, || async {
            let query = sqlx::query(SESSIONS_AND_OWNERS).bind(&batch);
            let rows = self.0.fetch_all(query).await?;
            rows.iter().map(Row::from_row).collect()
        })
        .await?;
        let by_id: HashMap<String, (SessionRecord, bool)> = rows
            .into_iter()
            .map(|r| (r.session.id.clone(), (r.session, r.owner_usable)))
            .collect();
        Ok(batch.iter().map(|id| by_id.get(id).cloned()).collect())
    }

    fn idle(&self) {
        self.0.release();
    }
}
