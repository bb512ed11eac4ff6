//! Classifies PostgreSQL statement text for Taskgate, the gateway that
//! records and polices every SQL statement an AI agent sends to PostgreSQL.
//!
//! Statements are parsed by PostgreSQL's own grammar (`pg_query` 18.1) and the
//! whole parse tree is walked, so a table or a function call hidden anywhere
//! (a sub-select in VALUES, a writable CTE, RETURNING) is seen. No I/O, no
//! async, no logging.
//!
//! # Classes
//!
//! Modelled on pgAudit's classes. When a statement contains several things
//! (or a string holds several statements) the strictest wins, in the order
//! **unknown > dcl > ddl > write > read > tcl > utility**.
//!
//! | class | statements |
//! |---|---|
//! | `read` | SELECT (no INTO, no data-modifying CTE, no FOR UPDATE/SHARE), VALUES, TABLE t, COPY ... TO STDOUT, FETCH / MOVE / CLOSE, DECLARE CURSOR of a read query, EXPLAIN without ANALYZE (of anything: its tables count as read, nothing in it runs) |
//! | `write` | INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY ... FROM STDIN, SELECT ... FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE, writable CTEs, COPY (DELETE ... RETURNING) TO STDOUT, DECLARE ... FOR UPDATE, LOCK TABLE (but IN ACCESS SHARE MODE, the lock any SELECT takes, is read), REFRESH MATERIALIZED VIEW; a call of a built-in function that writes even in a read-only transaction (large objects: `lo_create`, `lo_from_bytea`, `lo_put`, `lo_unlink`, ...; `pg_stat_reset*`, replication slots and origins, `pg_notify`, `pg_logical_emit_message`); any statement with *opaque* code (below) |
//! | `ddl` | CREATE / ALTER / DROP of tables, indexes, views, sequences, schemas, functions, types, extensions, triggers, policies, rules, domains, databases, tablespaces, servers, publications...; COMMENT ON, SECURITY LABEL; SELECT INTO and CREATE TABLE AS / MATERIALIZED VIEW (new table written, sources read); VACUUM, CLUSTER, REINDEX |
//! | `dcl` | GRANT, REVOKE, CREATE / ALTER / DROP ROLE / USER / GROUP (and renaming one), ALTER DEFAULT PRIVILEGES, REASSIGN OWNED, DROP OWNED, SET / RESET ROLE, SET / RESET SESSION AUTHORIZATION, ALTER SYSTEM, LOAD, CHECKPOINT, COPY to/from a server file or PROGRAM, SET / RESET of `application_name` (it names the task in the database's logs), `set_config` of it, of `role` or `session_authorization`, or of a name that is not a literal; any statement calling `pg_terminate_backend`, `pg_cancel_backend`, `pg_reload_conf`, `lo_import`, `lo_export`, `dblink*`, or the server-file / server-control functions `pg_read_file`, `pg_read_binary_file`, `pg_ls_dir`, `pg_stat_file`, `pg_file_write`, `pg_promote`, `pg_rotate_logfile`, `pg_switch_wal`, `pg_create_restore_point` (matched on the last name part, any schema) |
//! | `tcl` | BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE, ROLLBACK TO, SET TRANSACTION, PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED, SET CONSTRAINTS |
//! | `utility` | empty text (nothing but comments or semicolons: `EMPTY`, nothing runs), SET / RESET of other settings (incl. SET SESSION CHARACTERISTICS), SHOW, DISCARD, LISTEN, UNLISTEN, NOTIFY, ANALYZE, DEALLOCATE, PREPARE name AS stmt (the inner statement's class instead when stricter, with its tables) |
//! | `unknown` | DO, CALL (code the gateway cannot see into), EXECUTE of a prepared statement, text the parser refuses, any statement type not listed here (never defaults to read) |
//!
//! # Opaque code
//!
//! What the gateway cannot read is named in [`Classification::opaque`]: a
//! call of a function outside PostgreSQL's catalog (`touch_customers()`,
//! `public.lower()`: any schema but `pg_catalog`), a catalog function that
//! runs SQL handed to it as text or reads a relation named by a value
//! (`query_to_xml`, `table_to_xml`, `cursor_to_xml`, `ts_stat`, ...), a DO
//! block, a procedure call, SQL-level EXECUTE. Such a statement's class is at
//! least `write` (the code may write anything the session can), and its
//! tables are only those the text names. The catalog's names are listed in
//! `builtins.txt`.
//!
//! EXPLAIN ANALYZE runs its statement, so it takes that statement's class.
//! Any ANALYZE option counts, whatever its value: `(ANALYZE 0)` and
//! `(ANALYZE 1)` differ only in a literal (see *Literals* below).
//!
//! # `lifts_read_only`
//!
//! True when the statement could take a read-only session out of read-only:
//! SET / RESET of `transaction_read_only` or `default_transaction_read_only`
//! (any value, any case), BEGIN / START TRANSACTION / SET TRANSACTION / SET SESSION CHARACTERISTICS
//! ... READ WRITE, SET / RESET ROLE and SESSION AUTHORIZATION, ALTER ROLE /
//! DATABASE / SYSTEM SET of those settings, and `set_config()` of them (or
//! of a name that is not a literal). RESET ALL and DISCARD ALL do not lift:
//! they return settings to the session's starting values, and the gateway
//! starts read-only sessions with the setting in the startup packet.
//!
//! # Tables
//!
//! `tables_read` / `tables_written` list relations as named in the SQL,
//! `name` or `schema.name` (the parser has already folded unquoted names to
//! lower case; a part holding `.` or `"` is shown quoted so `"a.b"` never
//! reads as schema `a`). CTE names are not tables (scoped as PostgreSQL
//! scopes them). Written means the statement's target: the INSERT / UPDATE /
//! DELETE / MERGE / COPY FROM / TRUNCATE / LOCK target, a SELECT INTO or
//! CREATE TABLE AS table, the object of CREATE / ALTER / DROP / COMMENT /
//! GRANT on a relation, VACUUM / CLUSTER / REINDEX targets, and the tables
//! row-locked by FOR UPDATE/SHARE. Everything else named is read. A table
//! can be in both lists (`UPDATE t ... FROM t`).
//!
//! # Literals and the cache
//!
//! [`Classifier`] caches by [`fingerprint`], which replaces literals with
//! `?`. That is only sound because no classification depends on a literal's
//! value, with one exception: what `set_config` does depends on its first
//! argument, so text mentioning `set_config` keeps its literals in the
//! fingerprint (and is cached per distinct text); any
//! SET of the read-only settings lifts, whatever the value; any EXPLAIN
//! ANALYZE option executes; COPY STDIN/STDOUT vs a file name differ in a
//! keyword; the literal after `UESCAPE` (which changes what a `U&"..."`
//! identifier names) is kept in the fingerprint; unquoted names fold only
//! ASCII, as PostgreSQL does. Unparsable text is never cached.

