//! The claims of a Latchkey access token. Every member is required and typed,
//! so a token with a missing claim or a claim of the wrong JSON type (for
//! example a string `exp`) never deserializes.

use serde::{Deserialize, Serialize};

/// The `typ` header value of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Claims carried by every access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the Latchkey server's public URL.
    pub iss: String,
    /// Subject: the user id.
    pub sub: String,
    /// Audience: the API the token is for.
    pub aud: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: i64,
    /// Not-before time, seconds since the Unix epoch, when present. Present
    /// means an integer: `null` is a claim of the wrong type, not an absent one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_integer"
    )]
    pub nbf: Option<i64>,
    /// Unique token id.
    pub jti: String,
    /// The session (one login on one device) the token belongs to.
    pub sid: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// When the user last proved who they are in this session (sign-in or
    /// re-authentication), seconds since the Unix epoch (OpenID Connect Core
    /// §2). Absent from tokens of older servers.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_integer"
    )]
    pub auth_time: Option<i64>,
    /// How the user proved it (RFC 8176 values: `pwd`, `otp`, `hwk`, `swk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
}

fn present_integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    i64::deserialize(d).map(Some)
}
