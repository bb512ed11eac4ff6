//! Which server answers belong to which client message.
//!
//! The client side pushes what it expects back for every message it
//! forwards (and the answers the gateway makes up itself, such as a denied
//! statement's error); the server side pops them as answers arrive. That is
//! how a `CommandComplete` or `ErrorResponse` is tied to the command whose
//! `command.started` event it completes, and how a gateway-made error
//! reaches the client in the right place among the server's answers.
//!
//! Pure: no I/O and no clock beyond the `Instant`s it is handed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use taskgate_wire_pg::backend::{BackendMessage, tag_rows};
use taskgate_wire_pg::encode::backend as enc;
use taskgate_wire_pg::frontend::Target;

pub use names::{Change, NameEffect, Names, Portal, Prepared};

use super::reading::Reading;

mod names;

/// Most answers a session may have outstanding; past it the client is
/// pipelining without reading, and the session ends (memory stays bounded).
pub const MAX_OUTSTANDING: usize = 65_536;

/// What an in-process client (an MCP call) takes of a result: the rows
/// that reach it are counted as it counts them, so the record holds both
/// what the database returned and what reached the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultCaps {
    pub max_rows: usize,
    pub max_bytes: usize,
}

impl ResultCaps {
    /// Whether one more row (or COPY line) is taken, `taken` rows being
    /// taken already and `bytes` the bytes of every row so far, this one's
    /// included. Once one is not, no later one is.
    pub fn takes(self, taken: usize, bytes: usize) -> bool {
        taken < self.max_rows && bytes <= self.max_bytes
    }
}

/// Rows of a result that reached an in-process client (see [`ResultCaps`]).
#[derive(Debug, Default)]
struct Delivered {
    taken: u64,
    bytes: u64,
    cut: bool,
}

impl Delivered {
    fn row(&mut self, caps: ResultCaps, bytes: usize) {
        self.bytes += bytes as u64;
        let taken = usize::try_from(self.taken).unwrap_or(usize::MAX);
        let total = usize::try_from(self.bytes).unwrap_or(usize::MAX);
        if !self.cut && caps.takes(taken, total) {
            self.taken += 1;
        } else {
            self.cut = true;
        }
    }
}

/// A command recorded as started and not yet completed.
#[derive(Debug)]
pub struct Running {
    pub id: u64,
    pub started: Instant,
    rows: u64,
    copy_out_bytes: u64,
    /// A SQL-level PREPARE: the statement its name stands for once it
    /// succeeds, and the statement tables' epoch when it was sent.
    prepares: Option<(String, Arc<Prepared>, u64)>,
    /// An Execute's portal (its name, and what it was bound to): a Parse
    /// or Bind of either that the server refuses is this command's failure.
    bound: Option<(String, Arc<Portal>)>,
    /// What reached an in-process client, when the session has caps.
    delivered: Delivered,
}

impl Running {
    pub fn new(id: u64, started: Instant) -> Self {
        Self {
            id,
            started,
            rows: 0,
            copy_out_bytes: 0,
            prepares: None,
            bound: None,
            delivered: Delivered::default(),
        }
    }

    /// An Execute of the portal `name` (unnamed, as most drivers use, it
    /// costs no allocation).
    pub fn executes(mut self, portal: &Arc<Portal>, name: &str) -> Self {
        self.bound = Some((name.to_owned(), Arc::clone(portal)));
        self
    }

    /// Whether the Parse or Bind `change` made is the one this Execute runs.
    fn runs(&self, change: &Change) -> bool {
        match (&self.bound, change) {
            (Some((_, portal)), Change::Statement { name, .. }) => portal.statement == *name,
            (Some((portal, _)), Change::Portal { name, .. }) => portal == name,
            _ => false,
        }
    }

    /// A `PREPARE name AS ...` that names `prepared` once the server has
    /// run it (a PREPARE the server refuses, for a name in use, names
    /// nothing new). `epoch` is [`Names::statement_epoch`] after the
    /// PREPARE's own forgetting: anything forgotten after it wins.
    pub fn prepares(mut self, name: String, prepared: Arc<Prepared>, epoch: u64) -> Self {
        self.prepares = Some((name, prepared, epoch));
        self
    }
}

