//! The audit log's front: every event is sealed onto the chain by its own
//! caller and written to an append-only journal file before the caller goes
//! on; the writer thread moves journaled events into the store in batches.
//!
//! Why: a statement may not go upstream before its `command.started` is
//! committed, so that commit sits on every statement's path. Committing
//! each one through SQLite costs a transaction (locks, a 4 KiB page, a WAL
//! frame), and handing the event to the writer thread and waiting for its
//! answer costs two context switches, which on a small machine shared with
//! the database cost more than the write. Here the caller seals and frames
//! under a short lock. Without `Durability::Full` it then writes the record
//! itself (one positioned write). With it, the sync thread writes whatever
//! was framed since its last round as one group, outside the lock, and
//! syncs once for everyone (group commit): a caller never blocks on the
//! file, which would stall a runtime thread and, through the lock, every
//! other caller.
//!
//! Hand-written because it is small and specific: records are framed as
//! `u32 body length | u64 seq | 32-byte hash | body` (little-endian) in
//! segment files named by their first sequence number; the body is the
//! event's canonical bytes, and each record's hash must link it to the one
//! before, so recovery stops at the first record that was cut short or
//! changed. A segment is deleted once the store holds (and has synced)
//! every event in it. At start, [`recover`] hands back whatever the store
//! lacks.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use taskgate_audit::{Chain, ChainHead, EventDraft, Hash, PreparedEvent, SealedEvent};

use crate::{Result, StoreError};

/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// A new segment's size before anything is written (see [`Spare`]): room
/// for the largest write that can start just under [`SEGMENT_BYTES`].
const PREALLOCATED_BYTES: u64 = SEGMENT_BYTES + 1024 * 1024;
/// Framing bytes before each body.
const FRAME_BYTES: usize = 44;
/// Framed records held back (see [`Front::append`]) past which they are
/// written at once.
const DEFER_MAX_BYTES: usize = 64 * 1024;
/// The largest body recovery accepts (events are capped far below this).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Corrupt(format!("cannot {what} {}: {e}", path.display()))
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.log"))
}

/// The segment files in `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| io("read", dir, e))?.path();
        if path.extension().is_some_and(|x| x == "log") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Whether `dir` holds journaled events (for offline tools, which read the
/// store only: the gateway moves them in at its next start). A segment
/// that is still all zeros (filled ahead of time) holds none.
pub fn has_pending(dir: &Path) -> bool {
    segments(dir).is_ok_and(|s| {
        s.iter().any(|p| {
            let mut first = [0u8; FRAME_BYTES];
            File::open(p)
                .and_then(|mut f| f.read_exact(&mut first))
                .is_ok()
                && written(&first) > 0
        })
    })
}

/// What recovery found in the journal.
pub struct Recovered {
    /// Events after the store's head, in order, each linked to the last.
    pub events: Vec<SealedEvent>,
    /// The segment files read; delete them once `events` are stored.
    pub segments: Vec<PathBuf>,
    /// Bytes (other than the zeros a segment starts as) after the last
    /// good record: a write cut short by a crash (its statement never went
    /// upstream), or damage.
    pub dropped_bytes: u64,
}

/// Reads every journal segment and returns the events the store does not
/// hold yet: those after `head`, as long as each links to the one before.
/// A record that does not (a torn last write) ends the read.
pub fn recover(dir: &Path, head: ChainHead) -> Result<Recovered> {
    let paths = segments(dir)?;
    let mut events = Vec::new();
    let mut last = head;
    let mut dropped_bytes = 0;
    let mut ended = false;
    for path in &paths {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io("read", path, e))?;
        if ended {
            dropped_bytes += written(&bytes);
            continue;
        }
        let mut at = 0;
        while at < bytes.len() {
            match next_record(&bytes[at..]) {
                // The rest of the file was never written (see `Spare`).
                Some((0, _, [], _)) => break,
                Some((seq, hash, body, used)) => {
                    at += used;
                    if seq <= head.seq {
                        continue; // already in the store
                    }
                    let linked = (seq == last.seq + 1)
                        .then(|| SealedEvent::from_stored(&last.hash, seq, body.to_vec()).ok())
                        .flatten()
                        .filter(|event| event.hash == hash);
                    let Some(event) = linked else {
                        ended = true;
                        dropped_bytes += written(&bytes[at - used..]);
                        break;
                    };
                    last = ChainHead {
                        seq,
                        hash: event.hash,
                    };
                    events.push(event);
                }
                None => {
                    ended = true;
                    dropped_bytes += written(&bytes[at..]);
                    break;
                }
            }
        }
    }
    Ok(Recovered {
        events,
        segments: paths,
        dropped_bytes,
    })
}

