//! The policy for new passwords: NFKC normalisation, length counted in
//! characters, and common or guessable passwords refused.

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

/// Longest password accepted at registration or change, in characters after NFKC.
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Longest input even looked at on login: generous (NFKC may shrink combining
/// sequences) yet small enough that oversized bodies are refused in microseconds.
const MAX_INPUT_CHARS: usize = 4 * MAX_PASSWORD_CHARS;
/// zxcvbn only sees this many leading characters (of the password and of each
/// user input). Its l33t matcher re-runs dictionary matching once per possible
/// substitution set, so a crafted string of l33t symbols costs ~42 ms at 32
/// chars but ~490 ms at 100 (release build). A prefix that is hard to guess
/// makes the whole password hard to guess, so this can only over-refuse a
/// password whose first 32 characters are weak, never accept a weak one.
const GUESSABILITY_PREFIX_CHARS: usize = 32;
/// Always treated as a user input: the service's own name is a classic base word.
const SERVICE_NAME: &str = "latchkey";

/// Why a password was refused. Messages are shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {0} characters")]
    TooShort(usize),
    #[error("password must be at most 128 characters")]
    TooLong,
    /// Carries zxcvbn's advice as `": advice; more advice"`, or an empty string.
    #[error("password is too common or too easy to guess{0}")]
    TooCommon(String),
}

/// Password policy: NFKC, length counted in chars, common/guessable refused.
///
/// There are deliberately no composition rules (NIST SP 800-63B-4): a long
/// lowercase passphrase is better than a short symbol soup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Minimum length in characters after NFKC.
    pub min_length: usize,
}

impl PasswordPolicy {
    /// Normalises (NFKC) and checks a NEW password (register, change). `user_inputs` are
    /// strings the password must not be built from: the email, its local part, the
    /// user's name, "latchkey" (always added here too).
    ///
    /// Costs up to ~45 ms of CPU for a crafted input (zxcvbn), ~50 µs typically:
    /// call it from `tokio::task::spawn_blocking`, not directly on the runtime.
    pub fn check_new(
        &self,
        raw: &str,
        user_inputs: &[&str],
    ) -> Result<SecretString, PasswordError> {
        let (password, length) = nfkc_bounded(raw, MAX_PASSWORD_CHARS)?;
        if length < self.min_length {
            return Err(PasswordError::TooShort(self.min_length));
        }
        // Only after the length checks: zxcvbn is the expensive step.
        check_guessability(password.expose_secret(), user_inputs)?;
        Ok(password)
    }
}

/// Only NFKC (for login / current_password) — no policy, but still refuse
/// > 4*128 chars fast (DoS guard) with PasswordError::TooLong.
pub fn normalize(raw: &str) -> Result<SecretString, PasswordError> {
    nfkc_bounded(raw, MAX_INPUT_CHARS).map(|(password, _)| password)
}

/// NFKC form of `raw` and its length in chars, refusing anything over `max_chars`.
///
/// Nothing is trimmed or truncated: spaces and U+0000 are part of the password.
fn nfkc_bounded(raw: &str, max_chars: usize) -> Result<(SecretString, usize), PasswordError> {
    // Bound the input before normalising it: `nth` stops early on a 1 MiB body.
    if raw.chars().nth(MAX_INPUT_CHARS).is_some() {
        return Err(PasswordError::TooLong);
    }
    // NFKC can expand a character up to 18-fold, so the output is bounded too.
    let (length, bytes) = raw
        .nfkc()
        .take(max_chars + 1)
        .fold((0, 0), |(n, b), c| (n + 1, b + c.len_utf8()));
    if length > max_chars {
        return Err(PasswordError::TooLong);
    }
    // Exact capacity: the SecretString then takes this buffer as is, leaving no
    // reallocated, un-zeroised copy of the password behind.
    let mut normalized = String::with_capacity(bytes);
    normalized.extend(raw.nfkc());
    Ok((SecretString::from(normalized), length))
}

/// Refuses passwords that zxcvbn scores below 2 ("too guessable").
fn check_guessability(password: &str, user_inputs: &[&str]) -> Result<(), PasswordError> {
    let inputs: Vec<&str> = user_inputs
        .iter()
        .copied()
        .chain([SERVICE_NAME])
        .map(|input| char_prefix(input, GUESSABILITY_PREFIX_CHARS))
        .filter(|input| !input.is_empty())
        .collect();
    let entropy = zxcvbn::zxcvbn(char_prefix(password, GUESSABILITY_PREFIX_CHARS), &inputs);
    if entropy.score() >= zxcvbn::Score::Two {
        return Ok(());
    }
    Err(PasswordError::TooCommon(advice(entropy.feedback())))
}

/// zxcvbn's warning and suggestions as `": this is a top-10 common password; add …"`.
fn advice(feedback: Option<&zxcvbn::feedback::Feedback>) -> String {
    let Some(feedback) = feedback else {
        return String::new();
    };
    let sentences: Vec<String> = feedback
        .warning()
        .map(|warning| warning.to_string())
        .into_iter()
        .chain(feedback.suggestions().iter().map(ToString::to_string))
        .flat_map(|text| {
            let text = text.trim().trim_end_matches('.').to_owned();
            text.split(". ").map(lowercase_first).collect::<Vec<_>>()
        })
        .collect();
    if sentences.is_empty() {
        return String::new();
    }
    format!(": {}", sentences.join("; "))
}

