//! Matching a rule's `command` patterns against the statement kinds a
//! classification says run (`Classification::commands`).
//!
//! A pattern is one or more words, compared without regard to case or
//! spacing: `DELETE` matches `DELETE`; `DROP` matches every `DROP ...`;
//! `DROP TABLE` only that; `TRUNCATE` matches `TRUNCATE TABLE`. A pattern
//! matches a command when its words are the command's first words.

/// The first word of every command the classifier names: a pattern that
/// starts with another word could never match, so the config refuses it.
const VERBS: &[&str] = &[
    "ALTER",
    "ANALYZE",
    "BEGIN",
    "CALL",
    "CHECKPOINT",
    "CLOSE",
    "CLUSTER",
    "COMMENT",
    "COMMIT",
    "COPY",
    "CREATE",
    "DEALLOCATE",
    "DECLARE",
    "DELETE",
    "DISCARD",
    "DO",
    "DROP",
    "EMPTY",
    "EXECUTE",
    "EXPLAIN",
    "FETCH",
    "FUNCTION",
    "GRANT",
    "IMPORT",
    "INSERT",
    "LISTEN",
    "LOAD",
    "LOCK",
    "MERGE",
    "MOVE",
    "NOTIFY",
    "PREPARE",
    "REASSIGN",
    "REFRESH",
    "REINDEX",
    "RELEASE",
    "RESET",
    "REVOKE",
    "ROLLBACK",
    "SAVEPOINT",
    "SECURITY",
    "SELECT",
    "SET",
    "SHOW",
    "START",
    "TRUNCATE",
    "UNKNOWN",
    "UNLISTEN",
    "UPDATE",
    "VACUUM",
    "VALUES",
];

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split_ascii_whitespace()
}

/// Does `pattern` (a rule's `command` entry) match `command` (one of
/// `Classification::commands`)?
pub fn command_matches(pattern: &str, command: &str) -> bool {
    let mut have = words(command);
    let mut any = false;
    for want in words(pattern) {
        any = true;
        if !have.next().is_some_and(|w| w.eq_ignore_ascii_case(want)) {
            return false;
        }
    }
    any
}

/// Whether a `command` pattern can match anything the classifier names.
pub fn is_known_command(pattern: &str) -> bool {
    words(pattern)
        .next()
        .is_some_and(|first| VERBS.iter().any(|v| v.eq_ignore_ascii_case(first)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify;

    fn runs(sql: &str) -> Vec<String> {
        classify(sql).commands
    }

    #[test]
    fn patterns_match_leading_words() {
        assert!(command_matches("DELETE", "DELETE"));
        assert!(command_matches("truncate", "TRUNCATE TABLE"));
        assert!(command_matches("DROP", "DROP TABLE"));
        assert!(command_matches("drop  table", "DROP TABLE"));
        assert!(!command_matches("DROP TABLE", "DROP VIEW"));
        assert!(!command_matches("DROP TABLE", "DROP"));
        assert!(!command_matches("", "DROP"));
        assert!(!command_matches("DEL", "DELETE"));
    }

    #[test]
    fn nested_statements_run_too() {
        assert_eq!(
            runs("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"),
            ["DELETE", "SELECT"]
        );
        assert_eq!(runs("COPY (DELETE FROM t RETURNING *) TO STDOUT"), ["COPY", "DELETE"]);
        assert_eq!(runs("EXPLAIN ANALYZE DELETE FROM t"), ["DELETE", "EXPLAIN ANALYZE"]);
        assert_eq!(runs("EXPLAIN DELETE FROM t"), ["EXPLAIN"]);
        assert_eq!(runs("PREPARE p AS DELETE FROM t"), ["DELETE", "PREPARE"]);
        assert_eq!(runs(";TRUNCATE orders"), ["TRUNCATE TABLE"]);
        assert_eq!(runs("SELECT 1; DROP TABLE t"), ["DROP TABLE", "SELECT"]);
        assert_eq!(runs(""), ["EMPTY"]);
        assert_eq!(runs("SELEC 1"), ["UNKNOWN"]);
    }

    #[test]
    fn every_command_the_classifier_names_has_a_known_verb() {
        for sql in [
            "TRUNCATE t",
            "DROP TABLE t",
            "CREATE INDEX i ON t (a)",
            "SELECT 1",
            "BEGIN",
            "SET x = 1",
            "IMPORT FOREIGN SCHEMA s FROM SERVER f INTO public",
            "SECURITY LABEL ON TABLE t IS 'x'",
        ] {
            for c in runs(sql) {
                assert!(is_known_command(&c), "{c}");
            }
        }
        assert!(!is_known_command("TRUNCAT"));
        assert!(!is_known_command(""));
    }
}
