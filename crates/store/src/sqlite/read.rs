//! Reads through a small pool of connections. In WAL mode readers never
//! block the writer, and the writer never blocks them.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, params};
use taskgate_audit::{Checkpoint, EventRow, PublicKey, Timestamp, VerifyReport};
use taskgate_policy::{Review, Task};

use super::{open_reader, schema};
use crate::Result;
use crate::{ReviewQuery, StoreError, StoreRead, TaskQuery, TaskSecrets};

/// Idle connections kept for reuse; more are opened under load and dropped.
const MAX_IDLE_READERS: usize = 8;
/// Rows fetched per query while scanning the whole log.
const SCAN_PAGE_ROWS: usize = 10_000;

pub struct SqliteReader {
    path: PathBuf,
    read_only: bool,
    idle: Mutex<Vec<Connection>>,
}

pub(super) fn from_doc<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// One JSON document by id; `sql` selects `doc` with the id as `?1`.
pub(super) fn doc_by_id<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    id: &str,
) -> Result<Option<T>> {
    let doc: Option<String> = conn
        .prepare_cached(sql)?
        .query_row([id], |r| r.get(0))
        .optional()?;
    doc.map(|d| from_doc(&d)).transpose()
}

pub(super) const EVENT_COLUMNS: &str =
    "seq, time_us, type, task, session, connection, subject, body, hash";

pub(super) fn event_row(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        seq: row.get(0)?,
        time_micros: row.get(1)?,
        event_type: row.get(2)?,
        task: row.get(3)?,
        session: row.get(4)?,
        connection: row.get(5)?,
        subject: row.get(6)?,
        body: row.get(7)?,
        hash: row.get(8)?,
    })
}

impl SqliteReader {
    pub(super) fn new(path: PathBuf, read_only: bool) -> Self {
        Self {
            path,
            read_only,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub(super) fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(super) fn with<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path, self.read_only)?,
        };
        let result = work(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(conn);
        }
        result
    }

    pub(super) fn check_schema(&self) -> Result<()> {
        self.with(|conn| {
            let found = schema::version(conn)?;
            if found == 0 || found > schema::current_version() {
                return Err(StoreError::Incompatible(format!(
                    "{} has schema version {found}; this build reads 1 to {}",
                    self.path.display(),
                    schema::current_version()
                )));
            }
            Ok(())
        })
    }

    /// The chain's id.
    pub fn chain_id(&self) -> Result<String> {
        self.with(schema::chain_id)
    }

    /// Events of one task, in order.
    pub fn task_events(&self, task: &str) -> Result<Vec<EventRow>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE task = ?1 ORDER BY seq"
            ))?;
            let rows = stmt.query_map([task], event_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

impl StoreRead for SqliteReader {
    fn task(&self, id: &str) -> Result<Option<Task>> {
        self.with(|conn| doc_by_id(conn, "SELECT doc FROM tasks WHERE id = ?1", id))
    }

    fn tasks(&self, query: &TaskQuery) -> Result<Vec<Task>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT doc FROM tasks
                 WHERE (?1 IS NULL OR state = ?1)
                   AND (?2 IS NULL OR requester = ?2)
                   AND (?3 IS NULL OR connection = ?3)
                 ORDER BY requested_at_us DESC, id
                 LIMIT ?4",
            )?;
            let limit = query.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(-1));
            let docs = stmt.query_map(
                params![
                    query.state.map(|s| s.as_str()),
                    query.requester,
                    query.connection,
                    limit
                ],
                |r| r.get::<_, String>(0),
            )?;
            docs.map(|d| from_doc(&d?)).collect()
        })
    }

    fn task_secrets(&self, id: &str) -> Result<Option<TaskSecrets>> {
        self.with(|conn| {
            let row: Option<(Vec<u8>, String)> = conn
                .prepare_cached(
                    "SELECT token_sha256, scram_verifier FROM task_secrets WHERE task_id = ?1",
                )?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            row.map(|(hash, scram_verifier)| {
                let token_sha256 = hash.try_into().map_err(|_| {
                    StoreError::Corrupt(format!("token hash of {id} is not 32 bytes"))
                })?;
                Ok(TaskSecrets {
                    token_sha256,
                    scram_verifier,
                })
            })
            .transpose()
        })
    }

    fn review(&self, id: &str) -> Result<Option<Review>> {
        self.with(|conn| doc_by_id(conn, "SELECT doc FROM reviews WHERE id = ?1", id))
    }

    fn reviews(&self, query: &ReviewQuery) -> Result<Vec<Review>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT doc FROM reviews
                 WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR task_id = ?2)
                 ORDER BY rowid",
            )?;
            let docs = stmt
                .query_map(params![query.state.map(|s| s.as_str()), query.task], |r| {
                    r.get::<_, String>(0)
                })?;
            docs.map(|d| from_doc(&d?)).collect()
        })
    }

    fn next_deadline(&self) -> Result<Option<Timestamp>> {
        self.with(|conn| {
            let micros: Option<i64> = conn
                .prepare_cached("SELECT min(deadline_us) FROM tasks WHERE deadline_us IS NOT NULL")?
                .query_row([], |r| r.get(0))?;
            Ok(micros.map(Timestamp::from_micros))
        })
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<EventRow>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let rows = stmt.query_map(
                params![
                    i64::try_from(after).unwrap_or(i64::MAX),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                event_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn head_seq(&self) -> Result<u64> {
        self.with(|conn| {
            let last: i64 = conn
                .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")?
                .query_row([], |r| r.get(0))?;
            Ok(u64::try_from(last).unwrap_or(0))
        })
    }

    fn verify_chain(
        &self,
        key: Option<PublicKey>,
        external: &[Checkpoint],
    ) -> Result<VerifyReport> {
        self.verify_in_parts(key, external, super::verify::MIN_PART)
    }

    fn scan_events(&self, visit: &mut dyn FnMut(&EventRow) -> bool) -> Result<()> {
        // One read transaction, so the scan sees a single consistent snapshot.
        self.with(|conn| {
            conn.execute_batch("BEGIN")?;
            let result = (|| {
                let mut stmt = conn.prepare(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ))?;
                let mut after = i64::MIN;
                loop {
                    let mut rows = stmt.query(params![after, SCAN_PAGE_ROWS as i64])?;
                    let mut seen = 0usize;
                    while let Some(row) = rows.next()? {
                        let event = event_row(row)?;
                        after = event.seq;
                        seen += 1;
                        if !visit(&event) {
                            return Ok(());
                        }
                    }
                    if seen < SCAN_PAGE_ROWS {
                        return Ok(());
                    }
                }
            })();
            conn.execute_batch("COMMIT")?;
            result
        })
    }
}
