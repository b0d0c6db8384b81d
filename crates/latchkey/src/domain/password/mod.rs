//! Passwords: the policy for new ones ([`policy`]), and bounded,
//! off-runtime Argon2id hashing ([`hasher`]).
//!
//! Neither may log, return or keep a password or a stored hash beyond the
//! call that needs it, and Argon2 never runs on an async worker thread.

mod hasher;
pub mod legacy;
mod policy;

pub use self::hasher::{Argon2Params, HashError, Hasher, Ticket};
pub use self::policy::{MAX_PASSWORD_CHARS, PasswordError, PasswordPolicy, normalize};