fn lowercase_first(sentence: &str) -> String {
    let mut chars = sentence.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

/// The first `max_chars` characters of `text`, borrowed.
fn char_prefix(text: &str, max_chars: usize) -> &str {
    text.char_indices()
        .nth(max_chars)
        .map_or(text, |(end, _)| &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const POLICY: PasswordPolicy = PasswordPolicy { min_length: 8 };

    fn accepted(raw: &str) -> String {
        let inputs = ["alice.smith@example.com", "alice.smith", "Alice Smith"];
        match POLICY.check_new(raw, &inputs) {
            Ok(password) => password.expose_secret().to_owned(),
            Err(e) => panic!("{raw:?} refused: {e}"),
        }
    }

    fn refusal(raw: &str) -> PasswordError {
        let inputs = [
            "alice.smith@example.com",
            "alice.smith",
            "Alice Smith",
            "latchkey",
        ];
        match POLICY.check_new(raw, &inputs) {
            Ok(_) => panic!("{raw:?} accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // Eight emoji are 32 bytes; seven é are 14 bytes.
        accepted("😀😺🦊🌵🍉🚲🎈🧩");
        assert_eq!(refusal(&"é".repeat(7)), PasswordError::TooShort(8));
        assert_eq!(refusal("Xk9#mQ2"), PasswordError::TooShort(8));
    }

    #[test]
    fn one_character_repeated_passes_the_length_rule_but_is_too_guessable() {
        // NIST SP 800-63B-4 lists repetitive characters ("aaaaaa") among the
        // values to refuse; the same holds whatever the character.
        for raw in ["😀".repeat(8), "a".repeat(8)] {
            assert!(
                matches!(refusal(&raw), PasswordError::TooCommon(_)),
                "{raw}"
            );
        }
    }

    #[test]
    fn min_length_comes_from_the_policy() {
        let nist = PasswordPolicy { min_length: 15 };
        assert_eq!(
            nist.check_new("kX9#mQ2$vL7pzz", &[]).err(),
            Some(PasswordError::TooShort(15))
        );
        assert!(nist.check_new("kX9#mQ2$vL7pzzA", &[]).is_ok());
    }

    #[test]
    fn up_to_128_characters_are_accepted_and_129_refused() {
        let long: String = "correct horse battery staple "
            .chars()
            .cycle()
            .take(128)
            .collect();
        assert_eq!(accepted(&long), long);
        let too_long: String = long.chars().chain(['x']).collect();
        assert_eq!(refusal(&too_long), PasswordError::TooLong);
    }

    #[test]
    fn huge_input_is_refused_fast() {
        let huge = "a".repeat(1 << 20);
        let started = Instant::now();
        assert_eq!(refusal(&huge), PasswordError::TooLong);
        assert_eq!(normalize(&huge).err(), Some(PasswordError::TooLong));
        assert!(started.elapsed() < Duration::from_millis(20));
    }

    #[test]
    fn nfkc_makes_equivalent_inputs_equal() {
        let precomposed = normalize("p\u{f6}ssw\u{f6}rd-\u{fb01}sh").expect("short");
        let decomposed = normalize("po\u{308}sswo\u{308}rd-fish").expect("short");
        assert_eq!(precomposed.expose_secret(), decomposed.expose_secret());
        assert_eq!(normalize("\u{fb01}").expect("short").expose_secret(), "fi");
        assert_eq!(
            accepted("gr\u{fb01}n plonk w\u{f6}bble"),
            "grfin plonk w\u{f6}bble"
        );
    }

    #[test]
    fn nothing_is_trimmed_or_truncated() {
        assert_eq!(
            accepted("  hollow wombat verge  "),
            "  hollow wombat verge  "
        );
        let with_nul = "tangerine\0submarine";
        assert_eq!(accepted(with_nul), with_nul);
        let long = "z".repeat(300);
        assert_eq!(normalize(&long).expect("under 512").expose_secret(), long);
    }

    #[test]
    fn common_and_personal_passwords_are_refused() {
        for raw in [
            "password",
            "12345678",
            "password123",
            "alice.smith",
            "latchkey2024",
        ] {
            assert!(
                matches!(refusal(raw), PasswordError::TooCommon(_)),
                "{raw:?} should be too common"
            );
        }
    }

    #[test]
    fn user_inputs_longer_than_the_checked_prefix_are_still_refused() {
        let name = "Maximiliane Konstantinopoulou-Vanderbilt";
        assert!(name.chars().count() > GUESSABILITY_PREFIX_CHARS);
        let refused = POLICY.check_new(name, &[name]);
        assert!(matches!(refused, Err(PasswordError::TooCommon(_))));
        assert!(POLICY.check_new(name, &[]).is_ok());
    }

    #[test]
    fn service_name_is_refused_even_when_the_caller_forgets_it() {
        let refused = POLICY.check_new("latchkey2024", &[]);
        assert!(matches!(refused, Err(PasswordError::TooCommon(_))));
    }

    #[test]
    fn refusal_carries_zxcvbn_advice_as_a_sentence_tail() {
        let message = refusal("password").to_string();
        assert!(
            message.starts_with("password is too common or too easy to guess: "),
            "{message}"
        );
        assert!(message.contains("add another word or two; uncommon words are better"));
        assert!(!message.ends_with('.'));
    }

    #[test]
    fn passphrases_and_random_strings_are_accepted_without_composition_rules() {
        accepted("correct horse battery staple");
        accepted("kX9#mQ2$vL7p");
        accepted("uvqzhtpwkrem");
    }
}
