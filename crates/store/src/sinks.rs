//! Export sinks' progress: a durable cursor per sink (the last event it has
//! acknowledged, or skipped by its filter), the events it parked (and
//! those of them an operator asked to send again), and its last error.
//! Kept in a small SQLite file of its own beside the store
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
-- Parked events queued to be sent again (`taskgate sinks redeliver`).
CREATE TABLE IF NOT EXISTS redeliver (
    sink TEXT NOT NULL,
    seq  INTEGER NOT NULL,
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

impl SinkProgress {
    /// A sink that has delivered nothing yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            cursor: 0,
            delivered: 0,
            parked: 0,
            last_delivery: None,
            last_error: None,
            last_error_at: None,
        }
    }
}

/// One parked event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Parked {
    pub seq: u64,
    pub reason: String,
    pub at: Timestamp,
    /// Queued to be sent again.
    pub queued: bool,
}

pub(crate) fn seq_param(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
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
}

/// Where each export sink stands: a node's own file ([`SinkState`]) or the
/// fleet's shared store, where the node holding a sink's lease moves it.
pub trait SinkLedger: Send + Sync {
    /// Where `sink` stands (0 for a new sink: it starts at the first event).
    fn cursor(&self, sink: &str) -> Result<u64>;
    /// Moves the cursor to `through` after `delivered` events were
    /// acknowledged (the rest of the range was filtered out).
    fn advance(&self, sink: &str, through: u64, delivered: u64) -> Result<()>;
    /// Parks events the sink refused for good, and moves past them.
    fn park(&self, sink: &str, seqs: &[u64], through: u64, reason: &str) -> Result<()>;
    /// Records a failed attempt; the cursor stays.
    fn failed(&self, sink: &str, error: &str) -> Result<()>;
    /// The events a sink parked, with why, oldest first.
    fn parked(&self, sink: &str) -> Result<Vec<Parked>>;
    /// Queues the sink's parked events in `from..=to` to be sent again;
    /// returns how many were newly queued.
    fn requeue(&self, sink: &str, from: u64, to: u64) -> Result<u64>;
    /// Up to `limit` of the sink's queued events, oldest first.
    fn queued(&self, sink: &str, limit: usize) -> Result<Vec<u64>>;
    /// Queued events the sink has now acknowledged: no longer parked.
    fn redelivered(&self, sink: &str, seqs: &[u64]) -> Result<()>;
    /// Queued events the sink refused for good again: they stay parked,
    /// with the new reason, and leave the queue.
    fn parked_again(&self, sink: &str, seqs: &[u64], reason: &str) -> Result<()>;
    fn progress(&self, sink: &str) -> Result<SinkProgress>;
}

impl SinkLedger for SinkState {
    fn cursor(&self, sink: &str) -> Result<u64> {
        self.with(|conn| {
            let cursor: Option<i64> = conn
                .prepare_cached("SELECT cursor FROM sink WHERE name = ?1")?
                .query_row([sink], |r| r.get(0))
                .optional()?;
            Ok(cursor.and_then(|c| u64::try_from(c).ok()).unwrap_or(0))
        })
    }

