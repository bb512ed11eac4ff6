//! Schema and migrations, tracked with `PRAGMA user_version`. Hand-written
//! because it is a list of scripts and a counter; a crate would add a version
//! coupling to rusqlite for no gain.

use rusqlite::{Connection, OptionalExtension};

use crate::{Result, StoreError};

/// Each entry upgrades the schema by one version; never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- The audit log. `body` holds the canonical bytes that were hashed; the
-- other columns are copies for search, checked against the body by verify.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,
    time_us    INTEGER NOT NULL,
    type       TEXT NOT NULL,
    task       TEXT,
    session    TEXT,
    connection TEXT,
    subject    TEXT,
    body       BLOB NOT NULL,
    hash       BLOB NOT NULL
) STRICT;
-- No secondary index here: every index on this table is paid for on the
-- hot path of every statement. Search indexes are derived data, kept apart.

-- Append-only: the store itself refuses to change or remove an event.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END;

-- Current state, derived from and committed with the events.
CREATE TABLE tasks (
    id              TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    requester       TEXT NOT NULL,
    connection      TEXT NOT NULL,
    requested_at_us INTEGER NOT NULL,
    deadline_us     INTEGER,
    doc             TEXT NOT NULL
) STRICT;
CREATE INDEX tasks_by_deadline ON tasks (deadline_us) WHERE deadline_us IS NOT NULL;
CREATE INDEX tasks_by_requested ON tasks (requested_at_us);

CREATE TABLE task_secrets (
    task_id        TEXT PRIMARY KEY REFERENCES tasks (id),
    token_sha256   BLOB NOT NULL,
    scram_verifier TEXT NOT NULL
) STRICT;

CREATE TABLE reviews (
    id      TEXT PRIMARY KEY,
    task_id TEXT NOT NULL REFERENCES tasks (id),
    kind    TEXT NOT NULL,
    state   TEXT NOT NULL,
    doc     TEXT NOT NULL
) STRICT;
CREATE INDEX reviews_by_task ON reviews (task_id);
CREATE INDEX reviews_by_state ON reviews (state);
"#,
    // INSERT OR REPLACE would overwrite an event without firing the delete
    // trigger. (A check that only max(seq) + 1 may be inserted cost 20% of
    // the writer's throughput; an insert out of place is named by `audit
    // verify` anyway.)
    r#"
CREATE TRIGGER events_append_only BEFORE INSERT ON events
WHEN EXISTS (SELECT 1 FROM events WHERE seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'audit events are append-only: an event cannot be replaced'); END;
"#,
];

pub(super) fn current_version() -> u32 {
    u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX)
}

pub(super) fn version(conn: &Connection) -> Result<u32> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let from = version(conn)?;
    if from > current_version() {
        return Err(StoreError::Incompatible(format!(
            "schema version {from} is newer than this build's {}",
            current_version()
        )));
    }
    let tx = conn.transaction()?;
    for (i, script) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.execute_batch(script)?;
        tx.pragma_update(None, "user_version", i + 1)?;
    }
    let has_chain: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key = 'chain_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if has_chain.is_none() {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes)
            .map_err(|e| StoreError::Corrupt(format!("no randomness for a chain id: {e}")))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('chain_id', ?1)",
            [format!("node-{}", hex::encode(bytes))],
        )?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn chain_id(conn: &Connection) -> Result<String> {
    conn.query_row("SELECT value FROM meta WHERE key = 'chain_id'", [], |r| {
        r.get(0)
    })
    .optional()?
    .ok_or_else(|| StoreError::Corrupt("the store has no chain id".into()))
}
