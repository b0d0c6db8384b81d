//! A backend-neutral copy of every table, written by `latchkey export` and
//! read by `latchkey import` to move a deployment between databases (e.g.
//! from the embedded SQLite to PostgreSQL) without anyone logging in again.
//! It holds password hashes and sealed keys: treat the file as a secret.

use serde::{Deserialize, Serialize};

use super::{EventRecord, KeyRecord, SessionRecord, UserRecord};

/// Format version written into every snapshot.
pub const SNAPSHOT_VERSION: u32 = 1;

/// One row of the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RevocationRecord {
    pub cursor: i64,
    pub kind: String,
    pub session_id: Option<String>,
    pub user_id: String,
    pub not_before: Option<i64>,
    pub revoked_at: i64,
    /// The withdrawn key, for `kind = "key"`.
    #[serde(default)]
    pub kid: Option<String>,
}

/// One login-throttle counter: of an account, a known device or a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ThrottleRecord {
    pub key: String,
    /// Consecutive failures since the last success.
    pub failures: i64,
    pub blocked_until: i64,
    pub updated_at: i64,
    /// Attempts being evaluated now; they lapse at `pending_until`, so a
    /// crashed instance cannot hold them for good.
    #[serde(default)]
    pub pending: i64,
    #[serde(default)]
    pub pending_until: i64,
    /// Failures evaluated in the day that began at `day_started_at`.
    #[serde(default)]
    pub day_started_at: i64,
    #[serde(default)]
    pub day_failures: i64,
}

/// A resource server's credentials; only a hash of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ClientRecord {
    pub id: String,
    pub name: String,
    #[serde(with = "b64")]
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
    /// May call the admin API.
    #[serde(default)]
    pub admin: bool,
}

/// Every row of every table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub users: Vec<UserRecord>,
    pub sessions: Vec<SessionRecord>,
    pub revocations: Vec<RevocationRecord>,
    pub events: Vec<EventRecord>,
    pub throttles: Vec<ThrottleRecord>,
    pub signing_keys: Vec<KeyRecord>,
    #[serde(default)]
    pub clients: Vec<ClientRecord>,
    #[serde(default)]
    pub totp_factors: Vec<super::TotpRecord>,
    #[serde(default)]
    pub recovery_codes: Vec<super::RecoveryCodeRecord>,
    #[serde(default)]
    pub passkeys: Vec<super::PasskeyRecord>,
    /// The highest revocation cursor ever handed out, pruned rows included:
    /// the target continues above it, so verifiers' cursors stay meaningful.
    #[serde(default)]
    pub revocation_cursor: i64,
}

/// Byte fields as base64 text.
pub mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
