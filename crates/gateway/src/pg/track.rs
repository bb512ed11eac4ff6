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
use std::time::{Duration, Instant};

use taskgate_wire_pg::backend::{BackendMessage, tag_rows};
use taskgate_wire_pg::encode::backend as enc;

/// A command recorded as started and not yet completed.
#[derive(Debug)]
pub struct Running {
    pub id: u64,
    pub started: Instant,
    rows: u64,
    copy_out_bytes: u64,
}

impl Running {
    pub fn new(id: u64, started: Instant) -> Self {
        Self {
            id,
            started,
            rows: 0,
            copy_out_bytes: 0,
        }
    }
}

#[derive(Debug)]
pub enum Expect {
    Parse,
    Bind,
    Close,
    /// A statement's Describe answers ParameterDescription, then
    /// RowDescription or NoData; a portal's only the latter.
    Describe,
    Execute(Running),
    /// A simple Query (one command per statement) or a FunctionCall: ends
    /// with ReadyForQuery.
    Query(VecDeque<Running>),
    Sync,
    /// Bytes the gateway itself answers with, sent when every earlier
    /// answer has been; `ready` adds a ReadyForQuery with the current
    /// transaction status.
    Made {
        bytes: Vec<u8>,
        ready: bool,
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
}

#[derive(Debug)]
pub struct Tracker {
    queue: VecDeque<Expect>,
    /// The last ReadyForQuery status: `I`, `T` or `E`.
    status: u8,
    /// COPY bytes the client sent for the running command.
    copy_in_bytes: u64,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            status: b'I',
            copy_in_bytes: 0,
        }
    }
}

impl Tracker {
    pub fn expect(&mut self, e: Expect) {
        self.queue.push_back(e);
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
        }
    }

    fn running(&mut self) -> Option<&mut Running> {
        match self.queue.front_mut()? {
            Expect::Execute(r) => Some(r),
            Expect::Query(q) => q.front_mut(),
            _ => None,
        }
    }

    /// After an error in the extended protocol the server ignores every
    /// message up to the next Sync: what was expected of them never comes.
    fn skip_to_sync(&mut self, now: Instant, done: &mut Vec<Completion>) {
        while let Some(front) = self.queue.front() {
            if matches!(front, Expect::Sync | Expect::Query(_)) {
                break;
            }
            if let Some(Expect::Execute(r)) = self.queue.pop_front() {
                let c = self.complete(r, Outcome::Skipped, now);
                done.push(c);
            }
        }
    }

    /// Takes one server message into account. Completed commands go to
    /// `done`; answers the gateway made that are now due go to `out`
    /// (after the server's message itself, which the caller forwards).
    pub fn on_backend(
        &mut self,
        message: &BackendMessage<'_>,
        body_len: usize,
        now: Instant,
        done: &mut Vec<Completion>,
    ) {
        match message {
            BackendMessage::DataRow => {
                if let Some(r) = self.running() {
                    r.rows += 1;
                }
            }
            BackendMessage::CopyData => {
                if let Some(r) = self.running() {
                    r.copy_out_bytes += body_len as u64;
                }
            }
            BackendMessage::CommandComplete(tag) => self.command_done(tag, now, done),
            BackendMessage::EmptyQueryResponse => self.command_done("", now, done),
            BackendMessage::FunctionCallResponse => self.command_done("FUNCTION CALL", now, done),
            BackendMessage::PortalSuspended => self.command_done("SUSPENDED", now, done),
            BackendMessage::ErrorResponse(fields) => {
                let outcome = Outcome::Error {
                    sqlstate: fields.code.to_owned(),
                    message: fields.message.to_owned(),
                };
                match self.queue.front_mut() {
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
                        self.skip_to_sync(now, done);
                    }
                    Some(Expect::Parse | Expect::Bind | Expect::Close | Expect::Describe) => {
                        self.queue.pop_front();
                        self.skip_to_sync(now, done);
                    }
                    // An error at Sync (a failed implicit commit) or one the
                    // server sends on its own (shutdown): nothing to pop.
                    _ => {}
                }
            }
            BackendMessage::ParseComplete => self.pop_if(|e| matches!(e, Expect::Parse)),
            BackendMessage::BindComplete => self.pop_if(|e| matches!(e, Expect::Bind)),
            BackendMessage::CloseComplete => self.pop_if(|e| matches!(e, Expect::Close)),
            BackendMessage::RowDescription | BackendMessage::NoData => {
                self.pop_if(|e| matches!(e, Expect::Describe))
            }
            BackendMessage::ReadyForQuery(status) => {
                self.status = *status;
                // Whatever is still open before the Sync or Query that this
                // answers will not be answered any more.
                while let Some(front) = self.queue.pop_front() {
                    match front {
                        Expect::Sync => break,
                        Expect::Query(q) => {
                            for r in q {
                                done.push(self.complete(r, Outcome::Skipped, now));
                            }
                            break;
                        }
                        Expect::Execute(r) => done.push(self.complete(r, Outcome::Skipped, now)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    fn pop_if(&mut self, is: impl Fn(&Expect) -> bool) {
        if self.queue.front().is_some_and(is) {
            self.queue.pop_front();
        }
    }

    fn command_done(&mut self, tag: &str, now: Instant, done: &mut Vec<Completion>) {
        let outcome = Outcome::Ok {
            tag: tag.to_owned(),
        };
        match self.queue.front_mut() {
            Some(Expect::Execute(_)) => {
                if let Some(Expect::Execute(r)) = self.queue.pop_front() {
                    done.push(self.complete(r, outcome, now));
                }
            }
            Some(Expect::Query(q)) => {
                if let Some(r) = q.pop_front() {
                    done.push(self.complete(r, outcome, now));
                }
            }
            _ => {}
        }
    }

    /// Appends the gateway's own answers that are now at the head of the
    /// line.
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
