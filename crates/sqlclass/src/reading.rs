//! How statement text reads, independent of the session it arrives in.
//!
//! The gateway decides on a statement before the server has answered
//! everything sent ahead of it, so it cannot know every setting the server
//! will lex the text under: a statement earlier in the same pipeline can turn
//! `standard_conforming_strings` off (by `set_config`, `UPDATE pg_settings`,
//! a function or a trigger), and the server reports that only at the next
//! `ReadyForQuery`. [`depends_on_standard_strings`] finds the text whose
//! tokens would differ under that setting, so the gateway can refuse it
//! instead of guessing which reading the server will take.

use std::borrow::Cow;

use crate::lexer::{Kind, Lexer, Step};
use crate::names::mentions_set_config;

/// True when `sql` would split into different tokens (strings, comments,
/// statements) with `standard_conforming_strings` off than with it on, or
/// when a `set_config` name could read differently: a backslash before a
/// quote in a plain `'...'` string, say. Text without a backslash never
/// does, and is answered without lexing.
pub fn depends_on_standard_strings(sql: &str) -> bool {
    if !sql.contains('\\') {
        return false;
    }
    let mut on = Lexer::new(sql);
    let mut off = Lexer::with_backslash_strings(sql);
    let mut backslash_in_plain_string = false;
    loop {
        let (a, b) = (on.next_step(), off.next_step());
        if a != b {
            return true;
        }
        match a {
            Step::Token(t) => {
                let text = sql.get(t.start..t.end).unwrap_or_default();
                if t.kind == Kind::Str && text.contains('\\') && !is_escape_string(text) {
                    backslash_in_plain_string = true;
                }
            }
            Step::Unterminated(_) | Step::End => break,
        }
    }
    // Same tokens: only literal values differ, and only `set_config`'s
    // first argument is read for its value.
    backslash_in_plain_string && mentions_set_config(sql)
}

/// How the server reads a plain `'...'` string: its
/// `standard_conforming_strings` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strings {
    /// `on` (PostgreSQL's default): a backslash is an ordinary character.
    #[default]
    Standard,
    /// `off`: a backslash escapes, as in `E'...'`.
    Backslash,
}

impl Strings {
    /// The reading a `standard_conforming_strings` value gives (`on`,
    /// `off`, as `ParameterStatus` reports it).
    pub fn of_setting(value: &str) -> Strings {
        if value.eq_ignore_ascii_case("off") {
            Strings::Backslash
        } else {
            Strings::Standard
        }
    }

    pub(crate) fn lexer(self, sql: &str) -> Lexer<'_> {
        match self {
            Strings::Standard => Lexer::new(sql),
            Strings::Backslash => Lexer::with_backslash_strings(sql),
        }
    }
}

/// Text that reads the same whatever `standard_conforming_strings` is, as
/// `sql` reads under `strings`, so the classifier (which parses with it on)
/// and the rules see what the server runs: each plain `'...'` (or
/// `N'...'`) string holding a backslash becomes the `E'...'` string it is
/// (with it on, its backslashes doubled). Borrowed when nothing differs.
pub fn as_standard(sql: &str, strings: Strings) -> Cow<'_, str> {
    if !depends_on_standard_strings(sql) {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut last = 0;
    // A run of strings glued together (`'a'` NEWLINE `'b'`): one constant,
    // read all in its first part's way.
    let mut group: Vec<(usize, usize)> = Vec::new();
    let mut lx = strings.lexer(sql);
    loop {
        let step = lx.next_step();
        let token = match step {
            Step::Token(t) => Some(t),
            Step::Unterminated(_) | Step::End => None,
        };
        let glued = token.is_some_and(|t| t.kind == Kind::Str && t.continues) && !group.is_empty();
        if !glued {
            rewrite_group(sql, &group, strings, &mut out, &mut last);
            group.clear();
        }
        match token {
            Some(t) if t.kind == Kind::Str => group.push((t.start, t.end)),
            Some(_) => {}
            None => break,
        }
    }
    out.push_str(sql.get(last..).unwrap_or_default());
    Cow::Owned(out)
}

/// Writes a glued run of strings as one `E'...'` constant, when it is a
/// plain string holding a backslash.
fn rewrite_group(sql: &str, group: &[(usize, usize)], strings: Strings, out: &mut String, last: &mut usize) {
    let Some(&(first, _)) = group.first() else {
        return;
    };
    let text = |(a, b): (usize, usize)| sql.get(a..b).unwrap_or_default();
    let head = text(group[0]);
    let national = head.starts_with(['n', 'N']);
    if !(head.starts_with('\'') || national) || !group.iter().any(|&g| text(g).contains('\\')) {
        return;
    }
    out.push_str(sql.get(*last..first).unwrap_or_default());
    // An identifier just before (`int'1'`) must not take the E.
    if out
        .as_bytes()
        .last()
        .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$') || *b >= 0x80)
    {
        out.push(' ');
    }
    // N'...' is NCHAR '...': the national prefix, then the string.
    out.push_str(if national { "NCHAR E" } else { "E" });
    let mut at = if national { first + 1 } else { first };
    for &(start, end) in group {
        out.push_str(sql.get(at..start).unwrap_or_default());
        let part = sql.get(start.max(at)..end).unwrap_or_default();
        match strings {
            // Already in escape syntax.
            Strings::Backslash => out.push_str(part),
            // A backslash is itself: doubled, it stays itself.
            Strings::Standard => out.push_str(&part.replace('\\', "\\\\")),
        }
        at = end;
    }
    *last = at;
}