#[derive(Debug)]
pub enum Expect {
    /// Parse, Bind or Close: answered by ParseComplete, BindComplete or
    /// CloseComplete; `epoch` is the name tables' epoch when applied.
    Named {
        change: Change,
        epoch: u64,
    },
    /// A statement's Describe answers ParameterDescription, then
    /// RowDescription or NoData; a portal's only the latter.
    Describe,
    Execute(Running),
    /// A simple Query (one command per statement) or a FunctionCall: ends
    /// with ReadyForQuery.
    Query(VecDeque<Running>),
    Sync,
    /// The client ended a COPY IN (CopyDone or CopyFail).
    CopyEnd,
    /// Bytes the gateway itself answers with, sent when every earlier
    /// answer has been; `ready` adds a ReadyForQuery with the current
    /// transaction status.
    Made {
        bytes: Vec<u8>,
        ready: bool,
    },
    /// A refusal: in place of the refused message the server was sent text
    /// no grammar accepts, so it fails the transaction and skips the batch
    /// as after any error. Its ErrorResponse is replaced by `error`. A
    /// simple query's refusal is followed by an empty `Query`, which takes
    /// its ReadyForQuery.
    Refused {
        error: Vec<u8>,
        extended: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok {
        tag: String,
    },
    Error {
        sqlstate: String,
        message: String,
    },
    /// Never ran: an earlier error in the same batch made the server skip it.
    Skipped,
    /// The connection ended before the server answered.
    Unknown,
}

#[derive(Debug)]
pub struct Completion {
    pub id: u64,
    pub outcome: Outcome,
    pub rows: Option<u64>,
    pub duration: Duration,
    pub copy_in_bytes: u64,
    pub copy_out_bytes: u64,
    /// Rows that reached an in-process client (MCP), when it has caps.
    pub rows_returned: Option<u64>,
}

#[derive(Debug)]
pub struct Tracker {
    queue: VecDeque<Expect>,
    /// The last ReadyForQuery status: `I`, `T` or `E`.
    status: u8,
    /// COPY bytes the client sent for the running command.
    copy_in_bytes: u64,
    /// The server is in COPY IN: it ignores Sync and Flush until the
    /// client's CopyDone or CopyFail.
    in_copy_in: bool,
    /// The gateway's own answers that must precede the message just taken.
    due: Vec<u8>,
    /// Syncs and simple queries (or function calls) queued and not yet
    /// answered by their ReadyForQuery.
    unanswered: usize,
    /// The server met an error in the extended protocol and discards every
    /// message until the next Sync, simple queries included.
    server_ignoring: bool,
    /// Commands of queries sent while the server discards them: they never
    /// run, and are completed as skipped with the next server message.
    discarded: Vec<Running>,
    pub names: Names,
    /// The server reported a setting the gateway cannot read statements
    /// under (why): nothing more may be sent, and the session ends.
    pub unsafe_setting: Option<String>,
    /// How the server reads the session's text, as last reported.
    pub reading: Reading,
    /// What an in-process client takes of each result.
    pub caps: Option<ResultCaps>,
    /// Outcomes of commands whose `command.started` was not yet committed
    /// when the server answered (an earlier message's error can fail a
    /// command of the batch still being committed): recorded once it is.
    pub deferred: Vec<Completion>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            status: b'I',
            copy_in_bytes: 0,
            in_copy_in: false,
            due: Vec::new(),
            unanswered: 0,
            server_ignoring: false,
            discarded: Vec::new(),
            names: Names::default(),
            unsafe_setting: None,
            reading: Reading::default(),
            caps: None,
            deferred: Vec::new(),
        }
    }
}

impl Tracker {
    /// Whether the server, having met an error, discards every message
    /// until the next Sync (and answers none of them).
    pub fn server_ignoring(&self) -> bool {
        self.server_ignoring
    }

    /// Queues what the server will answer to a forwarded message. Fails
    /// when too much is outstanding.
    pub fn expect(&mut self, e: Expect) -> Result<(), usize> {
        let e = match e {
            Expect::Sync if self.in_copy_in => return Ok(()),
            Expect::CopyEnd if self.in_copy_in => {
                self.in_copy_in = false;
                return Ok(());
            }
            Expect::Query(q) if self.server_ignoring => {
                // Discarded by the server: no answer will come for it.
                self.discarded.extend(q);
                return Ok(());
            }
            Expect::Sync => {
                self.server_ignoring = false;
                Expect::Sync
            }
            e => e,
        };
        if self.queue.len() >= MAX_OUTSTANDING {
            return Err(MAX_OUTSTANDING);
        }
        if matches!(e, Expect::Sync | Expect::Query(_)) {
            self.unanswered += 1;
        }
        self.queue.push_back(e);
        Ok(())
    }

