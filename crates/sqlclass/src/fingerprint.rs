//! `fingerprint`: the literal-normalized shape of a statement, the cache key.
//!
//! Produced by the cheap lexer, never the parser. Two texts share a
//! fingerprint only if they have the same tokens apart from literal values,
//! whitespace, comments and the case of unquoted words, so their
//! classifications are equal as long as classification never looks at a
//! literal's value (see the crate docs for the cases that could and how they
//! are closed). Tokens are joined by single spaces, which keeps the mapping
//! injective: `?` alone is a literal; `?` inside an operator is doubled.

use crate::lexer::{Kind, Lexer, Step};
use crate::names::mentions_set_config;

/// Literal-normalized shape: numbers, strings (all forms, dollar-quoted too)
/// and `$n` parameters become `?`; whitespace and comments collapse to one
/// space between tokens; unquoted words are ASCII-lowercased (exactly what
/// PostgreSQL folds, so `Ä` and `ä` stay different); quoted identifiers are
/// kept exactly. The literal after `UESCAPE` is kept too: it changes what the
/// preceding `U&"..."` identifier names.
pub fn fingerprint(sql: &str) -> String {
    // What `set_config` does depends on its first argument's value, so text
    // that may call it keeps every literal (a plain substring test: a hit in
    // a comment only makes the key more specific).
    let keep_literals = mentions_set_config(sql);
    let mut out = String::with_capacity(sql.len().min(4096));
    let mut lx = Lexer::new(sql);
    let mut prev: Option<(Kind, &str)> = None;
    loop {
        let t = match lx.next_step() {
            Step::Token(t) => t,
            Step::Unterminated(at) => {
                // Kept verbatim: it begins with a quote or `/*`, which no
                // complete token renders as, so it cannot collide.
                sep(&mut out);
                out.push_str(sql.get(at..).unwrap_or_default());
                break;
            }
            Step::End => break,
        };
        let text = sql.get(t.start..t.end).unwrap_or_default();
        match t.kind {
            Kind::Str | Kind::Number | Kind::Param if keep_literals => {
                sep(&mut out);
                out.push_str(text);
            }
            Kind::Str if matches!(prev, Some((Kind::Word, w)) if w.eq_ignore_ascii_case("uescape")) => {
                sep(&mut out);
                out.push_str(text);
            }
            // `'a'` NEWLINE `'b'` is one constant to PostgreSQL: one `?`.
            // The continuation must be a bare `'...'` (scan.l's quotecontinue).
            Kind::Str
                if t.continues
                    && text.starts_with('\'')
                    && matches!(prev, Some((Kind::Str, p)) if !p.starts_with('$')) => {}
            Kind::Str | Kind::Number | Kind::Param => {
                sep(&mut out);
                out.push('?');
            }
            Kind::Word => {
                sep(&mut out);
                let from = out.len();
                out.push_str(text);
                out[from..].make_ascii_lowercase();
            }
            Kind::Op => {
                sep(&mut out);
                for c in text.chars() {
                    out.push(c);
                    if c == '?' {
                        out.push('?');
                    }
                }
            }
            Kind::QuotedIdent | Kind::Semi | Kind::Punct | Kind::Junk => {
                sep(&mut out);
                out.push_str(text);
            }
        }
        prev = Some((t.kind, text));
    }
    out
}

fn sep(out: &mut String) {
    if !out.is_empty() {
        out.push(' ');
    }
}

/// The snapshot corpus, shared with tests/classification.rs.
#[cfg(test)]
#[path = "../tests/cases/mod.rs"]
mod test_cases;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify;

    use super::test_cases as cases;

    /// The cache's soundness property, checked on the whole snapshot corpus:
    /// swap every literal for other literals (numbers, strings of every
    /// form, parameters, and values that matter elsewhere); whenever the
    /// result still parses and keeps the fingerprint, it must classify the
    /// same as the original.
    #[test]
    fn swapping_literals_never_changes_the_classification() {
        let swaps = [
            "0",
            "1",
            "42.5",
            "$1",
            "''",
            "'x'",
            "'on'",
            "'off'",
            "'default_transaction_read_only'",
            "'role'",
            "'/etc/passwd'",
            "E'\\\\'",
            "$$DROP TABLE t$$",
            "$q$;$q$",
            "B'1'",
        ];
        let mut checked = 0;
        for (_, sqls) in cases::CASES {
            for sql in *sqls {
                let base = classify(sql);
                if base.error.is_some() {
                    continue;
                }
                let fp = fingerprint(sql);
                let mut lx = Lexer::new(sql);
                while let Step::Token(t) = lx.next_step() {
                    if !matches!(t.kind, Kind::Str | Kind::Number | Kind::Param) {
                        continue;
                    }
                    for s in swaps {
                        let swapped = format!("{}{}{}", &sql[..t.start], s, &sql[t.end..]);
                        if fingerprint(&swapped) != fp {
                            continue;
                        }
                        let c = classify(&swapped);
                        if c.error.is_none() {
                            assert_eq!(c, base, "{sql:?} -> {swapped:?}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 500, "only {checked} swaps checked");
    }
}
