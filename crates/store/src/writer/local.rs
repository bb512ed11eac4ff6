//! A node with its own store: events are sealed by their callers and
//! journaled (the commit), then moved into the store in batches by the
//! writer thread; operations are applied holding the journal's lock so
//! their events follow the journaled ones in the chain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use taskgate_audit::{Chain, ChainHead, Checkpoint, PreparedEvent, SealedEvent, Timestamp};
use tokio::sync::oneshot;

use super::apply::{Signer, answer_checkpoints, apply};
use super::{
    Message, Op, OpError, Outcome, Request, WriterStats, WriterThread, corrupt, unexpected,
};
use crate::checkpoints::Checkpointing;
use crate::journal::{self, Front};
use crate::{CommitSync, Result, StoreError, StoreWrite};

/// How long journaled events may wait for the store while events keep
/// coming: the store's lag behind the journal, and its batch size.
const STORE_EVERY: Duration = Duration::from_millis(2);
/// Journaled events waiting for the store beyond which appenders wait too,
/// so a store that cannot keep up slows callers instead of filling memory.
const MAX_PENDING: usize = 200_000;

/// The appenders' side of the journal.
#[derive(Clone)]
pub(super) struct Local {
    journal: Arc<Journal>,
    /// Set by the writer thread before it sleeps with nothing to store.
    idle: Arc<AtomicBool>,
    /// With `Durability::Full`: asks the sync thread to make the journal
    /// durable through what is written now.
    syncer: Option<Sender<SyncWait>>,
}

impl Local {
    /// Recovers the journal into the store, opens a new one, and starts the
    /// writer thread (and the sync thread, when commits must be synced);
    /// returns the chain's id too.
    pub(super) fn start<S: StoreWrite + 'static>(
        mut store: S,
        checkpointing: Option<Checkpointing>,
        node: Option<Arc<str>>,
        stats: Arc<WriterStats>,
        rx: Receiver<Message>,
    ) -> Result<(Local, String, WriterThread)> {
        let mut store_sync = store.commit_sync()?;
        let head = recover(&mut store, &mut store_sync)?;
        let (chain_id, _) = store.chain()?;
        let signer = match checkpointing {
            Some(c) => Some(Signer::resume(store.last_checkpoint()?, c, &chain_id)?),
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
        let idle = Arc::new(AtomicBool::new(false));
        let state = State {
            store,
            store_sync,
            journal: Arc::clone(&journal),
            syncer: syncer.clone(),
            signer,
            node,
            stats,
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
        let local = Local {
            journal,
            idle,
            syncer,
        };
        Ok((local, chain_id, WriterThread(handle, sync_thread)))
    }

    /// Seals events on the caller's thread and journals them (see
    /// [`Front::append`]); with `wait`, resolves once they are committed.
    pub(super) async fn commit(
        &self,
        events: Vec<PreparedEvent>,
        wait: bool,
        ops: &Sender<Message>,
        stats: &WriterStats,
    ) -> Result<u64, OpError> {
        let (seq, was_empty, journaled) = {
            let mut front = self.journal.lock();
            let was_empty = front.pending_len() == 0;
            let seq = front.append(events, wait)?;
            let journaled = Journaled {
                waiting: front.pending_len(),
                epoch: front.epoch(),
            };
            (seq, was_empty, journaled)
        };
        stats.sealed_seq.fetch_max(seq, Ordering::Relaxed);
        if was_empty && self.idle.swap(false, Ordering::SeqCst) {
            let _ = ops.send(Message::Wake);
        }
        if wait {
            self.settle(journaled).await?;
        }
        Ok(seq)
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
}

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
    node: Option<Arc<str>>,
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
        let node = self.node.as_deref();
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
                outcomes.push(apply(tx, &mut *front, node, op, now)?);
            }
            if let Some(s) = signer.as_ref()
                && s.due(front.head().seq, forced)
            {
                signed = Some(s.sign(tx, &mut *front, node, now)?);
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
                answer_checkpoints(&mut outcomes, signed, self.signer.as_mut());
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
        if let Some(signer) = self.signer.take() {
            signer.stop();
        }
    }
}
