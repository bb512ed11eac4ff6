//! The search index's tables: derived data, kept in a file of its own beside
//! the store so that building it never takes the store's write lock (which
//! every recorded statement waits on). Deleting the file loses nothing: the
//! next catch-up rebuilds it from the chain.

use rusqlite::Connection;

use crate::Result;

/// Bumped whenever the index's shape or the facts it holds change; an index
/// of another version is dropped and rebuilt.
pub(super) const VERSION: i64 = 4;

/// Page cache of an index connection.
pub(super) const CACHE_KIB: i64 = 64 * 1024;

/// The tables and indexes; `@COMPLETED@` stands for `command.completed`'s
/// type code (see [`create_sql`]).
const CREATE: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value ANY
) STRICT;

-- One row per event. `tmax_us` is the running maximum of event times, so it
-- never decreases with `seq`: a time window maps to a range of sequence
-- numbers (found by bisecting on `seq`, so it needs no index of its own),
-- and every other index can be keyed by (value, seq).
--
-- Half the rows are `command.completed`, which search leaves out unless
-- asked and which are found through their task (a story) and their command
-- (a statement's outcome): the other indexes leave them out, which saves
-- four B-tree inserts per statement. A query that must use one of those
-- indexes says `type != @COMPLETED@`, literally, so the planner may.
CREATE TABLE IF NOT EXISTS ev (
    seq        INTEGER PRIMARY KEY,
    time_us    INTEGER NOT NULL,
    tmax_us    INTEGER NOT NULL,
    type       INTEGER NOT NULL,
    subject    TEXT,
    kind       TEXT,
    task       TEXT,
    session    TEXT,
    connection TEXT,
    command    INTEGER,
    class      TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS ev_by_type ON ev (type, seq) WHERE type != @COMPLETED@;
CREATE INDEX IF NOT EXISTS ev_by_subject ON ev (subject, seq)
    WHERE subject IS NOT NULL AND type != @COMPLETED@;
CREATE INDEX IF NOT EXISTS ev_by_task ON ev (task, seq) WHERE task IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_by_connection ON ev (connection, seq)
    WHERE connection IS NOT NULL AND type != @COMPLETED@;
CREATE INDEX IF NOT EXISTS ev_by_class ON ev (class, seq) WHERE class IS NOT NULL;
-- A started command's outcome.
CREATE INDEX IF NOT EXISTS ev_by_command ON ev (session, command) WHERE type = @COMPLETED@;

-- Every table a statement read or wrote, under each name search finds it by.
CREATE TABLE IF NOT EXISTS ev_table (
    name    TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    written INTEGER NOT NULL,
    class   TEXT,
    PRIMARY KEY (name, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ev_table_by_class ON ev_table (name, class, seq);

-- A task's own decisions (task.* and review.* events), so its request and
-- approvals are found without walking its thousands of commands.
CREATE TABLE IF NOT EXISTS task_event (
    task TEXT NOT NULL,
    type INTEGER NOT NULL,
    seq  INTEGER NOT NULL,
    PRIMARY KEY (task, type, seq)
) STRICT, WITHOUT ROWID;
"#;

pub(super) const DROP: &str = r#"
DROP TABLE IF EXISTS task_event;
DROP TABLE IF EXISTS ev_table;
DROP TABLE IF EXISTS ev;
DROP TABLE IF EXISTS meta;
"#;

pub(super) fn prepare(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Derived data: a crash loses at most what the next catch-up redoes.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Index inserts land all over their B-trees; SQLite's default 2 MiB
    // page cache made catching up spill and re-read pages constantly.
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.execute_batch(&create_sql())?;
    Ok(())
}

/// [`CREATE`] with `command.completed`'s type code in place.
fn create_sql() -> String {
    CREATE.replace("@COMPLETED@", &completed().to_string())
}

/// `command.completed`'s type code.
pub(super) fn completed() -> i64 {
    super::type_code(taskgate_audit::EventType::CommandCompleted)
}