    /// Syncs and simple queries queued (forwarded, or about to be) whose
    /// ReadyForQuery has not come back yet.
    pub fn unanswered(&self) -> usize {
        self.unanswered
    }

    /// Parse: the name now holds this statement.
    pub fn parse(&mut self, name: &str, prepared: Arc<Prepared>) -> Result<(), usize> {
        let prev = self.names.statements.insert(name.to_owned(), prepared);
        let epoch = self.names.statement_epoch;
        self.expect(Expect::Named {
            change: Change::Statement {
                name: name.to_owned(),
                prev,
            },
            epoch,
        })
    }

    /// Bind: the portal now holds this statement and these parameters.
    pub fn bind(&mut self, name: &str, portal: Option<Portal>) -> Result<(), usize> {
        let prev = match portal {
            Some(p) => self.names.portals.insert(name.to_owned(), Arc::new(p)),
            None => self.names.portals.remove(name),
        };
        let epoch = self.names.portal_epoch;
        self.expect(Expect::Named {
            change: Change::Portal {
                name: name.to_owned(),
                prev,
            },
            epoch,
        })
    }

    /// Close of a statement or portal.
    pub fn close(&mut self, target: Target, name: &str) -> Result<(), usize> {
        let change = match target {
            Target::Statement => Change::Statement {
                name: name.to_owned(),
                prev: self.names.statements.remove(name),
            },
            Target::Portal => Change::Portal {
                name: name.to_owned(),
                prev: self.names.portals.remove(name),
            },
        };
        let epoch = self.names.epoch_of(&change);
        self.expect(Expect::Named { change, epoch })
    }

    pub fn copy_in(&mut self, bytes: usize) {
        self.copy_in_bytes += bytes as u64;
    }

    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    fn complete(&mut self, mut r: Running, outcome: Outcome, now: Instant) -> Completion {
        let rows = match &outcome {
            Outcome::Ok { tag } => tag_rows(tag).or((r.rows > 0).then_some(r.rows)),
            _ => None,
        };
        Completion {
            id: r.id,
            outcome,
            rows,
            duration: now.saturating_duration_since(r.started),
            copy_in_bytes: std::mem::take(&mut self.copy_in_bytes),
            copy_out_bytes: std::mem::take(&mut r.copy_out_bytes),
            rows_returned: self.caps.map(|_| r.delivered.taken),
        }
    }

    fn running(&mut self) -> Option<&mut Running> {
        match self.queue.front_mut()? {
            Expect::Execute(r) => Some(r),
            Expect::Query(q) => q.front_mut(),
            _ => None,
        }
    }

    /// Pops the head; a name change it carried is undone when `undo`.
    fn pop(
        &mut self,
        undo: bool,
        now: Instant,
        done: &mut Vec<Completion>,
        undos: &mut Vec<(Change, u64)>,
    ) {
        match self.queue.pop_front() {
            Some(Expect::Named { change, epoch }) if undo => undos.push((change, epoch)),
            Some(Expect::Execute(r)) => {
                let c = self.complete(r, Outcome::Skipped, now);
                done.push(c);
            }
            _ => {}
        }
    }

    /// After an error in the extended protocol the server ignores every
    /// message up to the next Sync, simple queries too: what was expected
    /// of them never comes, and the name changes they carried did not
    /// happen.
    fn skip_to_sync(
        &mut self,
        now: Instant,
        done: &mut Vec<Completion>,
        undos: &mut Vec<(Change, u64)>,
        mut failed: Option<(Change, Outcome)>,
    ) {
        // Until a Sync is sent, whatever comes is discarded too.
        self.server_ignoring = true;
        while let Some(front) = self.queue.front() {
            match front {
                // The first Execute of what a refused Parse or Bind made:
                // the server refused the statement it would have run.
                Expect::Execute(r) if failed.as_ref().is_some_and(|(change, _)| r.runs(change)) => {
                    if let (Some(Expect::Execute(r)), Some((_, outcome))) =
                        (self.queue.pop_front(), failed.take())
                    {
                        done.push(self.complete(r, outcome, now));
                    }
                }
                Expect::Sync => {
                    self.server_ignoring = false;
                    break;
                }
                Expect::Query(_) => {
                    self.unanswered = self.unanswered.saturating_sub(1);
                    if let Some(Expect::Query(q)) = self.queue.pop_front() {
                        for r in q {
                            let c = self.complete(r, Outcome::Skipped, now);
                            done.push(c);
                        }
                    }
                }
                _ => self.pop(true, now, done, undos),
            }
        }
    }

