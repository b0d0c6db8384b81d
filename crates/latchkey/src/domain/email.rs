//! Email address parsing and normalisation for accounts.
//!
//! Owns the one rule for what an account email is: a plain `local@domain` with a
//! dotted domain, NFKC-normalised, with a lowercase form that makes uniqueness
//! case-insensitive. It must not touch storage or decide whether an address is
//! taken; that belongs to the store's unique index on `normalized`.

use email_address::{EmailAddress, Options};
use unicode_normalization::UnicodeNormalization;
use unicode_security::{RestrictionLevel, RestrictionLevelDetection};

/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle
/// brackets, so an address is at most 254 octets. Counted in bytes, which is
/// the stricter reading for non-ASCII addresses.
const MAX_EMAIL_BYTES: usize = 254;

/// An accepted email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The address as the user typed it (trimmed, NFKC): what we show and mail to.
    pub display: String,
    /// Lowercase form of `display`: the key for case-insensitive uniqueness and lookups.
    pub normalized: String,
}

/// Parses a user-supplied email address. Errors are sentences fit to show the user.
pub fn parse_email(raw: &str) -> Result<Email, String> {
    // NFKC first so that look-alike compatibility forms (full-width letters,
    // ligatures) collapse to the one address they render as.
    let display: String = raw.trim().nfkc().collect();
    if display.is_empty() {
        return Err("email is required".to_owned());
    }
    if display.len() > MAX_EMAIL_BYTES {
        return Err("email must be at most 254 characters".to_owned());
    }
    // Control characters would let an address smuggle header lines (CR/LF) or
    // terminal escapes into mails and logs; refuse them before the parser sees them.
    if display.chars().any(char::is_control) {
        return Err("email must not contain control characters".to_owned());
    }
    if display.chars().any(char::is_whitespace) {
        return Err("email must not contain spaces".to_owned());
    }
    check_plain_address(&display)?;
    check_scripts(&display)?;
    let normalized = display.to_lowercase();
    Ok(Email {
        display,
        normalized,
    })
}

/// Refuses a local part, or a domain label, that mixes scripts beyond UTS #39
/// "moderately restrictive" (Latin with one other script, but never with
/// Cyrillic or Greek): a Cyrillic "е" in "examplе.com" would otherwise make
/// a second account that reads exactly like the first. Each domain label is
/// judged alone, so an internationalised name under `.com` stays accepted.
fn check_scripts(address: &str) -> Result<(), String> {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let parts = std::iter::once(local).chain(domain.split('.'));
    for part in parts {
        // Dots, dashes, plus signs and digits belong to every script.
        let letters: String = part
            .chars()
            .filter(|c| !c.is_ascii_punctuation() && !c.is_ascii_digit())
            .collect();
        if !letters.is_empty()
            && letters.as_str().detect_restriction_level() > RestrictionLevel::ModeratelyRestrictive
        {
            return Err(
                "email must not mix scripts (such as Latin and Cyrillic letters) in its name or in a domain label"
                    .to_owned(),
            );
        }
    }
    Ok(())
}

/// Accepts only a bare `local@domain`: no display name, no domain literal, and
/// at least one dot in the domain (a single label cannot receive Internet mail).
fn check_plain_address(address: &str) -> Result<(), String> {
    let options = Options {
        minimum_sub_domains: 2,
        allow_domain_literal: false,
        allow_display_text: false,
    };
    let invalid = || "email is not a valid address".to_owned();
    let parsed = EmailAddress::parse_with_options(address, options).map_err(|_| invalid())?;
    // The parser also understands "Name <a@b>" and comments; anything it had to
    // reinterpret is not the plain address we store and mail to.
    if parsed.as_str() != address || parsed.email() != address {
        return Err(invalid());
    }
    if !parsed.domain().contains('.') {
        return Err(invalid());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> Email {
        parse_email(raw).unwrap_or_else(|e| panic!("{raw:?} refused: {e}"))
    }

    #[test]
    fn plain_address_is_accepted_and_lowercased_for_uniqueness() {
        let email = ok("Alice@Example.COM");
        assert_eq!(email.display, "Alice@Example.COM");
        assert_eq!(email.normalized, "alice@example.com");
        assert_eq!(
            ok("alice@example.com").normalized,
            ok("ALICE@EXAMPLE.COM").normalized
        );
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        let email = ok("  bob@example.org \n");
        assert_eq!(email.display, "bob@example.org");
    }

    #[test]
    fn compatibility_forms_are_nfkc_normalised() {
        // Full-width letters and the "ﬁ" ligature render as plain ASCII.
        let email = ok("ｂｏｂ@example.com");
        assert_eq!(email.display, "bob@example.com");
        assert_eq!(ok("ﬁona@example.com").normalized, "fiona@example.com");
    }

    #[test]
    fn plus_and_dots_in_local_part_are_kept() {
        assert_eq!(
            ok("a.b+tag@mail.example.com").normalized,
            "a.b+tag@mail.example.com"
        );
    }

    #[test]
    fn empty_input_is_refused() {
        assert_eq!(parse_email("   "), Err("email is required".to_owned()));
    }

    #[test]
    fn address_over_254_bytes_is_refused() {
        let local = "a".repeat(64);
        let label = "b".repeat(63);
        let long = format!("{local}@{label}.{label}.{label}.{}.com", "c".repeat(20));
        assert!(long.len() > 254);
        assert_eq!(
            parse_email(&long),
            Err("email must be at most 254 characters".to_owned())
        );
        let fits = format!("{local}@{label}.{label}.{}.com", "c".repeat(57));
        assert_eq!(fits.len(), 254);
        ok(&fits);
    }

    #[test]
    fn control_characters_are_refused() {
        for raw in [
            "a\r\nBcc: x@evil.com@example.com",
            "a\nb@example.com",
            "a\0b@example.com",
            "a\u{1b}[31mb@example.com",
            "a\u{7f}b@example.com",
            "a\u{85}b@example.com",
        ] {
            assert_eq!(
                parse_email(raw),
                Err("email must not contain control characters".to_owned()),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn inner_whitespace_is_refused() {
        for raw in ["a b@example.com", "a@exa mple.com", "a\u{a0}b@example.com"] {
            assert_eq!(
                parse_email(raw),
                Err("email must not contain spaces".to_owned()),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn display_name_form_is_refused() {
        assert!(parse_email("Alice <alice@example.com>").is_err());
        assert!(parse_email("<alice@example.com>").is_err());
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for raw in [
            "alice",
            "alice@",
            "@example.com",
            "alice@@example.com",
            "alice@example",
            "alice@localhost",
            "alice@[127.0.0.1]",
            "alice@example..com",
            "alice@.example.com",
            "alice@example.com.",
            "alice(comment)@example.com",
        ] {
            assert_eq!(
                parse_email(raw),
                Err("email is not a valid address".to_owned()),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn a_look_alike_letter_from_another_script_is_refused() {
        // A Cyrillic "е" in an otherwise Latin domain, or local part.
        for raw in ["alice@exampl\u{435}.com", "\u{430}lice@example.com"] {
            let refused = parse_email(raw).expect_err(raw);
            assert!(refused.contains("mix"), "{raw}: {refused}");
        }
    }

    #[test]
    fn one_script_per_part_is_accepted_whatever_the_script() {
        ok("ivan.petrov@example.com");
        ok("\u{438}\u{432}\u{430}\u{43d}@\u{43f}\u{440}\u{438}\u{43c}\u{435}\u{440}.com");
        ok("\u{5c71}\u{7530}@example.jp");
        ok("user+tag.2024@mail-1.example.org");
    }
}
