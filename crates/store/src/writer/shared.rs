//! A fleet's writer: an event is committed when the shared store has
//! committed it, so the record accumulates off the machine that forwarded
//! the statement and a node whose disk is lost loses nothing.
//!
//! Callers queue encoded events and wait. The writer thread takes every
//! waiting event as one round and commits the round in one transaction
//! (group commit), together with any operations that arrived. Each
//! transaction first locks the chain's head row, so the events of every
//! node form one chain in one order, and each operation's step reads every
//! change another node committed before it. A round that fails is answered
//! with the error (the statement is refused); events nobody waits on (a
//! command's outcome) are kept and tried again first in the next round, so
//! a store that comes back loses none of them.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use taskgate_audit::{Chain, Checkpoint, PreparedEvent, Timestamp};
use tokio::sync::oneshot;

use super::apply::{Signer, answer_checkpoints, apply};
use super::{
    Message, Op, OpError, Outcome, Request, WriterStats, WriterThread, corrupt, unexpected,
};
use crate::checkpoints::Checkpointing;
use crate::{Result, StoreError, WriteTx};

/// How often events nobody waits on are tried again while the store
/// refuses them.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// Unwaited events kept for a store that is down, past which the oldest
/// are dropped with an error in the log (each is a command's outcome; its
/// `command.started` is already in the store).
const MAX_KEPT: usize = 100_000;

/// A store the nodes of a fleet share.
pub trait SharedStore: Send {
    /// The chain's id, fixed when the store was made.
    fn chain_id(&self) -> &str;
    /// This node's name, stamped on its events.
    fn node(&self) -> &str;
    /// The body of the newest `checkpoint` event, if there is one.
    fn last_checkpoint(&mut self) -> Result<Option<Vec<u8>>>;
    /// Runs `work` in one transaction that holds the chain's lock, with the
    /// chain at the stored head; stores the head `work` leaves and commits.
    /// If `work` or the commit fails, nothing of it is kept. With
    /// `appends_only` (the round holds no operation), `work` may be run
    /// more than once (a try on a faster path, then the locked one), so it
    /// must start from the same state each time.
    fn transaction(
        &mut self,
        appends_only: bool,
        work: &mut dyn FnMut(&mut dyn WriteTx, &mut Chain) -> Result<()>,
    ) -> Result<()>;
}

/// Events waiting for the next round.
struct Waiting {
    events: Vec<PreparedEvent>,
    /// Where to say it is committed; none for events nobody waits on.
    reply: Option<oneshot::Sender<Result<u64, OpError>>>,
}

/// The appenders' side: events waiting for the writer thread.
#[derive(Default)]
pub(super) struct Queue {
    waiting: Mutex<Vec<Waiting>>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Vec<Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues events for the next round; with `wait`, resolves once the
    /// round is committed, with the last one's sequence number.
    pub(super) async fn commit(
        &self,
        events: Vec<PreparedEvent>,
        wait: bool,
        ops: &Sender<Message>,
    ) -> Result<u64, OpError> {
        let (reply, answer) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let was_empty = {
            let mut waiting = self.lock();
            let was_empty = waiting.is_empty();
            waiting.push(Waiting { events, reply });
            was_empty
        };
        if was_empty {
            ops.send(Message::Wake)
                .map_err(|_| StoreError::WriterGone)?;
        }
        match answer {
            None => Ok(0),
            Some(rx) => rx.await.map_err(|_| StoreError::WriterGone)?,
        }
    }
}

/// Starts the writer thread over the shared store.
pub(super) fn start<S: SharedStore + 'static>(
    mut store: S,
    checkpointing: Option<Checkpointing>,
    stats: Arc<WriterStats>,
    rx: Receiver<Message>,
) -> Result<(Arc<Queue>, WriterThread)> {
    let signer = match checkpointing {
        Some(c) => {
            let chain_id = store.chain_id().to_owned();
            Some(Signer::resume(store.last_checkpoint()?, c, &chain_id)?)
        }
        None => None,
    };
    let queue = Arc::new(Queue::default());
    let state = Round {
        node: store.node().to_owned(),
        store,
        queue: Arc::clone(&queue),
        signer,
        stats,
        kept: Vec::new(),
        failing: false,
    };
    let handle = std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || run(state, &rx))
        .map_err(|e| StoreError::Corrupt(format!("cannot start the audit writer: {e}")))?;
    Ok((queue, WriterThread(handle, None)))
}

/// What the writer thread owns.
struct Round<S> {
    store: S,
    node: String,
    queue: Arc<Queue>,
    signer: Option<Signer>,
    stats: Arc<WriterStats>,
    /// Events nobody waits on that a failed round handed back.
    kept: Vec<PreparedEvent>,
    failing: bool,
}

