//! Verification of Latchkey access tokens, for Latchkey itself and for the
//! services that accept its tokens.
//!
//! - [`claims`]: the access-token claims (RFC 9068 profile) and their time checks.
//! - [`keys`]: public verification keys and their JWK form.
//! - [`token`]: the strict JWS parser and verifier every access token goes through.
//! - [`wire`]: the revocation feed and introspection answers, as exchanged with the server.
#![warn(missing_docs)]

pub mod claims;
pub mod keys;
pub mod token;
pub mod wire;

pub use claims::Claims;
pub use keys::{KeySet, SigningAlg, VerifyKey};
pub use token::{Rules, VerifyError, verify};
