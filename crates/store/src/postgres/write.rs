//! The node's writing connection to the shared store. Only its writer
//! thread uses it. A lost connection is dropped and made again on the next
//! round, so the store coming back needs no restart.

use postgres::{Client, Statement, Transaction};
use taskgate_audit::{Chain, ChainHead, SealedEvent, Timestamp};
use taskgate_policy::{Review, ReviewKind, ReviewState, Task, TaskState};

use super::fast::{self, AppendOnly};
use super::read::from_doc;
use super::{PgOptions, hash_of, i64_of};
use crate::SharedStore;
use crate::{Result, StoreError, TaskSecrets, WriteTx};

/// The channel on which every change to a task or review is announced, so
/// the other nodes act on it at once (see the gateway's `fleet` module).
pub const NOTIFY_CHANNEL: &str = "taskgate";

/// One round trip for a whole round of events.
const INSERT_EVENTS: &str = "INSERT INTO taskgate.events (seq, time_us, type, task, session, connection, subject, body, hash)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[],
                          $6::text[], $7::text[], $8::bytea[], $9::bytea[])";

/// The statements every round runs, prepared once per connection.
struct Prepared {
    lock_head: Statement,
    set_head: Statement,
    insert_events: Statement,
    append_at_head: Statement,
}

struct Connected {
    client: Client,
    prepared: Prepared,
}

pub struct PgWriter {
    options: PgOptions,
    conn: Option<Connected>,
    chain_id: String,
    node: String,
    /// The chain's head as this node's last round left it, for the fast
    /// path; None when unknown (at start, after a conflict or a failure).
    head: Option<ChainHead>,
    /// Rounds left on the locked path after a conflict.
    back_off: u32,
}

impl PgWriter {
    pub(super) fn new(client: Client, options: PgOptions, chain_id: String, node: String) -> Self {
        let mut writer = Self {
            options,
            conn: None,
            chain_id,
            node,
            head: None,
            back_off: 0,
        };
        // A failure here shows again on the first round, which reconnects.
        if let Ok(conn) = Self::prepare(client) {
            writer.conn = Some(conn);
        }
        writer
    }

    fn prepare(mut client: Client) -> Result<Connected> {
        let prepared = Prepared {
            lock_head: client.prepare(
                "SELECT chain_id, seq, hash FROM taskgate.chain WHERE id = 1 FOR UPDATE",
            )?,
            set_head: client
                .prepare("UPDATE taskgate.chain SET seq = $1, hash = $2 WHERE id = 1")?,
            insert_events: client.prepare(INSERT_EVENTS)?,
            append_at_head: client.prepare(fast::APPEND_AT_HEAD)?,
        };
        Ok(Connected { client, prepared })
    }

    fn connected(&mut self) -> Result<&mut Connected> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let client = self.options.connect()?;
            self.conn = Some(Self::prepare(client)?);
            tracing::info!("connected to the shared store");
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Corrupt("no store connection".into()))
    }
}

impl SharedStore for PgWriter {
    fn chain_id(&self) -> &str {
        &self.chain_id
    }

    fn node(&self) -> &str {
        &self.node
    }

    fn last_checkpoint(&mut self) -> Result<Option<Vec<u8>>> {
        let conn = self.connected()?;
        Ok(conn
            .client
            .query_opt(
                "SELECT body FROM taskgate.events WHERE type = 'checkpoint' ORDER BY seq DESC LIMIT 1",
                &[],
            )?
            .map(|r| r.get(0)))
    }

    fn transaction(
        &mut self,
        appends_only: bool,
        work: &mut dyn FnMut(&mut dyn WriteTx, &mut Chain) -> Result<()>,
    ) -> Result<()> {
        let fast = if appends_only {
            self.append_at_head(work)
        } else {
            Ok(false)
        };
        let result = match fast {
            Ok(true) => Ok(()),
            Ok(false) => self.round(work),
            Err(error) => Err(error),
        };
        if result.is_err() {
            self.head = None;
            if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
                self.conn = None;
            }
        }
        result
    }
}

impl PgWriter {
    /// The fast path (see `fast.rs`): true when the round is committed,
    /// false when it must take the locked path.
    fn append_at_head(
        &mut self,
        work: &mut dyn FnMut(&mut dyn WriteTx, &mut Chain) -> Result<()>,
    ) -> Result<bool> {
        if self.back_off > 0 {
            self.back_off -= 1;
            return Ok(false);
        }
        let Some(head) = self.head else {
            return Ok(false);
        };
        let mut chain = Chain::new(self.chain_id.clone(), head);
        let mut tx = AppendOnly::default();
        match work(&mut tx, &mut chain) {
            _ if tx.needs_lock => return Ok(false),
            Err(error) => return Err(error),
            Ok(()) => {}
        }
        let count = tx.events.seq.len();
        if count == 0 {
            return Ok(false);
        }
        let new_head = chain.head();
        let (to_seq, to_hash, from_seq, from_hash) = fast::heads(&head, &new_head)?;
        let conn = self.connected()?;
        let columns = tx.events.params();
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = columns.to_vec();
        params.extend([
            &to_seq as &(dyn postgres::types::ToSql + Sync),
            &to_hash,
            &from_seq,
            &from_hash,
        ]);
        let inserted = conn
            .client
            .execute(&conn.prepared.append_at_head, &params)?;
        if inserted == count as u64 {
            self.head = Some(new_head);
            Ok(true)
        } else if inserted == 0 {
            // Another node appended since this one's last round.
            self.head = None;
            self.back_off = fast::BACK_OFF_ROUNDS;
            Ok(false)
        } else {
            Err(StoreError::Corrupt(format!(
                "the shared store took {inserted} of a round's {count} events"
            )))
        }
    }

