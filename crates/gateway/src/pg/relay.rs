//! The proxy loop of one logged-in session.
//!
//! Two halves run at once. The client half reads client messages, decides
//! each statement, and forwards the original bytes upstream; the server
//! half forwards the server's answers and records each command's outcome.
//! A shared [`Tracker`] ties the two.
//!
//! Invariant: a statement's `command.started` event is committed before the
//! first byte of the message that runs it goes upstream. The client half
//! gathers everything already read into one batch, commits the batch's
//! events, and only then writes the batch with a single write.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::BytesMut;
use serde_json::Value;
use taskgate_audit::{EventDraft, Timestamp};
use taskgate_policy::{StatementDecision, StatementPolicy};
use taskgate_sqlclass::{Classification, Classifier};
use taskgate_store::Writer;
use taskgate_wire_pg::backend::{self, BackendMessage};
use taskgate_wire_pg::encode::backend as enc;
use taskgate_wire_pg::frame::{self, Direction, Frame, Limits};
use taskgate_wire_pg::frontend::{self, FrontendMessage, param_format};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Notify, mpsc, watch};

use super::ClientStream;
use super::record::{Protocol, SessionRecord, Statement, param_value};
use super::sessions::CloseReason;
use super::track::{Expect, Running, Tracker};

/// SQLSTATE for a statement refused by policy.
const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// SQLSTATE for "the gateway cannot record, so nothing runs".
const SYSTEM_ERROR: &str = "58000";
/// SQLSTATE for protocol violations.
const PROTOCOL_VIOLATION: &str = "08P01";
/// SQLSTATE sent with a session cut off by the gateway.
const ADMIN_SHUTDOWN: &str = "57P01";

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    ClientLeft,
    ServerClosed,
    Closed(CloseReason),
    /// The client broke the protocol; the message says how.
    ClientProtocol(String),
    ServerProtocol(String),
    AuditUnavailable(String),
    Io(String),
}

impl Ending {
    /// For the `session.closed` event and the log.
    pub fn describe(&self) -> String {
        match self {
            Ending::ClientLeft => "client disconnected".into(),
            Ending::ServerClosed => "database closed the connection".into(),
            Ending::Closed(r) => r.message().into(),
            Ending::ClientProtocol(m) => format!("client protocol error: {m}"),
            Ending::ServerProtocol(m) => format!("database protocol error: {m}"),
            Ending::AuditUnavailable(m) => format!("audit log unavailable: {m}"),
            Ending::Io(m) => format!("connection error: {m}"),
        }
    }

    /// The FATAL the client gets, if the gateway ends the session.
    fn fatal(&self) -> Option<Vec<u8>> {
        let (code, message) = match self {
            Ending::Closed(r) => (ADMIN_SHUTDOWN, r.message().to_owned()),
            Ending::ClientProtocol(m) => (PROTOCOL_VIOLATION, m.clone()),
            Ending::ServerProtocol(m) => (
                PROTOCOL_VIOLATION,
                format!("the database broke the protocol: {m}"),
            ),
            Ending::AuditUnavailable(_) => (
                SYSTEM_ERROR,
                "taskgate could not commit the statement to its audit log, so it was not run"
                    .to_owned(),
            ),
            _ => return None,
        };
        Some(enc::error("FATAL", code, &message, None))
    }
}

/// What every part of a session shares.
pub struct Shared {
    pub record: SessionRecord,
    pub writer: Writer,
    pub tracker: Mutex<Tracker>,
    /// Wakes the server half when the gateway's own answer is queued.
    pub made: Notify,
    pub limits: Limits,
}