#![forbid(unsafe_code)]

mod app_name;
mod builtins;
mod cache;
mod classify;
mod commands;
mod ddl;
mod facts;
mod fingerprint;
mod lexer;
mod names;
mod prepared;
mod reading;
mod split;
mod statement;
mod walk;

pub use app_name::{ApplicationName, application_name_set, set_application_name};
pub use cache::{Classifier, MAX_CACHED_LEN};
pub use classify::classify;
pub use commands::{command_matches, is_known_command};
pub use facts::{name_parts, render_name};
pub use fingerprint::fingerprint;
pub use prepared::{Deallocated, deallocated_statement, executed_statement, prepared_statement};
pub use reading::{Strings, as_standard, depends_on_standard_strings, without_comments};
pub use split::{split, split_as};

/// Statement class, after pgAudit's classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Read,
    Write,
    Ddl,
    Dcl,
    Tcl,
    Utility,
    Unknown,
}

impl Class {
    /// The lowercase name, as serialized: "read", "write", ...
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Ddl => "ddl",
            Class::Dcl => "dcl",
            Class::Tcl => "tcl",
            Class::Utility => "utility",
            Class::Unknown => "unknown",
        }
    }

    /// Position in the strictness order (higher is stricter):
    /// utility < tcl < read < write < ddl < dcl < unknown.
    pub fn strictness(self) -> u8 {
        match self {
            Class::Utility => 0,
            Class::Tcl => 1,
            Class::Read => 2,
            Class::Write => 3,
            Class::Ddl => 4,
            Class::Dcl => 5,
            Class::Unknown => 6,
        }
    }

    /// The stricter of two classes.
    pub fn stricter(self, other: Class) -> Class {
        if other.strictness() > self.strictness() {
            other
        } else {
            self
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one statement (or a string of several, combined) does.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Classification {
    pub class: Class,
    /// What kind of statement, upper case as a DBA says it: "SELECT",
    /// "INSERT", "ALTER TABLE", "CREATE INDEX", "BEGIN", "SET", "DO", "COPY",
    /// ...; "UNKNOWN" when unparsable, "EMPTY" for no statement at all;
    /// several statements are joined with "; ".
    pub command: String,
    /// Tables (and views) read, as written in the SQL, sorted, deduplicated.
    pub tables_read: Vec<String>,
    /// Tables (and views) written, as written in the SQL, sorted, deduplicated.
    pub tables_written: Vec<String>,
    /// True when the statement would lift a read-only session (see crate docs).
    pub lifts_read_only: bool,
    /// What runs code the gateway cannot read, each named ("function
    /// public.touch_customers()", "dynamic SQL in query_to_xml()", "DO
    /// block"): its tables are not all in `tables_read` / `tables_written`,
    /// and the class is at least `write`. Sorted, deduplicated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub opaque: Vec<String>,
    /// Every kind of statement that runs, nested ones included, sorted:
    /// the top-level command and each INSERT / UPDATE / DELETE / MERGE
    /// inside it (a writable CTE, `COPY (DELETE ... RETURNING) TO`), the
    /// statement under EXPLAIN ANALYZE or PREPARE. What a `command` rule
    /// matches (see [`command_matches`]).
    #[serde(skip)]
    pub commands: Vec<String>,
    /// Parse error message when class is Unknown because the parser refused it.
    pub error: Option<String>,
    /// How many statements the text holds (0 for empty text; 1 when
    /// unparsable). The extended protocol takes one at a time.
    #[serde(skip)]
    pub statements: usize,
}
