//! The writer's connection. Only the single writer thread uses it.

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use taskgate_audit::{ChainHead, SealedEvent, Timestamp};
use taskgate_policy::{Review, ReviewKind, ReviewState, Task, TaskState};

use super::checkpoint::Checkpointer;
use super::read::{doc_by_id, from_doc};
use crate::{CommitSync, Result, StoreError, StoreWrite, TaskSecrets, WriteTx};

const LAST_CHECKPOINT: &str =
    "SELECT body FROM events WHERE type = 'checkpoint' ORDER BY seq DESC LIMIT 1";

pub struct SqliteWriter {
    conn: Connection,
    /// The store's file, beside which the writer's journal lives.
    path: PathBuf,
    chain_id: String,
    /// The WAL file to sync after commits, for `Durability::Full`.
    wal: Option<PathBuf>,
    /// Stopped (and joined) when the writer is dropped.
    checkpointer: Checkpointer,
}

impl SqliteWriter {
    pub(super) fn new(
        conn: Connection,
        path: PathBuf,
        chain_id: String,
        checkpointer: Checkpointer,
        wal: Option<PathBuf>,
    ) -> Self {
        Self {
            conn,
            path,
            chain_id,
            wal,
            checkpointer,
        }
    }
}

fn to_doc<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn opt_micros(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::as_micros)
}

impl StoreWrite for SqliteWriter {
    fn journal_dir(&self) -> PathBuf {
        super::journal_dir(&self.path)
    }

    fn commit_sync(&mut self) -> Result<Option<CommitSync>> {
        let Some(path) = &self.wal else {
            return Ok(None);
        };
        // The WAL exists once the connection is in WAL mode and stays while
        // the writer holds it open; syncing this handle syncs the same file.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                StoreError::Corrupt(format!("cannot open {} to sync it: {e}", path.display()))
            })?;
        Ok(Some(Box::new(move || {
            file.sync_data()
                .map_err(|e| StoreError::Corrupt(format!("cannot sync the WAL: {e}")))
        })))
    }

    fn last_checkpoint(&mut self) -> Result<Option<Vec<u8>>> {
        // Walks back from the newest record; checkpoints come every few
        // thousand events, so this stops early (and runs once, at start).
        Ok(self
            .conn
            .query_row(LAST_CHECKPOINT, [], |r| r.get(0))
            .optional()?)
    }

    fn chain(&mut self) -> Result<(String, ChainHead)> {
        let last: Option<(i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let head = match last {
            None => ChainHead::EMPTY,
            Some((seq, hash)) => ChainHead {
                seq: u64::try_from(seq)
                    .map_err(|_| StoreError::Corrupt(format!("negative sequence {seq}")))?,
                hash: hash.try_into().map_err(|_| {
                    StoreError::Corrupt(format!("hash of event {seq} is not 32 bytes"))
                })?,
            },
        };
        Ok((self.chain_id.clone(), head))
    }

    fn transaction(&mut self, work: &mut dyn FnMut(&mut dyn WriteTx) -> Result<()>) -> Result<()> {
        {
            let mut tx = SqliteTx(self.conn.transaction()?);
            work(&mut tx)?;
            tx.0.commit()?;
        }
        self.checkpointer.restart_if_wanted(&self.conn);
        Ok(())
    }
}

struct SqliteTx<'c>(Transaction<'c>);

impl SqliteTx<'_> {
    fn doc<T: serde::de::DeserializeOwned>(&self, sql: &str, id: &str) -> Result<Option<T>> {
        doc_by_id(&self.0, sql, id)
    }
}

fn review_kind(review: &Review) -> &'static str {
    match review.kind {
        ReviewKind::Grant => "grant",
        ReviewKind::Statement { .. } => "statement",
    }
}

