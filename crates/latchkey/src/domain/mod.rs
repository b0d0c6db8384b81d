//! The rules of accounts, sessions and tokens, independent of HTTP and SQL.
//!
//! - [`clock`]: injectable time.
//! - [`secrets`]: the master key, sealing and derived keys.
//! - [`keys`]: signing keys and the JWKS.
//! - [`refresh`]: refresh-token format, minting and checking.
//! - [`password`] and [`email`]: credential policies and Argon2id hashing.
//! - [`service`]: the [`Auth`] service and its configuration.
//! - [`model`]: users, sessions and clients as callers see them.
//! - [`accounts`], [`sessions`], [`admin`]: the flows, as methods of [`Auth`].
//! - [`mfa`] and [`stepup`]: second factors, the two-step sign-in, and
//!   the recent proof that sensitive changes need.
//! - [`clients`]: resource servers, introspection and the revocation feed.
//! - [`events`]: the audit trail.
//! - [`webhooks`]: the operator's endpoints and the events sent to them.
//! - [`mail`], [`recovery`] and `notices`: what is mailed, the flows over
//!   email (verification, password reset, email change), and what the flows
//!   send (notices, allowances, the outbox).
//! - [`text`]: characters a reader cannot see, refused in names and escaped on terminals.
//! - [`restore`]: noticing a database restored from a backup.
//! - [`upkeep`]: readiness, key reloads and the retention rules.
//! - [`throttle`] and [`devices`]: the login throttle and the device tokens
//!   that keep strangers' failures apart from the owner's.

pub mod accounts;
pub mod admin;
pub mod agents;
pub mod clients;
pub mod clock;
pub mod devices;
pub mod email;
pub mod events;
pub mod import;
pub mod keys;
pub mod mail;
pub mod mfa;
pub mod model;
mod notices;
pub mod passkeys;
pub mod password;
pub mod recovery;
pub mod refresh;
pub mod restore;
pub mod secrets;
pub mod service;
pub mod sessions;
pub mod stepup;
pub mod text;
pub mod throttle;
pub mod upkeep;
pub mod webhooks;

#[cfg(test)]
mod tests;

pub use crate::store::EventQuery;
pub use admin::Actor;
pub use model::{Event, ResourceClient, Session, User};
pub use service::{Auth, AuthConfig, Authenticated, Client, TokenPair};

use crate::store::StoreError;

/// Every way a domain operation can fail. The HTTP layer maps each variant to
/// one status and error code; matches on it are exhaustive on purpose.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("{0}")]
    WeakPassword(String),
    #[error("the current password is wrong")]
    InvalidCredentials,
    #[error("this link is invalid, has expired or was already used; ask for a new one")]
    InvalidLink,
    #[error("the email address is not verified yet; follow the link in the verification mail")]
    EmailNotVerified,
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("not found")]
    NotFound,
    #[error("client authentication failed")]
    InvalidClient,
    #[error("the cursor is older than the revocations kept; resynchronise from after=0")]
    CursorExpired,
    #[error(
        "this needs a sign-in within the last {} minutes: re-authenticate with the password{} (POST /v1/reauthenticate)",
        max_age / 60,
        if *with_code { " and a code from the authenticator app (or a recovery code)" } else { "" }
    )]
    ReauthenticationRequired { max_age: i64, with_code: bool },
    #[error("two-step sign-in is already on; turn it off first to enrol again")]
    MfaEnabled,
    #[error("the code is wrong, expired or was already used")]
    WrongCode,
    #[error("too many attempts; retry later")]
    Throttled { retry_after: u64 },
    #[error("the server is busy; retry shortly")]
    Busy { retry_after: u64 },
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => AuthError::Unavailable(m),
            StoreError::Conflict => AuthError::Internal("unexpected conflict".into()),
            StoreError::Other(m) => AuthError::Internal(m),
        }
    }
}

impl From<password::HashError> for AuthError {
    fn from(e: password::HashError) -> Self {
        match e {
            password::HashError::Busy => AuthError::Busy { retry_after: 1 },
            other => AuthError::Internal(other.to_string()),
        }
    }
}

impl From<secrets::SecretError> for AuthError {
    fn from(e: secrets::SecretError) -> Self {
        AuthError::Internal(e.to_string())
    }
}

impl From<keys::KeyError> for AuthError {
    fn from(e: keys::KeyError) -> Self {
        match e {
            keys::KeyError::Store(e) => e.into(),
            other => AuthError::Internal(other.to_string()),
        }
    }
}
