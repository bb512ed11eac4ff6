//! The fast path for a round that only appends events (the data plane's
//! statements, with no task change and no checkpoint): one statement, in
//! its own implicit transaction, that moves the chain's head from where this
//! node last saw it and inserts the round's events, only if the head is
//! still there. Five round trips (`BEGIN`, the head's lock, the insert, the
//! head's update, `COMMIT`) become one.
//!
//! If another node appended since, the head's `UPDATE` matches no row
//! (PostgreSQL re-checks its condition on the row another transaction just
//! committed), so nothing is inserted, and the round is done again on the
//! locked path, sealed on the head it reads. Either way every event is
//! linked to the one the store holds before it.

use taskgate_audit::{ChainHead, SealedEvent, Timestamp};
use taskgate_policy::{Review, Task};

use super::write::EventColumns;
use crate::{Result, StoreError, TaskSecrets, WriteTx};

/// The head moves and the events go in together, or neither.
pub(super) const APPEND_AT_HEAD: &str = "WITH head AS (
        UPDATE taskgate.chain SET seq = $10, hash = $11
        WHERE id = 1 AND seq = $12 AND hash = $13
        RETURNING 1)
     INSERT INTO taskgate.events (seq, time_us, type, task, session, connection, subject, body, hash)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[],
                          $6::text[], $7::text[], $8::bytea[], $9::bytea[])
     WHERE EXISTS (SELECT 1 FROM head)";

/// Rounds run on the locked path after a conflict before the fast path is
/// tried again: while other nodes append too, most tries would miss.
pub(super) const BACK_OFF_ROUNDS: u32 = 16;

/// A round's work as far as it only appends: anything else it asks for
/// (a read, a task or review change) means it needs the locked path.
#[derive(Default)]
pub(super) struct AppendOnly {
    pub(super) events: EventColumns,
    pub(super) needs_lock: bool,
}

impl AppendOnly {
    fn refuse<T>(&mut self) -> Result<T> {
        self.needs_lock = true;
        Err(StoreError::Incompatible(
            "this round changes more than the log: it takes the chain's lock".into(),
        ))
    }
}

impl WriteTx for AppendOnly {
    fn task(&mut self, _: &str) -> Result<Option<Task>> {
        self.refuse()
    }
    fn review(&mut self, _: &str) -> Result<Option<Review>> {
        self.refuse()
    }
    fn pending_grant_review(&mut self, _: &str) -> Result<Option<Review>> {
        self.refuse()
    }
    fn open_tasks_of(&mut self, _: &str) -> Result<usize> {
        self.refuse()
    }
    fn held_statements_of(&mut self, _: &str) -> Result<usize> {
        self.refuse()
    }
    fn due_tasks(&mut self, _: Timestamp) -> Result<Vec<Task>> {
        self.refuse()
    }
    fn last_checkpoint(&mut self) -> Result<Option<Vec<u8>>> {
        self.refuse()
    }
    fn insert_task(&mut self, _: &Task, _: &TaskSecrets) -> Result<()> {
        self.refuse()
    }
    fn update_task(&mut self, _: &Task) -> Result<()> {
        self.refuse()
    }
    fn insert_review(&mut self, _: &Review) -> Result<()> {
        self.refuse()
    }
    fn update_review(&mut self, _: &Review) -> Result<()> {
        self.refuse()
    }
    fn append(&mut self, event: &SealedEvent) -> Result<()> {
        self.events.push(event)
    }
}

/// The parameters of [`APPEND_AT_HEAD`] besides the events: the new head,
/// then the head the round was sealed on.
pub(super) fn heads(from: &ChainHead, to: &ChainHead) -> Result<(i64, Vec<u8>, i64, Vec<u8>)> {
    Ok((
        super::i64_of(to.seq)?,
        to.hash.to_vec(),
        super::i64_of(from.seq)?,
        from.hash.to_vec(),
    ))
}
