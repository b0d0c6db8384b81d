//! Password hashes made by other systems, kept as they stored them so their
//! users sign in with the passwords they have: every format Django writes
//! or has written by default, and PHC strings. Verified on the hashing
//! pool like Latchkey's own, then replaced by Argon2id at the first
//! successful sign-in. See docs/migrating-from-django.md.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What kind of hash a stored value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// A PHC string: `$argon2id$…` (Latchkey's own) or another Argon2 variant.
    Argon2,
    /// Django's `argon2$argon2id$…` / `argon2$argon2i$…`: PHC behind a prefix.
    DjangoArgon2,
    Pbkdf2Sha256,
    Pbkdf2Sha1,
    BcryptSha256,
    Bcrypt,
    Scrypt,
    /// Django's unusable password (`!…`): the user must reset it.
    Unusable,
    /// Unsalted or salted MD5/SHA-1 (and `crypt`): a liability, never verified.
    Weak,
    Unknown,
}

impl Format {
    /// How reports name it (Django's algorithm names).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Argon2 => "argon2 (PHC)",
            Format::DjangoArgon2 => "argon2",
            Format::Pbkdf2Sha256 => "pbkdf2_sha256",
            Format::Pbkdf2Sha1 => "pbkdf2_sha1",
            Format::BcryptSha256 => "bcrypt_sha256",
            Format::Bcrypt => "bcrypt",
            Format::Scrypt => "scrypt",
            Format::Unusable => "unusable",
            Format::Weak => "md5/sha1/crypt",
            Format::Unknown => "unknown",
        }
    }

    /// Whether a password can be checked against it.
    pub fn verifiable(self) -> bool {
        !matches!(self, Format::Unusable | Format::Weak | Format::Unknown)
    }

    /// Of `stored`, without checking that it is well formed.
    pub fn of(stored: &str) -> Format {
        if stored.starts_with("$argon2") {
            return Format::Argon2;
        }
        if stored.starts_with('!') {
            return Format::Unusable;
        }
        // A bare 32 hex digits is Django's oldest unsalted MD5.
        if stored.len() == 32 && stored.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Format::Weak;
        }
        match stored.split_once('$').map(|(algorithm, _)| algorithm) {
            Some("argon2") => Format::DjangoArgon2,
            Some("pbkdf2_sha256") => Format::Pbkdf2Sha256,
            Some("pbkdf2_sha1") => Format::Pbkdf2Sha1,
            Some("bcrypt_sha256") => Format::BcryptSha256,
            Some("bcrypt") => Format::Bcrypt,
            Some("scrypt") => Format::Scrypt,
            Some("md5" | "unsalted_md5" | "sha1" | "unsalted_sha1" | "crypt") => Format::Weak,
            _ => Format::Unknown,
        }
    }
}

/// Django's `argon2$…` as the PHC string it wraps; None for anything else.
pub fn django_argon2_phc(stored: &str) -> Option<&str> {
    stored
        .strip_prefix("argon2")
        .filter(|rest| rest.starts_with("$argon2"))
}

/// A parsed hash of another system that is not Argon2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreign {
    Pbkdf2 {
        sha1: bool,
        iterations: u32,
        salt: String,
        expected: Vec<u8>,
    },
    Bcrypt {
        /// `bcrypt_sha256`: the password is first SHA-256'd (hex), so long
        /// passwords are not cut at 72 bytes.
        prehash: bool,
        hash: String,
    },
    Scrypt {
        salt: String,
        log_n: u8,
        r: u32,
        p: u32,
        expected: Vec<u8>,
    },
}

/// Most PBKDF2 rounds accepted: Django's default is 1,000,000 (5.2), and a
/// stored value far beyond it would only make sign-ins a denial of service.
const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;
/// Largest scrypt cost accepted (2^20 × r 8 = 1 GiB would be too much;
/// Django's default is 2^14 × 8 = 16 MiB).
const MAX_SCRYPT_MEMORY: u64 = 256 * 1024 * 1024;
const MAX_SCRYPT_R: u32 = 32;
const MAX_SCRYPT_P: u32 = 16;

impl Foreign {
    /// Parses a Django hash of a non-Argon2 format.
    pub fn parse(stored: &str) -> Option<Foreign> {
        let (algorithm, rest) = stored.split_once('$')?;
        match algorithm {
            "pbkdf2_sha256" | "pbkdf2_sha1" => {
                let mut parts = rest.splitn(3, '$');
                let iterations: u32 = parts.next()?.parse().ok()?;
                let salt = parts.next()?.to_string();
                let expected = STANDARD.decode(parts.next()?).ok()?;
                (iterations > 0 && iterations <= MAX_PBKDF2_ROUNDS && !expected.is_empty()).then(
                    || Foreign::Pbkdf2 {
                        sha1: algorithm == "pbkdf2_sha1",
                        iterations,
                        salt,
                        expected,
                    },
                )
            }
            // `bcrypt$$2b$12$…`: the bcrypt string follows the first `$`.
            "bcrypt" | "bcrypt_sha256" => rest.starts_with("$2").then(|| Foreign::Bcrypt {
                prehash: algorithm == "bcrypt_sha256",
                hash: rest.to_string(),
            }),
            // `scrypt$n$salt$r$p$hash`
            "scrypt" => {
                let parts: Vec<&str> = rest.split('$').collect();
                let [n, salt, r, p, hash] = parts[..] else {
                    return None;
                };
                let n: u64 = n.parse().ok()?;
                let (r, p): (u32, u32) = (r.parse().ok()?, p.parse().ok()?);
                if !n.is_power_of_two()
                    || n < 2
                    || !(1..=MAX_SCRYPT_R).contains(&r)
                    || !(1..=MAX_SCRYPT_P).contains(&p)
                    || n * 128 * u64::from(r) > MAX_SCRYPT_MEMORY
                {
                    return None;
                }
                let expected = STANDARD.decode(hash).ok()?;
                Some(Foreign::Scrypt {
                    salt: salt.to_string(),
                    log_n: n.trailing_zeros() as u8,
                    r,
                    p,
                    expected,
                })
            }
            _ => None,
        }
    }

