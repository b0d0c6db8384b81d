//! What keeps a running deployment healthy, as methods of [`Auth`]: the
//! readiness probe, re-reading signing keys made elsewhere, the restore
//! guard's check, and the retention rules of the background pruner.

use std::time::Duration;

use super::keys::{self, KeyInfo};
use super::restore::{GuardError, RestoreGuard};
use super::{Auth, AuthError};
use crate::store::PruneBefore;

/// How long audit events are kept.
pub const EVENT_RETENTION: i64 = 90 * 24 * 3600;
/// How long an idle throttle row is kept.
pub const THROTTLE_RETENTION: i64 = 24 * 3600;
/// How many rows of each kind one pruning pass deletes at most.
pub const PRUNE_BATCH: i64 = 500;

impl Auth {
    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), AuthError> {
        Ok(self.store.ping().await?)
    }

    /// Re-reads the signing keys, picking up rotations made elsewhere.
    pub async fn reload_keys(&self) -> Result<(), AuthError> {
        Ok(self.keys.reload(self.store.as_ref(), self.now()).await?)
    }

    /// The published keys as JWKS JSON, re-read first when the last read is
    /// more than a second old (so a withdrawn key leaves at once).
    pub async fn jwks(&self) -> std::sync::Arc<String> {
        self.keys.refresh_now(self.store.as_ref(), self.now()).await;
        self.keys.jwks()
    }

    /// The `kid` that signs now.
    pub fn signing_kid(&self) -> String {
        self.keys.signing_kid()
    }

    /// Every stored signing key.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, AuthError> {
        Ok(keys::list(self.store.as_ref()).await?)
    }

    /// Runs `guard`'s check against this deployment's database.
    pub async fn check_restore(&self, guard: &RestoreGuard) -> Result<(), GuardError> {
        guard.check(self.store.as_ref()).await
    }

    /// Returns hashing memory unused for `idle` to the system.
    pub fn release_idle_memory(&self, idle: Duration) {
        self.hasher.release_idle_memory(idle);
    }

    /// Deletes expired sessions, revocations no verifier can still need,
    /// old events and idle throttles, and keys whose tokens can no longer be
    /// valid; returns how many rows went.
    pub async fn prune_expired(&self) -> Result<u64, AuthError> {
        let now = self.now();
        let keep_revocations = self.revocation_retention();
        let before = PruneBefore {
            sessions: now - keep_revocations,
            revocations: now - keep_revocations,
            events: now - EVENT_RETENTION,
            throttles: now - THROTTLE_RETENTION,
            keys: now,
            mail: now - EVENT_RETENTION,
            tokens: now,
        };
        Ok(self.store.prune(before, PRUNE_BATCH).await?)
    }
}
