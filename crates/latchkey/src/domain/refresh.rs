//! Refresh tokens. A token is `lk_rt_` + base64url(session id ‖ generation ‖
//! MAC), where the MAC is HMAC-SHA-256 under a key derived from the master key
//! over the session's random salt and the generation. The database keeps only
//! the salt and the current generation, so it never holds a usable token; the
//! server can still re-derive the successor of the immediately previous token,
//! which is how the grace window returns the *same* successor (no fork).

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

/// Recognisable prefix so secret scanners can find leaked tokens.
pub const PREFIX: &str = "lk_rt_";
const BODY_LEN: usize = 16 + 8 + 32;

/// A refresh token in plain form; its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken([redacted])")
    }
}

/// The parts of a well-formed token; not yet authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub session_id: String,
    pub generation: i64,
    mac: [u8; 32],
}

/// The key that mints and checks refresh tokens.
pub struct RefreshKey(hmac::Key);

impl RefreshKey {
    pub fn new(secret: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    fn mac(&self, sid: &Uuid, salt: &[u8], generation: i64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(b"latchkey refresh v1");
        ctx.update(sid.as_bytes());
        ctx.update(&generation.to_be_bytes());
        ctx.update(salt);
        ctx.sign()
    }

    /// The token of generation `generation` of a session.
    pub fn mint(&self, session_id: &str, salt: &[u8], generation: i64) -> RefreshToken {
        let sid = Uuid::parse_str(session_id).unwrap_or_default();
        let mut body = Vec::with_capacity(BODY_LEN);
        body.extend_from_slice(sid.as_bytes());
        body.extend_from_slice(&generation.to_be_bytes());
        body.extend_from_slice(self.mac(&sid, salt, generation).as_ref());
        RefreshToken(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(body)))
    }

    /// Whether `presented` was minted by this key for a session with `salt`,
    /// compared in constant time.
    pub fn check(&self, presented: &Presented, salt: &[u8]) -> bool {
        let Ok(sid) = Uuid::parse_str(&presented.session_id) else {
            return false;
        };
        let expected = self.mac(&sid, salt, presented.generation);
        subtle::ConstantTimeEq::ct_eq(expected.as_ref(), &presented.mac[..]).into()
    }
}

/// Splits a token into its parts; `None` for anything malformed.
pub fn parse(token: &str) -> Option<Presented> {
    let body = URL_SAFE_NO_PAD.decode(token.strip_prefix(PREFIX)?).ok()?;
    if body.len() != BODY_LEN {
        return None;
    }
    let sid = Uuid::from_slice(&body[..16]).ok()?;
    let generation = i64::from_be_bytes(body[16..24].try_into().ok()?);
    let mac: [u8; 32] = body[24..].try_into().ok()?;
    (generation >= 0).then(|| Presented {
        session_id: sid.to_string(),
        generation,
        mac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RefreshKey {
        RefreshKey::new(&[7u8; 32])
    }

    #[test]
    fn minted_tokens_parse_and_check() {
        let sid = Uuid::new_v4().to_string();
        let token = key().mint(&sid, b"salt", 3);
        assert!(token.expose().starts_with(PREFIX));
        let p = parse(token.expose()).expect("parses");
        assert_eq!((p.session_id.as_str(), p.generation), (sid.as_str(), 3));
        assert!(key().check(&p, b"salt"));
        assert!(!key().check(&p, b"other salt"));
        assert!(!RefreshKey::new(&[8u8; 32]).check(&p, b"salt"));
    }

    #[test]
    fn tampered_tokens_do_not_check() {
        let sid = Uuid::new_v4().to_string();
        let token = key().mint(&sid, b"salt", 0).expose().to_string();
        let mut chars: Vec<char> = token.chars().collect();
        let last = chars.len() - 3;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert!(parse(&tampered).is_none_or(|p| !key().check(&p, b"salt")));
        assert!(parse("lk_rt_short").is_none());
        assert!(parse("eyJhbGciOi.x.y").is_none());
    }

    #[test]
    fn debug_hides_the_token() {
        let token = key().mint(&Uuid::new_v4().to_string(), b"s", 0);
        assert!(!format!("{token:?}").contains(PREFIX));
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_without_a_panic_and_only_a_minted_token_checks(
            text in "(lk_rt_)?[A-Za-z0-9_=+/-]{0,90}|\\PC{0,90}",
        ) {
            if let Some(presented) = parse(&text) {
                proptest::prop_assert!(!key().check(&presented, b"salt"), "{text}");
            }
        }

        #[test]
        fn a_minted_token_round_trips(
            sid in proptest::prelude::any::<u128>(),
            generation in 0..i64::MAX,
            salt in proptest::collection::vec(proptest::prelude::any::<u8>(), 16),
        ) {
            let session_id = Uuid::from_u128(sid).to_string();
            let token = key().mint(&session_id, &salt, generation);
            let presented = parse(token.expose()).expect("parses");
            proptest::prop_assert_eq!(&presented.session_id, &session_id);
            proptest::prop_assert_eq!(presented.generation, generation);
            proptest::prop_assert!(key().check(&presented, &salt));
            let other_salt: Vec<u8> = salt.iter().map(|b| b ^ 1).collect();
            proptest::prop_assert!(!key().check(&presented, &other_salt));
        }
    }
}
