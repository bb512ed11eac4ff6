//! Text from requesters and statements, made safe to show a person.
//!
//! A `reason`, a `ref` or a held statement is written by whoever asked; a
//! terminal obeys the control characters in it. `\r` and `ESC [2K` can
//! overwrite what an approver reads (a `DROP COLUMN` shown as a harmless
//! `ADD COLUMN`), a newline can start a fake line of a story, and Unicode's
//! bidirectional overrides reorder what is shown. [`visible`] writes every
//! such character as a visible escape, so what is shown is what is there.

use std::borrow::Cow;
use std::fmt::Write;

/// Characters that are not shown as themselves: C0 and C1 controls (tab
/// and newline too: a shown value is one line), DEL, and the bidirectional
/// embeddings, overrides and isolates.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with each hidden character written as an escape (`\n`, `\r`,
/// `\t`, `\x1b`, `\u{202e}`) and a backslash doubled, so the escapes cannot
/// be forged either. Borrowed when nothing needs escaping.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| hidden(c) || c == '\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hidden(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if hidden(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether `text` holds a character [`visible`] would escape (a backslash
/// aside): such text is refused where it is taken in (a task's `reason`
/// and `ref`).
pub fn has_hidden(text: &str) -> bool {
    text.chars().any(hidden)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_not_obeyed() {
        let attack = "ALTER TABLE customers DROP COLUMN email /*\r\x1b[2K  statement  ALTER TABLE orders ADD COLUMN note text\x1b[8m*/";
        let shown = visible(attack);
        assert!(!shown.chars().any(hidden), "{shown}");
        assert!(shown.contains("DROP COLUMN email"));
        assert!(shown.contains("\\r\\x1b[2K"));
        assert_eq!(
            visible("acme/shop#1234\nfake line"),
            "acme/shop#1234\\nfake line"
        );
        assert_eq!(visible("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(visible("C1 \u{9b}2K"), "C1 \\x9b2K");
        // A backslash is doubled, so `\n` typed by the requester stays
        // apart from a real newline.
        assert_eq!(visible("a\\nb"), "a\\\\nb");
        assert!(matches!(visible("plain text"), Cow::Borrowed(_)));
        assert!(has_hidden("x\ry") && !has_hidden("x\\ry"));
    }
}