    /// Takes one server message into account. Completed commands go to
    /// `done`. Returns whether the message goes on to the client (the
    /// error answering a refusal's stand-in does not: the gateway's own
    /// error goes in its place).
    pub fn on_backend(
        &mut self,
        message: &BackendMessage<'_>,
        body_len: usize,
        now: Instant,
        done: &mut Vec<Completion>,
    ) -> bool {
        let mut forward = true;
        let mut undos = Vec::new();
        let mut transaction_ended = false;
        for r in std::mem::take(&mut self.discarded) {
            let c = self.complete(r, Outcome::Skipped, now);
            done.push(c);
        }
        // The gateway's own answers at the head of the line come before
        // this server message (the server half may not have sent them
        // yet): they must not stand between it and what it answers.
        let mut due = std::mem::take(&mut self.due);
        self.take_made(&mut due);
        self.due = due;
        match message {
            BackendMessage::DataRow => {
                let caps = self.caps;
                if let Some(r) = self.running() {
                    r.rows += 1;
                    // The client counts a row's bytes after its column
                    // count.
                    if let Some(caps) = caps {
                        r.delivered.row(caps, body_len.saturating_sub(2));
                    }
                }
            }
            BackendMessage::CopyData => {
                let caps = self.caps;
                if let Some(r) = self.running() {
                    r.copy_out_bytes += body_len as u64;
                    if let Some(caps) = caps {
                        r.delivered.row(caps, body_len);
                    }
                }
            }
            BackendMessage::CopyInResponse => self.enter_copy_in(),
            BackendMessage::CommandComplete(tag) => self.command_done(tag, now, done),
            BackendMessage::EmptyQueryResponse => self.command_done("", now, done),
            BackendMessage::FunctionCallResponse => self.command_done("FUNCTION CALL", now, done),
            BackendMessage::PortalSuspended => self.command_done("SUSPENDED", now, done),
            BackendMessage::ErrorResponse(fields) => {
                self.in_copy_in = false;
                let outcome = Outcome::Error {
                    sqlstate: fields.code.to_owned(),
                    message: fields.message.to_owned(),
                };
                match self.queue.front_mut() {
                    Some(Expect::Refused { .. }) => {
                        if let Some(Expect::Refused { error, extended }) = self.queue.pop_front() {
                            self.due.extend_from_slice(&error);
                            forward = false;
                            if extended {
                                self.skip_to_sync(now, done, &mut undos, None);
                            }
                        }
                    }
                    Some(Expect::Query(q)) => {
                        if let Some(r) = q.pop_front() {
                            let skipped: Vec<Running> = q.drain(..).collect();
                            done.push(self.complete(r, outcome, now));
                            for r in skipped {
                                done.push(self.complete(r, Outcome::Skipped, now));
                            }
                        }
                    }
                    Some(Expect::Execute(_)) => {
                        if let Some(Expect::Execute(r)) = self.queue.pop_front() {
                            done.push(self.complete(r, outcome, now));
                        }
                        self.skip_to_sync(now, done, &mut undos, None);
                    }
                    Some(Expect::Named { change, .. }) => {
                        // What it made is named by the Execute it fails.
                        let failed = Some((change.clone(), outcome));
                        self.pop(true, now, done, &mut undos);
                        self.skip_to_sync(now, done, &mut undos, failed);
                    }
                    Some(Expect::Describe) => {
                        self.pop(true, now, done, &mut undos);
                        self.skip_to_sync(now, done, &mut undos, None);
                    }
                    // An error at Sync (a failed implicit commit) or one the
                    // server sends on its own (shutdown): nothing to pop.
                    _ => {}
                }
            }
            BackendMessage::ParseComplete
            | BackendMessage::BindComplete
            | BackendMessage::CloseComplete => {
                if matches!(self.queue.front(), Some(Expect::Named { .. })) {
                    self.queue.pop_front();
                }
            }
            BackendMessage::RowDescription | BackendMessage::NoData => {
                if matches!(self.queue.front(), Some(Expect::Describe)) {
                    self.queue.pop_front();
                }
            }
            BackendMessage::ReadyForQuery(status) => {
                self.status = *status;
                // Protocol-level portals end with their transaction.
                transaction_ended = *status == b'I';
                // Whatever is still open before the Sync or Query that this
                // answers will not be answered any more.
                while let Some(front) = self.queue.front() {
                    match front {
                        Expect::Sync => {
                            self.queue.pop_front();
                            self.unanswered = self.unanswered.saturating_sub(1);
                            break;
                        }
                        Expect::Query(_) => {
                            self.unanswered = self.unanswered.saturating_sub(1);
                            if let Some(Expect::Query(q)) = self.queue.pop_front() {
                                for r in q {
                                    done.push(self.complete(r, Outcome::Skipped, now));
                                }
                            }
                            break;
                        }
                        // Normally sent by `take_made` already; if popping
                        // what was never answered brought one to the head,
                        // it goes out before this ReadyForQuery.
                        Expect::Made { .. } => {
                            if let Some(Expect::Made { bytes, ready }) = self.queue.pop_front() {
                                self.due.extend_from_slice(&bytes);
                                if ready {
                                    self.due
                                        .extend_from_slice(&enc::ready_for_query(self.status));
                                }
                            }
                        }
                        _ => self.pop(true, now, done, &mut undos),
                    }
                }
            }
            _ => {}
        }
        // Undo newest first, so each name ends as it was before the batch.
        for (change, epoch) in undos.into_iter().rev() {
            self.names.undo(change, epoch);
        }
        if transaction_ended {
            self.names.drop_portals();
        }
        while matches!(self.queue.front(), Some(Expect::CopyEnd)) {
            // The end of a COPY that never started (or already ended).
            self.queue.pop_front();
        }
        forward
    }