    /// Whether `password` matches, in constant time for the comparison.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Foreign::Pbkdf2 {
                sha1,
                iterations,
                salt,
                expected,
            } => {
                let mut out = vec![0u8; expected.len()];
                if *sha1 {
                    pbkdf2::pbkdf2_hmac::<Sha1>(password, salt.as_bytes(), *iterations, &mut out);
                } else {
                    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt.as_bytes(), *iterations, &mut out);
                }
                out.ct_eq(expected).into()
            }
            Foreign::Bcrypt { prehash, hash } => {
                let verified = if *prehash {
                    let digest = hex(&Sha256::digest(password));
                    bcrypt::verify(digest.as_bytes(), hash)
                } else {
                    bcrypt::verify(password, hash)
                };
                verified.unwrap_or(false)
            }
            Foreign::Scrypt {
                salt,
                log_n,
                r,
                p,
                expected,
            } => {
                let Ok(params) = scrypt::Params::new(*log_n, *r, *p) else {
                    return false;
                };
                let mut out = vec![0u8; expected.len()];
                if scrypt::scrypt(password, salt.as_bytes(), &params, &mut out).is_err() {
                    return false;
                }
                out.ct_eq(expected).into()
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Django's layout, computed here; the import tests check every format
    // against hashes made by a real Django.
    fn django_pbkdf2_sha256() -> String {
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"correct horse 1", b"saltsalt", 1000, &mut out);
        format!("pbkdf2_sha256$1000$saltsalt${}", STANDARD.encode(out))
    }

    #[test]
    fn formats_are_told_apart_by_their_prefix() {
        assert_eq!(
            Format::of("$argon2id$v=19$m=19456,t=2,p=1$a$b"),
            Format::Argon2
        );
        assert_eq!(
            Format::of("argon2$argon2id$v=19$m=1,t=1,p=1$a$b"),
            Format::DjangoArgon2
        );
        assert_eq!(Format::of(&django_pbkdf2_sha256()), Format::Pbkdf2Sha256);
        assert_eq!(Format::of("bcrypt_sha256$$2b$12$abc"), Format::BcryptSha256);
        assert_eq!(Format::of("!Xk2zRrandom"), Format::Unusable);
        assert_eq!(Format::of("md5$salt$0123"), Format::Weak);
        assert_eq!(Format::of("sha1$$0123"), Format::Weak);
        assert_eq!(Format::of("5f4dcc3b5aa765d61d8327deb882cf99"), Format::Weak);
        assert_eq!(Format::of("nonsense"), Format::Unknown);
        assert_eq!(
            django_argon2_phc("argon2$argon2i$v=19$m=512,t=2,p=2$c2FsdA$aGFzaA"),
            Some("$argon2i$v=19$m=512,t=2,p=2$c2FsdA$aGFzaA")
        );
    }

    #[test]
    fn pbkdf2_verifies_the_right_password_only() {
        let stored = Foreign::parse(&django_pbkdf2_sha256()).expect("parses");
        assert!(stored.verify(b"correct horse 1"));
        assert!(!stored.verify(b"correct horse 2"));
    }

    #[test]
    fn bcrypt_sha256_hashes_the_hex_digest() {
        let digest = hex(&Sha256::digest(b"a very long password ".repeat(8)));
        let inner = bcrypt::hash(digest.as_bytes(), 4).expect("hash");
        let stored = Foreign::parse(&format!("bcrypt_sha256${inner}")).expect("parses");
        assert!(stored.verify(&b"a very long password ".repeat(8)));
        // Past 72 bytes still counts, unlike plain bcrypt.
        let mut other = b"a very long password ".repeat(8);
        other.push(b'!');
        assert!(!stored.verify(&other));
    }

    #[test]
    fn absurd_costs_are_refused_before_any_work() {
        assert!(Foreign::parse("pbkdf2_sha256$4000000000$salt$aGFzaA==").is_none());
        assert!(Foreign::parse("scrypt$1048576$salt$16$1$aGFzaA==").is_none());
        assert!(Foreign::parse("scrypt$1000$salt$8$1$aGFzaA==").is_none());
        assert!(Foreign::parse("scrypt$16384$salt$8$1$aGFzaA==").is_some());
    }
}
