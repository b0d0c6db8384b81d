//! The reads on the request path of every authenticated call, introspection
//! and refresh, done on the calling thread through plain SQLite connections.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every
//! query to it and the rows back over channels: two thread wake-ups, pool
//! bookkeeping and row boxing around a primary-key lookup that itself takes a
//! few microseconds. Profiling `GET /v1/me` showed three quarters of the
//! server's time there. These lookups are cheap enough to run in place: in WAL
//! mode a reader never waits for the writer, the connections are read-only
//! with no busy wait, and anything unexpected (a busy or locked database, a
//! schema the statements do not fit) falls back to the sqlx path, so a quick
//! read can only ever be faster, never different.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};

use super::sql::{ACCESS_STATE, CLIENT, SESSION, USER_BY_ID};
use super::{AccessState, ClientRecord, SessionRecord, UserRecord};

/// Connections kept for reuse; more are opened when needed and closed after.
const KEPT: usize = 4;

pub(super) struct QuickReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl QuickReads {
    /// Quick reads of the database file at `path`, which must exist already
    /// (the sqlx pool creates it).
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn access_state(
        &self,
        user_id: &str,
        session_id: &str,
        kid: &str,
    ) -> rusqlite::Result<Option<AccessState>> {
        // By name: SQLite numbers `$N` parameters in order of appearance.
        let params: [(&str, &dyn rusqlite::ToSql); 3] =
            [("$1", &user_id), ("$2", &session_id), ("$3", &kid)];
        self.one(ACCESS_STATE, params.as_slice(), |row| {
            Ok(AccessState {
                user: user_from(row)?,
                session_revoked: row.get(11)?,
                session_expires_at: row.get(12)?,
                key_withdrawn: row.get(13)?,
            })
        })
    }

    pub(super) fn user_by_id(&self, id: &str) -> rusqlite::Result<Option<UserRecord>> {
        self.one(USER_BY_ID, (id,), user_from)
    }

    pub(super) fn session(&self, id: &str) -> rusqlite::Result<Option<SessionRecord>> {
        self.one(SESSION, (id,), |row| {
            Ok(SessionRecord {
                id: row.get(0)?,
                user_id: row.get(1)?,
                salt: row.get(2)?,
                generation: row.get(3)?,
                rotated_at: row.get(4)?,
                created_at: row.get(5)?,
                last_used_at: row.get(6)?,
                idle_expires_at: row.get(7)?,
                expires_at: row.get(8)?,
                revoked_at: row.get(9)?,
                user_agent: row.get(10)?,
                ip: row.get(11)?,
                auth_time: row.get(12)?,
                amr: row.get(13)?,
            })
        })
    }

    pub(super) fn client(&self, id: &str) -> rusqlite::Result<Option<ClientRecord>> {
        self.one(CLIENT, (id,), |row| {
            Ok(ClientRecord {
                id: row.get(0)?,
                name: row.get(1)?,
                secret_hash: row.get(2)?,
                created_at: row.get(3)?,
                admin: row.get(4)?,
            })
        })
    }

    /// Runs a one-row query on an idle connection (opening one if none is).
    fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>> {
        let taken = self.lock().pop();
        let conn = match taken {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = conn.prepare_cached(sql)?.query_row(params, map).optional();
        let mut idle = self.lock();
        if idle.len() < KEPT {
            idle.push(conn);
        }
        result
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        // Never wait: a busy database is left to the sqlx path.
        conn.busy_timeout(std::time::Duration::ZERO)?;
        // 1 MiB of pages each instead of SQLite's 2 MiB: the hot rows'
        // b-tree pages fit, and the kernel's page cache holds the rest.
        conn.pragma_update(None, "cache_size", -1024)?;
        Ok(conn)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A user from the first eleven columns, in the order the statements name them.
fn user_from(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: row.get(0)?,
        email: row.get(1)?,
        email_normalized: row.get(2)?,
        name: row.get(3)?,
        password_hash: row.get(4)?,
        email_verified: row.get(5)?,
        disabled: row.get(6)?,
        not_before: row.get(7)?,
        created_at: row.get(8)?,
        credential_version: row.get(9)?,
        locale: row.get(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_it_cannot_open_is_an_error_for_the_caller_to_fall_back_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let quick = QuickReads::new(&dir.path().join("missing.db"));
        assert!(quick.user_by_id("someone").is_err());
        assert!(
            !dir.path().join("missing.db").exists(),
            "read-only: never creates"
        );
    }
}