/// Bytes that were written (a segment starts as zeros).
fn written(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b != 0).count() as u64
}

/// The next whole record: (seq, hash, body, bytes used); None if cut short.
fn next_record(bytes: &[u8]) -> Option<(u64, Hash, &[u8], usize)> {
    let frame = bytes.get(..FRAME_BYTES)?;
    let len = u32::from_le_bytes(frame[..4].try_into().ok()?) as usize;
    let seq = u64::from_le_bytes(frame[4..12].try_into().ok()?);
    let hash: Hash = frame[12..44].try_into().ok()?;
    if len > MAX_BODY_BYTES {
        return None;
    }
    let body = bytes.get(FRAME_BYTES..FRAME_BYTES + len)?;
    Some((seq, hash, body, FRAME_BYTES + len))
}

/// The open segment events are appended to.
struct Segment {
    path: PathBuf,
    /// Shared with the sync thread, which syncs it without the lock.
    file: Arc<File>,
    len: u64,
}

impl Segment {
    /// The segment starting at `first_seq`, made from a spare file if one
    /// is ready, else created and filled here.
    fn create(dir: &Path, first_seq: u64, spare: Option<Spare>, durable: bool) -> Result<Segment> {
        let spare = match spare {
            Some(spare) => spare,
            None => Spare::create(dir).or_else(|error| {
                tracing::warn!(%error, "cannot fill the audit journal's next segment ahead of time; using one that grows as it is written (slower syncs)");
                Spare::open(dir)
            })?,
        };
        let path = segment_path(dir, first_seq);
        std::fs::rename(&spare.path, &path).map_err(|e| io("rename", &spare.path, e))?;
        if durable {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("sync", dir, e))?;
        }
        Ok(Segment {
            path,
            file: Arc::new(spare.file),
            len: 0,
        })
    }
}

/// A file already filled with zeros to a segment's size and synced, so
/// that writing records into it never changes the file's size: a sync then
/// writes only the data, not the file system's metadata (measured: twice
/// the syncs per second of a file that grows with every write).
pub(crate) struct Spare {
    path: PathBuf,
    file: File,
}

impl Spare {
    /// A new spare, filled and synced.
    pub(crate) fn create(dir: &Path) -> Result<Spare> {
        let spare = Spare::open(dir)?;
        let zeros = vec![0u8; 1024 * 1024];
        let mut written = 0;
        let filled = loop {
            if written >= PREALLOCATED_BYTES {
                break spare
                    .file
                    .sync_all()
                    .map_err(|e| io("sync", &spare.path, e));
            }
            if let Err(e) = (&spare.file).write_all(&zeros) {
                break Err(io("fill", &spare.path, e));
            }
            written += zeros.len() as u64;
        };
        match filled {
            Ok(()) => Ok(spare),
            Err(e) => {
                remove(&spare.path);
                Err(e)
            }
        }
    }

    /// A new, empty spare: a segment that grows as it is written.
    fn open(dir: &Path) -> Result<Spare> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("spare-{}-{n}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("create", &path, e))?;
        Ok(Spare { path, file })
    }
}

/// The chain's head and the journal, behind one lock: sealing and writing
/// happen together, so the journal's order is the chain's.
pub(crate) struct Front {
    chain: Chain,
    dir: PathBuf,
    /// Whether each write must reach the disk before it counts.
    durable: bool,
    current: Segment,
    /// Closed segments, with the last sequence each holds.
    closed: Vec<(PathBuf, u64)>,
    /// Sealed and journaled, not yet in the store, in order.
    pending: Vec<SealedEvent>,
    /// Set while events must be refused: the journal or the store cannot
    /// be written. The writer clears it once the store takes events again.
    refused: Option<String>,
    /// Set for good when a sync failed (the kernel may have dropped data
    /// yet report later syncs as fine).
    broken: Option<String>,
    /// Records framed but not yet written, from `deferred`'s head on.
    buf: Vec<u8>,
    /// Set while `buf` holds records: the chain's head before them (where
    /// to undo to if writing fails), and where they start in `pending`.
    deferred: Option<(ChainHead, usize)>,
    /// Set while the sync thread writes a group outside the lock (see
    /// [`Front::take_group`]): nothing else may write or take `pending`.
    in_flight: bool,
    /// Set while the sync thread writes and syncs a round.
    syncing: bool,
    /// Bumped whenever sealed events are forgotten (see [`Front::undo`]),
    /// so a caller still waiting on events sealed before can tell.
    epoch: u64,
    /// The next segment's file, made ready by the writer thread.
    spare: Option<Spare>,
    /// Set when a write failed part-way: bytes past `current.len` may hold
    /// part of a record.
    partial: bool,
    /// Set between [`Front::begin`] and its end: the current segment is
    /// kept however full it gets, so an undo can cut the transaction's
    /// records out of it.
    pinned: bool,
}

