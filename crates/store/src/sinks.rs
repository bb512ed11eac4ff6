//! Export sinks' progress: a durable cursor per sink (the last event it has
//! acknowledged, or skipped by its filter), the events it parked, and its
//! last error. Kept in a small SQLite file of its own beside the store
//! (`taskgate.sinks.db`), so moving a cursor never takes the store's write
//! lock that every recorded statement waits on.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use taskgate_audit::Timestamp;

use crate::{Result, StoreError};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS sink (
    name             TEXT PRIMARY KEY,
    cursor           INTEGER NOT NULL DEFAULT 0,
    delivered        INTEGER NOT NULL DEFAULT 0,
    parked           INTEGER NOT NULL DEFAULT 0,
    last_delivery_us INTEGER,
    last_error       TEXT,
    last_error_us    INTEGER
) STRICT;
CREATE TABLE IF NOT EXISTS parked (
    sink   TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at_us  INTEGER NOT NULL,
    PRIMARY KEY (sink, seq)
) STRICT, WITHOUT ROWID;
"#;

/// One sink's progress, for `taskgate sinks status`.
#[derive(Clone, Debug, Serialize)]
pub struct SinkProgress {
    pub name: String,
    /// The last event acknowledged (or skipped by the sink's filter).
    pub cursor: u64,
    pub delivered: u64,
    pub parked: u64,
    pub last_delivery: Option<Timestamp>,
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
}

pub struct SinkState {
    conn: Mutex<Connection>,
}

fn lock_error() -> StoreError {
    StoreError::Corrupt("the sink state lock is poisoned".into())
}

impl SinkState {
    /// The sink state file of the store at `store`.
    pub fn path_for(store: &Path) -> PathBuf {
        store.with_extension("sinks.db")
    }

    pub fn open(store: &Path) -> Result<Self> {
        let conn = Connection::open(Self::path_for(store))?;
        conn.busy_timeout(super::sqlite::BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A cursor moves only after the sink acknowledged, so a cursor lost
        // with the machine (not synced yet) only goes back: the events since
        // are delivered again, which at-least-once allows. Syncing each move
        // cost a disk flush per webhook call (1.5k events/s).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock().map_err(|_| lock_error())?;
        work(&conn)
    }

    /// Where `sink` stands (0 for a new sink: it starts at the first event).
    pub fn cursor(&self, sink: &str) -> Result<u64> {
        self.with(|conn| {
            let cursor: Option<i64> = conn
                .prepare_cached("SELECT cursor FROM sink WHERE name = ?1")?
                .query_row([sink], |r| r.get(0))
                .optional()?;
            Ok(cursor.and_then(|c| u64::try_from(c).ok()).unwrap_or(0))
        })
    }

    /// Moves the cursor to `through` after `delivered` events were
    /// acknowledged (the rest of the range was filtered out).
    pub fn advance(&self, sink: &str, through: u64, delivered: u64) -> Result<()> {
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT INTO sink (name, cursor, delivered, last_delivery_us) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET cursor = max(cursor, ?2),
                     delivered = delivered + ?3,
                     last_delivery_us = CASE WHEN ?3 > 0 THEN ?4 ELSE last_delivery_us END,
                     last_error = NULL, last_error_us = NULL",
            )?
            .execute(params![
                sink,
                i64::try_from(through).unwrap_or(i64::MAX),
                i64::try_from(delivered).unwrap_or(i64::MAX),
                Timestamp::now().as_micros()
            ])?;
            Ok(())
        })
    }

    /// Parks events the sink refused for good, and moves past them.
    pub fn park(&self, sink: &str, seqs: &[u64], through: u64, reason: &str) -> Result<()> {
        self.with(|conn| {
            let tx = conn.unchecked_transaction()?;
            let now = Timestamp::now().as_micros();
            for seq in seqs {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO parked (sink, seq, reason, at_us) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![sink, i64::try_from(*seq).unwrap_or(i64::MAX), reason, now])?;
            }
            tx.prepare_cached(
                "INSERT INTO sink (name, cursor, parked, last_error, last_error_us) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET cursor = max(cursor, ?2), parked = parked + ?3,
                     last_error = ?4, last_error_us = ?5",
            )?
            .execute(params![
                sink,
                i64::try_from(through).unwrap_or(i64::MAX),
                i64::try_from(seqs.len()).unwrap_or(i64::MAX),
                format!("parked: {reason}"),
                now
            ])?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Records a failed attempt; the cursor stays.
    pub fn failed(&self, sink: &str, error: &str) -> Result<()> {
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT INTO sink (name, last_error, last_error_us) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET last_error = ?2, last_error_us = ?3",
            )?
            .execute(params![sink, error, Timestamp::now().as_micros()])?;
            Ok(())
        })
    }

    /// The events a sink parked, with why.
    pub fn parked(&self, sink: &str) -> Result<Vec<(u64, String)>> {
        self.with(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT seq, reason FROM parked WHERE sink = ?1 ORDER BY seq")?;
            let rows = stmt.query_map([sink], |r| {
                Ok((u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0), r.get(1)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub fn progress(&self, sink: &str) -> Result<SinkProgress> {
        self.with(|conn| {
            let found = conn
                .prepare_cached(
                    "SELECT cursor, delivered, parked, last_delivery_us, last_error, last_error_us
                     FROM sink WHERE name = ?1",
                )?
                .query_row([sink], |r| {
                    let time = |v: Option<i64>| v.map(Timestamp::from_micros);
                    Ok(SinkProgress {
                        name: sink.to_owned(),
                        cursor: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        delivered: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        parked: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                        last_delivery: time(r.get(3)?),
                        last_error: r.get(4)?,
                        last_error_at: time(r.get(5)?),
                    })
                })
                .optional()?;
            Ok(found.unwrap_or(SinkProgress {
                name: sink.to_owned(),
                cursor: 0,
                delivered: 0,
                parked: 0,
                last_delivery: None,
                last_error: None,
                last_error_at: None,
            }))
        })
    }
}
