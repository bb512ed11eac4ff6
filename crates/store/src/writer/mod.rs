//! The single writer of a node: every event and every change to a task or
//! review goes through it, so the chain has one order.
//!
//! Appended events go one of two ways. On a node with its own store, the
//! caller seals them onto the chain and writes them to the journal, which
//! is the commit a statement waits for; the writer thread moves journaled
//! events into the store in batches (`local.rs`). In a fleet, the writer
//! thread commits each round of waiting events to the shared store, which
//! is the commit (`shared.rs`).
//!
//! Every other change (a task, a review, a checkpoint) is an operation the
//! writer thread applies in one store transaction together with its events
//! (`apply.rs`); its caller hears once it is committed.

mod apply;
mod local;
mod shared;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use taskgate_audit::{EventDraft, PreparedEvent};
use taskgate_policy::steps::IdentityLimits;
use taskgate_policy::{Actor, DomainError, Review, Task};
use tokio::sync::oneshot;

use crate::checkpoints::Checkpointing;
use crate::{Result, StoreError, StoreWrite, TaskSecrets};

pub use shared::SharedStore;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

enum Op {
    CreateTask {
        task: Box<Task>,
        secrets: TaskSecrets,
        review: Option<Box<Review>>,
        limits: IdentityLimits,
    },
    DecideReview {
        review_id: String,
        actor: Actor,
        approve: bool,
        comment: Option<String>,
    },
    EndTask {
        task_id: String,
        actor: Actor,
    },
    RevokeTask {
        task_id: String,
        actor: Actor,
        comment: Option<String>,
    },
    ExpireDue,
    /// Holds a statement for review: stores the review and its
    /// `review.requested`, if the task is still active.
    RequestStatementReview {
        review: Box<Review>,
        session: String,
        connection: String,
        reason: String,
        limits: IdentityLimits,
    },
    /// Closes a statement review nobody decided in time.
    LapseReview {
        review_id: String,
        why: String,
    },
    /// A signed checkpoint now, if anything was appended since the last.
    Checkpoint,
    /// Nothing but storing every event journaled so far.
    Flush,
}

enum Outcome {
    Task(Box<Task>),
    Decided(Box<(Review, Task)>),
    Expired(Vec<Task>),
    Review(Box<Review>),
    /// The checkpoint event's sequence number; None if nothing was new.
    Checkpoint(Option<u64>),
    Flushed,
}

type Reply = oneshot::Sender<Result<Outcome, OpError>>;

struct Request {
    /// Taken by the writer when applied.
    op: Option<Op>,
    reply: Reply,
}

/// What the writer thread is sent.
enum Message {
    Op(Request),
    /// Events were journaled while the writer was idle.
    Wake,
}

/// Counters for metrics; read with [`Writer::stats`].
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Events moved into the store.
    pub events: AtomicU64,
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    pub failed_batches: AtomicU64,
    pub commit_micros: AtomicU64,
    /// The last sequence number sealed and journaled.
    pub sealed_seq: AtomicU64,
    /// The last sequence number in the store.
    pub stored_seq: AtomicU64,
}

/// A handle to submit events and operations; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    front: WriterFront,
    ops: Sender<Message>,
    /// The node stamped on every event (`[server] node`).
    node: Option<Arc<str>>,
    /// The chain's id, so callers can encode their events before sealing.
    chain_id: Arc<str>,
    stats: Arc<WriterStats>,
    /// Woken whenever a review is decided, so a held statement need not
    /// poll for its decision.
    decided: Arc<tokio::sync::Notify>,
    /// Woken whenever a review is added, decided or closed (live lists).
    reviews_changed: Arc<tokio::sync::Notify>,
    /// What one identity may have open (checked in the store's
    /// transaction, so every node of a fleet counts the same rows).
    limits: IdentityLimits,
}

/// Where appended events go first.
#[derive(Clone)]
enum WriterFront {
    /// One node: the local journal, then the store (see `local.rs`).
    Local(local::Local),
    /// A fleet: the shared store, a round at a time (see `shared.rs`).
    Shared(Arc<shared::Queue>),
}

/// The writer's threads; [`WriterThread::join`] waits for them to finish
/// once every [`Writer`] handle is dropped.
pub struct WriterThread(JoinHandle<()>, Option<JoinHandle<()>>);

impl WriterThread {
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("audit writer thread panicked");
        }
        if let Some(sync) = self.1
            && sync.join().is_err()
        {
            tracing::error!("audit sync thread panicked");
        }
    }
}

fn corrupt(why: impl Into<String>) -> OpError {
    OpError::Store(StoreError::Corrupt(why.into()))
}

