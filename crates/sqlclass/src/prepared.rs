//! SQL-level prepared statements: what a `PREPARE` names and prepares,
//! and which prepared statement an `EXECUTE` runs, so the gateway can
//! judge, show and record an `EXECUTE` as the statement it executes.

use pg_query::NodeEnum as N;

use crate::lexer::{Kind, Lexer, Step};

pub(crate) fn only_statement(sql: &str) -> Option<N> {
    let parsed = std::panic::catch_unwind(|| pg_query::parse(sql, 0)).ok()?.ok()?;
    let [stmt] = parsed.protobuf.stmts.as_slice() else {
        return None;
    };
    stmt.stmt.as_ref()?.node.clone()
}

/// `PREPARE name [(types)] AS statement`: the name (as the server folds
/// it) and the statement's own text. `None` for anything else, or for
/// several statements.
pub fn prepared_statement(sql: &str) -> Option<(String, &str)> {
    let Some(N::PrepareStmt(p)) = only_statement(sql) else {
        return None;
    };
    // The text after the first `AS` outside parentheses: the name is an
    // identifier and the types are in parentheses, so that is where the
    // statement starts.
    let mut lx = Lexer::new(sql);
    let mut depth = 0usize;
    while let Step::Token(t) = lx.next_step() {
        let text = sql.get(t.start..t.end).unwrap_or_default();
        match (t.kind, text) {
            (Kind::Punct, "(") => depth += 1,
            (Kind::Punct, ")") => depth = depth.saturating_sub(1),
            (Kind::Word, w) if depth == 0 && w.eq_ignore_ascii_case("as") => {
                let inner = sql.get(t.end..)?.trim();
                let inner = inner.strip_suffix(';').unwrap_or(inner).trim_end();
                return Some((p.name, inner));
            }
            _ => {}
        }
    }
    None
}

/// `EXECUTE name [(params)]`: the name of the prepared statement it runs.
pub fn executed_statement(sql: &str) -> Option<String> {
    match only_statement(sql) {
        Some(N::ExecuteStmt(e)) => Some(e.name),
        _ => None,
    }
}

/// What a `DEALLOCATE` drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deallocated {
    /// One prepared statement, by its name as the server folds it.
    Name(String),
    All,
}

/// `DEALLOCATE [PREPARE] name | ALL`: what it drops. `None` for anything
/// else, or for several statements.
pub fn deallocated_statement(sql: &str) -> Option<Deallocated> {
    match only_statement(sql) {
        Some(N::DeallocateStmt(d)) if d.isall => Some(Deallocated::All),
        Some(N::DeallocateStmt(d)) => Some(Deallocated::Name(d.name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deallocate_names_what_it_drops() {
        assert_eq!(
            deallocated_statement("DEALLOCATE _pg3_0"),
            Some(Deallocated::Name("_pg3_0".to_owned()))
        );
        assert_eq!(
            deallocated_statement("deallocate prepare \"Q\";"),
            Some(Deallocated::Name("Q".to_owned()))
        );
        assert_eq!(
            deallocated_statement("DEALLOCATE Hidden"),
            Some(Deallocated::Name("hidden".to_owned()))
        );
        assert_eq!(deallocated_statement("DEALLOCATE ALL"), Some(Deallocated::All));
        assert_eq!(deallocated_statement("DEALLOCATE a; DEALLOCATE b"), None);
        assert_eq!(deallocated_statement("SELECT 1"), None);
    }

    #[test]
    fn prepare_names_its_statement() {
        assert_eq!(
            prepared_statement("PREPARE Hidden (int, text) AS UPDATE t SET a = $1 WHERE b = $2;"),
            Some(("hidden".to_owned(), "UPDATE t SET a = $1 WHERE b = $2"))
        );
        assert_eq!(
            prepared_statement("/* c */ PREPARE \"Q\" AS SELECT 'as' AS x"),
            Some(("Q".to_owned(), "SELECT 'as' AS x"))
        );
        assert_eq!(
            prepared_statement("PREPARE dumpFunc(pg_catalog.oid) AS SELECT pg_catalog.pg_get_functiondef($1)"),
            Some(("dumpfunc".to_owned(), "SELECT pg_catalog.pg_get_functiondef($1)"))
        );
        assert_eq!(prepared_statement("SELECT 1"), None);
        assert_eq!(prepared_statement("PREPARE a AS SELECT 1; SELECT 2"), None);
    }

    #[test]
    fn execute_names_what_it_runs() {
        assert_eq!(
            executed_statement("EXECUTE dumpFunc('16411')"),
            Some("dumpfunc".to_owned())
        );
        assert_eq!(executed_statement("execute \"Q\""), Some("Q".to_owned()));
        assert_eq!(executed_statement("CREATE TABLE x AS EXECUTE q"), None);
        assert_eq!(executed_statement("SELECT 1"), None);
    }
}
