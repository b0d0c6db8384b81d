//! Characters a reader cannot see: control characters, bidirectional
//! overrides and isolates (which reorder what follows them), and invisible
//! format characters. Names refuse them; anything shown on a terminal shows
//! them escaped. Zero-width joiner and non-joiner stay allowed: scripts such
//! as Persian and emoji sequences need them.

/// Whether `c` would be invisible, or change how the text around it reads.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// `text` as a terminal may show it: hidden characters as `\u{…}` escapes.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_overrides_and_invisible_characters_are_hidden_ones() {
        for c in [
            '\u{202E}', '\u{2066}', '\u{200B}', '\u{FEFF}', '\u{1b}', '\n',
        ] {
            assert!(is_hidden(c), "{c:?}");
        }
        for c in ['a', 'é', 'ж', '山', '\u{200C}', '\u{200D}', ' '] {
            assert!(!is_hidden(c), "{c:?}");
        }
    }

    #[test]
    fn printable_escapes_only_the_hidden_ones() {
        assert_eq!(printable("Ada\u{202E}evil"), "Ada\\u{202e}evil");
        assert_eq!(printable("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(printable("Zoë 山田"), "Zoë 山田");
    }
}
