//! `split`: a simple-Query string into its statements.
//!
//! The cheap lexer finds top-level `;` (outside quotes, comments and
//! parentheses: `CREATE RULE ... DO (INSERT ...; INSERT ...)` is one
//! statement). SQL-standard function bodies (`BEGIN ATOMIC ... ; ... END`)
//! hold top-level semicolons the lexer cannot see past, so there we ask
//! PostgreSQL's own grammar via `pg_query::split_with_parser`.

use crate::lexer::{Kind, Step};
use crate::reading::Strings;

/// The statements of a simple-Query string, each trimmed, empty ones dropped.
///
/// Like PostgreSQL 18's own statement locations, a statement starts at its
/// first token (leading comments belong to nobody) and runs to its `;`.
/// Unterminated quotes or comments give the whole text as one statement: the
/// server refuses it whole.
pub fn split(sql: &str) -> Vec<&str> {
    split_as(sql, Strings::Standard)
}

/// [`split`] for a session whose plain strings read as `strings`.
pub fn split_as(sql: &str, strings: Strings) -> Vec<&str> {
    match split_lexer(sql, strings) {
        Lexed::Done(v) => v,
        Lexed::Unterminated => whole(sql),
        // The parser reads strings the standard way; the server refuses
        // such a body in the other reading anyway only if it is not valid,
        // so take it whole: it is judged as all its statements at once.
        Lexed::NeedsParser if strings == Strings::Backslash => whole(sql),
        Lexed::NeedsParser => match pg_query::split_with_parser(sql) {
            Ok(v) => v.into_iter().map(str::trim).filter(|s| !s.is_empty()).collect(),
            // The server will refuse the whole string; report it as one.
            Err(_) => whole(sql),
        },
    }
}

fn whole(sql: &str) -> Vec<&str> {
    let t = sql.trim();
    if t.is_empty() { Vec::new() } else { vec![t] }
}

enum Lexed<'a> {
    Done(Vec<&'a str>),
    Unterminated,
    NeedsParser,
}

fn split_lexer(sql: &str, strings: Strings) -> Lexed<'_> {
    let mut lx = strings.lexer(sql);
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut depth = 0usize;
    let mut prev_begin = false;
    loop {
        let t = match lx.next_step() {
            Step::Token(t) => t,
            Step::Unterminated(_) => return Lexed::Unterminated,
            Step::End => break,
        };
        if t.kind == Kind::Semi && depth == 0 {
            if let Some(s) = start.take() {
                push(&mut out, sql.get(s..t.start));
            }
            prev_begin = false;
            continue;
        }
        start.get_or_insert(t.start);
        let text = sql.get(t.start..t.end).unwrap_or_default();
        match (t.kind, text) {
            (Kind::Punct, "(") => depth += 1,
            (Kind::Punct, ")") => depth = depth.saturating_sub(1),
            (Kind::Word, w) if prev_begin && w.eq_ignore_ascii_case("atomic") => {
                return Lexed::NeedsParser;
            }
            _ => {}
        }
        prev_begin = t.kind == Kind::Word && text.eq_ignore_ascii_case("begin");
    }
    if let Some(s) = start {
        push(&mut out, sql.get(s..));
    }
    Lexed::Done(out)
}

fn push<'a>(out: &mut Vec<&'a str>, piece: Option<&'a str>) {
    if let Some(p) = piece.map(str::trim).filter(|p| !p.is_empty()) {
        out.push(p);
    }
}
