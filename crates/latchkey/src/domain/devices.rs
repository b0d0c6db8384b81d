//! Device tokens: what a device that signed in successfully presents at its
//! next login, so the throttle counts its failures apart from strangers'
//! (the "device cookie" defence against lock-out as a weapon).
//!
//! A token is `lk_dt_` + base64url(device id ‖ HMAC(user id, device id)). It
//! needs no storage, names its user only through the MAC, and grants nothing
//! but a throttle budget of its own: it is no credential.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::AuthError;
use super::secrets::random;

/// Prefix of device tokens, so secret scanners and people can tell them apart.
pub const PREFIX: &str = "lk_dt_";
const ID_BYTES: usize = 16;
const TAG_BYTES: usize = 32;

/// Mints and checks device tokens under a key derived from the master key.
pub struct DeviceKey(hmac::Key);

impl DeviceKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// A token for a new device of `user_id`.
    pub fn mint(&self, user_id: &str) -> Result<String, AuthError> {
        let mut id = [0u8; ID_BYTES];
        random(&mut id)?;
        let mut raw = id.to_vec();
        raw.extend_from_slice(self.tag(user_id, &id).as_ref());
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    /// The device id carried by `token` when it was minted for `user_id`;
    /// None for anything else (malformed, forged, another user's).
    pub fn check(&self, token: &str, user_id: &str) -> Option<String> {
        let raw = URL_SAFE_NO_PAD.decode(token.strip_prefix(PREFIX)?).ok()?;
        if raw.len() != ID_BYTES + TAG_BYTES {
            return None;
        }
        let (id, tag) = raw.split_at(ID_BYTES);
        hmac::verify(&self.0, &message(user_id, id), tag).ok()?;
        Some(URL_SAFE_NO_PAD.encode(id))
    }

    fn tag(&self, user_id: &str, id: &[u8]) -> hmac::Tag {
        hmac::sign(&self.0, &message(user_id, id))
    }
}

/// User id and device id, separated so no two pairs give one message.
fn message(user_id: &str, id: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(user_id.len() + 1 + id.len());
    m.extend_from_slice(user_id.as_bytes());
    m.push(0);
    m.extend_from_slice(id);
    m
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_token_is_known_only_for_its_own_user_and_only_unaltered() {
        let key = DeviceKey::new(&[7; 32]);
        let token = key.mint("user-1").unwrap();
        assert!(token.starts_with(PREFIX));
        let id = key.check(&token, "user-1").unwrap();
        assert_eq!(key.check(&token, "user-1"), Some(id));
        assert_eq!(key.check(&token, "user-2"), None);
        assert_eq!(DeviceKey::new(&[8; 32]).check(&token, "user-1"), None);
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            key.check(&String::from_utf8(flipped).unwrap(), "user-1"),
            None
        );
        assert_eq!(key.check("lk_dt_", "user-1"), None);
        assert_eq!(key.check("garbage", "user-1"), None);
    }

    #[test]
    fn two_devices_get_different_ids() {
        let key = DeviceKey::new(&[7; 32]);
        let a = key.check(&key.mint("u").unwrap(), "u");
        let b = key.check(&key.mint("u").unwrap(), "u");
        assert_ne!(a, b);
    }
}
