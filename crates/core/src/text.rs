//! Rules for the text a client sends: what PostgreSQL can store, what counts as blank,
//! and the same rules written as JSON Schema patterns for the OpenAPI document, so that
//! the document and the validation are one definition and cannot drift apart.
//!
//! Patterns are ECMA-262 regular expressions (JSON Schema's dialect) restricted to what
//! Python's `re` reads the same way, since the fuzzer that checks the document is
//! written in Python: character classes of `\uXXXX` escapes and bounded repetition.

/// PostgreSQL's `text` cannot hold U+0000 ("invalid byte sequence for encoding UTF8:
/// 0x00"), so it is refused before any database work, wherever it appears.
pub const NUL_DETAIL: &str =
    "must not contain the NUL character (U+0000), which the database cannot store";

/// Whether `text` holds the one character PostgreSQL cannot store.
pub fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

/// The characters with Unicode's White_Space property, as ranges: exactly what
/// `char::is_whitespace` and `str::trim` treat as white space (a test checks every
/// character). Spelt out because regular expression engines disagree about `\s`.
const WHITESPACE: &[(char, char)] = &[
    ('\u{9}', '\u{d}'),
    (' ', ' '),
    ('\u{85}', '\u{85}'),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
];

/// Whether `text` is empty or white space only.
pub fn is_blank(text: &str) -> bool {
    text.chars().all(char::is_whitespace)
}

fn escaped(c: char) -> String {
    format!("\\u{:04x}", u32::from(c))
}

/// The inside of a character class holding NUL and, with `whitespace`, White_Space.
fn class_items(whitespace: bool) -> String {
    let mut items = escaped('\0');
    if whitespace {
        for &(first, last) in WHITESPACE {
            items.push_str(&escaped(first));
            if last != first {
                items.push('-');
                items.push_str(&escaped(last));
            }
        }
    }
    items
}

/// Any text without NUL.
pub fn storable_pattern() -> String {
    format!("^[^{}]*$", class_items(false))
}

/// Text without NUL that is not blank: what a task's name must be.
pub fn non_blank_pattern() -> String {
    let any = format!("[^{}]", class_items(false));
    let visible = format!("[^{}]", class_items(true));
    format!("^{any}*{visible}{any}*$")
}

/// Text without NUL which, white space around it removed, has `min..=max` characters
/// (`min` at least 2): what a search must be.
pub fn trimmed_pattern(min: usize, max: usize) -> String {
    let space = format!("[{}]", &class_items(true)[escaped('\0').len()..]);
    let any = format!("[^{}]", class_items(false));
    let visible = format!("[^{}]", class_items(true));
    let inner_min = min.saturating_sub(2);
    let inner_max = max.saturating_sub(2);
    format!("^{space}*{visible}{any}{{{inner_min},{inner_max}}}{visible}{space}*$")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_whitespace_table(c: char) -> bool {
        WHITESPACE
            .iter()
            .any(|&(first, last)| (first..=last).contains(&c))
    }

    #[test]
    fn the_table_is_rusts_white_space() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            assert_eq!(
                c.is_whitespace(),
                in_whitespace_table(c),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn blank_and_nul() {
        assert!(is_blank(""));
        assert!(is_blank(" \t\u{3000}\n"));
        assert!(!is_blank(" a "));
        assert!(
            !is_blank("\0"),
            "NUL is not white space; it is refused on its own"
        );
        assert!(has_nul("a\0b"));
        assert!(!has_nul("ab"));
    }

    /// Texts on either side of every rule: white space of each kind, NUL, lengths at
    /// and beyond the bounds.
    fn samples() -> Vec<String> {
        let mut samples: Vec<String> = [
            "",
            " ",
            "a",
            "ab",
            "abc",
            " abc ",
            "a b",
            "\u{3000}ab\u{3000}",
            "\u{1c}ab",
            "a\0b",
            "\0",
            "\0abc",
            "abc\0",
            " \t\n",
            "\u{85}x\u{85}",
            "\u{200b}",
            "\u{feff}ab",
            "é",
            "日本語",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        for n in [254, 255, 256] {
            samples.push("x".repeat(n));
            samples.push(format!(" {} ", "x".repeat(n)));
        }
        samples
    }

    #[test]
    fn the_patterns_state_the_rules() {
        let regex = |pattern: &str| regex::Regex::new(pattern).expect(pattern);
        let name = regex(&non_blank_pattern());
        let storable = regex(&storable_pattern());
        let search = regex(&trimmed_pattern(3, 255));
        for sample in samples() {
            assert_eq!(
                name.is_match(&sample),
                !has_nul(&sample) && !is_blank(&sample),
                "name {sample:?}"
            );
            assert_eq!(storable.is_match(&sample), !has_nul(&sample), "{sample:?}");
            let trimmed = sample.trim().chars().count();
            assert_eq!(
                search.is_match(&sample),
                !has_nul(&sample) && (3..=255).contains(&trimmed),
                "search {sample:?}"
            );
        }
    }

    #[test]
    fn patterns_are_spelt_with_escapes() {
        assert_eq!(storable_pattern(), "^[^\\u0000]*$");
        let name = non_blank_pattern();
        assert!(name.starts_with("^[^\\u0000]*[^\\u0000\\u0009-\\u000d\\u0020\\u0085"));
        assert!(name.ends_with("\\u3000][^\\u0000]*$"));
        let search = trimmed_pattern(3, 255);
        assert!(search.starts_with("^[\\u0009-\\u000d\\u0020"), "{search}");
        assert!(search.contains("[^\\u0000]{1,253}"), "{search}");
    }
}