fn run<S: SharedStore>(mut state: Round<S>, rx: &Receiver<Message>) {
    loop {
        let first = if state.kept.is_empty() {
            match rx.recv() {
                Ok(message) => Some(message),
                Err(_) => break,
            }
        } else {
            match rx.recv_timeout(RETRY_EVERY) {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        let mut ops = Vec::new();
        for message in first.into_iter().chain(rx.try_iter()) {
            if let Message::Op(request) = message {
                ops.push(request);
            }
        }
        let forced = ops.iter().any(|r| matches!(r.op, Some(Op::Checkpoint)));
        state.commit(ops, forced);
    }
    // Every handle is gone: commit what is left, with a last checkpoint.
    state.commit(Vec::new(), true);
    if let Some(signer) = state.signer.take() {
        signer.stop();
    }
}

impl<S: SharedStore> Round<S> {
    /// One round: every waiting event, then the operations, then a
    /// checkpoint if one is due, in one transaction.
    fn commit(&mut self, mut ops: Vec<Request>, forced: bool) {
        let waiting = std::mem::take(&mut *self.queue.lock());
        let kept = std::mem::take(&mut self.kept);
        if waiting.is_empty() && kept.is_empty() && ops.is_empty() && !forced {
            return;
        }
        let started = Instant::now();
        let now = Timestamp::now();
        let mut lasts: Vec<u64> = Vec::with_capacity(waiting.len());
        let mut outcomes: Vec<Result<Outcome, OpError>> = Vec::with_capacity(ops.len());
        let mut signed: Option<(Checkpoint, u64)> = None;
        let mut through = 0;
        let mut first_seq = 0;
        let node = self.node.as_str();
        let signer = &mut self.signer;
        // Operations are taken out of their requests as they are applied,
        // so a round holding any runs once, on the locked path.
        let appends_only = ops.is_empty() && !forced;
        let committed = self.store.transaction(appends_only, &mut |tx, chain| {
            lasts.clear();
            outcomes.clear();
            signed = None;
            first_seq = chain.head().seq;
            for event in &kept {
                tx.append(&chain.seal_prepared(event.clone()))?;
            }
            for entry in &waiting {
                for event in &entry.events {
                    tx.append(&chain.seal_prepared(event.clone()))?;
                }
                lasts.push(chain.head().seq);
            }
            for request in &mut ops {
                let Some(op) = request.op.take() else {
                    outcomes.push(Err(unexpected()));
                    continue;
                };
                outcomes.push(apply(tx, chain, Some(node), op, now)?);
            }
            if let Some(s) = signer.as_mut()
                && s.due(chain.head().seq, forced)
            {
                // Another node may have signed since: chain to its
                // checkpoint, and sign only if one is still due.
                s.caught_up(tx.last_checkpoint()?)?;
                if s.due(chain.head().seq, forced) {
                    signed = Some(s.sign(tx, chain, Some(node), now)?);
                }
            }
            through = chain.head().seq;
            Ok(())
        });
        match committed {
            Ok(()) => {
                self.committed(through - first_seq, ops.len() as u64, through, started);
                answer_checkpoints(&mut outcomes, signed, self.signer.as_mut());
                for (entry, last) in waiting.into_iter().zip(lasts) {
                    if let Some(reply) = entry.reply {
                        let _ = reply.send(Ok(last));
                    }
                }
                for (request, outcome) in ops.into_iter().zip(outcomes) {
                    let _ = request.reply.send(outcome);
                }
            }
            Err(error) => self.failed(&error, kept, waiting, ops),
        }
    }

    fn committed(&mut self, events: u64, ops: u64, through: u64, started: Instant) {
        let stats = &self.stats;
        stats.events.fetch_add(events, Ordering::Relaxed);
        stats.ops.fetch_add(ops, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats.commit_micros.fetch_add(micros, Ordering::Relaxed);
        stats.sealed_seq.fetch_max(through, Ordering::Relaxed);
        stats.stored_seq.fetch_max(through, Ordering::Relaxed);
        if self.failing {
            self.failing = false;
            tracing::info!("the shared audit store takes events again");
        }
    }

    /// Nothing of the round was kept: those who wait hear why (a statement
    /// is refused), and events nobody waits on are kept for the next round.
    fn failed(
        &mut self,
        error: &StoreError,
        mut kept: Vec<PreparedEvent>,
        waiting: Vec<Waiting>,
        ops: Vec<Request>,
    ) {
        self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        if !self.failing {
            self.failing = true;
            tracing::error!(%error, "the shared audit store cannot be written; refusing events until it can");
        }
        let message = format!("the audit store cannot be written: {error}");
        for entry in waiting {
            match entry.reply {
                Some(reply) => {
                    let _ = reply.send(Err(corrupt(message.clone())));
                }
                None => kept.extend(entry.events),
            }
        }
        for request in ops {
            let _ = request
                .reply
                .send(Err(corrupt(format!("not committed: {message}"))));
        }
        if kept.len() > MAX_KEPT {
            let dropped = kept.len() - MAX_KEPT;
            kept.drain(..dropped);
            tracing::error!(
                dropped,
                "the shared audit store has been down too long: dropped the oldest command outcomes kept for it"
            );
        }
        self.kept = kept;
    }
}