impl WriteTx for SqliteTx<'_> {
    fn task(&mut self, id: &str) -> Result<Option<Task>> {
        self.doc("SELECT doc FROM tasks WHERE id = ?1", id)
    }

    fn review(&mut self, id: &str) -> Result<Option<Review>> {
        self.doc("SELECT doc FROM reviews WHERE id = ?1", id)
    }

    fn pending_grant_review(&mut self, task_id: &str) -> Result<Option<Review>> {
        let doc: Option<String> = self
            .0
            .prepare_cached(
                "SELECT doc FROM reviews WHERE task_id = ?1 AND kind = 'grant' AND state = ?2",
            )?
            .query_row(params![task_id, ReviewState::Pending.as_str()], |r| {
                r.get(0)
            })
            .optional()?;
        doc.map(|d| from_doc(&d)).transpose()
    }

    fn open_tasks_of(&mut self, subject: &str) -> Result<usize> {
        let n: i64 = self
            .0
            .prepare_cached(
                "SELECT count(*) FROM tasks WHERE requester = ?1 AND state IN (?2, ?3)",
            )?
            .query_row(
                params![
                    subject,
                    TaskState::Pending.as_str(),
                    TaskState::Active.as_str()
                ],
                |r| r.get(0),
            )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn held_statements_of(&mut self, subject: &str) -> Result<usize> {
        let n: i64 = self
            .0
            .prepare_cached(
                "SELECT count(*) FROM reviews r JOIN tasks t ON t.id = r.task_id
                 WHERE t.requester = ?1 AND r.kind = 'statement' AND r.state = ?2",
            )?
            .query_row(params![subject, ReviewState::Pending.as_str()], |r| {
                r.get(0)
            })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn due_tasks(&mut self, now: Timestamp) -> Result<Vec<Task>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT doc FROM tasks WHERE deadline_us IS NOT NULL AND deadline_us <= ?1
             ORDER BY deadline_us",
        )?;
        let docs = stmt.query_map([now.as_micros()], |r| r.get::<_, String>(0))?;
        docs.map(|d| from_doc(&d?)).collect()
    }

    fn last_checkpoint(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(self
            .0
            .prepare_cached(LAST_CHECKPOINT)?
            .query_row([], |r| r.get(0))
            .optional()?)
    }

    fn insert_task(&mut self, task: &Task, secrets: &TaskSecrets) -> Result<()> {
        self.0.prepare_cached(
            "INSERT INTO tasks (id, state, requester, connection, requested_at_us, deadline_us, doc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            task.id,
            task.state.as_str(),
            task.requester.subject,
            task.connection,
            task.requested_at.as_micros(),
            opt_micros(task.deadline()),
            to_doc(task)?,
        ])?;
        self.0
            .prepare_cached(
                "INSERT INTO task_secrets (task_id, token_sha256, scram_verifier) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                task.id,
                secrets.token_sha256.as_slice(),
                secrets.scram_verifier
            ])?;
        Ok(())
    }

    fn update_task(&mut self, task: &Task) -> Result<()> {
        let changed = self
            .0
            .prepare_cached(
                "UPDATE tasks SET state = ?2, deadline_us = ?3, doc = ?4 WHERE id = ?1",
            )?
            .execute(params![
                task.id,
                task.state.as_str(),
                opt_micros(task.deadline()),
                to_doc(task)?
            ])?;
        if changed != 1 {
            return Err(StoreError::Corrupt(format!("task {} vanished", task.id)));
        }
        Ok(())
    }

    fn insert_review(&mut self, review: &Review) -> Result<()> {
        self.0
            .prepare_cached(
                "INSERT INTO reviews (id, task_id, kind, state, doc) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                review.id,
                review.task_id,
                review_kind(review),
                review.state.as_str(),
                to_doc(review)?
            ])?;
        Ok(())
    }

    fn update_review(&mut self, review: &Review) -> Result<()> {
        self.0
            .prepare_cached("UPDATE reviews SET state = ?2, doc = ?3 WHERE id = ?1")?
            .execute(params![review.id, review.state.as_str(), to_doc(review)?])?;
        Ok(())
    }

    fn append(&mut self, sealed: &SealedEvent) -> Result<()> {
        insert_event(&self.0, sealed)
    }
}

/// Inserts one sealed event (the store's own, or a mirror's copy).
pub(super) fn insert_event(conn: &Connection, sealed: &SealedEvent) -> Result<()> {
    let e = &sealed.columns;
    conn.prepare_cached(
        "INSERT INTO events (seq, time_us, type, task, session, connection, subject, body, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        i64::try_from(sealed.seq).map_err(|_| StoreError::Corrupt("sequence overflow".into()))?,
        e.time.as_micros(),
        e.event_type.as_str(),
        e.task,
        e.session,
        e.connection,
        e.subject,
        sealed.body,
        sealed.hash.as_slice(),
    ])?;
    Ok(())
}
