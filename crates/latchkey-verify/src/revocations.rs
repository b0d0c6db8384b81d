//! The revocation list a verifier follows: revoked sessions and per-user
//! `not_before` cut-offs, as learned from the feed. Pure data: no I/O, no
//! clock, no lock. The follower owns the only mutable copy and publishes
//! immutable snapshots of it; this module must stay cheap to clone and to read.

use std::collections::HashMap;

use crate::claims::Claims;
use crate::token::VerifyError;
use crate::wire::{RevocationEntry, RevocationPage};

/// Entries are kept at least this long (Latchkey's default access-token
/// lifetime), whatever the feed announces: a server announcing too short a
/// retention only costs memory here, never a revocation forgotten early.
const MIN_RETENTION: i64 = 300;

/// What the feed has said so far, and where to read on.
#[derive(Debug, Clone, Default)]
pub(crate) struct RevocationList {
    /// Revoked session id → when it was revoked.
    sessions: HashMap<String, i64>,
    /// User id → the highest `not_before` seen.
    users: HashMap<String, i64>,
    /// Keys the issuer withdrew.
    withdrawn_keys: std::collections::BTreeSet<String>,
    /// The `after` of the next request.
    cursor: i64,
    /// How long the server keeps entries, from the last page read.
    retention: i64,
    /// Counts the changes that altered what is refused, so a follower can
    /// tell whether a new snapshot is worth publishing.
    changes: u64,
}

impl RevocationList {
    /// Applies one page: its entries, its cursor and its retention. Entries
    /// may repeat (the feed re-sends recent ones), so applying is idempotent
    /// and a cut-off never moves back.
    pub(crate) fn apply(&mut self, page: &RevocationPage) {
        for entry in &page.entries {
            self.apply_entry(entry);
        }
        self.cursor = page.next_cursor;
        self.retention = page.retention_seconds.max(MIN_RETENTION);
    }

    fn apply_entry(&mut self, entry: &RevocationEntry) {
        let changed = match entry {
            RevocationEntry::Session {
                sid, revoked_at, ..
            } => match self.sessions.get_mut(sid) {
                // The earliest report wins so that repeats never postpone forgetting.
                Some(at) => {
                    *at = (*at).min(*revoked_at);
                    false
                }
                None => {
                    self.sessions.insert(sid.clone(), *revoked_at);
                    true
                }
            },
            RevocationEntry::User {
                sub, not_before, ..
            } => match self.users.get_mut(sub) {
                Some(nb) if *nb >= *not_before => false,
                Some(nb) => {
                    *nb = *not_before;
                    true
                }
                None => {
                    self.users.insert(sub.clone(), *not_before);
                    true
                }
            },
            // Not a verdict on claims: the follower hands it to the key cache.
            RevocationEntry::Key { kid, .. } => self.withdrawn_keys.insert(kid.clone()),
        };
        if changed {
            self.changes += 1;
        }
    }

    /// Forgets entries that can no longer refuse anything at `now`.
    ///
    /// A token of a session revoked at `t` was issued before `t` and lives at
    /// most the access-token lifetime, which the server keeps entries for
    /// (`retention_seconds`); a token refused by a cut-off `nb` was issued
    /// before `nb`. Past `t + retention + leeway` (`nb + …`) every such token
    /// has expired on its own, so the entry only costs memory.
    pub(crate) fn forget_settled(&mut self, now: i64, leeway: i64) {
        let horizon = now
            .saturating_sub(self.retention)
            .saturating_sub(leeway.max(0));
        let before = self.sessions.len() + self.users.len();
        self.sessions.retain(|_, revoked_at| *revoked_at >= horizon);
        self.users.retain(|_, not_before| *not_before >= horizon);
        if self.sessions.len() + self.users.len() != before {
            self.changes += 1;
        }
    }

    /// Refuses claims whose session is revoked or that were issued before
    /// their user's cut-off.
    pub(crate) fn check(&self, claims: &Claims) -> Result<(), VerifyError> {
        if self.sessions.contains_key(&claims.sid) {
            return Err(VerifyError::Revoked);
        }
        match self.users.get(&claims.sub) {
            Some(not_before) if claims.iat < *not_before => Err(VerifyError::Revoked),
            _ => Ok(()),
        }
    }