    fn round(
        &mut self,
        work: &mut dyn FnMut(&mut dyn WriteTx, &mut Chain) -> Result<()>,
    ) -> Result<()> {
        let chain_id = self.chain_id.clone();
        let conn = self.connected()?;
        let prepared = &conn.prepared;
        let mut tx = conn.client.transaction()?;
        let row = tx.query_one(&prepared.lock_head, &[])?;
        let stored_id: String = row.get(0);
        if stored_id != chain_id {
            return Err(StoreError::Incompatible(format!(
                "the shared store's chain changed from {chain_id} to {stored_id} (was it replaced?); restart the node"
            )));
        }
        let seq: i64 = row.get(1);
        let head = ChainHead {
            seq: u64::try_from(seq)
                .map_err(|_| StoreError::Corrupt(format!("negative head {seq}")))?,
            hash: hash_of(seq, row.get(2))?,
        };
        let mut chain = Chain::new(chain_id, head);
        let mut pg_tx = PgTx::new(&mut tx);
        work(&mut pg_tx, &mut chain)?;
        pg_tx.flush(Some(&prepared.insert_events))?;
        let new_head = chain.head();
        if new_head != head {
            tx.execute(
                &prepared.set_head,
                &[&i64_of(new_head.seq)?, &new_head.hash.as_slice()],
            )?;
        }
        tx.commit()?;
        self.head = Some(new_head);
        Ok(())
    }
}

/// A round's events as columns, inserted together with `unnest`.
#[derive(Default)]
pub(super) struct EventColumns {
    seq: Vec<i64>,
    time_us: Vec<i64>,
    event_type: Vec<&'static str>,
    task: Vec<Option<String>>,
    session: Vec<Option<String>>,
    connection: Vec<Option<String>>,
    subject: Vec<Option<String>>,
    body: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

impl EventColumns {
    pub(super) fn push(&mut self, sealed: &SealedEvent) -> Result<()> {
        let c = &sealed.columns;
        self.seq.push(i64_of(sealed.seq)?);
        self.time_us.push(c.time.as_micros());
        self.event_type.push(c.event_type.as_str());
        self.task.push(c.task.clone());
        self.session.push(c.session.clone());
        self.connection.push(c.connection.clone());
        self.subject.push(c.subject.clone());
        self.body.push(sealed.body.clone());
        self.hash.push(sealed.hash.to_vec());
        Ok(())
    }

    /// The columns as the nine arrays `INSERT_EVENTS` unnests.
    pub(super) fn params(&self) -> [&(dyn postgres::types::ToSql + Sync); 9] {
        [
            &self.seq,
            &self.time_us,
            &self.event_type,
            &self.task,
            &self.session,
            &self.connection,
            &self.subject,
            &self.body,
            &self.hash,
        ]
    }

    fn insert(&self, tx: &mut Transaction<'_>, statement: Option<&Statement>) -> Result<()> {
        let params = self.params();
        match statement {
            Some(statement) => tx.execute(statement, &params)?,
            None => tx.execute(INSERT_EVENTS, &params)?,
        };
        Ok(())
    }
}

/// A transaction on the shared store. Events are buffered and inserted
/// together by [`PgTx::flush`].
pub(super) struct PgTx<'t, 'c> {
    tx: &'t mut Transaction<'c>,
    events: EventColumns,
}

fn to_doc<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn review_kind(review: &Review) -> &'static str {
    match review.kind {
        ReviewKind::Grant => "grant",
        ReviewKind::Statement { .. } => "statement",
    }
}

impl<'t, 'c> PgTx<'t, 'c> {
    pub(super) fn new(tx: &'t mut Transaction<'c>) -> Self {
        Self {
            tx,
            events: EventColumns::default(),
        }
    }

    /// Inserts the buffered events (with `statement` when it is prepared).
    pub(super) fn flush(&mut self, statement: Option<&Statement>) -> Result<()> {
        if !self.events.seq.is_empty() {
            std::mem::take(&mut self.events).insert(self.tx, statement)?;
        }
        Ok(())
    }

    fn doc<T: serde::de::DeserializeOwned>(&mut self, sql: &str, id: &str) -> Result<Option<T>> {
        self.tx
            .query_opt(sql, &[&id])?
            .map(|r| from_doc(r.get(0)))
            .transpose()
    }

