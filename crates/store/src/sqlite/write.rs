//! The writer's connection. Only the single writer thread uses it.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use taskgate_audit::{ChainHead, SealedEvent, Timestamp};
use taskgate_policy::{Review, ReviewKind, ReviewState, Task};

use super::read::from_doc;
use crate::{Result, StoreError, StoreWrite, TaskSecrets, WriteTx};

pub struct SqliteWriter {
    conn: Connection,
    chain_id: String,
}

impl SqliteWriter {
    pub(super) fn new(conn: Connection, chain_id: String) -> Self {
        Self { conn, chain_id }
    }
}

fn to_doc<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn opt_micros(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::as_micros)
}

impl StoreWrite for SqliteWriter {
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
        let mut tx = SqliteTx(self.conn.transaction()?);
        work(&mut tx)?;
        tx.0.commit()?;
        Ok(())
    }
}

struct SqliteTx<'c>(Transaction<'c>);

impl SqliteTx<'_> {
    fn doc<T: serde::de::DeserializeOwned>(&self, sql: &str, id: &str) -> Result<Option<T>> {
        let doc: Option<String> = self
            .0
            .prepare_cached(sql)?
            .query_row([id], |r| r.get(0))
            .optional()?;
        doc.map(|d| from_doc(&d)).transpose()
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

    fn due_tasks(&mut self, now: Timestamp) -> Result<Vec<Task>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT doc FROM tasks WHERE deadline_us IS NOT NULL AND deadline_us <= ?1
             ORDER BY deadline_us",
        )?;
        let docs = stmt.query_map([now.as_micros()], |r| r.get::<_, String>(0))?;
        docs.map(|d| from_doc(&d?)).collect()
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
        let e = &sealed.event;
        self.0
            .prepare_cached(
                "INSERT INTO events (seq, time_us, type, task, session, connection, subject, body, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                i64::try_from(e.seq).map_err(|_| StoreError::Corrupt("sequence overflow".into()))?,
                e.time.as_micros(),
                e.event_type.as_str(),
                e.task,
                e.session,
                e.connection,
                e.identity.as_ref().map(|i| i.subject.as_str()),
                sealed.body,
                sealed.hash.as_slice(),
            ])?;
        Ok(())
    }
}
