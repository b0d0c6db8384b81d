//! `latchkey import django` and `latchkey import users`: users of another
//! system, read from a Django project's database or a JSON Lines file.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Deserialize;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, FromRow};

use crate::app::App;
use crate::domain::clock::SystemClock;
use crate::domain::import::{ImportOptions, ImportReport, Incoming};
use crate::domain::text::printable;

#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// Users of a Django project (django.contrib.auth or a custom user
    /// model), with their password hashes: they sign in with the passwords
    /// they have. Run it again to pick up changes; users who signed in to
    /// Latchkey meanwhile are never overwritten.
    Django {
        /// The Django database: a SQLite file (path or sqlite://PATH) or
        /// postgres://USER@HOST/DB. Only read.
        url: String,
        /// The user model's table.
        #[arg(long, default_value = "auth_user")]
        users_table: String,
        /// The column holding the address.
        #[arg(long, default_value = "email")]
        email_field: String,
        /// Report what would be imported and the hash formats found; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Import users with unsalted MD5/SHA-1 hashes as "must reset" (refused otherwise).
        #[arg(long)]
        allow_weak_hashes: bool,
        /// Mark the imported addresses unverified (by default they count as
        /// verified: the old system accepted them).
        #[arg(long)]
        unverified: bool,
    },
    /// Users from a JSON Lines file: one object per line (see
    /// docs/migrating-from-django.md for the fields).
    Users {
        file: PathBuf,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        allow_weak_hashes: bool,
    },
}

pub async fn run(from: ImportFrom, settings: crate::config::Settings) -> anyhow::Result<()> {
    let (users, options) = match &from {
        ImportFrom::Django {
            url,
            users_table,
            email_field,
            dry_run,
            allow_weak_hashes,
            unverified,
        } => {
            let users = read_django(url, users_table, email_field, !unverified).await?;
            let options = ImportOptions {
                source: "django".into(),
                dry_run: *dry_run,
                allow_weak_hashes: *allow_weak_hashes,
            };
            (users, options)
        }
        ImportFrom::Users {
            file,
            dry_run,
            allow_weak_hashes,
        } => {
            let options = ImportOptions {
                source: "jsonl".into(),
                dry_run: *dry_run,
                allow_weak_hashes: *allow_weak_hashes,
            };
            (read_jsonl(file)?, options)
        }
    };
    let app = App::build(settings, std::sync::Arc::new(SystemClock)).await?;
    let report = app
        .state
        .auth
        .import_users(users, &options)
        .await
        .map_err(super::explain)?;
    print_report(&report, options.dry_run);
    Ok(())
}

fn print_report(report: &ImportReport, dry_run: bool) {
    println!("read {} users", report.read);
    let formats: Vec<String> = report
        .formats
        .iter()
        .map(|(format, n)| format!("{format} {n}"))
        .collect();
    println!("password hash formats: {}", formats.join(", "));
    let skipped: usize = report.skipped.values().map(|(n, _)| n).sum();
    if dry_run {
        println!(
            "dry run, nothing written: {} would be imported or updated ({} must reset their password), {skipped} skipped",
            report.read - skipped,
            report.must_reset
        );
    } else {
        println!(
            "created {}, updated {}, unchanged {}, skipped {skipped}; {} must reset their password",
            report.created, report.updated, report.unchanged, report.must_reset
        );
    }
    for (why, (count, listed)) in &report.skipped {
        let listed: Vec<String> = listed.iter().map(|s| printable(s)).collect();
        let more = if *count > listed.len() { ", …" } else { "" };
        println!(
            "skipped {count}: {}: {}{more}",
            why.describe(),
            listed.join(", ")
        );
    }
}

/// One user row of a Django database.
#[derive(FromRow)]
struct DjangoUser {
    source_id: String,
    email: Option<String>,
    username: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    password: String,
    active: i64,
    joined_at: Option<i64>,
    last_login_at: Option<i64>,
}

impl DjangoUser {
    fn into_incoming(self, verified: bool) -> Incoming {
        let full: Vec<&str> = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let name = match full.is_empty() {
            false => Some(full.join(" ")),
            true => self.username.filter(|u| !u.trim().is_empty()),
        };
        Incoming {
            source_id: self.source_id,
            email: self.email.unwrap_or_default(),
            name,
            password_hash: self.password,
            active: self.active != 0,
            email_verified: verified,
            joined_at: self.joined_at,
            last_login_at: self.last_login_at,
        }
    }
}

enum Dialect {
    Sqlite,
    Postgres,
}