    fn advance(&self, sink: &str, through: u64, delivered: u64) -> Result<()> {
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

    fn park(&self, sink: &str, seqs: &[u64], through: u64, reason: &str) -> Result<()> {
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

    fn failed(&self, sink: &str, error: &str) -> Result<()> {
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT INTO sink (name, last_error, last_error_us) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET last_error = ?2, last_error_us = ?3",
            )?
            .execute(params![sink, error, Timestamp::now().as_micros()])?;
            Ok(())
        })
    }

    fn parked(&self, sink: &str) -> Result<Vec<Parked>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT p.seq, p.reason, p.at_us, r.seq IS NOT NULL FROM parked p
                 LEFT JOIN redeliver r ON r.sink = p.sink AND r.seq = p.seq
                 WHERE p.sink = ?1 ORDER BY p.seq",
            )?;
            let rows = stmt.query_map([sink], |r| {
                Ok(Parked {
                    seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    reason: r.get(1)?,
                    at: Timestamp::from_micros(r.get(2)?),
                    queued: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn requeue(&self, sink: &str, from: u64, to: u64) -> Result<u64> {
        self.with(|conn| {
            let queued = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO redeliver (sink, seq)
                     SELECT sink, seq FROM parked WHERE sink = ?1 AND seq BETWEEN ?2 AND ?3",
                )?
                .execute(params![sink, seq_param(from), seq_param(to)])?;
            Ok(queued as u64)
        })
    }

    fn queued(&self, sink: &str, limit: usize) -> Result<Vec<u64>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq FROM redeliver WHERE sink = ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(
                params![sink, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| Ok(u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0)),
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn redelivered(&self, sink: &str, seqs: &[u64]) -> Result<()> {
        self.with(|conn| {
            let tx = conn.unchecked_transaction()?;
            let mut unparked = 0i64;
            for seq in seqs {
                let seq = seq_param(*seq);
                tx.prepare_cached("DELETE FROM redeliver WHERE sink = ?1 AND seq = ?2")?
                    .execute(params![sink, seq])?;
                unparked += i64::try_from(
                    tx.prepare_cached("DELETE FROM parked WHERE sink = ?1 AND seq = ?2")?
                        .execute(params![sink, seq])?,
                )
                .unwrap_or(0);
            }
            tx.prepare_cached(
                "UPDATE sink SET parked = max(parked - ?2, 0), delivered = delivered + ?2,
                     last_delivery_us = ?3, last_error = NULL, last_error_us = NULL
                 WHERE name = ?1",
            )?
            .execute(params![sink, unparked, Timestamp::now().as_micros()])?;
            tx.commit()?;
            Ok(())
        })
    }

    fn parked_again(&self, sink: &str, seqs: &[u64], reason: &str) -> Result<()> {
        self.with(|conn| {
            let tx = conn.unchecked_transaction()?;
            let now = Timestamp::now().as_micros();
            for seq in seqs {
                let seq = seq_param(*seq);
                tx.prepare_cached("DELETE FROM redeliver WHERE sink = ?1 AND seq = ?2")?
                    .execute(params![sink, seq])?;
                tx.prepare_cached(
                    "UPDATE parked SET reason = ?3, at_us = ?4 WHERE sink = ?1 AND seq = ?2",
                )?
                .execute(params![sink, seq, reason, now])?;
            }
            tx.prepare_cached(
                "UPDATE sink SET last_error = ?2, last_error_us = ?3 WHERE name = ?1",
            )?
            .execute(params![sink, format!("parked again: {reason}"), now])?;
            tx.commit()?;
            Ok(())
        })
    }

    fn progress(&self, sink: &str) -> Result<SinkProgress> {
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
            Ok(found.unwrap_or_else(|| SinkProgress::new(sink)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (tempfile::TempDir, SinkState) {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = SinkState::open(&dir.path().join("taskgate.db")).expect("open");
        (dir, state)
    }

    #[test]
    fn parked_events_can_be_queued_sent_again_and_unparked() -> Result<()> {
        let (_dir, state) = state();
        state.advance("siem", 2, 2)?;
        state.park("siem", &[3, 5], 5, "the receiver answered 400")?;
        state.park("other", &[4], 5, "no")?;
        assert_eq!(state.progress("siem")?.parked, 2);
        // Only parked events of this sink, in the range, and once.
        assert_eq!(state.requeue("siem", 4, u64::MAX)?, 1);
        assert_eq!(state.requeue("siem", 0, u64::MAX)?, 1);
        assert_eq!(state.requeue("siem", 0, u64::MAX)?, 0);
        assert_eq!(state.queued("siem", 10)?, [3, 5]);
        assert_eq!(state.queued("other", 10)?, Vec::<u64>::new());
        let parked = state.parked("siem")?;
        assert!(parked.iter().all(|p| p.queued));
        assert_eq!(parked[0].reason, "the receiver answered 400");

        state.redelivered("siem", &[3])?;
        state.parked_again("siem", &[5], "the receiver answered 422")?;
        assert_eq!(state.queued("siem", 10)?, Vec::<u64>::new());
        let parked = state.parked("siem")?;
        assert_eq!(parked.len(), 1);
        assert_eq!((parked[0].seq, parked[0].queued), (5, false));
        assert_eq!(parked[0].reason, "the receiver answered 422");
        let progress = state.progress("siem")?;
        assert_eq!(
            (progress.parked, progress.delivered, progress.cursor),
            (1, 3, 5)
        );
        assert_eq!(
            progress.last_error.as_deref(),
            Some("parked again: the receiver answered 422")
        );
        Ok(())
    }
}
