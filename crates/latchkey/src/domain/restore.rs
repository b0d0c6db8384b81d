//! The restore guard: noticing that the database went back in time.
//!
//! A database restored from a backup holds sessions at generations their
//! owners (and thieves) have long rotated past, so refresh tokens that were
//! used — or revoked by a logout — would work again. The database keeps an
//! identity and a counter that only ever rises; each instance raises it at
//! start, every [`CHECK_INTERVAL`] and at shutdown, and writes the value it
//! got to a file in its data directory, beside the master key. A database
//! whose counter, once raised, is not above the value an instance last saw
//! (or whose identity the instance saw retired) was put back from a copy: the
//! instance refuses to start, or stops serving, until an operator runs
//! `latchkey sessions revoke --all`, which ends every session and gives the
//! database a new identity that every instance then adopts.
//!
//! Writes in the last moments before a crash that no check recorded yet are
//! not covered; nor is an instance without a lasting data directory.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::store::{Store, StoreError};

/// The file, in the data directory, that holds what this instance saw.
pub const GUARD_FILE: &str = "restore-guard";
/// How often a serving instance raises and checks the counter.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Retired identities remembered, newest last.
const RETIRED_KEPT: usize = 16;

const UNCHECKED: u8 = 0;
const FINE: u8 = 1;
const RESTORED: u8 = 2;

/// Why the check failed.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "the database went back in time (restored from a backup?): this instance last saw its \
         restore counter at {seen} (recorded in {path}) and it is now {found}, or it is a copy \
         of a database retired since. Refresh tokens the copy still knows may have been used or \
         revoked since. Run `latchkey sessions revoke --all` to end every session and \
         acknowledge the restore, then start again."
    )]
    Restored {
        found: i64,
        seen: i64,
        path: PathBuf,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("restore guard file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("restore guard file {path}: unexpected line {line:?}")]
    Unreadable { path: PathBuf, line: String },
}

/// What this instance saw of the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Mark {
    database_id: Option<String>,
    counter: i64,
    retired: Vec<String>,
}

pub struct RestoreGuard {
    path: PathBuf,
    mark: Mutex<Mark>,
    state: AtomicU8,
}

impl RestoreGuard {
    /// The guard of the instance whose data directory is `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, GuardError> {
        let path = data_dir.join(GUARD_FILE);
        let mark = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|line| GuardError::Unreadable {
                path: path.clone(),
                line,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Mark::default(),
            Err(source) => return Err(GuardError::File { path, source }),
        };
        Ok(Self {
            path,
            mark: Mutex::new(mark),
            state: AtomicU8::new(UNCHECKED),
        })
    }

    /// Whether the last check passed (false before the first, and after a restore was seen).
    pub fn serving(&self) -> bool {
        self.state.load(Ordering::Acquire) == FINE
    }

    /// Whether a check has passed or failed yet.
    pub fn checked(&self) -> bool {
        self.state.load(Ordering::Acquire) != UNCHECKED
    }

    /// Raises the database's counter and compares it with what this instance
    /// saw; records the new value, or refuses (and stops serving) on a restore.
    /// A database of another identity is adopted: a new database, or the one
    /// an operator acknowledged with `sessions revoke --all`.
    pub async fn check(&self, store: &dyn Store) -> Result<(), GuardError> {
        let (id, found) = store.restore_guard().await?;
        let seen = self.seen(&id, found);
        if let Some(seen) = seen {
            self.state.store(RESTORED, Ordering::Release);
            return Err(GuardError::Restored {
                found,
                seen,
                path: self.path.clone(),
            });
        }
        let (id, counter) = store.advance_restore_guard().await?;
        let mut mark = self.mark.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = mark.clone();
        if next.database_id.as_deref() != Some(id.as_str()) {
            next.retired.extend(next.database_id.take());
            let excess = next.retired.len().saturating_sub(RETIRED_KEPT);
            next.retired.drain(..excess);
            next.database_id = Some(id);
        }
        next.counter = counter;
        write_atomically(&self.path, &render(&next)).map_err(|source| GuardError::File {
            path: self.path.clone(),
            source,
        })?;
        *mark = next;
        self.state.store(FINE, Ordering::Release);
        Ok(())
    }

    /// The counter this instance saw when the database at (`id`, `found`)
    /// is behind it — restored — or None.
    fn seen(&self, id: &str, found: i64) -> Option<i64> {
        let mark = self.mark.lock().unwrap_or_else(PoisonError::into_inner);
        match &mark.database_id {
            Some(known) if known == id => (found < mark.counter).then_some(mark.counter),
            _ => mark.retired.iter().any(|r| r == id).then_some(mark.counter),
        }
    }
}

fn render(mark: &Mark) -> String {
    let mut text =
        String::from("# Latchkey restore guard: what this instance last saw of its database.\n");
    if let Some(id) = &mark.database_id {
        text.push_str(&format!("database_id {id}\ncounter {}\n", mark.counter));
    }
    for id in &mark.retired {
        text.push_str(&format!("retired {id}\n"));
    }
    text
}

/// The mark a guard file holds, or the first line it cannot read.
fn parse(text: &str) -> Result<Mark, String> {
    let mut mark = Mark::default();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        match line.split_once(' ') {
            Some(("database_id", id)) => mark.database_id = Some(id.to_string()),
            Some(("counter", n)) => mark.counter = n.parse().map_err(|_| line.to_string())?,
            Some(("retired", id)) => mark.retired.push(id.to_string()),
            _ => return Err(line.to_string()),
        }
    }
    Ok(mark)
}

/// Writes `text` to `path` through a private temporary file and a rename,
/// so a crash leaves the old file or the new one, never half of one.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_mark_survives_its_file() {
        let mark = Mark {
            database_id: Some("abc".into()),
            counter: 42,
            retired: vec!["old1".into(), "old2".into()],
        };
        assert_eq!(parse(&render(&mark)).unwrap(), mark);
        assert_eq!(parse("").unwrap(), Mark::default());
        assert!(parse("counter x").is_err());
        assert!(parse("something else").is_err());
    }
}
