//! The audit search index: the auditor's questions (who, which task, which
//! table, which class, when) answered from derived tables, caught up from
//! the chain in sequence order.
//!
//! The index lives in its own SQLite file (see [`AuditIndex::path_for`]), is
//! written by whoever calls [`AuditIndex::catch_up`] (the gateway's indexer
//! thread, or a search before it answers), and is checked against the chain
//! each time: if the store was replaced or its history no longer matches the
//! last indexed record, the index is dropped and rebuilt.

mod check;
mod schema;
mod search;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use taskgate_audit::{EventFacts, EventType, table_search_names};

use crate::{Result, StoreError};

pub use check::IndexCheck;
pub use search::{EventQuery, MAX_PAGE, SearchHit, SearchPage, TaskSummary};

/// Events indexed per transaction while catching up.
const CATCH_UP_BATCH: i64 = 20_000;

/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 4;

/// The search index of one store.
pub struct AuditIndex {
    store: PathBuf,
    path: PathBuf,
    /// The index (read-write) and the store (read-only), for catching up.
    /// One catch-up runs at a time.
    writer: Mutex<Option<(Connection, Connection)>>,
    readers: Mutex<Vec<Connection>>,
}

/// Where the index stands after a catch-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexState {
    pub through_seq: u64,
    /// Events indexed by this call.
    pub indexed: u64,
    /// Whether the index had to be dropped and rebuilt.
    pub rebuilt: bool,
}

/// The index's bookkeeping, in its `meta` table.
#[derive(Clone, Debug, Default)]
struct Meta {
    chain: Option<String>,
    through_seq: i64,
    through_hash: Option<Vec<u8>>,
    /// Running maximum of event times so far.
    tmax_us: i64,
    /// The furthest an event's time fell behind the running maximum: a time
    /// window's upper bound is widened by it when mapped to sequence numbers.
    max_lag_us: i64,
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt(detail)
}

/// Events that decide what a task may do: kept apart for quick lookup.
fn decides(event_type: EventType) -> bool {
    matches!(
        event_type,
        EventType::TaskRequested
            | EventType::TaskApproved
            | EventType::TaskDenied
            | EventType::ReviewApproved
            | EventType::ReviewDenied
    )
}

/// Event types as small integers in the index; the list only ever grows at
/// its end (a change bumps [`schema::VERSION`]).
pub(crate) fn type_code(event_type: EventType) -> i64 {
    EventType::ALL
        .iter()
        .position(|t| *t == event_type)
        .and_then(|p| i64::try_from(p).ok())
        .unwrap_or(-1)
}

impl AuditIndex {
    /// The index file of the store at `store`: `taskgate.db` → `taskgate.index.db`.
    pub fn path_for(store: &Path) -> PathBuf {
        store.with_extension("index.db")
    }

    /// Opens (creating if needed) the index of the store at `store`. The
    /// store must exist; nothing is indexed until [`AuditIndex::catch_up`].
    pub fn open(store: &Path) -> Result<Self> {
        if !store.exists() {
            return Err(StoreError::Incompatible(format!(
                "{} does not exist",
                store.display()
            )));
        }
        let index = Self {
            store: store.to_path_buf(),
            path: Self::path_for(store),
            writer: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
        };
        // Create the file and its tables now, so readers can open it.
        let conn = Connection::open(&index.path)?;
        conn.busy_timeout(super::sqlite::BUSY_TIMEOUT)?;
        schema::prepare(&conn)?;
        drop(conn);
        Ok(index)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Indexes every event committed since the last call. Safe to call from
    /// any thread; concurrent calls wait for each other.
    pub fn catch_up(&self) -> Result<IndexState> {
        self.catch_up_at_most(u64::MAX)
    }

    /// Like [`AuditIndex::catch_up`], but indexes at most about `limit`
    /// events (whole batches), so a search under a burst answers from what
    /// is indexed instead of waiting for all of it.
    pub fn catch_up_at_most(&self, limit: u64) -> Result<IndexState> {
        let mut guard = self
            .writer
            .lock()
            .map_err(|_| corrupt("the index writer lock is poisoned".into()))?;
        if guard.is_none() {
            let index = Connection::open(&self.path)?;
            index.busy_timeout(super::sqlite::BUSY_TIMEOUT)?;
            schema::prepare(&index)?;
            let store = super::sqlite::open_reader(&self.store, true)?;
            *guard = Some((index, store));
        }
        let Some((index, store)) = guard.as_mut() else {
            return Err(corrupt("the index writer is missing".into()));
        };
        catch_up(index, store, limit)
    }

    /// Drops the index and builds it again from the whole chain.
    pub fn rebuild(&self) -> Result<IndexState> {
        {
            let conn = Connection::open(&self.path)?;
            conn.busy_timeout(super::sqlite::BUSY_TIMEOUT)?;
            conn.execute_batch(schema::DROP)?;
            schema::prepare(&conn)?;
        }
        let state = self.catch_up()?;
        Ok(IndexState {
            rebuilt: true,
            ..state
        })
    }

    /// Runs `work` on a read connection to the index with the store attached
    /// as `store`, inside one read transaction (one snapshot of both).
    fn read<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&self.path, flags)?;
                conn.busy_timeout(super::sqlite::BUSY_TIMEOUT)?;
                conn.pragma_update(None, "cache_size", -schema::CACHE_KIB)?;
                let store = self.store.to_string_lossy();
                conn.execute("ATTACH DATABASE ?1 AS store", [store.as_ref()])?;
                conn
            }
        };
        conn.execute_batch("BEGIN")?;
        let result = work(&conn);
        let end = conn.execute_batch("COMMIT");
        if end.is_ok()
            && let Ok(mut idle) = self.readers.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(conn);
        }
        let value = result?;
        end?;
        Ok(value)
    }
}