    /// Announces a change to the other nodes when this transaction commits.
    fn announce(&mut self, what: &str, id: &str, state: &str) -> Result<()> {
        self.tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&NOTIFY_CHANNEL, &format!("{what} {id} {state}")],
        )?;
        Ok(())
    }
}

impl WriteTx for PgTx<'_, '_> {
    fn task(&mut self, id: &str) -> Result<Option<Task>> {
        self.doc("SELECT doc FROM taskgate.tasks WHERE id = $1", id)
    }

    fn review(&mut self, id: &str) -> Result<Option<Review>> {
        self.doc("SELECT doc FROM taskgate.reviews WHERE id = $1", id)
    }

    fn pending_grant_review(&mut self, task_id: &str) -> Result<Option<Review>> {
        self.tx
            .query_opt(
                "SELECT doc FROM taskgate.reviews WHERE task_id = $1 AND kind = 'grant' AND state = $2",
                &[&task_id, &ReviewState::Pending.as_str()],
            )?
            .map(|r| from_doc(r.get(0)))
            .transpose()
    }

    fn open_tasks_of(&mut self, subject: &str) -> Result<usize> {
        let n: i64 = self
            .tx
            .query_one(
                "SELECT count(*) FROM taskgate.tasks WHERE requester = $1 AND state IN ($2, $3)",
                &[
                    &subject,
                    &TaskState::Pending.as_str(),
                    &TaskState::Active.as_str(),
                ],
            )?
            .get(0);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn held_statements_of(&mut self, subject: &str) -> Result<usize> {
        let n: i64 = self
            .tx
            .query_one(
                "SELECT count(*) FROM taskgate.reviews r JOIN taskgate.tasks t ON t.id = r.task_id
                 WHERE t.requester = $1 AND r.kind = 'statement' AND r.state = $2",
                &[&subject, &ReviewState::Pending.as_str()],
            )?
            .get(0);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn due_tasks(&mut self, now: Timestamp) -> Result<Vec<Task>> {
        self.tx
            .query(
                "SELECT doc FROM taskgate.tasks WHERE deadline_us IS NOT NULL AND deadline_us <= $1
                 ORDER BY deadline_us",
                &[&now.as_micros()],
            )?
            .iter()
            .map(|r| from_doc(r.get(0)))
            .collect()
    }

    fn last_checkpoint(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tx
            .query_opt(
                "SELECT body FROM taskgate.events WHERE type = 'checkpoint' ORDER BY seq DESC LIMIT 1",
                &[],
            )?
            .map(|r| r.get(0)))
    }

    fn insert_task(&mut self, task: &Task, secrets: &TaskSecrets) -> Result<()> {
        self.tx.execute(
            "INSERT INTO taskgate.tasks (id, state, requester, connection, requested_at_us, deadline_us, doc)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &task.id,
                &task.state.as_str(),
                &task.requester.subject,
                &task.connection,
                &task.requested_at.as_micros(),
                &task.deadline().map(Timestamp::as_micros),
                &to_doc(task)?,
            ],
        )?;
        self.tx.execute(
            "INSERT INTO taskgate.task_secrets (task_id, token_sha256, scram_verifier) VALUES ($1, $2, $3)",
            &[&task.id, &secrets.token_sha256.as_slice(), &secrets.scram_verifier],
        )?;
        self.announce("task", &task.id, task.state.as_str())
    }

    fn update_task(&mut self, task: &Task) -> Result<()> {
        let changed = self.tx.execute(
            "UPDATE taskgate.tasks SET state = $2, deadline_us = $3, doc = $4 WHERE id = $1",
            &[
                &task.id,
                &task.state.as_str(),
                &task.deadline().map(Timestamp::as_micros),
                &to_doc(task)?,
            ],
        )?;
        if changed != 1 {
            return Err(StoreError::Corrupt(format!("task {} vanished", task.id)));
        }
        self.announce("task", &task.id, task.state.as_str())
    }

    fn insert_review(&mut self, review: &Review) -> Result<()> {
        self.tx.execute(
            "INSERT INTO taskgate.reviews (id, task_id, kind, state, doc) VALUES ($1, $2, $3, $4, $5)",
            &[
                &review.id,
                &review.task_id,
                &review_kind(review),
                &review.state.as_str(),
                &to_doc(review)?,
            ],
        )?;
        self.announce("review", &review.id, review.state.as_str())
    }

    fn update_review(&mut self, review: &Review) -> Result<()> {
        self.tx.execute(
            "UPDATE taskgate.reviews SET state = $2, doc = $3 WHERE id = $1",
            &[&review.id, &review.state.as_str(), &to_doc(review)?],
        )?;
        self.announce("review", &review.id, review.state.as_str())
    }

    fn append(&mut self, sealed: &SealedEvent) -> Result<()> {
        self.events.push(sealed)
    }
}
