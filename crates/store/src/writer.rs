//! The single group-committing writer.
//!
//! Many callers submit operations; one thread takes whatever has queued up,
//! applies it all in one transaction, commits once, and then answers each
//! caller. A caller's future resolves only after its own event is committed,
//! so "committed before forwarded" holds for every statement the data plane
//! sends. While one commit (and its fsync) runs, the next batch queues: the
//! busier the gateway, the bigger the batches and the cheaper each event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use taskgate_audit::{
    Chain, Checkpoint, CheckpointKey, Event, EventDraft, PreparedEvent, Timestamp,
};
use taskgate_policy::{Actor, DomainError, Review, ReviewKind, ReviewState, Task, TaskState};
use tokio::sync::{mpsc, oneshot};

use crate::checkpoints::Checkpointing;
use crate::{CommitSync, Result, StoreError, StoreWrite, TaskSecrets, WriteTx};

/// Operations queued but not yet taken by the writer; callers wait beyond.
const QUEUE_CAPACITY: usize = 16_384;
/// Most operations committed in one transaction.
const MAX_BATCH_OPS: usize = 4_096;

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
    Append(PreparedEvent),
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
}

enum Outcome {
    Appended(u64),
    Task(Box<Task>),
    Decided(Box<(Review, Task)>),
    Expired(Vec<Task>),
    Review(Box<Review>),
    /// The checkpoint event's sequence number; None if nothing was new.
    Checkpoint(Option<u64>),
}

struct Request {
    /// Taken by the writer when applied.
    op: Option<Op>,
    reply: oneshot::Sender<Result<Outcome, OpError>>,
}

/// Counters for metrics; read with [`Writer::stats`].
#[derive(Debug, Default)]
pub struct WriterStats {
    pub events: AtomicU64,
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    pub failed_batches: AtomicU64,
    pub commit_micros: AtomicU64,
}

/// A handle to submit operations; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Request>,
    /// The chain's id, so callers can encode their events before queueing.
    chain_id: Arc<str>,
    stats: Arc<WriterStats>,
}

/// The writer's thread; [`WriterThread::join`] waits for it to finish once
/// every [`Writer`] handle is dropped.
pub struct WriterThread(JoinHandle<()>);

impl WriterThread {
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("audit writer thread panicked");
        }
    }
}

