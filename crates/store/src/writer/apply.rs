//! Operations on tasks and reviews, applied inside a store transaction:
//! read what the step needs, ask `policy::steps` what to write, write it
//! with its events sealed onto the chain. Shared by both writers, as is
//! the checkpoint signer.

use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use taskgate_audit::{
    Chain, ChainHead, Checkpoint, CheckpointKey, Event, EventDraft, SealedEvent, Timestamp,
};
use taskgate_policy::{Review, Task, steps};

use super::{Op, OpError, Outcome};
use crate::checkpoints::Checkpointing;
use crate::journal::Front;
use crate::{Result, StoreError, TaskSecrets, WriteTx};

/// What seals an operation's events: the journal's front on a node of its
/// own, the chain at the shared store's head in a fleet.
pub(super) trait Seal {
    fn seal(&mut self, draft: EventDraft) -> Result<SealedEvent>;
    fn head(&self) -> ChainHead;
}

impl Seal for Front {
    fn seal(&mut self, draft: EventDraft) -> Result<SealedEvent> {
        Front::seal(self, draft)
    }

    fn head(&self) -> ChainHead {
        Front::head(self)
    }
}

impl Seal for Chain {
    fn seal(&mut self, draft: EventDraft) -> Result<SealedEvent> {
        Chain::seal(self, draft).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    fn head(&self) -> ChainHead {
        Chain::head(self)
    }
}

/// Where a checkpoint goes once it is durable (the external copy).
pub(super) type Export = Option<Sender<Checkpoint>>;

/// The writer's checkpoint signer and where it left off.
pub(super) struct Signer {
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
    /// Picks up after `last` (the body of the newest checkpoint event in
    /// the store), so the new ones chain to it.
    pub(super) fn resume(last: Option<Vec<u8>>, c: Checkpointing, chain_id: &str) -> Result<Self> {
        let (prev_signature, last) = match last {
            None => (None, 0),
            Some(body) => {
                let (checkpoint, seq) = parse_checkpoint(&body)?;
                let key_id = c.key.public_key().key_id();
                if checkpoint.key_id != key_id {
                    tracing::warn!(previous = %checkpoint.key_id, current = %key_id, "the checkpoint signing key changed; verify older checkpoints with the previous public key");
                }
                (Some(checkpoint.signature), seq)
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

    /// Takes up a checkpoint another node signed (in a fleet), so the next
    /// one chains to it.
    pub(super) fn caught_up(&mut self, last: Option<Vec<u8>>) -> Result<()> {
        if let Some(body) = last {
            let (checkpoint, seq) = parse_checkpoint(&body)?;
            if seq > self.last {
                self.last = seq;
                self.prev_signature = Some(checkpoint.signature);
            }
        }
        Ok(())
    }

    /// Signs a checkpoint of the chain's head and appends its event;
    /// returns it with the event's sequence number.
    pub(super) fn sign(
        &self,
        tx: &mut dyn WriteTx,
        front: &mut dyn Seal,
        node: Option<&str>,
        now: Timestamp,
    ) -> Result<(Checkpoint, u64)> {
        let checkpoint = Checkpoint::sign(
            &self.key,
            self.chain_id.clone(),
            front.head(),
            now,
            self.prev_signature.clone(),
        )
        .map_err(|e| StoreError::Corrupt(format!("cannot sign a checkpoint: {e}")))?;
        let seq = seal_all(tx, front, node, vec![checkpoint.draft()])?;
        Ok((checkpoint, seq))
    }

    /// Records a committed checkpoint and hands it to the external copy.
    pub(super) fn signed(&mut self, checkpoint: Checkpoint, seq: u64) {
        self.prev_signature = Some(checkpoint.signature.clone());
        self.last = seq;
        if let Some(to) = &self.export {
            let _ = to.send(checkpoint);
        }
    }

    /// Waits until every external copy is written.
    pub(super) fn stop(mut self) {
        self.export = None;
        if let Some(thread) = self.exporter.take() {
            let _ = thread.join();
        }
    }

    /// Whether a checkpoint is due at `head`: something new since the last
    /// one, and either asked for or `every` events along.
    pub(super) fn due(&self, head: u64, forced: bool) -> bool {
        head > self.last && (forced || head - self.last >= self.every)
    }
}

/// After a commit: tells `Checkpoint` callers the sequence of the
/// checkpoint signed in it (if any), and records it with the signer.
pub(super) fn answer_checkpoints(
    outcomes: &mut [Result<Outcome, OpError>],
    signed: Option<(Checkpoint, u64)>,
    signer: Option<&mut Signer>,
) {
    let signed_seq = signed.as_ref().map(|(_, seq)| *seq);
    for outcome in outcomes.iter_mut() {
        if let Ok(Outcome::Checkpoint(seq)) = outcome {
            *seq = signed_seq;
        }
    }
    if let (Some((checkpoint, seq)), Some(s)) = (signed, signer) {
        s.signed(checkpoint, seq);
    }
}

fn parse_checkpoint(body: &[u8]) -> Result<(Checkpoint, u64)> {
    let corrupt = |e: String| StoreError::Corrupt(format!("the last checkpoint: {e}"));
    let event: Event = serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()))?;
    let checkpoint = Checkpoint::from_event(&event)
        .ok_or_else(|| corrupt("not a checkpoint event".into()))?
        .map_err(|e| corrupt(e.to_string()))?;
    Ok((checkpoint, event.seq))
}

/// Applies one operation: reads what its step needs, asks `policy::steps`
/// what to write, writes it. A domain refusal is an `Ok(Err(..))`: that
/// caller is told no and the batch goes on (what the step still writes,
/// an overdue task's expiry, is written). A store failure is an `Err`: the
/// whole batch is rolled back.
pub(super) fn apply(
    tx: &mut dyn WriteTx,
    front: &mut dyn Seal,
    node: Option<&str>,
    op: Op,
    now: Timestamp,
) -> Result<Result<Outcome, OpError>> {
    match op {
        Op::CreateTask {
            task,
            secrets,
            review,
            limits,
        } => {
            let exists = tx.task(&task.id)?.is_some();
            let open = tx.open_tasks_of(&task.requester.subject)?;
            let step = steps::create_task(exists, open, limits, *task, review.map(|r| *r));
            write(tx, front, node, step, Some(&secrets), |t| {
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
            write(tx, front, node, step, None, |d| {
                Outcome::Decided(Box::new(d))
            })
        }
        Op::EndTask { task_id, actor } => {
            let Some((task, grant)) = task_and_grant(tx, &task_id)? else {
                return Ok(Err(OpError::NotFound(format!("task {task_id}"))));
            };
            let step = steps::end_task(task, grant, &actor, now);
            write(tx, front, node, step, None, |t| Outcome::Task(Box::new(t)))
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
            write(tx, front, node, step, None, |t| Outcome::Task(Box::new(t)))
        }
        Op::RequestStatementReview {
            review,
            session,
            connection,
            reason,
            limits,
        } => {
            let Some((task, grant)) = task_and_grant(tx, &review.task_id)? else {
                return Ok(Err(OpError::NotFound(format!("task {}", review.task_id))));
            };
            let held = tx.held_statements_of(&task.requester.subject)?;
            let hold = steps::StatementHold {
                session: &session,
                connection: &connection,
                reason: &reason,
                held,
            };
            let step = steps::request_statement_review(task, grant, *review, hold, limits, now);
            write(tx, front, node, step, None, |r| {
                Outcome::Review(Box::new(r))
            })
        }
        Op::LapseReview { review_id, why } => {
            let Some(review) = tx.review(&review_id)? else {
                return Ok(Err(OpError::NotFound(format!("review {review_id}"))));
            };
            let step = steps::lapse_review(review, &why, now);
            write(tx, front, node, step, None, |r| {
                Outcome::Review(Box::new(r))
            })
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
            write(tx, front, node, step, None, Outcome::Expired)
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
    front: &mut dyn Seal,
    node: Option<&str>,
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
    seal_all(tx, front, node, change.events)?;
    Ok(step.answer.map(outcome).map_err(OpError::from))
}

/// Seals drafts onto the chain and appends them; returns the last sequence.
pub(super) fn seal_all(
    tx: &mut dyn WriteTx,
    front: &mut dyn Seal,
    node: Option<&str>,
    drafts: Vec<EventDraft>,
) -> Result<u64> {
    let mut last = 0;
    for mut draft in drafts {
        if let Some(node) = node {
            draft.node = Some(node.to_owned());
        }
        let sealed = front.seal(draft)?;
        tx.append(&sealed)?;
        last = sealed.seq;
    }
    Ok(last)
}
