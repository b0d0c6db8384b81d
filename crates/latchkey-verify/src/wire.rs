//! JSON shapes that Latchkey and its verifiers exchange: the revocation feed
//! (`GET /v1/revocations`) and introspection answers (`POST /v1/introspect`).
//! Defined once here; the server serializes exactly these types.

use serde::{Deserialize, Serialize};

/// One page of the revocation feed.
///
/// Read it by passing `next_cursor` as `after` on the following request.
/// Cursors are in commit order, so nothing appears later below a cursor once
/// handed out; applying an entry twice is harmless all the same. An `after` older than what the server still keeps is
/// answered `410 Gone` with error `cursor_expired`: drop all state and read
/// again from `after=0`, which returns everything still relevant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationPage {
    /// Revocations after the requested cursor, oldest first.
    pub entries: Vec<RevocationEntry>,
    /// The cursor to pass as `after` next time.
    pub next_cursor: i64,
    /// Whether more entries are waiting: fetch again at once.
    pub has_more: bool,
    /// How long the server keeps entries, in seconds (at least the access
    /// token lifetime): a follower may forget entries older than this.
    pub retention_seconds: i64,
}

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RevocationEntry {
    /// A session ended: refuse every access token whose `sid` is `sid`.
    Session {
        /// Position in the feed.
        cursor: i64,
        /// The session id (`sid` claim).
        sid: String,
        /// The user (`sub` claim).
        sub: String,
        /// When it was revoked, Unix seconds.
        revoked_at: i64,
    },
    /// Every token of a user issued before `not_before` is refused (logout
    /// everywhere, password change, account disabled or deleted).
    User {
        /// Position in the feed.
        cursor: i64,
        /// The user (`sub` claim).
        sub: String,
        /// Refuse tokens whose `iat` is below this, Unix seconds.
        not_before: i64,
        /// When it was recorded, Unix seconds.
        revoked_at: i64,
    },
    /// A signing key was withdrawn (leaked): stop trusting `kid` at once and
    /// for good, whatever a JWKS still says.
    Key {
        /// Position in the feed.
        cursor: i64,
        /// The withdrawn key's `kid`.
        kid: String,
        /// When it was withdrawn, Unix seconds.
        revoked_at: i64,
    },
}

impl RevocationEntry {
    /// Position of the entry in the feed.
    pub fn cursor(&self) -> i64 {
        match self {
            RevocationEntry::Session { cursor, .. }
            | RevocationEntry::User { cursor, .. }
            | RevocationEntry::Key { cursor, .. } => *cursor,
        }
    }
}

/// An RFC 7662 introspection answer. An inactive token is only
/// `{"active": false}`: nothing says why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Introspection {
    /// Whether the token is a valid, unexpired, unrevoked access token.
    pub active: bool,
    /// The token's claims, when active.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub claims: Option<crate::Claims>,
    /// `Bearer`, when active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}