    /// The `kid`s of keys the issuer withdrew (kept for good: a handful).
    pub(crate) fn withdrawn_keys(&self) -> impl Iterator<Item = &str> {
        self.withdrawn_keys.iter().map(String::as_str)
    }

    /// The `after` of the next request.
    pub(crate) fn cursor(&self) -> i64 {
        self.cursor
    }

    /// How many changes altered this list since it was created.
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    /// Number of revoked sessions remembered.
    pub(crate) fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Number of users with a cut-off remembered.
    pub(crate) fn users(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, sid: &str, iat: i64) -> Claims {
        Claims {
            iss: "https://auth.test".into(),
            sub: sub.into(),
            aud: "https://auth.test".into(),
            exp: iat + 300,
            iat,
            nbf: None,
            jti: "j".into(),
            sid: sid.into(),
            client_id: "c".into(),
            auth_time: None,
            amr: None,
        }
    }

    fn session(cursor: i64, sid: &str, revoked_at: i64) -> RevocationEntry {
        RevocationEntry::Session {
            cursor,
            sid: sid.into(),
            sub: "u1".into(),
            revoked_at,
        }
    }

    fn user(cursor: i64, sub: &str, not_before: i64) -> RevocationEntry {
        RevocationEntry::User {
            cursor,
            sub: sub.into(),
            not_before,
            revoked_at: not_before,
        }
    }

    fn page(entries: Vec<RevocationEntry>, next_cursor: i64) -> RevocationPage {
        RevocationPage {
            entries,
            next_cursor,
            has_more: false,
            retention_seconds: 300,
        }
    }

    #[test]
    fn a_revoked_session_refuses_its_tokens_only() {
        let mut list = RevocationList::default();
        list.apply(&page(vec![session(1, "s1", 1000)], 1));
        assert_eq!(
            list.check(&claims("u1", "s1", 990)),
            Err(VerifyError::Revoked)
        );
        assert_eq!(list.check(&claims("u1", "s2", 990)), Ok(()));
        assert_eq!(list.cursor(), 1);
    }

    #[test]
    fn a_user_cut_off_refuses_older_tokens_but_not_newer_ones() {
        let mut list = RevocationList::default();
        list.apply(&page(vec![user(1, "u1", 1000)], 1));
        assert_eq!(
            list.check(&claims("u1", "s1", 999)),
            Err(VerifyError::Revoked)
        );
        assert_eq!(list.check(&claims("u1", "s1", 1000)), Ok(()));
        assert_eq!(list.check(&claims("u2", "s9", 10)), Ok(()));
    }

    #[test]
    fn repeated_entries_change_nothing_and_cut_offs_never_move_back() {
        let mut list = RevocationList::default();
        list.apply(&page(vec![session(1, "s1", 1000), user(2, "u1", 1000)], 2));
        let changes = list.changes();
        list.apply(&page(
            vec![
                session(1, "s1", 1000),
                user(2, "u1", 1000),
                user(3, "u1", 500),
            ],
            3,
        ));
        assert_eq!(list.changes(), changes);
        assert_eq!(
            list.check(&claims("u1", "s2", 999)),
            Err(VerifyError::Revoked)
        );
        assert_eq!((list.sessions(), list.users()), (1, 1));
        list.apply(&page(vec![user(4, "u1", 2000)], 4));
        assert_eq!(
            list.check(&claims("u1", "s2", 1500)),
            Err(VerifyError::Revoked)
        );
        assert!(list.changes() > changes);
    }

    #[test]
    fn settled_entries_are_forgotten_after_retention_and_leeway() {
        let mut list = RevocationList::default();
        list.apply(&page(
            vec![session(1, "old", 1000), session(2, "new", 1200)],
            2,
        ));
        list.apply(&page(vec![user(3, "u1", 1000)], 3));
        list.forget_settled(1000 + 300 + 5, 5);
        assert_eq!((list.sessions(), list.users()), (2, 1));
        list.forget_settled(1000 + 300 + 6, 5);
        assert_eq!((list.sessions(), list.users()), (1, 0));
        assert_eq!(
            list.check(&claims("u1", "new", 1100)),
            Err(VerifyError::Revoked)
        );
    }
}
