//! The single writer.
//!
//! Events reach the log in two steps. First the caller itself seals its
//! events onto the chain and writes them to the journal (see
//! `journal.rs`): that write is the commit a statement waits for before it
//! goes upstream. Then the writer thread moves journaled events into the
//! store every few milliseconds, many per transaction.
//!
//! Every other change (a task, a review, a checkpoint) is an operation the
//! writer thread applies in one store transaction together with its events,
//! holding the journal's lock so the chain stays in one order; its caller
//! hears once it is committed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use taskgate_audit::{
    Chain, ChainHead, Checkpoint, CheckpointKey, Event, EventDraft, PreparedEvent, SealedEvent,
    Timestamp,
};
use taskgate_policy::{Actor, DomainError, Review, Task, steps};
use tokio::sync::oneshot;

use crate::checkpoints::Checkpointing;
use crate::journal::{self, Front};
use crate::{CommitSync, Result, StoreError, StoreWrite, TaskSecrets, WriteTx};

/// How long journaled events may wait for the store while events keep
/// coming: the store's lag behind the journal, and its batch size.
const STORE_EVERY: Duration = Duration::from_millis(2);
/// Journaled events waiting for the store beyond which appenders wait too,
/// so a store that cannot keep up slows callers instead of filling memory.
const MAX_PENDING: usize = 200_000;

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
    journal: Arc<Journal>,
    ops: Sender<Message>,
    /// Set by the writer thread before it sleeps with nothing to store.
    idle: Arc<AtomicBool>,
    /// With `Durability::Full`: asks the sync thread to make the journal
    /// durable through what is written now.
    syncer: Option<Sender<SyncWait>>,
    /// The chain's id, so callers can encode their events before sealing.
    chain_id: Arc<str>,
    stats: Arc<WriterStats>,
    /// Woken whenever a review is decided, so a held statement need not
    /// poll for its decision.
    decided: Arc<tokio::sync::Notify>,
    /// Woken whenever a review is added, decided or closed (live lists).
    reviews_changed: Arc<tokio::sync::Notify>,
}

/// An ask for a sync: the journal's epoch when the caller's events were
/// sealed (see [`Front::epoch`]), and where to answer.
type SyncWait = (u64, oneshot::Sender<Result<(), OpError>>);

/// The journal's front behind its lock, and the signal that a group the
/// sync thread wrote outside the lock has landed.
struct Journal {
    front: Mutex<Front>,
    landed: Condvar,
}

