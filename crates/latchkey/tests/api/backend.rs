//! Which database the suite runs on, and a fresh one per test. The suite runs
//! on SQLite by default; `LATCHKEY_TEST_BACKEND=postgres` runs it on
//! PostgreSQL, each test in its own database created on the server named by
//! `LATCHKEY_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and dropped afterwards.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use latchkey::config::DatabaseUrl;
use sqlx::Connection;
use tempfile::TempDir;

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backend this test process runs the suite on.
pub fn backend() -> Backend {
    match std::env::var("LATCHKEY_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

/// The administrative URL of the test PostgreSQL server.
pub fn postgres_admin_url() -> String {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into())
}

fn postgres_reachable() -> &'static Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(|| {
        let url = postgres_admin_url();
        if url.is_empty() || url == "off" {
            return Err("disabled by LATCHKEY_TEST_POSTGRES_URL".into());
        }
        run_blocking(async move {
            let conn = sqlx::PgConnection::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            conn.close().await.map_err(|e| e.to_string())
        })
    })
}

/// Whether PostgreSQL can be used for `what`. When it cannot, says so loudly
/// (past the test harness's output capture) and returns false — unless
/// `LATCHKEY_REQUIRE_ALL=1`, where a missing dependency fails the test.
pub fn require_postgres(what: &str) -> bool {
    match postgres_reachable() {
        Ok(()) => true,
        Err(e) => {
            let url = postgres_admin_url();
            if std::env::var("LATCHKEY_REQUIRE_ALL").as_deref() == Ok("1") {
                panic!("{what} needs PostgreSQL at {url}, which is unavailable: {e}");
            }
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: {what}: PostgreSQL is unavailable at {url} ({e}).\n*** Set LATCHKEY_TEST_POSTGRES_URL to a server with trust auth to run it.\n"
            );
            false
        }
    }
}

/// Runs a future to completion on a private runtime in another thread (for
/// work needed outside, or in the `Drop` of, an async test).
fn run_blocking<T: Send + 'static>(
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(fut)
    })
    .join()
    .expect("helper thread")
}

/// A PostgreSQL database created for one test and dropped after it.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        let admin = postgres_admin_url();
        let name = format!("latchkey_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        PgDatabase { name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (postgres_admin_url(), self.name.clone());
        run_blocking(async move {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            }
        });
    }
}

/// Where one test deployment lives: a data directory (master key, and the
/// SQLite file on that backend) and, on PostgreSQL, its own database.
pub struct TestHome {
    dir: TempDir,
    pg: Option<PgDatabase>,
}

impl TestHome {
    pub async fn new(backend: Backend) -> TestHome {
        let dir = TempDir::new().expect("temp dir");
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgDatabase::create().await),
        };
        TestHome { dir, pg }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn database_url(&self) -> DatabaseUrl {
        match &self.pg {
            Some(db) => DatabaseUrl::new(db.url.clone()),
            None => DatabaseUrl::new(format!(
                "sqlite://{}",
                self.dir.path().join("latchkey.db").display()
            )),
        }
    }
}