/// Where a [`Front::mark`] was taken, to undo writes after it.
pub(crate) struct Mark {
    head: ChainHead,
    len: u64,
    path: PathBuf,
}

impl Front {
    /// A fresh segment after `head` in `dir` (created if missing).
    pub(crate) fn open(dir: &Path, chain: Chain, durable: bool) -> Result<Front> {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        // Spares left by an earlier run are not segments; start afresh.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for path in entries.flatten().map(|e| e.path()) {
                if path.extension().is_some_and(|x| x == "tmp") {
                    remove(&path);
                }
            }
        }
        let current = Segment::create(dir, chain.head().seq + 1, None, durable)?;
        Ok(Front {
            chain,
            dir: dir.to_path_buf(),
            durable,
            current,
            closed: Vec::new(),
            pending: Vec::new(),
            refused: None,
            broken: None,
            buf: Vec::with_capacity(64 * 1024),
            deferred: None,
            in_flight: false,
            syncing: false,
            epoch: 0,
            spare: None,
            partial: false,
            pinned: false,
        })
    }

    pub(crate) fn head(&self) -> ChainHead {
        self.chain.head()
    }

    /// Why nothing can be made durable any more, if so.
    pub(crate) fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Why events are refused now, if they are.
    pub(crate) fn refusal(&self) -> Option<&str> {
        self.broken.as_deref().or(self.refused.as_deref())
    }

    pub(crate) fn refuse(&mut self, why: Option<String>) {
        self.refused = why;
    }

    pub(crate) fn break_for_good(&mut self, why: String) {
        self.broken.get_or_insert(why);
    }

    /// Whether the sync thread is writing a group outside the lock.
    pub(crate) fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Marks the sync thread at work (see [`Front::append`]).
    pub(crate) fn set_syncing(&mut self, syncing: bool) {
        self.syncing = syncing;
    }

    /// How many undos forgot sealed events so far.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The events waiting for the store, leaving the list empty. Only
    /// written records may be stored (a failed write forgets them), so
    /// any still framed are written first; if that fails, they are gone.
    pub(crate) fn take_pending(&mut self, into: &mut Vec<SealedEvent>) {
        if let Err(error) = self.write_deferred() {
            tracing::error!(%error, "cannot write command outcomes to the audit journal; they are lost");
        }
        into.append(&mut self.pending);
    }

    /// With durable writes, for the writer's rounds: the events already
    /// written, leaving those still framed for the sync thread, which then
    /// is the only one to write (so no thread waits on the file while
    /// holding the lock). Returns whether any are still framed.
    pub(crate) fn take_written(&mut self, into: &mut Vec<SealedEvent>) -> bool {
        match self.deferred.as_mut() {
            None => {
                into.append(&mut self.pending);
                false
            }
            Some((_, first)) => {
                into.extend(self.pending.drain(..*first));
                *first = 0;
                true
            }
        }
    }

    /// The segment a sync must cover now.
    pub(crate) fn current_file(&self) -> Arc<File> {
        Arc::clone(&self.current.file)
    }

    /// Seals and journals events as the next ones; they wait in `pending`
    /// for the store. Returns the last sequence number. On failure nothing
    /// was kept.
    ///
    /// With `write_now` false the records are only framed: the next write
    /// (the next event that must not wait, an operation's event, or the
    /// writer's next round) carries them, which saves a system call per
    /// statement for records nothing waits on (a command's outcome).
    ///
    /// With durable writes, while the sync thread is at work (or others'
    /// records wait for it), records are only framed: the sync thread
    /// writes them as one group before its next sync (see
    /// [`Front::take_group`]), so a caller never meets a page the sync is
    /// writing out, and never holds the lock while it waits for one. With
    /// the sync thread idle the caller writes its own records at once,
    /// which saves the sync thread that write on a lone caller's path.
    pub(crate) fn append(&mut self, events: Vec<PreparedEvent>, write_now: bool) -> Result<u64> {
        if let Some(why) = self.refusal() {
            return Err(StoreError::Corrupt(why.to_owned()));
        }
        let alone = self.deferred.is_none();
        if alone {
            self.buf.clear();
            self.deferred = Some((self.chain.head(), self.pending.len()));
        }
        for prepared in events {
            let sealed = self.chain.seal_prepared(prepared);
            frame_into(&mut self.buf, &sealed);
            self.pending.push(sealed);
        }
        let hold = if self.durable {
            // (`syncing` covers a group in flight.)
            !write_now || !alone || self.syncing
        } else {
            !write_now && self.buf.len() < DEFER_MAX_BYTES
        };
        if !hold {
            self.write_deferred()?;
        }
        Ok(self.chain.head().seq)
    }

    /// Writes the records [`Front::append`] left framed, if any; on failure
    /// forgets them.
    pub(crate) fn write_deferred(&mut self) -> Result<()> {
        let Some((head, first)) = self.deferred.take() else {
            return Ok(());
        };
        let rotated = self.rotate_if_full(head.seq);
        let mark = self.mark_at(head);
        let written = rotated.and_then(|()| self.write_buf());
        self.buf.clear();
        written.inspect_err(|_| self.forget(mark, first))
    }

    /// Forgets the framed records from `first` in `pending` (and whatever
    /// was sealed after them), taking the chain and the file back to `mark`.
    fn forget(&mut self, mark: Mark, first: usize) {
        self.buf.clear();
        self.deferred = None;
        self.pending.truncate(first);
        self.undo(mark);
    }

    /// For the sync thread, with durable writes: takes the framed records
    /// as one group, to be written outside the lock at the place reserved
    /// for them here, and hands `empty` over to frame the next ones in.
    /// Until [`Front::finish_group`], nothing else may write.
    pub(crate) fn take_group(&mut self, empty: Vec<u8>) -> Result<Option<Group>> {
        let Some((head, first)) = self.deferred.take() else {
            return Ok(None);
        };
        if let Err(e) = self.rotate_if_full(head.seq) {
            self.forget(self.mark_at(head), first);
            return Err(e);
        }
        let mark = self.mark_at(head);
        let bytes = std::mem::replace(&mut self.buf, empty);
        self.current.len += bytes.len() as u64;
        self.in_flight = true;
        Ok(Some(Group {
            file: Arc::clone(&self.current.file),
            bytes,
            mark,
            first,
        }))
    }

    /// Ends a group's write: on failure forgets its records and everything
    /// sealed since (callers learn it through [`Front::epoch`]). Hands the
    /// group's buffer back for reuse.
    pub(crate) fn finish_group(
        &mut self,
        group: Group,
        written: std::result::Result<(), (usize, std::io::Error)>,
    ) -> (Result<()>, Vec<u8>) {
        self.in_flight = false;
        let Group {
            mut bytes,
            mark,
            first,
            ..
        } = group;
        bytes.clear();
        let result = match written {
            Ok(()) => Ok(()),
            Err((done, e)) => {
                self.current.len = mark.len;
                self.partial |= done > 0;
                let error = io("write", &self.current.path, e);
                self.forget(mark, first);
                Err(error)
            }
        };
        (result, bytes)
    }

    /// Seals and journals one draft for the writer, which stores it itself
    /// (in the same transaction as the change it records).
    pub(crate) fn seal(&mut self, draft: EventDraft) -> Result<SealedEvent> {
        self.write_deferred()?;
        self.rotate_if_full(self.chain.head().seq)?;
        let sealed = self
            .chain
            .seal(draft)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.buf.clear();
        frame_into(&mut self.buf, &sealed);
        let written = self.write_buf();
        self.buf.clear();
        written.map(|()| sealed)
    }

    /// Writes `buf` at the end of the current segment's records. A write
    /// that fails part-way marks the segment `partial`, so an undo cuts
    /// what did land; one that wrote nothing (a read-only or full disk
    /// refuses at once) leaves nothing to undo.
    fn write_buf(&mut self) -> Result<()> {
        match write_at(&self.current.file, &self.buf, self.current.len) {
            Ok(()) => {
                self.current.len += self.buf.len() as u64;
                Ok(())
            }
            Err((done, e)) => {
                self.partial |= done > 0;
                Err(io("write", &self.current.path, e))
            }
        }
    }

    /// Closes the current segment once it is full (synced, if writes must
    /// be durable, so the sync thread only ever needs the current one) and
    /// starts the next.
    /// `last` is the last sequence number already written: the next
    /// segment starts after it.
    fn rotate_if_full(&mut self, last: u64) -> Result<()> {
        if self.pinned || self.current.len < SEGMENT_BYTES {
            return Ok(());
        }
        if self.durable {
            self.current
                .file
                .sync_data()
                .map_err(|e| io("sync", &self.current.path, e))?;
        }
        let next = Segment::create(&self.dir, last + 1, self.spare.take(), self.durable)?;
        let old = std::mem::replace(&mut self.current, next);
        self.closed.push((old.path, last));
        Ok(())
    }

    /// Where a spare for the next segment should be made, if none is ready.
    pub(crate) fn wants_spare(&self) -> Option<PathBuf> {
        self.spare.is_none().then(|| self.dir.clone())
    }

    pub(crate) fn give_spare(&mut self, spare: Spare) {
        match self.spare {
            None => self.spare = Some(spare),
            Some(_) => remove(&spare.path),
        }
    }

    /// Starts a transaction of the writer's: what is sealed from here on
    /// is kept by [`Front::keep`] or forgotten by [`Front::undo`]. Until
    /// then the segment does not rotate (it may grow a little past its
    /// size), so the undo finds every record of it in one file.
    pub(crate) fn begin(&mut self) -> Mark {
        self.pinned = true;
        self.mark_at(self.chain.head())
    }

    /// Ends a transaction begun by [`Front::begin`], keeping its records.
    pub(crate) fn keep(&mut self, _mark: Mark) {
        self.pinned = false;
    }

    /// Ends a transaction begun by [`Front::begin`], forgetting its records.
    pub(crate) fn abort(&mut self, mark: Mark) {
        self.pinned = false;
        self.undo(mark);
    }

    fn mark_at(&self, head: ChainHead) -> Mark {
        Mark {
            head,
            len: self.current.len,
            path: self.current.path.clone(),
        }
    }

    /// Takes the chain and the journal back to `mark`: what was sealed
    /// after it is forgotten. If the journal cannot be cut back, nothing
    /// more is accepted.
    pub(crate) fn undo(&mut self, mark: Mark) {
        if self.chain.head().seq != mark.head.seq {
            self.epoch += 1;
        }
        self.chain.reset(mark.head);
        if self.current.path != mark.path {
            // A rotation happened after the mark (a transaction pins its
            // segment, so this is a bug), and the new segment holds only
            // undone records.
            self.broken
                .get_or_insert_with(|| "the audit journal could not be rolled back".into());
            return;
        }
        if self.current.len == mark.len && !self.partial {
            // Nothing after the mark reached the file.
            return;
        }
        match self.current.file.set_len(mark.len) {
            Ok(()) => {
                self.current.len = mark.len;
                self.partial = false;
            }
            Err(e) => {
                self.broken.get_or_insert_with(|| {
                    format!(
                        "cannot roll back {}: {e}; restart the gateway",
                        self.current.path.display()
                    )
                });
            }
        }
    }

    /// Closed segments whose every event is at or below `stored`: they may
    /// go once the store has synced.
    pub(crate) fn take_done(&mut self, stored: u64) -> Vec<PathBuf> {
        let (done, kept): (Vec<_>, Vec<_>) =
            self.closed.drain(..).partition(|(_, last)| *last <= stored);
        self.closed = kept;
        done.into_iter().map(|(path, _)| path).collect()
    }

    /// On a clean stop, with everything stored and synced: the journal is
    /// no longer needed.
    pub(crate) fn remove_all(&mut self) {
        for path in self
            .closed
            .drain(..)
            .map(|(p, _)| p)
            .chain(std::iter::once(self.current.path.clone()))
        {
            remove(&path);
        }
    }
}

