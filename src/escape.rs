//! What a peer sent, made safe to print: every log line that carries a peer's string
//! (a path, an `Origin`, a header, a name) shows it through [`escape`], so that a
//! control character cannot fake a line or move the terminal's cursor, and a bidi
//! override (U+202E) cannot make `\u{202e}ecila` read as "alice" in a log.

use std::fmt::{self, Display};

/// `s`, printed with every character a reader could be fooled by written as a
/// `\u{…}` escape (see [`needs_escape`]). Nothing is allocated: the wrapper writes
/// straight into the formatter, and a clean string goes out in one piece.
pub(crate) fn escape<T: AsRef<str>>(s: T) -> Escaped<T> {
    Escaped(s)
}

/// The [`Display`] of [`escape`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Escaped<T>(T);

impl<T: AsRef<str>> Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_ref();
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| needs_escape(c)) {
            f.write_str(&rest[..at])?;
            write!(f, "\\u{{{:x}}}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Whether `c` is shown as an escape: Unicode general categories `Cc` (controls,
/// among them CR, LF, ESC and DEL), `Cf` (formatting: the bidi controls U+200E/F,
/// U+202A–202E and U+2066–2069, zero-width characters, the BOM, tags, …), `Zl` and
/// `Zp` (line and paragraph separators, which some viewers break lines at): the
/// characters a reader cannot see, or that change how the ones around them are shown.
/// A display name may hold none of them either.
pub(crate) fn needs_escape(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_left_alone() {
        for s in [
            "",
            "GET /ws/chat?name=ann",
            "Jürgen 🦀 日本",
            "tab\tless? no",
        ] {
            let shown = escape(s).to_string();
            if s.contains('\t') {
                assert_eq!(shown, "tab\\u{9}less? no");
            } else {
                assert_eq!(shown, s);
            }
        }
    }

    #[test]
    fn controls_and_bidi_become_escapes() {
        assert_eq!(
            escape("a\r\nb\x1b[2Jc\x7f").to_string(),
            "a\\u{d}\\u{a}b\\u{1b}[2Jc\\u{7f}"
        );
        assert_eq!(escape("\u{202e}ecila").to_string(), "\\u{202e}ecila");
        for c in [
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{202d}',
            '\u{2066}',
            '\u{2069}',
            '\u{200b}',
            '\u{feff}',
            '\u{2028}',
            '\u{2029}',
            '\u{e0041}',
            '\u{85}',
        ] {
            assert!(needs_escape(c), "{:x}", u32::from(c));
            assert_eq!(
                escape(c.to_string()).to_string(),
                format!("\\u{{{:x}}}", u32::from(c))
            );
        }
        assert!(!needs_escape('a') && !needs_escape('é') && !needs_escape('\u{2070}'));
    }
}
