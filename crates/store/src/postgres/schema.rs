//! The shared store's schema, in its own PostgreSQL schema (`taskgate`),
//! with versioned migrations. Every node runs them at start under one
//! advisory lock, so nodes starting together migrate once.

use postgres::GenericClient;

use crate::{Result, StoreError};

/// The advisory lock every node takes to migrate (an arbitrary constant:
/// "taskgate" in ASCII, folded to fit).
const MIGRATION_LOCK: i64 = 0x7461_736b_6761_7465;

/// Each entry upgrades the schema by one version; never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE SCHEMA IF NOT EXISTS taskgate;

-- The one chain every node appends to. Each writing transaction locks this
-- row first (SELECT ... FOR UPDATE), so the fleet's events form one order
-- and the domain steps see every earlier change (see shared.rs).
CREATE TABLE taskgate.chain (
    id       integer PRIMARY KEY CHECK (id = 1),
    chain_id text NOT NULL,
    seq      bigint NOT NULL,
    hash     bytea NOT NULL
);

-- The audit log. `body` holds the canonical bytes that were hashed; the
-- other columns are copies for reading, checked against the body by verify.
CREATE TABLE taskgate.events (
    seq        bigint PRIMARY KEY,
    time_us    bigint NOT NULL,
    type       text NOT NULL,
    task       text,
    session    text,
    connection text,
    subject    text,
    body       bytea NOT NULL,
    hash       bytea NOT NULL
);
CREATE INDEX events_checkpoints ON taskgate.events (seq) WHERE type = 'checkpoint';
CREATE INDEX events_by_task ON taskgate.events (task, seq) WHERE task IS NOT NULL;

-- Append-only: the store itself refuses to change or remove an event.
CREATE FUNCTION taskgate.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER events_no_change BEFORE UPDATE OR DELETE ON taskgate.events
    FOR EACH ROW EXECUTE FUNCTION taskgate.append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON taskgate.events
    FOR EACH STATEMENT EXECUTE FUNCTION taskgate.append_only();

-- Current state, derived from and committed with the events.
CREATE TABLE taskgate.tasks (
    id              text PRIMARY KEY,
    state           text NOT NULL,
    requester       text NOT NULL,
    connection      text NOT NULL,
    requested_at_us bigint NOT NULL,
    deadline_us     bigint,
    doc             text NOT NULL
);
CREATE INDEX tasks_by_deadline ON taskgate.tasks (deadline_us) WHERE deadline_us IS NOT NULL;
CREATE INDEX tasks_by_requested ON taskgate.tasks (requested_at_us);

CREATE TABLE taskgate.task_secrets (
    task_id        text PRIMARY KEY REFERENCES taskgate.tasks (id),
    token_sha256   bytea NOT NULL,
    scram_verifier text NOT NULL
);

CREATE TABLE taskgate.reviews (
    ord     bigserial UNIQUE,
    id      text PRIMARY KEY,
    task_id text NOT NULL REFERENCES taskgate.tasks (id),
    kind    text NOT NULL,
    state   text NOT NULL,
    doc     text NOT NULL
);
CREATE INDEX reviews_by_task ON taskgate.reviews (task_id);
CREATE INDEX reviews_by_state ON taskgate.reviews (state);
"#,
    // The fleet's shared bookkeeping: export sinks' progress (moved only
    // by the node holding the sink's lease), and the data-plane sessions
    // open on each node, for a task's fleet-wide connection limit.
    r#"
CREATE TABLE taskgate.sinks (
    name             text PRIMARY KEY,
    cursor           bigint NOT NULL DEFAULT 0,
    delivered        bigint NOT NULL DEFAULT 0,
    parked           bigint NOT NULL DEFAULT 0,
    last_delivery_us bigint,
    last_error       text,
    last_error_us    bigint
);
CREATE TABLE taskgate.sink_parked (
    sink   text NOT NULL,
    seq    bigint NOT NULL,
    reason text NOT NULL,
    at_us  bigint NOT NULL,
    PRIMARY KEY (sink, seq)
);
CREATE TABLE taskgate.sink_redeliver (
    sink text NOT NULL,
    seq  bigint NOT NULL,
    PRIMARY KEY (sink, seq)
);
CREATE TABLE taskgate.nodes (
    node    text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);
CREATE TABLE taskgate.sessions (
    id        text PRIMARY KEY,
    node      text NOT NULL,
    task      text NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_by_task ON taskgate.sessions (task);
"#,
    // The web console's sign-ins, shared so any node serves a browser;
    // keys are stored as SHA-256 of the cookie's value.
    r#"
CREATE TABLE taskgate.console_sessions (
    key        bytea PRIMARY KEY,
    identity   text NOT NULL,
    csrf       text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE TABLE taskgate.console_logins (
    key        bytea PRIMARY KEY,
    state      text NOT NULL,
    verifier   text NOT NULL,
    started_at timestamptz NOT NULL
);
"#,
];

pub(super) fn current_version() -> i32 {
    i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX)
}

/// The schema's version; 0 when nothing is there yet.
pub(super) fn version(client: &mut impl GenericClient) -> Result<i32> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('taskgate.schema_version') IS NOT NULL",
            &[],
        )?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_opt("SELECT version FROM taskgate.schema_version", &[])?
        .map_or(0, |r| r.get(0)))
}

/// Creates or upgrades the schema, and the chain's row with a new chain id.
pub(super) fn migrate(client: &mut postgres::Client) -> Result<()> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    let from = version(&mut tx)?;
    if from > current_version() {
        return Err(StoreError::Incompatible(format!(
            "the PostgreSQL store has schema version {from}, newer than this build's {}",
            current_version()
        )));
    }
    if from == 0 {
        tx.batch_execute(
            "CREATE SCHEMA IF NOT EXISTS taskgate;
             CREATE TABLE taskgate.schema_version (version integer NOT NULL);
             INSERT INTO taskgate.schema_version VALUES (0);",
        )?;
    }
    for (i, script) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.batch_execute(script)?;
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute(
            "UPDATE taskgate.schema_version SET version = $1",
            &[&version],
        )?;
    }
    let has_chain = tx.query_opt("SELECT 1 FROM taskgate.chain", &[])?.is_some();
    if !has_chain {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes)
            .map_err(|e| StoreError::Corrupt(format!("no randomness for a chain id: {e}")))?;
        let chain_id = format!("fleet-{}", hex::encode(bytes));
        tx.execute(
            "INSERT INTO taskgate.chain (id, chain_id, seq, hash) VALUES (1, $1, 0, $2)",
            &[&chain_id, &taskgate_audit::GENESIS_HASH.as_slice()],
        )?;
    }
    tx.commit()?;
    Ok(())
}