impl Shared {
    pub fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Prepared {
    sql: Arc<str>,
    class: Arc<Classification>,
}

struct Portal {
    statement: String,
    prepared: Option<Arc<Prepared>>,
    params: Vec<Value>,
}

/// The client half: reads, decides, records, forwards.
pub struct ClientHalf {
    pub shared: Arc<Shared>,
    pub policy: StatementPolicy,
    pub classifier: Arc<Classifier>,
    pub ends_at: Option<Timestamp>,
    pub closing: watch::Receiver<Option<CloseReason>>,
    pub commands: u64,
    statements: HashMap<String, Arc<Prepared>>,
    portals: HashMap<String, Portal>,
    /// After the gateway refused a message of the extended protocol, the
    /// rest up to Sync is ignored, as the server would after an error.
    skipping: bool,
    unknown: Arc<Classification>,
}

#[derive(Default)]
struct Batch {
    out: Vec<u8>,
    events: Vec<EventDraft>,
    made: bool,
    terminate: bool,
}

impl ClientHalf {
    pub fn new(
        shared: Arc<Shared>,
        policy: StatementPolicy,
        classifier: Arc<Classifier>,
        ends_at: Option<Timestamp>,
        closing: watch::Receiver<Option<CloseReason>>,
    ) -> Self {
        let unknown = classifier.classify("");
        Self {
            shared,
            policy,
            classifier,
            ends_at,
            closing,
            commands: 0,
            statements: HashMap::new(),
            portals: HashMap::new(),
            skipping: false,
            unknown,
        }
    }

    /// Runs until the client leaves or the session must end.
    pub async fn run(
        &mut self,
        mut client: ReadHalf<ClientStream>,
        mut buf: BytesMut,
        mut upstream: WriteHalf<ClientStream>,
    ) -> Ending {
        loop {
            let mut batch = Batch::default();
            loop {
                let frame = match frame::decode(&mut buf, Direction::Frontend, &self.shared.limits)
                {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return Ending::ClientProtocol(e.to_string()),
                };
                if let Err(ending) = self.on_frame(frame, &mut batch) {
                    return ending;
                }
                if batch.terminate {
                    break;
                }
            }
            if !batch.events.is_empty()
                && let Err(e) = self.shared.writer.append_all(batch.events).await
            {
                tracing::error!(error = %e, "cannot commit command events; refusing the statement");
                return Ending::AuditUnavailable(e.to_string());
            }
            if !batch.out.is_empty()
                && let Err(e) = upstream.write_all(&batch.out).await
            {
                return Ending::Io(e.to_string());
            }
            if batch.made {
                self.shared.made.notify_one();
            }
            if batch.terminate {
                return Ending::ClientLeft;
            }
            match client.read_buf(&mut buf).await {
                Ok(0) => return Ending::ClientLeft,
                Ok(_) => {}
                Err(e) => return Ending::Io(e.to_string()),
            }
        }
    }

    fn check_live(&self) -> Result<(), Ending> {
        if let Some(reason) = *self.closing.borrow() {
            return Err(Ending::Closed(reason));
        }
        if self.ends_at.is_some_and(|end| Timestamp::now() >= end) {
            return Err(Ending::Closed(CloseReason::WindowEnded));
        }
        Ok(())
    }

    fn next_command(&mut self) -> u64 {
        self.commands += 1;
        self.commands
    }

    /// Records the refusal and queues the client's error. `ready` ends a
    /// simple query; in the extended protocol the rest of the batch is then
    /// skipped up to Sync.
    fn refuse(
        &mut self,
        batch: &mut Batch,
        statement: &Statement<'_>,
        decision: &StatementDecision,
        ready: bool,
    ) {
        let (kind, reason) = match decision {
            StatementDecision::Deny { reason } => ("deny", reason.clone()),
            StatementDecision::Review { reason, by } => {
                let by: Vec<String> = by.iter().map(|m| m.to_string()).collect();
                (
                    "review",
                    format!(
                        "{reason} (approvers: {}); holding statements for approval is not available in this build, so it is refused",
                        by.join(", ")
                    ),
                )
            }
            StatementDecision::Allow => return,
        };
        batch
            .events
            .push(self.shared.record.denied(statement, kind, &reason));
        let error = enc::error(
            "ERROR",
            INSUFFICIENT_PRIVILEGE,
            &format!("taskgate: {reason}"),
            Some(&format!(
                "recorded as denied for task {}",
                self.shared.record.task
            )),
        );
        self.shared.tracker().expect(Expect::Made {
            bytes: error,
            ready,
        });
        batch.made = true;
        if !ready {
            self.skipping = true;
        }
    }

