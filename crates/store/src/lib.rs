//! Persistence: the traits a store implements, the embedded SQLite store,
//! the audit journal in front of it, and the single writer through which
//! every change flows.
//!
//! Events are committed to the journal by their callers and moved into the
//! store by the writer; every other state change is committed in one
//! transaction with its events, by the writer, so the log and the state can
//! never disagree.
#![forbid(unsafe_code)]

pub mod checkpoints;
pub mod index;
pub mod journal;
pub mod postgres;
pub mod sinks;
pub mod sqlite;
mod writer;

use std::path::PathBuf;

use taskgate_audit::{
    ChainHead, Checkpoint, EventRow, PublicKey, SealedEvent, Timestamp, VerifyReport,
};
use taskgate_policy::{Review, ReviewState, Task, TaskState};

pub use writer::{OpError, SharedStore, Writer, WriterStats, WriterThread};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("shared store error: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("store holds a record it cannot read: {0}")]
    Corrupt(String),
    #[error("store is not a Taskgate store, or from a newer version: {0}")]
    Incompatible(String),
    #[error("the audit writer has stopped")]
    WriterGone,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What the gateway keeps of a task's token: never the token itself.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskSecrets {
    /// SHA-256 of the token, for bearer checks.
    pub token_sha256: [u8; 32],
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as
    /// PostgreSQL stores it, for the PostgreSQL listener.
    pub scram_verifier: String,
}

impl std::fmt::Debug for TaskSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskSecrets(<secret>)")
    }
}

/// Filters for listing tasks; `None` means any.
#[derive(Clone, Debug, Default)]
pub struct TaskQuery {
    pub state: Option<TaskState>,
    pub requester: Option<String>,
    pub connection: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Clone, Debug, Default)]
pub struct ReviewQuery {
    pub state: Option<ReviewState>,
    pub task: Option<String>,
}

/// Reads, from any thread, concurrently with the writer.
pub trait StoreRead: Send + Sync {
    fn task(&self, id: &str) -> Result<Option<Task>>;
    fn tasks(&self, query: &TaskQuery) -> Result<Vec<Task>>;
    fn task_secrets(&self, id: &str) -> Result<Option<TaskSecrets>>;
    fn review(&self, id: &str) -> Result<Option<Review>>;
    fn reviews(&self, query: &ReviewQuery) -> Result<Vec<Review>>;
    /// The earliest moment a pending or active task must change by itself.
    fn next_deadline(&self) -> Result<Option<Timestamp>>;
    /// Up to `limit` events after `after`, in sequence order.
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<EventRow>>;
    /// The last event's sequence number (0 for an empty log).
    fn head_seq(&self) -> Result<u64>;
    /// Every event in sequence order; stop early by returning false from
    /// `visit`.
    fn scan_events(&self, visit: &mut dyn FnMut(&EventRow) -> bool) -> Result<()>;
    /// Verifies the whole chain and its checkpoints (signatures against
    /// `key`, if given), then the `external` checkpoint copies.
    fn verify_chain(&self, key: Option<PublicKey>, external: &[Checkpoint])
    -> Result<VerifyReport>;
}

/// Makes every transaction committed so far durable (e.g. fsyncs a log).
pub type CommitSync = Box<dyn FnMut() -> Result<()> + Send>;

/// The writer's side. Only the single writer holds one.
pub trait StoreWrite: Send {
    /// `None` when a commit is durable by itself. Otherwise a function the
    /// writer calls, on its own thread, before telling callers their
    /// operations are committed.
    fn commit_sync(&mut self) -> Result<Option<CommitSync>>;
    /// Where the writer keeps its journal of events not yet in the store
    /// (see `journal.rs`).
    fn journal_dir(&self) -> PathBuf;
    /// This node's chain id and the last committed event.
    fn chain(&mut self) -> Result<(String, ChainHead)>;
    /// The body of the last `checkpoint` event, if there is one.
    fn last_checkpoint(&mut self) -> Result<Option<Vec<u8>>>;
    /// Runs `work` in one transaction and commits it; if `work` or the
    /// commit fails, nothing of it is kept.
    fn transaction(&mut self, work: &mut dyn FnMut(&mut dyn WriteTx) -> Result<()>) -> Result<()>;
}

/// What the writer may do inside a transaction. Reads see earlier writes of
/// the same transaction.
pub trait WriteTx {
    fn task(&mut self, id: &str) -> Result<Option<Task>>;
    fn review(&mut self, id: &str) -> Result<Option<Review>>;
    fn pending_grant_review(&mut self, task_id: &str) -> Result<Option<Review>>;
    /// Pending and active tasks `subject` requested.
    fn open_tasks_of(&mut self, subject: &str) -> Result<usize>;
    /// Pending statement reviews of the tasks `subject` requested.
    fn held_statements_of(&mut self, subject: &str) -> Result<usize>;
    /// Pending or active tasks whose deadline is at or before `now`.
    fn due_tasks(&mut self, now: Timestamp) -> Result<Vec<Task>>;
    /// The body of the newest `checkpoint` event, if there is one.
    fn last_checkpoint(&mut self) -> Result<Option<Vec<u8>>>;
    fn insert_task(&mut self, task: &Task, secrets: &TaskSecrets) -> Result<()>;
    fn update_task(&mut self, task: &Task) -> Result<()>;
    fn insert_review(&mut self, review: &Review) -> Result<()>;
    fn update_review(&mut self, review: &Review) -> Result<()>;
    fn append(&mut self, event: &SealedEvent) -> Result<()>;
}