impl Writer {
    /// Starts the writer thread over a store, without signed checkpoints.
    pub fn start<S: StoreWrite + 'static>(store: S) -> Result<(Writer, WriterThread)> {
        Self::start_with(store, None)
    }

    /// [`Writer::start_as`] without a node name.
    pub fn start_with<S: StoreWrite + 'static>(
        store: S,
        checkpointing: Option<Checkpointing>,
    ) -> Result<(Writer, WriterThread)> {
        Self::start_as(None, store, checkpointing)
    }

    /// Starts the writer over a node's own store: first moves into the
    /// store whatever the journal holds that the store lacks (events
    /// journaled before a crash), then opens a new journal. With
    /// `checkpointing`, it signs a checkpoint every so many events, on
    /// [`Writer::checkpoint`], and when it stops. Every event is stamped
    /// with `node`.
    pub fn start_as<S: StoreWrite + 'static>(
        node: Option<&str>,
        store: S,
        checkpointing: Option<Checkpointing>,
    ) -> Result<(Writer, WriterThread)> {
        let stats = Arc::new(WriterStats::default());
        let node: Option<Arc<str>> = node.map(Arc::from);
        let (ops, rx) = std::sync::mpsc::channel();
        let (local, chain_id, thread) =
            local::Local::start(store, checkpointing, node.clone(), Arc::clone(&stats), rx)?;
        Ok((
            Self::handle(WriterFront::Local(local), ops, node, chain_id, stats),
            thread,
        ))
    }

    /// Starts the writer over a store the fleet shares: each event is
    /// committed there, in the round of events it joins, before its caller
    /// goes on (see `shared.rs`).
    pub fn start_shared<S: SharedStore + 'static>(
        store: S,
        checkpointing: Option<Checkpointing>,
    ) -> Result<(Writer, WriterThread)> {
        let stats = Arc::new(WriterStats::default());
        let node: Arc<str> = Arc::from(store.node());
        let chain_id = store.chain_id().to_owned();
        let (ops, rx) = std::sync::mpsc::channel();
        let (queue, thread) = shared::start(store, checkpointing, Arc::clone(&stats), rx)?;
        Ok((
            Self::handle(WriterFront::Shared(queue), ops, Some(node), chain_id, stats),
            thread,
        ))
    }

    fn handle(
        front: WriterFront,
        ops: Sender<Message>,
        node: Option<Arc<str>>,
        chain_id: String,
        stats: Arc<WriterStats>,
    ) -> Writer {
        Writer {
            front,
            ops,
            node,
            chain_id: chain_id.into(),
            stats,
            decided: Arc::default(),
            reviews_changed: Arc::default(),
            limits: IdentityLimits::NONE,
        }
    }

    /// This handle (and its clones) with `limits` on what one identity
    /// may have open.
    pub fn with_identity_limits(mut self, limits: IdentityLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Counters shared with the writer thread, for metrics.
    pub fn stats(&self) -> Arc<WriterStats> {
        Arc::clone(&self.stats)
    }

    /// The node this writer stamps on events, if it was given one.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    async fn submit(&self, op: Op) -> Result<Outcome, OpError> {
        let (reply, answer) = oneshot::channel();
        self.ops
            .send(Message::Op(Request {
                op: Some(op),
                reply,
            }))
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    fn prepare(&self, mut draft: EventDraft) -> Result<PreparedEvent, OpError> {
        if let Some(node) = &self.node {
            draft.node = Some(node.to_string());
        }
        draft
            .prepare(&self.chain_id)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// Commits prepared events; with `wait`, resolves once they are
    /// committed, with the last one's sequence number.
    async fn commit(&self, events: Vec<PreparedEvent>, wait: bool) -> Result<u64, OpError> {
        match &self.front {
            WriterFront::Local(local) => local.commit(events, wait, &self.ops, &self.stats).await,
            WriterFront::Shared(queue) => queue.commit(events, wait, &self.ops).await,
        }
    }

    /// Appends one event; resolves with its sequence number once committed.
    /// The event is encoded on the caller's thread.
    pub async fn append(&self, draft: EventDraft) -> Result<u64, OpError> {
        self.commit(vec![self.prepare(draft)?], true).await
    }

    /// Appends several events, in order, with one write, and resolves once
    /// all are committed.
    pub async fn append_all(&self, drafts: Vec<EventDraft>) -> Result<(), OpError> {
        let prepared = drafts
            .into_iter()
            .map(|d| self.prepare(d))
            .collect::<Result<Vec<_>, _>>()?;
        self.commit(prepared, true).await.map(drop)
    }

    /// Appends an event without waiting for it to be committed: for records
    /// nothing waits on (a command's outcome). It keeps its place after
    /// every event this node appended before it.
    pub async fn append_queued(&self, draft: EventDraft) -> Result<(), OpError> {
        self.commit(vec![self.prepare(draft)?], false)
            .await
            .map(drop)
    }

    /// Wakes whoever waits on review changes through this writer: for a
    /// change another node made (the fleet announces it).
    pub fn reviews_changed_elsewhere(&self) {
        self.decided.notify_waiters();
        self.reviews_changed.notify_waiters();
    }

    /// Resolves once every event journaled before the call is in the
    /// store, for readers that must see them (search, story, verify).
    pub async fn flush(&self) -> Result<(), OpError> {
        match self.submit(Op::Flush).await? {
            Outcome::Flushed => Ok(()),
            _ => Err(unexpected()),
        }
    }

    /// Stores a new task (with its grant review, if it needs one) and its
    /// `task.requested` (and `task.activated`) events.
    pub async fn create_task(
        &self,
        task: Task,
        secrets: TaskSecrets,
        review: Option<Review>,
    ) -> Result<Task, OpError> {
        let op = Op::CreateTask {
            task: Box::new(task),
            secrets,
            review: review.map(Box::new),
            limits: self.limits,
        };
        match self.submit(op).await? {
            Outcome::Task(task) => {
                self.reviews_changed.notify_waiters();
                Ok(*task)
            }
            _ => Err(unexpected()),
        }
    }

    pub async fn decide_review(
        &self,
        review_id: &str,
        actor: Actor,
        approve: bool,
        comment: Option<String>,
    ) -> Result<(Review, Task), OpError> {
        let op = Op::DecideReview {
            review_id: review_id.to_owned(),
            actor,
            approve,
            comment,
        };
        match self.submit(op).await? {
            Outcome::Decided(pair) => {
                self.decided.notify_waiters();
                self.reviews_changed.notify_waiters();
                Ok(*pair)
            }
            _ => Err(unexpected()),
        }
    }

    /// Resolves at the next review decision made through any handle of
    /// this writer. Create it (and `enable` it) before reading a review's
    /// state, so a decision in between is not missed.
    pub fn review_decided(&self) -> tokio::sync::futures::Notified<'_> {
        self.decided.notified()
    }

    /// Resolves at the next change to any review through this writer: one
    /// requested, decided, lapsed or withdrawn. For lists kept live.
    pub fn reviews_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.reviews_changed.notified()
    }

    pub async fn end_task(&self, task_id: &str, actor: Actor) -> Result<Task, OpError> {
        let op = Op::EndTask {
            task_id: task_id.to_owned(),
            actor,
        };
        match self.submit(op).await? {
            Outcome::Task(task) => {
                self.reviews_changed.notify_waiters();
                Ok(*task)
            }
            _ => Err(unexpected()),
        }
    }

    pub async fn revoke_task(
        &self,
        task_id: &str,
        actor: Actor,
        comment: Option<String>,
    ) -> Result<Task, OpError> {
        let op = Op::RevokeTask {
            task_id: task_id.to_owned(),
            actor,
            comment,
        };
        match self.submit(op).await? {
            Outcome::Task(task) => {
                self.reviews_changed.notify_waiters();
                Ok(*task)
            }
            _ => Err(unexpected()),
        }
    }

    /// Stores a statement review (the task must be active) with its
    /// `review.requested` event.
    pub async fn request_statement_review(
        &self,
        review: Review,
        session: &str,
        connection: &str,
        reason: &str,
    ) -> Result<Review, OpError> {
        let op = Op::RequestStatementReview {
            review: Box::new(review),
            session: session.to_owned(),
            connection: connection.to_owned(),
            reason: reason.to_owned(),
            limits: self.limits,
        };
        match self.submit(op).await? {
            Outcome::Review(review) => {
                self.reviews_changed.notify_waiters();
                Ok(*review)
            }
            _ => Err(unexpected()),
        }
    }

    /// Closes a pending statement review as undecided; a review decided
    /// meanwhile is returned as it is.
    pub async fn lapse_review(&self, review_id: &str, why: &str) -> Result<Review, OpError> {
        let op = Op::LapseReview {
            review_id: review_id.to_owned(),
            why: why.to_owned(),
        };
        match self.submit(op).await? {
            Outcome::Review(review) => {
                self.reviews_changed.notify_waiters();
                Ok(*review)
            }
            _ => Err(unexpected()),
        }
    }

    /// Signs a checkpoint of the chain's head now, unless nothing was
    /// appended since the last one; resolves with its event's sequence.
    pub async fn checkpoint(&self) -> Result<Option<u64>, OpError> {
        match self.submit(Op::Checkpoint).await? {
            Outcome::Checkpoint(seq) => Ok(seq),
            _ => Err(unexpected()),
        }
    }

    /// Expires every task whose deadline has passed; returns them.
    pub async fn expire_due(&self) -> Result<Vec<Task>, OpError> {
        match self.submit(Op::ExpireDue).await? {
            Outcome::Expired(tasks) => Ok(tasks),
            _ => Err(unexpected()),
        }
    }
}

fn unexpected() -> OpError {
    OpError::Store(StoreError::Corrupt(
        "writer answered the wrong operation".into(),
    ))
}
