//! Reads from the shared store through a few idle connections kept for
//! reuse (the same small pool the SQLite reader keeps; a pool crate would
//! have to be generic over the TLS connector for nothing more).

use std::sync::Mutex;

use postgres::{Client, Row};
use taskgate_audit::{Checkpoint, EventRow, PublicKey, Timestamp, Verifier, VerifyReport};
use taskgate_policy::{Review, Task};

use super::{PgOptions, i64_of};
use crate::{Result, ReviewQuery, StoreError, StoreRead, TaskQuery, TaskSecrets};

const MAX_IDLE: usize = 8;
/// Rows fetched per round trip while scanning the whole log.
const SCAN_PAGE_ROWS: i32 = 10_000;

pub(super) const EVENT_COLUMNS: &str =
    "seq, time_us, type, task, session, connection, subject, body, hash";

pub(super) fn event_row(row: &Row) -> EventRow {
    EventRow {
        seq: row.get(0),
        time_micros: row.get(1),
        event_type: row.get(2),
        task: row.get(3),
        session: row.get(4),
        connection: row.get(5),
        subject: row.get(6),
        body: row.get(7),
        hash: row.get(8),
    }
}

pub(super) fn from_doc<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub struct PgReader {
    options: PgOptions,
    idle: Mutex<Vec<Client>>,
}

impl Drop for PgReader {
    /// A blocking client closes through a runtime of its own, which must
    /// not happen on an async thread: the idle ones are closed on a thread
    /// of their own.
    fn drop(&mut self) {
        let idle = self.idle.get_mut().map(std::mem::take).unwrap_or_default();
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("store-close".into())
                .spawn(move || drop(idle));
        }
    }
}

impl PgReader {
    pub(super) fn new(options: PgOptions) -> Self {
        Self {
            options,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn with<T>(&self, work: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut client = match pooled {
            Some(client) if !client.is_closed() => client,
            _ => self.options.connect()?,
        };
        let result = work(&mut client);
        if !client.is_closed()
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(client);
        }
        result
    }

    fn doc<T: serde::de::DeserializeOwned>(&self, sql: &str, id: &str) -> Result<Option<T>> {
        self.with(|c| {
            c.query_opt(sql, &[&id])?
                .map(|r| from_doc(r.get(0)))
                .transpose()
        })
    }

    /// Events of one task, in order.
    pub fn task_events(&self, task: &str) -> Result<Vec<EventRow>> {
        self.with(|c| {
            let sql =
                format!("SELECT {EVENT_COLUMNS} FROM taskgate.events WHERE task = $1 ORDER BY seq");
            Ok(c.query(&sql, &[&task])?.iter().map(event_row).collect())
        })
    }

    /// The chain's id.
    pub fn chain_id(&self) -> Result<String> {
        self.with(|c| {
            Ok(
                c.query_one("SELECT chain_id FROM taskgate.chain WHERE id = 1", &[])?
                    .get(0),
            )
        })
    }
}

impl StoreRead for PgReader {
    fn task(&self, id: &str) -> Result<Option<Task>> {
        self.doc("SELECT doc FROM taskgate.tasks WHERE id = $1", id)
    }

    fn tasks(&self, query: &TaskQuery) -> Result<Vec<Task>> {
        self.with(|c| {
            let limit = query.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
            let rows = c.query(
                "SELECT doc FROM taskgate.tasks
                 WHERE ($1::text IS NULL OR state = $1)
                   AND ($2::text IS NULL OR requester = $2)
                   AND ($3::text IS NULL OR connection = $3)
                 ORDER BY requested_at_us DESC, id
                 LIMIT $4",
                &[
                    &query.state.map(|s| s.as_str()),
                    &query.requester,
                    &query.connection,
                    &limit,
                ],
            )?;
            rows.iter().map(|r| from_doc(r.get(0))).collect()
        })
    }

    fn task_secrets(&self, id: &str) -> Result<Option<TaskSecrets>> {
        self.with(|c| {
            let Some(row) = c.query_opt(
                "SELECT token_sha256, scram_verifier FROM taskgate.task_secrets WHERE task_id = $1",
                &[&id],
            )?
            else {
                return Ok(None);
            };
            let hash: Vec<u8> = row.get(0);
            let token_sha256 = hash
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("token hash of {id} is not 32 bytes")))?;
            Ok(Some(TaskSecrets {
                token_sha256,
                scram_verifier: row.get(1),
            }))
        })
    }

    fn review(&self, id: &str) -> Result<Option<Review>> {
        self.doc("SELECT doc FROM taskgate.reviews WHERE id = $1", id)
    }

    fn reviews(&self, query: &ReviewQuery) -> Result<Vec<Review>> {
        self.with(|c| {
            let rows = c.query(
                "SELECT doc FROM taskgate.reviews
                 WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR task_id = $2)
                 ORDER BY ord",
                &[&query.state.map(|s| s.as_str()), &query.task],
            )?;
            rows.iter().map(|r| from_doc(r.get(0))).collect()
        })
    }

    fn next_deadline(&self) -> Result<Option<Timestamp>> {
        self.with(|c| {
            let micros: Option<i64> = c
                .query_one(
                    "SELECT min(deadline_us) FROM taskgate.tasks WHERE deadline_us IS NOT NULL",
                    &[],
                )?
                .get(0);
            Ok(micros.map(Timestamp::from_micros))
        })
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<EventRow>> {
        self.with(|c| {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM taskgate.events WHERE seq > $1 ORDER BY seq LIMIT $2"
            );
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            Ok(c.query(&sql, &[&i64_of(after)?, &limit])?
                .iter()
                .map(event_row)
                .collect())
        })
    }

    fn head_seq(&self) -> Result<u64> {
        self.with(|c| {
            let seq: i64 = c
                .query_one("SELECT coalesce(max(seq), 0) FROM taskgate.events", &[])?
                .get(0);
            Ok(u64::try_from(seq).unwrap_or(0))
        })
    }

    fn scan_events(&self, visit: &mut dyn FnMut(&EventRow) -> bool) -> Result<()> {
        // One snapshot for the whole scan, fetched a page per round trip.
        self.with(|c| {
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let sql = format!("SELECT {EVENT_COLUMNS} FROM taskgate.events ORDER BY seq");
            let portal = tx.bind(sql.as_str(), &[])?;
            loop {
                let rows = tx.query_portal(&portal, SCAN_PAGE_ROWS)?;
                for row in &rows {
                    if !visit(&event_row(row)) {
                        return Ok(());
                    }
                }
                if rows.len() < SCAN_PAGE_ROWS as usize {
                    return Ok(());
                }
            }
        })
    }

    fn verify_chain(
        &self,
        key: Option<PublicKey>,
        external: &[Checkpoint],
    ) -> Result<VerifyReport> {
        let mut verifier = Verifier::with_key(key);
        self.scan_events(&mut |row| verifier.push(row))?;
        Ok(verifier.finish_with_external(external))
    }
}