    fn on_frame(&mut self, frame: Frame, batch: &mut Batch) -> Result<(), Ending> {
        let message = frontend::decode(&frame).map_err(|e| {
            Ending::ClientProtocol(format!(
                "malformed message of type {:?}: {e}",
                frame.tag as char
            ))
        })?;
        let now = Instant::now();
        match message {
            FrontendMessage::Query(sql) => {
                self.check_live()?;
                let parts = taskgate_sqlclass::split(sql);
                let classes: Vec<_> = parts.iter().map(|s| self.classifier.classify(s)).collect();
                for (text, class) in parts.iter().zip(&classes) {
                    let decision = self.policy.decide(text, class);
                    if decision != StatementDecision::Allow {
                        let statement = simple(text, class);
                        self.refuse(batch, &statement, &decision, true);
                        return Ok(());
                    }
                }
                let mut running = VecDeque::with_capacity(parts.len());
                for (text, class) in parts.iter().zip(&classes) {
                    let id = self.next_command();
                    batch
                        .events
                        .push(self.shared.record.started(id, &simple(text, class)));
                    running.push_back(Running::new(id, now));
                }
                self.shared.tracker().expect(Expect::Query(running));
            }
            FrontendMessage::Parse { name, sql, .. } => {
                if self.skipping {
                    return Ok(());
                }
                let class = self.classifier.classify(sql);
                let decision = self.policy.decide(sql, &class);
                if decision != StatementDecision::Allow {
                    let statement = Statement {
                        protocol: Protocol::Extended,
                        sql,
                        classification: &class,
                        params: Vec::new(),
                        names: Some((name, "")),
                    };
                    self.refuse(batch, &statement, &decision, false);
                    return Ok(());
                }
                self.statements.insert(
                    name.to_owned(),
                    Arc::new(Prepared {
                        sql: sql.into(),
                        class,
                    }),
                );
                self.shared.tracker().expect(Expect::Parse);
            }
            FrontendMessage::Bind {
                portal,
                statement,
                param_formats,
                params,
            } => {
                if self.skipping {
                    return Ok(());
                }
                let params = params
                    .iter()
                    .enumerate()
                    .map(|(i, v)| param_value(*v, param_format(&param_formats, i) == 1))
                    .collect();
                self.portals.insert(
                    portal.to_owned(),
                    Portal {
                        statement: statement.to_owned(),
                        prepared: self.statements.get(statement).cloned(),
                        params,
                    },
                );
                self.shared.tracker().expect(Expect::Bind);
            }
            FrontendMessage::Execute { portal, .. } => {
                if self.skipping {
                    return Ok(());
                }
                self.check_live()?;
                let id = self.next_command();
                let found = self.portals.get(portal);
                let (sql, class) = match found.and_then(|p| p.prepared.as_ref()) {
                    Some(p) => (Arc::clone(&p.sql), Arc::clone(&p.class)),
                    None => (Arc::from(""), Arc::clone(&self.unknown)),
                };
                let statement = Statement {
                    protocol: Protocol::Extended,
                    sql: &sql,
                    classification: &class,
                    params: found.map(|p| p.params.clone()).unwrap_or_default(),
                    names: Some((found.map(|p| p.statement.as_str()).unwrap_or(""), portal)),
                };
                batch
                    .events
                    .push(self.shared.record.started(id, &statement));
                self.shared
                    .tracker()
                    .expect(Expect::Execute(Running::new(id, now)));
            }
            FrontendMessage::Describe { .. } => {
                if self.skipping {
                    return Ok(());
                }
                self.shared.tracker().expect(Expect::Describe);
            }
            FrontendMessage::Close { target, name } => {
                if self.skipping {
                    return Ok(());
                }
                match target {
                    frontend::Target::Statement => self.statements.remove(name),
                    frontend::Target::Portal => self.portals.remove(name).and(None),
                };
                self.shared.tracker().expect(Expect::Close);
            }
            FrontendMessage::Sync => {
                self.skipping = false;
                self.shared.tracker().expect(Expect::Sync);
            }
            FrontendMessage::Flush | FrontendMessage::CopyDone | FrontendMessage::CopyFail(_) => {}
            FrontendMessage::CopyData(data) => self.shared.tracker().copy_in(data.len()),
            FrontendMessage::Terminate => batch.terminate = true,
            FrontendMessage::FunctionCall {
                function_oid,
                arg_formats,
                args,
            } => {
                self.check_live()?;
                let sql = format!("<function call, oid {function_oid}>");
                let class = Arc::clone(&self.unknown);
                let params = args
                    .iter()
                    .enumerate()
                    .map(|(i, v)| param_value(*v, param_format(&arg_formats, i) == 1))
                    .collect();
                let statement = Statement {
                    protocol: Protocol::FunctionCall,
                    sql: &sql,
                    classification: &class,
                    params,
                    names: None,
                };
                let decision = self.policy.decide(&sql, &class);
                if decision != StatementDecision::Allow {
                    self.refuse(batch, &statement, &decision, true);
                    return Ok(());
                }
                let id = self.next_command();
                batch
                    .events
                    .push(self.shared.record.started(id, &statement));
                self.shared
                    .tracker()
                    .expect(Expect::Query([Running::new(id, now)].into()));
            }
            FrontendMessage::Password(_) => {
                return Err(Ending::ClientProtocol(
                    "a password message after login".into(),
                ));
            }
        }
        batch.out.extend_from_slice(&frame.raw);
        Ok(())
    }
}

fn simple<'a>(sql: &'a str, class: &'a Classification) -> Statement<'a> {
    Statement {
        protocol: Protocol::Simple,
        sql,
        classification: class,
        params: Vec::new(),
        names: None,
    }
}

/// The server half: forwards answers, records outcomes, and ends the
/// session when told to (window end, revocation, the client half's fault).
pub async fn server_half(
    shared: Arc<Shared>,
    mut upstream: ReadHalf<ClientStream>,
    mut buf: BytesMut,
    mut client: WriteHalf<ClientStream>,
    mut closing: watch::Receiver<Option<CloseReason>>,
    ends_at: Option<Timestamp>,
    mut stop: mpsc::Receiver<Ending>,
) -> Ending {
    let window_end = async {
        match ends_at {
            Some(end) => tokio::time::sleep(Timestamp::now().until(end)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(window_end);
    let mut out = Vec::with_capacity(16 * 1024);
    let ending = loop {
        out.clear();
        tokio::select! {
            read = upstream.read_buf(&mut buf) => match read {
                Ok(0) => break Ending::ServerClosed,
                Ok(_) => {
                    if let Err(ending) = forward_answers(&shared, &mut buf, &mut out).await {
                        let _ = client.write_all(&out).await;
                        break ending;
                    }
                }
                Err(e) => break Ending::Io(e.to_string()),
            },
            () = shared.made.notified() => shared.tracker().take_made(&mut out),
            changed = closing.changed() => {
                if changed.is_err() {
                    continue;
                }
                if let Some(reason) = *closing.borrow() {
                    break Ending::Closed(reason);
                }
            }
            () = &mut window_end => break Ending::Closed(CloseReason::WindowEnded),
            Some(ending) = stop.recv() => break ending,
        }
        if !out.is_empty()
            && let Err(e) = client.write_all(&out).await
        {
            break Ending::Io(e.to_string());
        }
    };
    if let Some(fatal) = ending.fatal() {
        let _ = client.write_all(&fatal).await;
    }
    let _ = client.shutdown().await;
    ending
}

/// Forwards every whole server message in `buf`, recording the outcomes
/// they carry before the client sees them.
async fn forward_answers(
    shared: &Shared,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
) -> Result<(), Ending> {
    let mut done = Vec::new();
    {
        let mut tracker = shared.tracker();
        let now = Instant::now();
        loop {
            let frame = match frame::decode(buf, Direction::Backend, &Limits::default()) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(Ending::ServerProtocol(e.to_string())),
            };
            let message =
                backend::decode(&frame).map_err(|e| Ending::ServerProtocol(e.to_string()))?;
            tracker.on_backend(&message, frame.body().len(), now, &mut done);
            out.extend_from_slice(&frame.raw);
            if let BackendMessage::ReadyForQuery(_) = message {
                tracker.take_made(out);
            }
        }
        tracker.take_made(out);
    }
    for completion in &done {
        let draft = shared.record.completed(completion);
        if let Err(e) = shared.writer.append_queued(draft).await {
            return Err(Ending::AuditUnavailable(e.to_string()));
        }
    }
    Ok(())
}

/// Sends the protocol's cancel for the upstream backend, so a statement
/// still running when its session is cut stops too.
pub async fn cancel_running(address: String, key: Option<(u32, Vec<u8>)>) {
    if let Some((pid, secret)) = key
        && let Err(e) = super::upstream::cancel(&address, pid, &secret).await
    {
        tracing::warn!(error = %e, "could not cancel the running statement upstream");
    }
}
