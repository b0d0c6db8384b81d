//! Users brought from another system (`latchkey import django`, `latchkey
//! import users`) with their password hashes as that system stored them,
//! so they sign in with the passwords they have; each hash is replaced by
//! Argon2id at the first successful sign-in. Importing again updates only
//! users who have not signed in to Latchkey since. See
//! docs/migrating-from-django.md.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::accounts::clean_name;
use super::email::parse_email;
use super::events::EventKind;
use super::password::legacy::Format;
use super::{Auth, AuthError, Client};
use crate::store::{ImportSource, Imported, UserRecord};

/// What a must-reset user's password hash becomes: it never verifies.
const MUST_RESET: &str = "!imported: reset the password to sign in";
/// Addresses listed per reason in a report at most.
const LISTED: usize = 20;

/// One user as another system has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Their id there (for the report and the record of the import).
    pub source_id: String,
    pub email: String,
    pub name: Option<String>,
    /// As that system stored it (Django's format, or a PHC string).
    pub password_hash: String,
    pub active: bool,
    pub email_verified: bool,
    pub joined_at: Option<i64>,
    pub last_login_at: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `django`, `jsonl`.
    pub source: String,
    /// Read and report only.
    pub dry_run: bool,
    /// Import users with MD5/SHA-1 hashes as must-reset instead of refusing them.
    pub allow_weak_hashes: bool,
}

/// Why a user was not imported (or not updated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    InvalidEmail,
    /// Several users whose addresses differ only by case (or another
    /// normalisation): which is the person is for the operator to decide.
    SameAddress,
    WeakHash,
    UnknownHash,
    /// An account registered in Latchkey itself.
    OwnAccount,
    /// Imported before and signed in to Latchkey since.
    SignedIn,
}

impl Skip {
    pub fn describe(self) -> &'static str {
        match self {
            Skip::InvalidEmail => "no valid email address",
            Skip::SameAddress => {
                "the same address as another user there, by case or spelling (not merged)"
            }
            Skip::WeakHash => {
                "an unsalted or weak MD5/SHA-1 hash (--allow-weak-hashes imports them as must-reset)"
            }
            Skip::UnknownHash => "a password hash of an unknown format",
            Skip::OwnAccount => "an account registered in Latchkey itself (never touched)",
            Skip::SignedIn => "signed in to Latchkey since the last import (never overwritten)",
        }
    }
}

/// What an import did, or (dry run) would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub read: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Imported with no usable password: they reset it to sign in.
    pub must_reset: usize,
    /// Hash formats found, by Django's name.
    pub formats: BTreeMap<&'static str, usize>,
    /// Users skipped, by reason: how many, and the first addresses or ids.
    pub skipped: BTreeMap<Skip, (usize, Vec<String>)>,
}

impl ImportReport {
    fn skip(&mut self, why: Skip, who: &str) {
        let (count, listed) = self.skipped.entry(why).or_default();
        *count += 1;
        if listed.len() < LISTED {
            listed.push(who.to_string());
        }
    }
}

impl Auth {
    /// Imports `users` (see the module's documentation).
    pub async fn import_users(
        &self,
        users: Vec<Incoming>,
        options: &ImportOptions,
    ) -> Result<ImportReport, AuthError> {
        let mut report = ImportReport {
            read: users.len(),
            ..Default::default()
        };
        let mut by_address: HashMap<String, usize> = HashMap::new();
        let parsed: Vec<_> = users
            .into_iter()
            .map(|user| {
                let email = parse_email(&user.email).ok();
                if let Some(email) = &email {
                    *by_address.entry(email.normalized.clone()).or_default() += 1;
                }
                (user, email)
            })
            .collect();
        let now = self.now();
        for (user, email) in parsed {
            let format = Format::of(&user.password_hash);
            *report.formats.entry(format.as_str()).or_default() += 1;
            let Some(email) = email else {
                report.skip(Skip::InvalidEmail, &format!("id {}", user.source_id));
                continue;
            };
            if by_address[&email.normalized] > 1 {
                report.skip(Skip::SameAddress, &email.display);
                continue;
            }
            let password_hash = match format {
                Format::Unusable => MUST_RESET.to_string(),
                Format::Weak if options.allow_weak_hashes => MUST_RESET.to_string(),
                Format::Weak => {
                    report.skip(Skip::WeakHash, &email.display);
                    continue;
                }
                Format::Unknown => {
                    report.skip(Skip::UnknownHash, &email.display);
                    continue;
                }
                _ => user.password_hash.clone(),
            };
            let must_reset = password_hash == MUST_RESET;
            let record = UserRecord {
                id: Uuid::now_v7().to_string(),
                email: email.display.clone(),
                email_normalized: email.normalized.clone(),
                // A name that would be refused at sign-up is left out, not the user.
                name: clean_name(user.name.as_deref()).ok().flatten(),
                password_hash,
                email_verified: user.email_verified,
                disabled: !user.active,
                not_before: 0,
                created_at: user.joined_at.unwrap_or(now),
                credential_version: 0,
                locale: None,
            };
            if options.dry_run {
                report.must_reset += usize::from(must_reset);
                continue;
            }
            let from = ImportSource {
                source: options.source.clone(),
                source_id: user.source_id.clone(),
                last_login_at: user.last_login_at,
            };
            let done = self.store.import_user(&record, &from, now).await?;
            match done {
                Imported::Created => report.created += 1,
                Imported::Updated => report.updated += 1,
                Imported::Unchanged => report.unchanged += 1,
                Imported::NotImported => report.skip(Skip::OwnAccount, &email.display),
                Imported::SignedIn => report.skip(Skip::SignedIn, &email.display),
            }
            if matches!(done, Imported::Created | Imported::Updated) {
                report.must_reset += usize::from(must_reset);
            }
            if done == Imported::Created {
                let detail = format!("imported from {} (id {})", options.source, user.source_id);
                self.audit_detail(
                    EventKind::UserImported,
                    Some(&record.id),
                    None,
                    &Client::default(),
                    Some(detail),
                )
                .await;
            }
        }
        Ok(report)
    }
}