    /// The server entered COPY IN: Syncs the client sent after the command
    /// and before ending the copy are ignored by the server, so they get no
    /// ReadyForQuery either.
    fn enter_copy_in(&mut self) {
        let mut i = 1;
        while i < self.queue.len() {
            match self.queue.get(i) {
                Some(Expect::Sync) => {
                    self.queue.remove(i);
                    self.unanswered = self.unanswered.saturating_sub(1);
                }
                Some(Expect::CopyEnd) => {
                    self.queue.remove(i);
                    return;
                }
                _ => i += 1,
            }
        }
        self.in_copy_in = true;
    }

    fn command_done(&mut self, tag: &str, now: Instant, done: &mut Vec<Completion>) {
        self.in_copy_in = false;
        let outcome = Outcome::Ok {
            tag: tag.to_owned(),
        };
        let finished = match self.queue.front_mut() {
            Some(Expect::Execute(_)) => match self.queue.pop_front() {
                Some(Expect::Execute(r)) => Some(r),
                _ => None,
            },
            Some(Expect::Query(q)) => q.pop_front(),
            _ => None,
        };
        if let Some(mut r) = finished {
            if let Some((name, prepared, epoch)) = r.prepares.take()
                && epoch == self.names.statement_epoch
            {
                self.names.statements.insert(name, prepared);
            }
            done.push(self.complete(r, outcome, now));
        }
    }

    /// Answers of the gateway's own that go before the message just given
    /// to [`Tracker::on_backend`].
    pub fn take_due(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.due);
    }

    /// Appends the gateway's own answers that are now at the head of the
    /// line. Called after every server message, so an answer due between
    /// two of the server's is sent between them.
    pub fn take_made(&mut self, out: &mut Vec<u8>) {
        while let Some(Expect::Made { .. }) = self.queue.front() {
            if let Some(Expect::Made { bytes, ready }) = self.queue.pop_front() {
                out.extend_from_slice(&bytes);
                if ready {
                    out.extend_from_slice(&enc::ready_for_query(self.status));
                }
            }
        }
    }

    /// Every command still open, when the connection ends.
    pub fn abandon(&mut self, now: Instant) -> Vec<Completion> {
        let mut done = Vec::new();
        self.unanswered = 0;
        while let Some(front) = self.queue.pop_front() {
            match front {
                Expect::Execute(r) => done.push(self.complete(r, Outcome::Unknown, now)),
                Expect::Query(q) => {
                    for r in q {
                        done.push(self.complete(r, Outcome::Unknown, now));
                    }
                }
                _ => {}
            }
        }
        done
    }
}

#[cfg(test)]
mod tests;