fn read_meta(index: &Connection) -> Result<(i64, Meta)> {
    let get = |key: &str| -> Result<Option<rusqlite::types::Value>> {
        Ok(index
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    };
    use rusqlite::types::Value as V;
    let int = |v: Option<V>| match v {
        Some(V::Integer(i)) => i,
        _ => 0,
    };
    let version = int(get("version")?);
    let meta = Meta {
        chain: match get("chain")? {
            Some(V::Text(t)) => Some(t),
            _ => None,
        },
        through_seq: int(get("through_seq")?),
        through_hash: match get("through_hash")? {
            Some(V::Blob(b)) => Some(b),
            _ => None,
        },
        tmax_us: int(get("tmax_us")?),
        max_lag_us: int(get("max_lag_us")?),
    };
    Ok((version, meta))
}

fn write_meta(index: &Connection, meta: &Meta) -> Result<()> {
    let mut put =
        index.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
    put.execute(params!["version", schema::VERSION])?;
    put.execute(params!["chain", meta.chain])?;
    put.execute(params!["through_seq", meta.through_seq])?;
    put.execute(params!["through_hash", meta.through_hash])?;
    put.execute(params!["tmax_us", meta.tmax_us])?;
    put.execute(params!["max_lag_us", meta.max_lag_us])?;
    Ok(())
}

/// Whether the index still describes this store's chain: same chain id,
/// same schema, and the last indexed record unchanged.
fn still_valid(store: &Connection, version: i64, meta: &Meta, chain: &str) -> Result<bool> {
    if meta.through_seq == 0 {
        return Ok(version == schema::VERSION || version == 0);
    }
    if version != schema::VERSION || meta.chain.as_deref() != Some(chain) {
        return Ok(false);
    }
    let hash: Option<Vec<u8>> = store
        .prepare_cached("SELECT hash FROM events WHERE seq = ?1")?
        .query_row([meta.through_seq], |r| r.get(0))
        .optional()?;
    Ok(hash.is_some() && hash == meta.through_hash)
}

fn catch_up(index: &mut Connection, store: &Connection, limit: u64) -> Result<IndexState> {
    let chain: String = store
        .prepare_cached("SELECT value FROM meta WHERE key = 'chain_id'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .ok_or_else(|| corrupt("the store has no chain id".into()))?;
    let (version, mut meta) = read_meta(index)?;
    let rebuilt = !still_valid(store, version, &meta, &chain)?;
    if rebuilt {
        tracing::warn!(
            index = meta.through_seq,
            "the audit index no longer matches the store's chain; rebuilding it"
        );
        index.execute_batch(schema::DROP)?;
        schema::prepare(index)?;
        meta = Meta::default();
    }
    meta.chain = Some(chain);
    let mut indexed = 0u64;
    let mut next = store.prepare_cached(
        "SELECT seq, body, hash FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    loop {
        let tx = index.transaction()?;
        let mut batch = 0i64;
        {
            let mut rows = next.query(params![meta.through_seq, CATCH_UP_BATCH])?;
            let mut add_event = tx.prepare_cached(
                "INSERT INTO ev (seq, time_us, tmax_us, type, subject, kind, task, session,
                                 connection, command, class)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut add_task_event =
                tx.prepare_cached("INSERT INTO task_event (task, type, seq) VALUES (?1, ?2, ?3)")?;
            let mut add_table = tx.prepare_cached(
                "INSERT INTO ev_table (name, seq, written, class) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name, seq) DO UPDATE SET written = max(written, excluded.written)",
            )?;
            while let Some(row) = rows.next()? {
                let seq: i64 = row.get(0)?;
                let body: Vec<u8> = row.get(1)?;
                let facts = EventFacts::from_body(&body).map_err(|e| {
                    corrupt(format!(
                        "record {seq} cannot be indexed ({e}); run `taskgate audit verify`"
                    ))
                })?;
                if i64::try_from(facts.seq).ok() != Some(seq) {
                    return Err(corrupt(format!(
                        "record {seq} holds the body of record {}; run `taskgate audit verify`",
                        facts.seq
                    )));
                }
                let time = facts.time.as_micros();
                meta.tmax_us = meta.tmax_us.max(time);
                meta.max_lag_us = meta.max_lag_us.max(meta.tmax_us - time);
                add_event.execute(params![
                    seq,
                    time,
                    meta.tmax_us,
                    type_code(facts.event_type),
                    facts.subject,
                    facts.kind.map(|k| k.as_str()),
                    facts.task,
                    facts.session,
                    facts.connection,
                    facts.command.and_then(|c| i64::try_from(c).ok()),
                    facts.class,
                ])?;
                if let Some(task) = facts.task.as_ref().filter(|_| decides(facts.event_type)) {
                    add_task_event.execute(params![task, type_code(facts.event_type), seq])?;
                }
                for table in &facts.tables {
                    for name in table_search_names(&table.name) {
                        add_table.execute(params![name, seq, table.written, facts.class])?;
                    }
                }
                meta.through_seq = seq;
                meta.through_hash = Some(row.get(2)?);
                batch += 1;
            }
        }
        write_meta(&tx, &meta)?;
        tx.commit()?;
        indexed += u64::try_from(batch).unwrap_or(0);
        if batch < CATCH_UP_BATCH || indexed >= limit {
            break;
        }
    }
    Ok(IndexState {
        through_seq: u64::try_from(meta.through_seq).unwrap_or(0),
        indexed,
        rebuilt,
    })
}

#[cfg(test)]
mod tests;