fn is_escape_string(token: &str) -> bool {
    token.starts_with(['e', 'E']) || token.starts_with(['b', 'B', 'x', 'X']) || token.starts_with('$')
}

/// The text with every comment replaced by one space (strings and quoted
/// names untouched), so a rule's regex sees `/* x */ TRUNCATE t` as
/// ` TRUNCATE t`. Borrowed when the text holds no comment.
pub fn without_comments(sql: &str) -> Cow<'_, str> {
    if !sql.contains("--") && !sql.contains("/*") {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut lx = Lexer::new(sql);
    let mut last = 0;
    loop {
        match lx.next_step() {
            Step::Token(t) => {
                let gap = sql.get(last..t.start).unwrap_or_default();
                push_gap(&mut out, gap);
                out.push_str(sql.get(t.start..t.end).unwrap_or_default());
                last = t.end;
            }
            Step::Unterminated(at) => {
                push_gap(&mut out, sql.get(last..at).unwrap_or_default());
                out.push_str(sql.get(at..).unwrap_or_default());
                return Cow::Owned(out);
            }
            Step::End => {
                push_gap(&mut out, sql.get(last..).unwrap_or_default());
                return Cow::Owned(out);
            }
        }
    }
}

/// Whitespace between tokens is kept; a gap holding a comment becomes one
/// space.
fn push_gap(out: &mut String, gap: &str) {
    if gap.contains("--") || gap.contains("/*") {
        out.push(' ');
    } else {
        out.push_str(gap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backslash_before_a_quote_reads_two_ways() {
        let attack = "SELECT 'x\\' AS a, ' ; UPDATE customers SET name = $$pwned$$ WHERE id = 1; --' AS b";
        assert!(depends_on_standard_strings(attack));
        assert!(depends_on_standard_strings("SELECT 'a\\'"));
        assert!(depends_on_standard_strings(
            "SELECT set_config('standard\\_conforming\\_strings', 'off', false)"
        ));
    }

    #[test]
    fn ordinary_backslashes_read_one_way() {
        assert!(!depends_on_standard_strings("SELECT 1"));
        assert!(!depends_on_standard_strings("SELECT * FROM t WHERE x ~ '\\d+'"));
        assert!(!depends_on_standard_strings("SELECT '\\\\'"));
        assert!(!depends_on_standard_strings("SELECT E'it\\'s'"));
        assert!(!depends_on_standard_strings("SELECT $$a\\'$$"));
        assert!(!depends_on_standard_strings(
            "SELECT set_config('search_path', 'public', false)"
        ));
    }

    #[test]
    fn backslash_strings_read_as_escape_strings() {
        let attack = "SELECT 'x\\' AS a, ' ; UPDATE customers SET name = 1; --' AS b";
        let read = as_standard(attack, Strings::Backslash);
        assert_eq!(read, "SELECT E'x\\' AS a, ' ; UPDATE customers SET name = 1; --' AS b");
        assert_eq!(
            as_standard("SELECT N'a\\'', int'\\1', 'a\\\\'\n'b\\''", Strings::Backslash),
            "SELECT NCHAR E'a\\'', int E'\\1', E'a\\\\'\n'b\\''"
        );
        assert!(!depends_on_standard_strings(&as_standard(attack, Strings::Backslash)));
        assert!(matches!(
            as_standard("SELECT 'a'", Strings::Backslash),
            Cow::Borrowed(_)
        ));
        // With the setting on, the backslash is doubled into an E string.
        assert_eq!(
            as_standard(attack, Strings::Standard),
            "SELECT E'x\\\\' AS a, ' ; UPDATE customers SET name = 1; --' AS b"
        );
        assert!(!depends_on_standard_strings(&as_standard(attack, Strings::Standard)));
        assert_eq!(
            as_standard("SELECT 'a'\n'b\\', 'c'", Strings::Standard),
            "SELECT E'a'\n'b\\\\', 'c'"
        );
    }

    #[test]
    fn comments_become_spaces() {
        assert_eq!(without_comments("/* x */ TRUNCATE orders"), " TRUNCATE orders");
        assert_eq!(without_comments("DROP/**/TABLE t -- bye\n"), "DROP TABLE t ");
        assert_eq!(without_comments("SELECT '/* not */' -- c"), "SELECT '/* not */' ");
        assert!(matches!(without_comments("SELECT 1"), Cow::Borrowed(_)));
    }
}