/// Reads every user of a Django database (only reads).
async fn read_django(
    url: &str,
    table: &str,
    email_field: &str,
    verified: bool,
) -> anyhow::Result<Vec<Incoming>> {
    for name in [table, email_field] {
        if name.is_empty()
            || name.starts_with(|c: char| c.is_ascii_digit())
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            bail!("{name:?} is not a table or column name");
        }
    }
    let rows = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .context("connecting to the Django database")?;
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_name = $1 AND table_schema = current_schema()",
        )
        .bind(table)
        .fetch_all(&mut conn)
        .await?;
        let sql = select_users(Dialect::Postgres, table, email_field, &columns)?;
        sqlx::query_as::<_, DjangoUser>(sql)
            .fetch_all(&mut conn)
            .await
            .context("reading the users")?
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        if !Path::new(path).is_file() {
            bail!("{path}: no such SQLite file");
        }
        let mut conn = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .read_only(true)
            .connect()
            .await
            .context("opening the Django database")?;
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
            .bind(table)
            .fetch_all(&mut conn)
            .await?;
        let sql = select_users(Dialect::Sqlite, table, email_field, &columns)?;
        sqlx::query_as::<_, DjangoUser>(sql)
            .fetch_all(&mut conn)
            .await
            .context("reading the users")?
    };
    Ok(rows
        .into_iter()
        .map(|row| row.into_incoming(verified))
        .collect())
}

/// The query reading `table`, with what it has of Django's user columns.
/// Safe to run: the only names in it are the table and columns checked to
/// be plain identifiers, and found in the table.
fn select_users(
    dialect: Dialect,
    table: &str,
    email_field: &str,
    columns: &[String],
) -> anyhow::Result<sqlx::AssertSqlSafe<String>> {
    if columns.is_empty() {
        bail!("the Django database has no table {table:?} (see --users-table)");
    }
    let has = |c: &str| columns.iter().any(|have| have == c);
    for required in ["id", "password", email_field] {
        if !has(required) {
            bail!("table {table:?} has no column {required:?} (see --email-field)");
        }
    }
    let text = |c: &str| match has(c) {
        true => format!("CAST(\"{c}\" AS TEXT)"),
        false => "CAST(NULL AS TEXT)".into(),
    };
    let epoch = |c: &str| match (has(c), &dialect) {
        (false, _) => "CAST(NULL AS BIGINT)".to_string(),
        (true, Dialect::Sqlite) => format!("CAST(strftime('%s', \"{c}\") AS BIGINT)"),
        (true, Dialect::Postgres) => format!("CAST(EXTRACT(EPOCH FROM \"{c}\") AS BIGINT)"),
    };
    let active = match has("is_active") {
        true => "CAST(CASE WHEN \"is_active\" THEN 1 ELSE 0 END AS BIGINT)",
        false => "CAST(1 AS BIGINT)",
    };
    Ok(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(\"id\" AS TEXT) AS source_id, {} AS email, {} AS username,
             {} AS first_name, {} AS last_name, \"password\" AS password, {active} AS active,
             {} AS joined_at, {} AS last_login_at
         FROM \"{table}\" ORDER BY \"id\"",
        text(email_field),
        text("username"),
        text("first_name"),
        text("last_name"),
        epoch("date_joined"),
        epoch("last_login"),
    )))
}

/// One line of `latchkey import users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    email: String,
    /// Django's format or a PHC string; absent: the user must reset it.
    #[serde(default)]
    password_hash: Option<String>,
    #[serde(default)]
    name: Option<String>,
    /// The user's id in the source system.
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default = "yes")]
    email_verified: bool,
    /// RFC 3339 or Unix seconds.
    #[serde(default)]
    created_at: Option<serde_json::Value>,
    #[serde(default)]
    last_login_at: Option<serde_json::Value>,
}

fn yes() -> bool {
    true
}

/// Reads a JSON Lines file; a malformed line stops the import before anything is written.
fn read_jsonl(file: &Path) -> anyhow::Result<Vec<Incoming>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut users = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let number = n + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(raw)
            .with_context(|| format!("{} line {number}", file.display()))?;
        let time = |v: &Option<serde_json::Value>, field: &str| {
            v.as_ref()
                .map(|v| timestamp(v).with_context(|| format!("line {number}: {field}")))
                .transpose()
        };
        users.push(Incoming {
            source_id: match line.id {
                Some(serde_json::Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => format!("line {number}"),
            },
            email: line.email,
            name: line.name,
            password_hash: line.password_hash.unwrap_or_else(|| "!".into()),
            active: line.active,
            email_verified: line.email_verified,
            joined_at: time(&line.created_at, "created_at")?,
            last_login_at: time(&line.last_login_at, "last_login_at")?,
        });
    }
    Ok(users)
}

/// Unix seconds from a number or an RFC 3339 string.
fn timestamp(value: &serde_json::Value) -> anyhow::Result<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().context("not a whole number of seconds"),
        serde_json::Value::String(s) => {
            let at = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .context("not an RFC 3339 time")?;
            Ok(at.unix_timestamp())
        }
        _ => bail!("a number of seconds or an RFC 3339 time"),
    }
}