impl Journal {
    fn lock(&self) -> MutexGuard<'_, Front> {
        self.front.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock, once no group is being written outside it: for whatever
    /// writes to the journal or takes its events for the store.
    fn lock_settled(&self) -> MutexGuard<'_, Front> {
        let mut front = self.lock();
        while front.in_flight() {
            front = self.landed.wait(front).unwrap_or_else(|e| e.into_inner());
        }
        front
    }
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

    /// Starts the writer over a store: first moves into the store whatever
    /// the journal holds that the store lacks (events journaled before a
    /// crash), then opens a new journal. With `checkpointing`, it signs a
    /// checkpoint every so many events, on [`Writer::checkpoint`], and
    /// when it stops.
    pub fn start_with<S: StoreWrite + 'static>(
        mut store: S,
        checkpointing: Option<Checkpointing>,
    ) -> Result<(Writer, WriterThread)> {
        let mut store_sync = store.commit_sync()?;
        let head = recover(&mut store, &mut store_sync)?;
        let (chain_id, _) = store.chain()?;
        let signer = match checkpointing {
            Some(c) => Some(Signer::resume(&mut store, c, &chain_id)?),
            None => None,
        };
        let durable = store_sync.is_some();
        let front = Front::open(
            &store.journal_dir(),
            Chain::new(chain_id.clone(), head),
            durable,
        )?;
        let journal = Arc::new(Journal {
            front: Mutex::new(front),
            landed: Condvar::new(),
        });
        let stats = Arc::new(WriterStats::default());
        stats.sealed_seq.store(head.seq, Ordering::Relaxed);
        stats.stored_seq.store(head.seq, Ordering::Relaxed);
        let (syncer, sync_thread) = if durable {
            let (tx, rx) = std::sync::mpsc::channel();
            let journal = Arc::clone(&journal);
            let thread = std::thread::Builder::new()
                .name("audit-sync".into())
                .spawn(move || sync_loop(&journal, &rx))
                .map_err(|e| StoreError::Corrupt(format!("cannot start the sync thread: {e}")))?;
            (Some(tx), Some(thread))
        } else {
            (None, None)
        };
        let (ops, rx) = std::sync::mpsc::channel();
        let idle = Arc::new(AtomicBool::new(false));
        let state = State {
            store,
            store_sync,
            journal: Arc::clone(&journal),
            syncer: syncer.clone(),
            signer,
            stats: Arc::clone(&stats),
            unstored: Vec::new(),
            spare: Vec::new(),
            failing: false,
            spare_failed: None,
        };
        let thread_idle = Arc::clone(&idle);
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run(state, &rx, &thread_idle))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the audit writer: {e}")))?;
        let writer = Writer {
            journal,
            ops,
            idle,
            syncer,
            chain_id: chain_id.into(),
            stats,
            decided: Arc::default(),
            reviews_changed: Arc::default(),
        };
        Ok((writer, WriterThread(handle, sync_thread)))
    }

    /// Counters shared with the writer thread, for metrics.
    pub fn stats(&self) -> Arc<WriterStats> {
        Arc::clone(&self.stats)
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

    fn prepare(&self, draft: EventDraft) -> Result<PreparedEvent, OpError> {
        draft
            .prepare(&self.chain_id)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// Seals events on the caller's thread and journals them (see
    /// [`Front::append`]); returns the last sequence number. Wakes the
    /// writer thread if it was idle.
    fn journal(
        &self,
        events: Vec<PreparedEvent>,
        write_now: bool,
    ) -> Result<(u64, Journaled), OpError> {
        let (seq, was_empty, journaled) = {
            let mut front = self.journal.lock();
            let was_empty = front.pending_len() == 0;
            let seq = front.append(events, write_now)?;
            let journaled = Journaled {
                waiting: front.pending_len(),
                epoch: front.epoch(),
            };
            (seq, was_empty, journaled)
        };
        self.stats.sealed_seq.fetch_max(seq, Ordering::Relaxed);
        if was_empty && self.idle.swap(false, Ordering::SeqCst) {
            let _ = self.ops.send(Message::Wake);
        }
        Ok((seq, journaled))
    }

    /// With `Durability::Full`, resolves once the journal is synced through
    /// everything written so far; then, if the store has fallen far
    /// behind, waits for it to catch up.
    async fn settle(&self, journaled: Journaled) -> Result<(), OpError> {
        if let Some(syncer) = &self.syncer {
            let (tx, rx) = oneshot::channel();
            syncer
                .send((journaled.epoch, tx))
                .map_err(|_| StoreError::WriterGone)?;
            rx.await.map_err(|_| StoreError::WriterGone)??;
        }
        if journaled.waiting > MAX_PENDING {
            while self.journal.lock().pending_len() > MAX_PENDING / 2 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(())
    }

    /// Appends one event; resolves with its sequence number once committed.
    /// The event is encoded and sealed on the caller's thread.
    pub async fn append(&self, draft: EventDraft) -> Result<u64, OpError> {
        let (seq, journaled) = self.journal(vec![self.prepare(draft)?], true)?;
        self.settle(journaled).await?;
        Ok(seq)
    }

    /// Appends several events, in order, with one write, and resolves once
    /// all are committed.
    pub async fn append_all(&self, drafts: Vec<EventDraft>) -> Result<(), OpError> {
        let prepared = drafts
            .into_iter()
            .map(|d| self.prepare(d))
            .collect::<Result<Vec<_>, _>>()?;
        let (_, journaled) = self.journal(prepared, true)?;
        self.settle(journaled).await
    }

    /// Seals an event without waiting for it to be written: for records
    /// nothing waits on (a command's outcome). Its place in the chain is
    /// fixed now; the next event that is waited on, or the writer within a
    /// few milliseconds, writes it.
    pub async fn append_queued(&self, draft: EventDraft) -> Result<(), OpError> {
        self.journal(vec![self.prepare(draft)?], false).map(drop)
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

/// Moves into the store the events the journal holds beyond its head (the
/// gateway stopped before storing them) and clears the journal; returns
/// the chain's head.
fn recover<S: StoreWrite>(store: &mut S, store_sync: &mut Option<CommitSync>) -> Result<ChainHead> {
    let (_, stored) = store.chain()?;
    let dir = store.journal_dir();
    let found = journal::recover(&dir, stored)?;
    let mut head = stored;
    if let Some(last) = found.events.last() {
        head = ChainHead {
            seq: last.seq,
            hash: last.hash,
        };
        store.transaction(&mut |tx| found.events.iter().try_for_each(|e| tx.append(e)))?;
        if let Some(sync) = store_sync.as_mut() {
            sync()?;
        }
        tracing::warn!(
            events = found.events.len(),
            through = head.seq,
            "moved audit events from the journal into the store (the gateway had stopped before storing them)"
        );
    }
    for segment in &found.segments {
        if found.dropped_bytes > 0 {
            // Kept for inspection: either a write cut short by a crash (its
            // statement never went upstream) or damage to the file.
            let mut kept = segment.clone().into_os_string();
            kept.push(".damaged");
            let _ = std::fs::rename(segment, kept);
        } else {
            journal::remove(segment);
        }
    }
    if found.dropped_bytes > 0 {
        tracing::warn!(
            bytes = found.dropped_bytes,
            dir = %dir.display(),
            "the audit journal ended in bytes that are not a whole event linked to the chain; they were not stored (a write the crash cut short is never forwarded) and the segments are kept as *.damaged"
        );
    }
    Ok(head)
}

const BROKEN: &str =
    "a sync of the audit journal failed; restart the gateway once its disk is healthy";

/// What a caller's events left behind in the journal.
struct Journaled {
    /// Events waiting for the store, for backpressure.
    waiting: usize,
    epoch: u64,
}

/// Makes the journal durable for everyone who asked since the last round:
/// group commit. Each round writes every record framed since the last one
/// with one write, outside the lock, then syncs. After one failed sync
/// every later append is refused (the kernel may have dropped the data yet
/// report the next sync as fine).
fn sync_loop(journal: &Journal, asks: &Receiver<SyncWait>) {
    let mut empty = Vec::new();
    while let Ok(first) = asks.recv() {
        let mut waiting = vec![first];
        waiting.extend(asks.try_iter());
        let result = sync_round(journal, &mut empty);
        // A caller whose events an undo forgot must not hear they are safe.
        let epoch = journal.lock().epoch();
        for (asked, wait) in waiting {
            let answer = match &result {
                _ if asked != epoch => Err(corrupt(
                    "the audit journal could not be written; the event was not kept",
                )),
                Ok(()) => Ok(()),
                Err(why) => Err(corrupt(why.clone())),
            };
            let _ = wait.send(answer);
        }
    }
}

/// Writes the framed group, if any, and syncs.
fn sync_round(journal: &Journal, empty: &mut Vec<u8>) -> std::result::Result<(), String> {
    // Only a failed sync stops syncing: records already written while the
    // store is refusing new ones (a full disk) still count once they are
    // durable.
    let (group, file) = {
        let mut front = journal.lock();
        if let Some(why) = front.broken() {
            return Err(why.to_owned());
        }
        let group = front
            .take_group(std::mem::take(empty))
            .map_err(|e| e.to_string())?;
        front.set_syncing(true);
        (group, front.current_file())
    };
    let result = write_and_sync(journal, group, &file, empty);
    journal.lock().set_syncing(false);
    result
}

fn write_and_sync(
    journal: &Journal,
    group: Option<journal::Group>,
    file: &std::fs::File,
    empty: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    if let Some(group) = group {
        let written = journal::write_at(&group.file, &group.bytes, group.offset());
        let (result, bytes) = journal.lock().finish_group(group, written);
        journal.landed.notify_all();
        *empty = bytes;
        result.map_err(|e| e.to_string())?;
    }
    file.sync_data().map_err(|error| {
        tracing::error!(%error, "the audit journal could not be made durable; refusing every event until the gateway restarts");
        journal.lock().break_for_good(format!("{BROKEN} ({error})"));
        format!("{BROKEN} ({error})")
    })
}

/// What the writer thread owns.
struct State<S> {
    store: S,
    store_sync: Option<CommitSync>,
    journal: Arc<Journal>,
    /// With `Durability::Full`: the sync thread, which writes what callers
    /// framed.
    syncer: Option<Sender<SyncWait>>,
    signer: Option<Signer>,
    stats: Arc<WriterStats>,
    /// Journaled events a failed store transaction handed back, stored
    /// before anything newer.
    unstored: Vec<SealedEvent>,
    spare: Vec<SealedEvent>,
    /// Whether the last attempt to store failed (for logging the change).
    failing: bool,
    /// When making a spare journal segment last failed.
    spare_failed: Option<Instant>,
}

fn run<S: StoreWrite>(mut state: State<S>, rx: &Receiver<Message>, idle: &AtomicBool) {
    loop {
        let busy = !state.unstored.is_empty() || state.journal.lock().pending_len() > 0 || {
            // Say so before the last look, so an appender either sees the
            // flag or its event is seen here.
            idle.store(true, Ordering::SeqCst);
            let pending = state.journal.lock().pending_len() > 0;
            if pending {
                idle.store(false, Ordering::SeqCst);
            }
            pending
        };
        let first = if busy {
            match rx.recv_timeout(STORE_EVERY) {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(message) => Some(message),
                Err(_) => break,
            }
        };
        let mut ops = Vec::new();
        let mut woken = false;
        for message in first.into_iter().chain(rx.try_iter()) {
            match message {
                Message::Op(request) => ops.push(request),
                Message::Wake => woken = true,
            }
        }
        if !ops.is_empty() {
            let forced = ops.iter().any(|r| matches!(r.op, Some(Op::Checkpoint)));
            state.commit_locked(ops, forced);
        } else if !woken {
            // A wake means events just started to come: give them STORE_EVERY
            // to gather before storing.
            state.store_pending();
        }
        state.ready_spare();
    }
    state.stop();
}

/// How long after a failed try the writer makes a spare segment again.
const SPARE_RETRY: Duration = Duration::from_secs(10);

impl<S: StoreWrite> State<S> {
    /// Makes the journal's next segment ahead of time, off the lock, so the
    /// appender that fills the current one does not have to.
    fn ready_spare(&mut self) {
        if self
            .spare_failed
            .is_some_and(|at| at.elapsed() < SPARE_RETRY)
        {
            return;
        }
        let Some(dir) = self.journal.lock().wants_spare() else {
            return;
        };
        match journal::Spare::create(&dir) {
            Ok(spare) => {
                self.spare_failed = None;
                self.journal.lock().give_spare(spare);
            }
            Err(error) => {
                self.spare_failed = Some(Instant::now());
                tracing::warn!(%error, "cannot make the audit journal's next segment ahead of time");
            }
        }
    }

    /// Stores journaled events without holding the journal's lock, so
    /// appenders go on meanwhile.
    fn store_pending(&mut self) {
        let mut events = std::mem::take(&mut self.spare);
        events.append(&mut self.unstored);
        let framed = {
            let mut front = self.journal.lock_settled();
            match &self.syncer {
                Some(_) => front.take_written(&mut events),
                None => {
                    front.take_pending(&mut events);
                    false
                }
            }
        };
        if framed && let Some(syncer) = &self.syncer {
            // Records nobody waits on (command outcomes): the sync thread
            // writes them in a round of their own.
            let (nudge, _) = oneshot::channel();
            let _ = syncer.send((0, nudge));
        }
        if events.is_empty() {
            self.spare = events;
            return;
        }
        let started = Instant::now();
        let stored = self
            .store
            .transaction(&mut |tx| events.iter().try_for_each(|e| tx.append(e)));
        match stored {
            Ok(()) => {
                let through = events.last().map_or(0, |e| e.seq);
                self.stored(events.len() as u64, 0, through, started);
                events.clear();
                self.spare = events;
                self.release_segments(through);
                if self.signer.as_ref().is_some_and(|s| s.due(through, false)) {
                    self.commit_locked(Vec::new(), false);
                }
            }
            Err(error) => {
                self.unstored = events;
                self.store_failed(&error);
            }
        }
    }

    fn stored(&mut self, events: u64, ops: u64, through: u64, started: Instant) {
        let stats = &self.stats;
        stats.events.fetch_add(events, Ordering::Relaxed);
        stats.ops.fetch_add(ops, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats.commit_micros.fetch_add(micros, Ordering::Relaxed);
        stats.stored_seq.fetch_max(through, Ordering::Relaxed);
        if self.failing {
            self.failing = false;
            self.journal.lock().refuse(None);
            tracing::info!("the audit store takes events again");
        }
    }

    /// Events are refused until the store takes them again: whatever was
    /// journaled stays in the journal and is retried.
    fn store_failed(&mut self, error: &StoreError) {
        self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        if !self.failing {
            self.failing = true;
            tracing::error!(%error, "the audit store cannot be written; refusing new events until it can");
        }
        self.journal
            .lock()
            .refuse(Some(format!("the audit store cannot be written: {error}")));
    }

    /// Deletes journal segments whose events are all stored, once the store
    /// is synced (with `Durability::Full`) so it holds them for good.
    fn release_segments(&mut self, through: u64) {
        let done = self.journal.lock().take_done(through);
        if done.is_empty() {
            return;
        }
        if let Some(sync) = self.store_sync.as_mut()
            && let Err(error) = sync()
        {
            tracing::error!(%error, "cannot sync the audit store; keeping its journal");
            return;
        }
        done.iter().for_each(|p| journal::remove(p));
    }

    /// Applies operations in one transaction with every event journaled so
    /// far, holding the journal's lock so their events follow those in the
    /// chain. Signs a checkpoint if one is due (or `forced`).
    fn commit_locked(&mut self, mut ops: Vec<Request>, forced: bool) {
        let started = Instant::now();
        let mut front = self.journal.lock_settled();
        let mut events = std::mem::take(&mut self.unstored);
        front.take_pending(&mut events);
        let mark = front.begin();
        let sealed_before = front.head().seq;
        let now = Timestamp::now();
        let mut outcomes: Vec<Result<Outcome, OpError>> = Vec::with_capacity(ops.len());
        let mut signed: Option<(Checkpoint, u64)> = None;
        let signer = &self.signer;
        let committed = self.store.transaction(&mut |tx| {
            outcomes.clear();
            signed = None;
            for event in &events {
                tx.append(event)?;
            }
            for request in &mut ops {
                let Some(op) = request.op.take() else {
                    outcomes.push(Err(unexpected()));
                    continue;
                };
                outcomes.push(apply(tx, &mut front, op, now)?);
            }
            if let Some(s) = signer.as_ref()
                && s.due(front.head().seq, forced)
            {
                let checkpoint = Checkpoint::sign(
                    &s.key,
                    s.chain_id.clone(),
                    front.head(),
                    now,
                    s.prev_signature.clone(),
                )
                .map_err(|e| StoreError::Corrupt(format!("cannot sign a checkpoint: {e}")))?;
                let seq = seal_all(tx, &mut front, vec![checkpoint.draft()])?;
                signed = Some((checkpoint, seq));
            }
            Ok(())
        });
        let committed = committed.and_then(|()| {
            // The operations' own changes must be as durable as their
            // events: sync the store and the journal before answering.
            if let Some(sync) = self.store_sync.as_mut() {
                sync()?;
                front.current_file().sync_data().map_err(|e| {
                    StoreError::Corrupt(format!("cannot sync the audit journal: {e}"))
                })?;
            }
            Ok(())
        });
        match committed {
            Ok(()) => {
                front.keep(mark);
                let through = front.head().seq;
                self.stats.sealed_seq.fetch_max(through, Ordering::Relaxed);
                drop(front);
                let count = events.len() as u64 + (through - sealed_before);
                self.stored(count, ops.len() as u64, through, started);
                let signed_seq = signed.as_ref().map(|(_, seq)| *seq);
                for outcome in &mut outcomes {
                    if let Ok(Outcome::Checkpoint(seq)) = outcome {
                        *seq = signed_seq;
                    }
                }
                if let (Some((checkpoint, seq)), Some(s)) = (signed, self.signer.as_mut()) {
                    s.prev_signature = Some(checkpoint.signature.clone());
                    s.last = seq;
                    if let Some(to) = &s.export {
                        let _ = to.send(checkpoint);
                    }
                }
                for (request, outcome) in ops.into_iter().zip(outcomes) {
                    let _ = request.reply.send(outcome);
                }
                self.release_segments(through);
            }
            Err(error) => {
                // Nothing of it was kept: the operations' events are undone,
                // the journaled events wait for the next try, and each caller
                // hears why.
                front.abort(mark);
                drop(front);
                tracing::error!(%error, ops = ops.len(), "audit transaction failed; refusing its operations");
                let message = error.to_string();
                for request in ops {
                    let _ = request
                        .reply
                        .send(Err(corrupt(format!("not committed: {message}"))));
                }
                self.unstored = events;
                self.store_failed(&error);
            }
        }
    }

    /// Every Writer handle is gone: store what is left, sign the last
    /// checkpoint, and clear the journal once the store holds it all.
    fn stop(mut self) {
        let due = {
            let front = self.journal.lock();
            self.signer
                .as_ref()
                .is_some_and(|s| s.due(front.head().seq, true))
                && front.refusal().is_none()
        };
        self.commit_locked(Vec::new(), due);
        let synced = match self.store_sync.as_mut() {
            Some(sync) => sync().is_ok(),
            None => true,
        };
        let mut front = self.journal.lock_settled();
        if synced && self.unstored.is_empty() && front.pending_len() == 0 && !self.failing {
            front.remove_all();
        }
        drop(front);
        if let Some(mut signer) = self.signer.take() {
            // Every external copy is written before the writer counts as stopped.
            signer.export = None;
            if let Some(thread) = signer.exporter.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Where a checkpoint goes once it is durable (the external copy).
type Export = Option<Sender<Checkpoint>>;

/// The writer's checkpoint signer and where it left off.
struct Signer {
    key: CheckpointKey,
    every: u64,
    chain_id: String,
    prev_signature: Option<String>,
    /// The sequence number of the last checkpoint event (0: none yet).
    last: u64,
    export: Export,
    exporter: Option<JoinHandle<()>>,
}

impl Signer {
    /// Picks up after the last checkpoint in the store, so the new ones
    /// chain to it.
    fn resume<S: StoreWrite>(store: &mut S, c: Checkpointing, chain_id: &str) -> Result<Self> {
        let corrupt = |e: String| StoreError::Corrupt(format!("the last checkpoint: {e}"));
        let (prev_signature, last) = match store.last_checkpoint()? {
            None => (None, 0),
            Some(body) => {
                let event: Event =
                    serde_json::from_slice(&body).map_err(|e| corrupt(e.to_string()))?;
                let checkpoint = Checkpoint::from_event(&event)
                    .ok_or_else(|| corrupt("not a checkpoint event".into()))?
                    .map_err(|e| corrupt(e.to_string()))?;
                let key_id = c.key.public_key().key_id();
                if checkpoint.key_id != key_id {
                    tracing::warn!(previous = %checkpoint.key_id, current = %key_id, "the checkpoint signing key changed; verify older checkpoints with the previous public key");
                }
                (Some(checkpoint.signature), event.seq)
            }
        };
        let (export, exporter) = match c.dir {
            None => (None, None),
            Some(dir) => {
                let (tx, rx) = std::sync::mpsc::channel::<Checkpoint>();
                let thread = std::thread::Builder::new()
                    .name("audit-checkpoints".into())
                    .spawn(move || {
                        for checkpoint in rx {
                            if let Err(error) = dir.write(&checkpoint) {
                                tracing::error!(%error, seq = checkpoint.seq, "cannot write the external copy of a checkpoint");
                            }
                        }
                    })
                    .map_err(|e| StoreError::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
                (Some(tx), Some(thread))
            }
        };
        Ok(Self {
            key: c.key,
            every: c.every.max(1),
            chain_id: chain_id.to_owned(),
            prev_signature,
            last,
            export,
            exporter,
        })
    }

    /// Whether a checkpoint is due at `head`: something new since the last
    /// one, and either asked for or `every` events along.
    fn due(&self, head: u64, forced: bool) -> bool {
        head > self.last && (forced || head - self.last >= self.every)
    }
}

/// Applies one operation: reads what its step needs, asks `policy::steps`
/// what to write, writes it. A domain refusal is an `Ok(Err(..))`: that
/// caller is told no and the batch goes on (what the step still writes,
/// an overdue task's expiry, is written). A store failure is an `Err`: the
/// whole batch is rolled back.
fn apply(
    tx: &mut dyn WriteTx,
    front: &mut Front,
    op: Op,
    now: Timestamp,
) -> Result<Result<Outcome, OpError>> {
    match op {
        Op::CreateTask {
            task,
            secrets,
            review,
        } => {
            let exists = tx.task(&task.id)?.is_some();
            let step = steps::create_task(exists, *task, review.map(|r| *r));
            write(tx, front, step, Some(&secrets), |t| {
                Outcome::Task(Box::new(t))
            })
        }
        Op::DecideReview {
            review_id,
            actor,
            approve,
            comment,
        } => {
            let Some(review) = tx.review(&review_id)? else {
                return Ok(Err(OpError::NotFound(format!("review {review_id}"))));
            };
            let Some(task) = tx.task(&review.task_id)? else {
                return Ok(Err(OpError::NotFound(format!("task {}", review.task_id))));
            };
            let grant = tx.pending_grant_review(&task.id)?;
            let step = steps::decide_review(review, task, grant, &actor, approve, comment, now);
            write(tx, front, step, None, |d| Outcome::Decided(Box::new(d)))
        }
        Op::EndTask { task_id, actor } => {
            let Some((task, grant)) = task_and_grant(tx, &task_id)? else {
                return Ok(Err(OpError::NotFound(format!("task {task_id}"))));
            };
            let step = steps::end_task(task, grant, &actor, now);
            write(tx, front, step, None, |t| Outcome::Task(Box::new(t)))
        }
        Op::RevokeTask {
            task_id,
            actor,
            comment,
        } => {
            let Some((task, grant)) = task_and_grant(tx, &task_id)? else {
                return Ok(Err(OpError::NotFound(format!("task {task_id}"))));
            };
            let step = steps::revoke_task(task, grant, &actor, comment, now);
            write(tx, front, step, None, |t| Outcome::Task(Box::new(t)))
        }
        Op::RequestStatementReview {
            review,
            session,
            connection,
            reason,
        } => {
            let Some((task, grant)) = task_and_grant(tx, &review.task_id)? else {
                return Ok(Err(OpError::NotFound(format!("task {}", review.task_id))));
            };
            let step = steps::request_statement_review(
                task,
                grant,
                *review,
                &session,
                &connection,
                &reason,
                now,
            );
            write(tx, front, step, None, |r| Outcome::Review(Box::new(r)))
        }
        Op::LapseReview { review_id, why } => {
            let Some(review) = tx.review(&review_id)? else {
                return Ok(Err(OpError::NotFound(format!("review {review_id}"))));
            };
            let step = steps::lapse_review(review, &why, now);
            write(tx, front, step, None, |r| Outcome::Review(Box::new(r)))
        }
        // Signed once the batch's other operations are in (commit_batch).
        Op::Checkpoint => Ok(Ok(Outcome::Checkpoint(None))),
        Op::Flush => Ok(Ok(Outcome::Flushed)),
        Op::ExpireDue => {
            let mut due = Vec::new();
            for task in tx.due_tasks(now)? {
                let grant = tx.pending_grant_review(&task.id)?;
                due.push((task, grant));
            }
            let step = steps::expire_due(due, now);
            write(tx, front, step, None, Outcome::Expired)
        }
    }
}

/// A task and its pending grant review, if it exists.
fn task_and_grant(tx: &mut dyn WriteTx, task_id: &str) -> Result<Option<(Task, Option<Review>)>> {
    let Some(task) = tx.task(task_id)? else {
        return Ok(None);
    };
    let grant = tx.pending_grant_review(task_id)?;
    Ok(Some((task, grant)))
}

/// Writes a step's change (rows, then its events onto the chain) and
/// answers its caller.
fn write<T>(
    tx: &mut dyn WriteTx,
    front: &mut Front,
    step: steps::Step<T>,
    secrets: Option<&TaskSecrets>,
    outcome: impl FnOnce(T) -> Outcome,
) -> Result<Result<Outcome, OpError>> {
    let change = step.change;
    if let Some(task) = &change.new_task {
        let secrets =
            secrets.ok_or_else(|| StoreError::Corrupt("a new task without its secrets".into()))?;
        tx.insert_task(task, secrets)?;
    }
    for review in &change.new_reviews {
        tx.insert_review(review)?;
    }
    for task in &change.tasks {
        tx.update_task(task)?;
    }
    for review in &change.reviews {
        tx.update_review(review)?;
    }
    seal_all(tx, front, change.events)?;
    Ok(step.answer.map(outcome).map_err(OpError::from))
}

/// Seals drafts onto the chain and appends them; returns the last sequence.
fn seal_all(tx: &mut dyn WriteTx, front: &mut Front, drafts: Vec<EventDraft>) -> Result<u64> {
    let mut last = 0;
    for draft in drafts {
        let sealed = front.seal(draft)?;
        tx.append(&sealed)?;
        last = sealed.seq;
    }
    Ok(last)
}