/// Records the sync thread writes outside the lock (see
/// [`Front::take_group`]).
pub(crate) struct Group {
    pub(crate) file: Arc<File>,
    pub(crate) bytes: Vec<u8>,
    mark: Mark,
    first: usize,
}

impl Group {
    /// Where in the file the group goes.
    pub(crate) fn offset(&self) -> u64 {
        self.mark.len
    }
}

/// Writes all of `bytes` at `at`; on failure, how many bytes landed.
pub(crate) fn write_at(
    file: &File,
    bytes: &[u8],
    at: u64,
) -> std::result::Result<(), (usize, std::io::Error)> {
    let mut done = 0;
    while done < bytes.len() {
        match file.write_at(&bytes[done..], at + done as u64) {
            Ok(0) => {
                let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                return Err((done, e));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

fn frame_into(buf: &mut Vec<u8>, sealed: &SealedEvent) {
    // Event bodies are capped far below 4 GiB (statement text at 256 KiB).
    let len = u32::try_from(sealed.body.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&sealed.seq.to_le_bytes());
    buf.extend_from_slice(&sealed.hash);
    buf.extend_from_slice(&sealed.body);
}

pub(crate) fn remove(path: &Path) {
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(%error, path = %path.display(), "cannot remove a stored journal segment");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskgate_audit::{EventType, Timestamp};

    fn draft(n: u64) -> EventDraft {
        EventDraft::new(EventType::CommandStarted, Timestamp::from_micros(n as i64))
            .task(format!("t{n}"))
    }

    /// A journal in a new temporary directory (kept while the first value
    /// lives).
    fn fresh() -> (tempfile::TempDir, PathBuf, Front) {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = dir.path().join("j");
        let front = Front::open(&journal, Chain::new("c", ChainHead::EMPTY), false).expect("open");
        (dir, journal, front)
    }

    fn prepared(chain: &str, n: u64) -> PreparedEvent {
        draft(n).prepare(chain).expect("prepare")
    }

    #[test]
    fn recovery_returns_what_the_store_lacks_and_stops_at_a_torn_write() {
        let (_dir, journal, mut front) = fresh();
        for n in 1..=5 {
            front.append(vec![prepared("c", n)], true).expect("append");
        }
        let mut stored = Vec::new();
        front.take_pending(&mut stored);
        assert_eq!(stored.len(), 5);
        let after_two = ChainHead {
            seq: 2,
            hash: stored[1].hash,
        };
        let found = recover(&journal, after_two).expect("recover");
        assert_eq!(
            found.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(found.events[2].hash, stored[4].hash);
        assert_eq!(found.dropped_bytes, 0);

        // A crash in the middle of the last write leaves part of a record.
        let path = found.segments[0].clone();
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.write_all_at(&[0; 7], front.current.len - 7))
            .expect("cut");
        let found = recover(&journal, after_two).expect("recover");
        assert_eq!(
            found.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [3, 4]
        );
        assert!(found.dropped_bytes > 0);
    }

    #[test]
    fn a_changed_record_ends_recovery_there() {
        let (_dir, journal, mut front) = fresh();
        for n in 1..=3 {
            front.append(vec![prepared("c", n)], true).expect("append");
        }
        let path = segments(&journal).expect("segments")[0].clone();
        let mut bytes = std::fs::read(&path).expect("read");
        let record = usize::try_from(front.current.len).expect("len") / 3;
        // Flip a digit of the second record's task name ("t2" → "t7").
        let at = record
            + bytes[record..]
                .windows(4)
                .position(|w| w == b"\"t2\"")
                .expect("t2")
            + 2;
        bytes[at] = b'7';
        std::fs::write(&path, bytes).expect("write");
        let found = recover(&journal, ChainHead::EMPTY).expect("recover");
        assert_eq!(
            found.events.len(),
            1,
            "only the record before the change links"
        );
        assert!(found.dropped_bytes > 0);
    }

    #[test]
    fn held_back_records_go_out_with_the_next_write() {
        let (_dir, journal, mut front) = fresh();
        front.append(vec![prepared("c", 1)], false).expect("append");
        assert!(
            recover(&journal, ChainHead::EMPTY)
                .expect("recover")
                .events
                .is_empty()
        );
        front.append(vec![prepared("c", 2)], true).expect("append");
        let seqs = |f: Recovered| f.events.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(recover(&journal, ChainHead::EMPTY).expect("recover")),
            [1, 2]
        );
        // Taking events for the store writes any held back first.
        front.append(vec![prepared("c", 3)], false).expect("append");
        let mut taken = Vec::new();
        front.take_pending(&mut taken);
        assert_eq!(taken.len(), 3);
        assert_eq!(
            seqs(recover(&journal, ChainHead::EMPTY).expect("recover")),
            [1, 2, 3]
        );
    }

    #[test]
    fn only_written_records_count_as_pending() {
        let (_dir, journal, mut front) = fresh();
        assert!(
            !has_pending(&journal),
            "a segment filled ahead of time holds nothing"
        );
        front.append(vec![prepared("c", 1)], true).expect("append");
        assert!(has_pending(&journal));
    }

    #[test]
    fn undo_forgets_what_was_sealed_after_the_mark() {
        let (_dir, journal, mut front) = fresh();
        front.append(vec![prepared("c", 1)], true).expect("append");
        let mark = front.begin();
        front.seal(draft(2)).expect("seal");
        front.abort(mark);
        assert_eq!(front.head().seq, 1);
        front.append(vec![prepared("c", 3)], true).expect("append");
        let found = recover(&journal, ChainHead::EMPTY).expect("recover");
        assert_eq!(found.events.len(), 2);
        assert!(found.events[1].body.windows(4).any(|w| w == b"\"t3\""));
    }

    #[test]
    fn a_transaction_past_a_full_segment_stays_in_it_and_can_be_undone() {
        let (_dir, journal, mut front) = fresh();
        front.append(vec![prepared("c", 1)], true).expect("append");
        front.current.len = SEGMENT_BYTES; // as if full
        let mark = front.begin();
        front.seal(draft(2)).expect("seal");
        front.seal(draft(3)).expect("seal");
        assert_eq!(segments(&journal).expect("segments").len(), 1);
        front.abort(mark);
        assert_eq!(front.broken(), None);
        assert_eq!(front.current.len, SEGMENT_BYTES);
        assert_eq!(front.head().seq, 1);
        // Unpinned again: the next write rotates as usual.
        front.append(vec![prepared("c", 2)], true).expect("append");
        assert_eq!(segments(&journal).expect("segments").len(), 2);
        let found = recover(&journal, ChainHead::EMPTY).expect("recover");
        assert_eq!(
            found.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn a_kept_transaction_lets_the_segment_rotate_again() {
        let (_dir, journal, mut front) = fresh();
        front.current.len = SEGMENT_BYTES; // as if full
        let mark = front.begin();
        front.seal(draft(1)).expect("seal");
        front.keep(mark);
        front.seal(draft(2)).expect("seal");
        assert_eq!(segments(&journal).expect("segments").len(), 2);
    }

    /// A journal whose writes must be durable, with its sync thread at
    /// work: callers only frame, the sync thread writes groups.
    fn durable() -> (tempfile::TempDir, PathBuf, Front) {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = dir.path().join("j");
        let mut front =
            Front::open(&journal, Chain::new("c", ChainHead::EMPTY), true).expect("open");
        front.set_syncing(true);
        (dir, journal, front)
    }

    #[test]
    fn with_the_sync_thread_idle_a_lone_caller_writes_its_own_records() {
        let (_dir, journal, mut front) = durable();
        front.set_syncing(false);
        front.append(vec![prepared("c", 1)], true).expect("append");
        assert_eq!(seqs(&journal), [1]);
        // An outcome nobody waits on is only framed; whoever comes next
        // while it waits joins it, and the sync thread writes them both.
        front.append(vec![prepared("c", 2)], false).expect("append");
        front.append(vec![prepared("c", 3)], true).expect("append");
        assert_eq!(seqs(&journal), [1]);
        write_group(&mut front);
        assert_eq!(seqs(&journal), [1, 2, 3]);
        // While the sync thread is at work, callers only frame.
        front.set_syncing(true);
        front.append(vec![prepared("c", 4)], true).expect("append");
        assert_eq!(seqs(&journal), [1, 2, 3]);
    }

    /// What the sync thread does with a group, without the sync.
    fn write_group(front: &mut Front) {
        let group = front
            .take_group(Vec::new())
            .expect("take")
            .expect("a group");
        let written = write_at(&group.file, &group.bytes, group.offset());
        front.finish_group(group, written).0.expect("written");
    }

    fn seqs(journal: &Path) -> Vec<u64> {
        let found = recover(journal, ChainHead::EMPTY).expect("recover");
        found.events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn durable_records_are_written_as_one_group_outside_the_lock() {
        let (_dir, journal, mut front) = durable();
        for n in 1..=3 {
            front.append(vec![prepared("c", n)], true).expect("append");
        }
        assert!(seqs(&journal).is_empty(), "callers only frame");
        let group = front
            .take_group(Vec::new())
            .expect("take")
            .expect("a group");
        assert!(front.in_flight());
        // Appends go on while the group is written.
        front.append(vec![prepared("c", 4)], true).expect("append");
        let written = write_at(&group.file, &group.bytes, group.offset());
        let (result, _) = front.finish_group(group, written);
        result.expect("written");
        assert!(!front.in_flight());
        assert_eq!(seqs(&journal), [1, 2, 3]);
        write_group(&mut front);
        assert_eq!(seqs(&journal), [1, 2, 3, 4]);
        assert!(front.take_group(Vec::new()).expect("take").is_none());
        assert_eq!(front.epoch(), 0);
    }

    #[test]
    fn the_writer_takes_only_written_records_and_leaves_framed_ones() {
        let (_dir, _journal, mut front) = durable();
        front.append(vec![prepared("c", 1)], true).expect("append");
        write_group(&mut front);
        front.append(vec![prepared("c", 2)], false).expect("append");
        let mut taken = Vec::new();
        assert!(front.take_written(&mut taken), "record 2 is still framed");
        assert_eq!(taken.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
        write_group(&mut front);
        taken.clear();
        assert!(!front.take_written(&mut taken));
        assert_eq!(taken.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
        assert_eq!(front.pending_len(), 0);
    }

    #[test]
    fn a_failed_group_forgets_it_and_everything_sealed_since() {
        let (_dir, journal, mut front) = durable();
        front.append(vec![prepared("c", 1)], true).expect("append");
        write_group(&mut front);
        front.append(vec![prepared("c", 2)], true).expect("append");
        let group = front
            .take_group(Vec::new())
            .expect("take")
            .expect("a group");
        front.append(vec![prepared("c", 3)], true).expect("append");
        let failed = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let (result, _) = front.finish_group(group, Err((0, failed)));
        assert!(result.is_err());
        assert_eq!(front.epoch(), 1, "waiting callers must learn of it");
        assert_eq!(front.head().seq, 1);
        assert_eq!(front.pending_len(), 1);
        // The journal goes on after the failure, from where it was.
        front.append(vec![prepared("c", 5)], true).expect("append");
        assert_eq!(front.head().seq, 2);
        write_group(&mut front);
        let found = recover(&journal, ChainHead::EMPTY).expect("recover");
        assert_eq!(found.events.len(), 2);
        assert!(found.events[1].body.windows(4).any(|w| w == b"\"t5\""));
    }

    #[test]
    fn a_group_past_a_full_segment_starts_the_next_one_at_its_first_record() {
        let (_dir, journal, mut front) = durable();
        front.append(vec![prepared("c", 1)], true).expect("append");
        write_group(&mut front);
        front.current.len = SEGMENT_BYTES; // as if full
        front
            .append(vec![prepared("c", 2), prepared("c", 3)], true)
            .expect("append");
        write_group(&mut front);
        let names: Vec<_> = segments(&journal).expect("segments");
        assert!(names[1].ends_with(format!("{:020}.log", 2)));
        assert_eq!(seqs(&journal), [1, 2, 3]);
        assert_eq!(front.take_done(1).len(), 1);
    }

    #[test]
    fn segments_rotate_and_closed_ones_are_released_once_stored() {
        let (_dir, journal, mut front) = fresh();
        front.append(vec![prepared("c", 1)], true).expect("append");
        front.current.len = SEGMENT_BYTES; // as if full
        front.append(vec![prepared("c", 2)], true).expect("append");
        assert_eq!(segments(&journal).expect("segments").len(), 2);
        // The first segment's unwritten zeros end it; the read goes on
        // into the next.
        let both = recover(&journal, ChainHead::EMPTY).expect("recover");
        assert_eq!(
            both.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(both.dropped_bytes, 0);
        assert!(front.take_done(0).is_empty());
        let done = front.take_done(1);
        assert_eq!(done.len(), 1);
        done.iter().for_each(|p| remove(p));
        let found = recover(
            &journal,
            ChainHead {
                seq: 1,
                hash: {
                    let mut all = Vec::new();
                    front.take_pending(&mut all);
                    all[0].hash
                },
            },
        )
        .expect("recover");
        assert_eq!(found.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    }
}
