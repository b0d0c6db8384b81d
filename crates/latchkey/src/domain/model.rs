//! The domain's view of its records, as callers above it see them: no
//! password hash, no refresh-token salt or generation, no client secret.

use crate::store::{ClientRecord, EventRecord, SessionRecord, UserRecord};

/// An account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub email_verified: bool,
    pub disabled: bool,
    pub created_at: i64,
}

impl From<&UserRecord> for User {
    fn from(u: &UserRecord) -> Self {
        User {
            id: u.id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            email_verified: u.email_verified,
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

/// One login on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub created_at: i64,
    pub last_used_at: i64,
    /// When it ends unless used before (idle timeout).
    pub idle_expires_at: i64,
    /// When it ends at the latest.
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl From<&SessionRecord> for Session {
    fn from(s: &SessionRecord) -> Self {
        Session {
            id: s.id.clone(),
            user_id: s.user_id.clone(),
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            idle_expires_at: s.idle_expires_at,
            expires_at: s.expires_at,
            revoked_at: s.revoked_at,
            user_agent: s.user_agent.clone(),
            ip: s.ip.clone(),
        }
    }
}

/// A resource server's credentials, without the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceClient {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    /// May call the admin API.
    pub admin: bool,
}

impl From<&ClientRecord> for ResourceClient {
    fn from(c: &ClientRecord) -> Self {
        ResourceClient {
            id: c.id.clone(),
            name: c.name.clone(),
            created_at: c.created_at,
            admin: c.admin,
        }
    }
}

/// One entry of a user's security trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub kind: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
    /// Who acted, for an operator's action: `cli` or `client:ID`.
    pub actor: Option<String>,
}

impl From<EventRecord> for Event {
    fn from(e: EventRecord) -> Self {
        Event {
            id: e.id,
            session_id: e.session_id,
            kind: e.kind,
            ip: e.ip,
            user_agent: e.user_agent,
            detail: e.detail,
            created_at: e.created_at,
            user_id: e.user_id,
            actor: e.actor,
        }
    }
}
