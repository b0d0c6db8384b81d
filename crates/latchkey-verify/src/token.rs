//! The strict access-token verifier. Only compact JWS with exactly the header
//! members `alg`, `typ` and `kid` is accepted; everything else a JOSE library
//! might honour (`jwk`, `jku`, `x5u`, `x5c`, `crit`, `cty`, `enc`, `zip`, …) is
//! refused before any key is looked at, so no header can choose the key, the
//! algorithm or a network fetch (RFC 8725 §2–3).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::claims::{ACCESS_TOKEN_TYP, Claims};
use crate::keys::KeySet;

/// Tokens longer than this are refused without being decoded.
pub const MAX_TOKEN_LEN: usize = 4096;

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The exact expected `iss`.
    pub issuer: String,
    /// The exact expected `aud`.
    pub audience: String,
    /// Tolerated clock skew, in seconds, for `exp`, `nbf` and `iat`.
    pub leeway: i64,
}

/// Why a token was refused. Messages are safe to show to the token's bearer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a well-formed compact JWS of acceptable size and encoding.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// A header member that is missing, not allowed, or of the wrong value.
    #[error("unacceptable token header: {0}")]
    Header(&'static str),
    /// The `kid` names no trusted key.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// A claim is missing or of the wrong type.
    #[error("invalid claims")]
    Claims,
    /// `iss` is not the expected issuer.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` is not the expected audience.
    #[error("wrong audience")]
    Audience,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` lies in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// The token's session was revoked, or it was issued before its user's
    /// `not_before` (logout everywhere, password change). Only a
    /// [`Verifier`](crate::Verifier) following the revocation feed says this.
    #[error("token revoked")]
    Revoked,
    /// The revocation feed has not been read successfully for longer than the
    /// verifier's `max_staleness`, and the verifier fails closed: whether the
    /// token was revoked cannot be known, so it is refused.
    #[error("revocation status unavailable")]
    RevocationsUnavailable,
    /// `exp - iat` exceeds the longest lifetime the verifier accepts: a token
    /// minted to outlive revocation (e.g. with a leaked key) is refused.
    #[error("token lifetime too long")]
    TooLongLived,
}

/// Verifies `token` against `keys` and `rules` at time `now` (Unix seconds),
/// returning its claims.
pub fn verify(token: &str, keys: &KeySet, rules: &Rules, now: i64) -> Result<Claims, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed("expected three segments"));
    };
    if s64.is_empty() {
        return Err(VerifyError::Malformed("missing signature"));
    }
    let header = decode_object(h64)?;
    let (alg, kid) = check_header(&header)?;
    let key = keys.get(kid).ok_or(VerifyError::UnknownKey)?;
    if alg != key.alg.as_str() {
        return Err(VerifyError::Header("algorithm does not match the key"));
    }
    let signed = &token[..h64.len() + 1 + p64.len()];
    decode_segment(s64)?;
    match jsonwebtoken::crypto::verify(s64, signed.as_bytes(), &key.key, key.alg.jose()) {
        Ok(true) => {}
        _ => return Err(VerifyError::BadSignature),
    }
    let claims: Claims = serde_json::from_value(Value::Object(decode_object(p64)?))
        .map_err(|_| VerifyError::Claims)?;
    check_claims(&claims, rules, now)?;
    Ok(claims)
}

fn check_header(header: &Map<String, Value>) -> Result<(&str, &str), VerifyError> {
    if let Some(name) = header
        .keys()
        .find(|k| !matches!(k.as_str(), "alg" | "typ" | "kid"))
    {
        return Err(match name.as_str() {
            "crit" => VerifyError::Header("crit is not supported"),
            _ => VerifyError::Header("unsupported header member"),
        });
    }
    let text = |name| header.get(name).and_then(Value::as_str);
    let typ = text("typ").ok_or(VerifyError::Header("missing typ"))?;
    // Media types compare case-insensitively, prefix included (RFC 7515 §4.1.9).
    let typ = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    if !typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) {
        return Err(VerifyError::Header("typ must be at+jwt"));
    }
    let alg = text("alg").ok_or(VerifyError::Header("missing alg"))?;
    let kid = text("kid").ok_or(VerifyError::Header("missing kid"))?;
    Ok((alg, kid))
}

/// The checks [`verify`] makes on the claims alone — issuer, audience,
/// expiry, issue and not-before times — for claims whose token was verified
/// earlier and is being accepted again from a cache at time `now`.
pub fn check_claims(c: &Claims, rules: &Rules, now: i64) -> Result<(), VerifyError> {
    if c.exp < 0 || c.iat < 0 || c.nbf.is_some_and(|nbf| nbf < 0) {
        return Err(VerifyError::Claims);
    }
    if c.iss != rules.issuer {
        return Err(VerifyError::Issuer);
    }
    if c.aud != rules.audience {
        return Err(VerifyError::Audience);
    }
    if now.saturating_sub(rules.leeway) >= c.exp {
        return Err(VerifyError::Expired);
    }
    let latest = now.saturating_add(rules.leeway);
    if c.iat > latest || c.nbf.is_some_and(|nbf| nbf > latest) {
        return Err(VerifyError::NotYetValid);
    }
    Ok(())
}

/// Decodes one base64url segment, refusing padding, the standard alphabet,
/// whitespace and non-canonical trailing bits.
/// The `kid` named in a token's header, read without verifying anything:
/// for tagging a token already verified with the key that signed it.
pub fn header_kid(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Header {
        kid: String,
    }
    let header = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    serde_json::from_slice::<Header>(&header)
        .ok()
        .map(|h| h.kid)
}

fn decode_segment(seg: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(seg)
        .map_err(|_| VerifyError::Malformed("bad base64url"))
}

fn decode_object(seg: &str) -> Result<Map<String, Value>, VerifyError> {
    let bytes = decode_segment(seg)?;
    serde_json::from_slice::<UniqueObject>(&bytes)
        .map(|o| o.0)
        .map_err(|_| VerifyError::Malformed("not a JSON object with unique members"))
}

/// A JSON object whose top-level member names are all distinct: with duplicate
/// names, which value a library uses is unspecified (RFC 7515 §4), so none is
/// accepted.
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
                let mut map = Map::new();
                while let Some((k, v)) = access.next_entry::<String, Value>()? {
                    if map.insert(k, v).is_some() {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                }
                Ok(UniqueObject(map))
            }
        }
        d.deserialize_map(V)
    }
}