impl Writer {
    /// Starts the writer thread over a store, without signed checkpoints.
    pub fn start<S: StoreWrite + 'static>(store: S) -> Result<(Writer, WriterThread)> {
        Self::start_with(store, None)
    }

    /// Starts the writer thread over a store; with `checkpointing`, it signs
    /// a checkpoint every so many events, on [`Writer::checkpoint`], and
    /// when it stops.
    pub fn start_with<S: StoreWrite + 'static>(
        mut store: S,
        checkpointing: Option<Checkpointing>,
    ) -> Result<(Writer, WriterThread)> {
        let (chain_id, head) = store.chain()?;
        let chain = Chain::new(chain_id.clone(), head);
        let signer = match checkpointing {
            Some(c) => Some(Signer::resume(&mut store, c, &chain_id)?),
            None => None,
        };
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let stats = Arc::new(WriterStats::default());
        let thread_stats = Arc::clone(&stats);
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run(store, chain, rx, &thread_stats, signer))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the audit writer: {e}")))?;
        let writer = Writer {
            queue,
            chain_id: chain_id.into(),
            stats,
        };
        Ok((writer, WriterThread(handle)))
    }

    /// Counters shared with the writer thread, for metrics.
    pub fn stats(&self) -> Arc<WriterStats> {
        Arc::clone(&self.stats)
    }

    async fn submit(&self, op: Op) -> Result<Outcome, OpError> {
        let answer = self.enqueue(op).await?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Appends one event; resolves with its sequence number once committed.
    /// The event is encoded here, on the caller's thread; the writer only
    /// numbers, hashes and stores it.
    pub async fn append(&self, draft: EventDraft) -> Result<u64, OpError> {
        match self.submit(Op::Append(self.prepare(draft)?)).await? {
            Outcome::Appended(seq) => Ok(seq),
            _ => Err(unexpected()),
        }
    }

    fn prepare(&self, draft: EventDraft) -> Result<PreparedEvent, OpError> {
        draft
            .prepare(&self.chain_id)
            .map_err(|e| OpError::Store(StoreError::Corrupt(e.to_string())))
    }

    /// Queues an operation; the receiver hears once it is committed.
    async fn enqueue(
        &self,
        op: Op,
    ) -> Result<oneshot::Receiver<Result<Outcome, OpError>>, OpError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request {
                op: Some(op),
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        Ok(answer)
    }

    /// Appends several events, in order, and resolves once all are
    /// committed. They are queued together, so they usually share a commit.
    pub async fn append_all(&self, drafts: Vec<EventDraft>) -> Result<(), OpError> {
        let mut answers = Vec::with_capacity(drafts.len());
        for draft in drafts {
            answers.push(self.enqueue(Op::Append(self.prepare(draft)?)).await?);
        }
        for answer in answers {
            answer.await.map_err(|_| StoreError::WriterGone)??;
        }
        Ok(())
    }

    /// Queues an event without waiting for its commit: for records nothing
    /// waits on (a command's outcome). Its place in the chain is fixed by
    /// the queue's order; a failed commit marks the writer broken, which
    /// refuses every later event, so no gap can go unnoticed.
    pub async fn append_queued(&self, draft: EventDraft) -> Result<(), OpError> {
        self.enqueue(Op::Append(self.prepare(draft)?))
            .await
            .map(drop)
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
            Outcome::Task(task) => Ok(*task),
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
            Outcome::Decided(pair) => Ok(*pair),
            _ => Err(unexpected()),
        }
    }

    pub async fn end_task(&self, task_id: &str, actor: Actor) -> Result<Task, OpError> {
        let op = Op::EndTask {
            task_id: task_id.to_owned(),
            actor,
        };
        match self.submit(op).await? {
            Outcome::Task(task) => Ok(*task),
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
            Outcome::Task(task) => Ok(*task),
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
            Outcome::Review(review) => Ok(*review),
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
            Outcome::Review(review) => Ok(*review),
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

type Reply = (
    oneshot::Sender<Result<Outcome, OpError>>,
    Result<Outcome, OpError>,
);

/// A committed batch's answers, and the checkpoint it signed, if any.
type Committed = (Vec<Reply>, Option<Checkpoint>);

/// Where a checkpoint goes once it is durable (the external copy).
type Export = Option<std::sync::mpsc::Sender<Checkpoint>>;

/// Where answers go once a batch is committed.
enum Acks {
    /// The commit itself is durable: answer at once.
    Direct(Export),
    /// Answer after the sync thread has made the commit durable.
    AfterSync(std::sync::mpsc::Sender<Committed>),
}

fn export(to: &Export, checkpoint: Option<Checkpoint>) {
    if let (Some(to), Some(checkpoint)) = (to, checkpoint) {
        let _ = to.send(checkpoint);
    }
}

impl Acks {
    fn send(&self, replies: Vec<Reply>, checkpoint: Option<Checkpoint>) {
        match self {
            Acks::Direct(to) => {
                answer(replies);
                export(to, checkpoint);
            }
            Acks::AfterSync(syncer) => {
                if let Err(unsent) = syncer.send((replies, checkpoint)) {
                    // The sync thread is gone: nothing can be made durable.
                    refuse(unsent.0.0, "the audit sync thread has stopped");
                }
            }
        }
    }
}

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

fn answer(replies: Vec<Reply>) {
    for (reply, outcome) in replies {
        let _ = reply.send(outcome);
    }
}

fn refuse(replies: Vec<Reply>, why: &str) {
    for (reply, _) in replies {
        let error = StoreError::Corrupt(format!("not made durable: {why}"));
        let _ = reply.send(Err(OpError::Store(error)));
    }
}

fn run<S: StoreWrite>(
    mut store: S,
    mut chain: Chain,
    mut rx: mpsc::Receiver<Request>,
    stats: &WriterStats,
    mut signer: Option<Signer>,
) {
    // Set for good once a sync fails: after a failed fsync the kernel may
    // have dropped the data yet report the next fsync as fine, so nothing
    // committed afterwards could be trusted to be durable.
    let broken = Arc::new(AtomicBool::new(false));
    let to_export = signer.as_ref().and_then(|s| s.export.clone());
    let (acks, sync_thread) = match store.commit_sync() {
        Ok(None) => (Acks::Direct(to_export), None),
        Ok(Some(sync)) => {
            let (tx, sync_rx) = std::sync::mpsc::channel();
            let sync_broken = Arc::clone(&broken);
            let thread = std::thread::Builder::new()
                .name("audit-sync".into())
                .spawn(move || sync_loop(sync, &sync_rx, &sync_broken, &to_export));
            match thread {
                Ok(thread) => (Acks::AfterSync(tx), Some(thread)),
                Err(error) => {
                    tracing::error!(%error, "cannot start the audit sync thread");
                    return;
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, "the store cannot make commits durable");
            return;
        }
    };
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH_OPS);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH_OPS {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        if broken.load(Ordering::Acquire) {
            stats.failed_batches.fetch_add(1, Ordering::Relaxed);
            let replies = batch
                .drain(..)
                .map(|request| (request.reply, Err(unexpected())))
                .collect();
            refuse(replies, BROKEN);
            continue;
        }
        let forced = batch.iter().any(|r| matches!(r.op, Some(Op::Checkpoint)));
        commit_batch(
            &mut store,
            &mut chain,
            &mut batch,
            stats,
            &acks,
            &mut signer,
            forced,
        );
    }
    // The last checkpoint covers everything this run appended.
    if signer
        .as_ref()
        .is_some_and(|s| s.due(chain.head().seq, true))
        && !broken.load(Ordering::Acquire)
    {
        commit_batch(
            &mut store,
            &mut chain,
            &mut batch,
            stats,
            &acks,
            &mut signer,
            true,
        );
    }
    drop(acks);
    if let Some(thread) = sync_thread {
        let _ = thread.join();
    }
    if let Some(mut signer) = signer {
        // Every external copy is written before the writer counts as stopped.
        signer.export = None;
        if let Some(thread) = signer.exporter.take() {
            let _ = thread.join();
        }
    }
}

const BROKEN: &str =
    "a sync of the audit log failed earlier; restart the gateway once its disk is healthy";

/// Makes committed batches durable, as many per sync as have queued up,
/// while the writer goes on with the next batch: group commit, pipelined.
/// Answers go out strictly in commit order. After one failed sync every
/// later batch is refused too (see `broken` in `run`).
fn sync_loop(
    mut sync: CommitSync,
    committed: &std::sync::mpsc::Receiver<Committed>,
    broken: &AtomicBool,
    to_export: &Export,
) {
    while let Ok(first) = committed.recv() {
        let mut groups = vec![first];
        while let Ok(more) = committed.try_recv() {
            groups.push(more);
        }
        if broken.load(Ordering::Acquire) {
            groups
                .into_iter()
                .for_each(|(group, _)| refuse(group, BROKEN));
            continue;
        }
        match sync() {
            Ok(()) => {
                for (group, checkpoint) in groups {
                    answer(group);
                    export(to_export, checkpoint);
                }
            }
            Err(error) => {
                broken.store(true, Ordering::Release);
                tracing::error!(%error, "audit log could not be made durable; refusing every change until the gateway restarts");
                let why = error.to_string();
                for (group, _) in groups {
                    refuse(group, &why);
                }
            }
        }
    }
}

fn commit_batch<S: StoreWrite>(
    store: &mut S,
    chain: &mut Chain,
    batch: &mut Vec<Request>,
    stats: &WriterStats,
    acks: &Acks,
    signer: &mut Option<Signer>,
    forced: bool,
) {
    let started = Instant::now();
    let head_before = chain.head();
    let now = Timestamp::now();
    let mut outcomes: Vec<Result<Outcome, OpError>> = Vec::with_capacity(batch.len());
    let mut signed: Option<(Checkpoint, u64)> = None;
    let committed = store.transaction(&mut |tx| {
        outcomes.clear();
        signed = None;
        for request in batch.iter_mut() {
            let Some(op) = request.op.take() else {
                outcomes.push(Err(unexpected()));
                continue;
            };
            outcomes.push(apply(tx, chain, op, now)?);
        }
        if let Some(s) = signer.as_ref()
            && s.due(chain.head().seq, forced)
        {
            let checkpoint = Checkpoint::sign(
                &s.key,
                s.chain_id.clone(),
                chain.head(),
                now,
                s.prev_signature.clone(),
            )
            .map_err(|e| StoreError::Corrupt(format!("cannot sign a checkpoint: {e}")))?;
            let seq = seal_all(tx, chain, vec![checkpoint.draft()])?;
            signed = Some((checkpoint, seq));
        }
        Ok(())
    });
    let ops = batch.len() as u64;
    match committed {
        Ok(()) => {
            let events = chain.head().seq - head_before.seq;
            stats.events.fetch_add(events, Ordering::Relaxed);
            stats.ops.fetch_add(ops, Ordering::Relaxed);
            stats.batches.fetch_add(1, Ordering::Relaxed);
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            stats.commit_micros.fetch_add(micros, Ordering::Relaxed);
            let signed_seq = signed.as_ref().map(|(_, seq)| *seq);
            for outcome in &mut outcomes {
                if let Ok(Outcome::Checkpoint(seq)) = outcome {
                    *seq = signed_seq;
                }
            }
            let checkpoint = match (signed, signer.as_mut()) {
                (Some((checkpoint, seq)), Some(s)) => {
                    s.prev_signature = Some(checkpoint.signature.clone());
                    s.last = seq;
                    Some(checkpoint)
                }
                _ => None,
            };
            let replies = batch
                .drain(..)
                .map(|request| request.reply)
                .zip(outcomes)
                .collect();
            acks.send(replies, checkpoint);
        }
        Err(error) => {
            // Nothing of the batch was kept: every caller hears so, and the
            // chain goes back to the last committed head.
            chain.reset(head_before);
            stats.failed_batches.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, ops, "audit batch failed to commit; refusing its operations");
            let message = error.to_string();
            for request in batch.drain(..) {
                let error = StoreError::Corrupt(format!("not committed: {message}"));
                let _ = request.reply.send(Err(OpError::Store(error)));
            }
        }
    }
}

/// Applies one operation. A domain refusal is an `Ok(Err(..))`: that caller
/// is told no and the batch goes on. A store failure is an `Err`: the whole
/// batch is rolled back. Domain checks run before any write, so a refused
/// operation has written nothing.
fn apply(
    tx: &mut dyn WriteTx,
    chain: &mut Chain,
    op: Op,
    now: Timestamp,
) -> Result<Result<Outcome, OpError>> {
    match op {
        Op::Append(prepared) => {
            let sealed = chain.seal_prepared(prepared);
            tx.append(&sealed)?;
            Ok(Ok(Outcome::Appended(sealed.seq)))
        }
        Op::CreateTask {
            task,
            secrets,
            review,
        } => {
            if tx.task(&task.id)?.is_some() {
                return Ok(Err(OpError::Domain(DomainError::Conflict(format!(
                    "task {} already exists",
                    task.id
                )))));
            }
            tx.insert_task(&task, &secrets)?;
            if let Some(review) = &review {
                tx.insert_review(review)?;
            }
            seal_all(
                tx,
                chain,
                task.requested_events(review.as_ref().map(|r| r.id.as_str())),
            )?;
            Ok(Ok(Outcome::Task(task)))
        }
        Op::DecideReview {
            review_id,
            actor,
            approve,
            comment,
        } => {
            let Some(mut review) = tx.review(&review_id)? else {
                return Ok(Err(OpError::NotFound(format!("review {review_id}"))));
            };
            let Some(mut task) = tx.task(&review.task_id)? else {
                return Ok(Err(OpError::NotFound(format!("task {}", review.task_id))));
            };
            if let Some(too_late) = expire_if_overdue(tx, chain, &mut task, now)? {
                return Ok(Err(too_late));
            }
            let decided = match review.kind {
                ReviewKind::Grant => review.decide_grant(&mut task, &actor, approve, comment, now),
                ReviewKind::Statement { .. } => {
                    review.decide_statement(&task, &actor, approve, comment, now)
                }
            };
            match decided {
                Err(refused) => Ok(Err(refused.into())),
                Ok(events) => {
                    tx.update_review(&review)?;
                    tx.update_task(&task)?;
                    seal_all(tx, chain, events)?;
                    Ok(Ok(Outcome::Decided(Box::new((review, task)))))
                }
            }
        }
        Op::EndTask { task_id, actor } => {
            transition(tx, chain, now, &task_id, |task| task.end(&actor, now))
        }
        Op::RevokeTask {
            task_id,
            actor,
            comment,
        } => transition(tx, chain, now, &task_id, |task| {
            task.revoke(&actor, now, comment)
        }),
        Op::RequestStatementReview {
            review,
            session,
            connection,
            reason,
        } => {
            let Some(mut task) = tx.task(&review.task_id)? else {
                return Ok(Err(OpError::NotFound(format!("task {}", review.task_id))));
            };
            if let Some(too_late) = expire_if_overdue(tx, chain, &mut task, now)? {
                return Ok(Err(too_late));
            }
            if task.state != TaskState::Active {
                return Ok(Err(OpError::Domain(DomainError::Conflict(format!(
                    "task {} is {}",
                    task.id, task.state
                )))));
            }
            tx.insert_review(&review)?;
            seal_all(
                tx,
                chain,
                vec![review.requested_event(&session, &connection, &reason)],
            )?;
            Ok(Ok(Outcome::Review(review)))
        }
        Op::LapseReview { review_id, why } => {
            let Some(mut review) = tx.review(&review_id)? else {
                return Ok(Err(OpError::NotFound(format!("review {review_id}"))));
            };
            if review.state == ReviewState::Pending {
                let events = review
                    .lapse(now, &why)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                tx.update_review(&review)?;
                seal_all(tx, chain, events)?;
            }
            Ok(Ok(Outcome::Review(Box::new(review))))
        }
        // Signed once the batch's other operations are in (commit_batch).
        Op::Checkpoint => Ok(Ok(Outcome::Checkpoint(None))),
        Op::ExpireDue => {
            let mut expired = Vec::new();
            for mut task in tx.due_tasks(now)? {
                if expire_if_overdue(tx, chain, &mut task, now)?.is_some() {
                    expired.push(task);
                }
            }
            Ok(Ok(Outcome::Expired(expired)))
        }
    }
}

/// Seals drafts onto the chain and appends them; returns the last sequence.
fn seal_all(tx: &mut dyn WriteTx, chain: &mut Chain, drafts: Vec<EventDraft>) -> Result<u64> {
    let mut last = 0;
    for draft in drafts {
        let sealed = chain
            .seal(draft)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.append(&sealed)?;
        last = sealed.seq;
    }
    Ok(last)
}

/// Expires a task whose deadline has passed (with its pending grant review),
/// and says so; `None` if it is not overdue. Every step on a task goes
/// through here first, so no late approval, end or revoke can outrun the
/// scheduler and give a task time it no longer has.
fn expire_if_overdue(
    tx: &mut dyn WriteTx,
    chain: &mut Chain,
    task: &mut Task,
    now: Timestamp,
) -> Result<Option<OpError>> {
    let Some(deadline) = task.deadline().filter(|d| *d <= now) else {
        return Ok(None);
    };
    let Ok(events) = task.expire(now) else {
        return Ok(None);
    };
    if let Some(mut review) = tx.pending_grant_review(&task.id)?
        && review.expire().is_ok()
    {
        tx.update_review(&review)?;
    }
    tx.update_task(task)?;
    seal_all(tx, chain, events)?;
    Ok(Some(OpError::Domain(DomainError::Conflict(format!(
        "task {} expired at {deadline}",
        task.id
    )))))
}

fn transition(
    tx: &mut dyn WriteTx,
    chain: &mut Chain,
    now: Timestamp,
    task_id: &str,
    step: impl FnOnce(&mut Task) -> Result<Vec<EventDraft>, DomainError>,
) -> Result<Result<Outcome, OpError>> {
    let Some(mut task) = tx.task(task_id)? else {
        return Ok(Err(OpError::NotFound(format!("task {task_id}"))));
    };
    if let Some(too_late) = expire_if_overdue(tx, chain, &mut task, now)? {
        return Ok(Err(too_late));
    }
    match step(&mut task) {
        Err(refused) => Ok(Err(refused.into())),
        Ok(events) => {
            tx.update_task(&task)?;
            seal_all(tx, chain, events)?;
            Ok(Ok(Outcome::Task(Box::new(task))))
        }
    }
}
