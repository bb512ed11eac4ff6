//! The client half of a session: reads client messages, decides each
//! statement, records it, and forwards the batch once its events are
//! committed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use taskgate_audit::{EventDraft, Timestamp};
use taskgate_policy::{
    DomainError, Review, ReviewKind, ReviewState, StatementDecision, StatementPolicy,
    statement_sha256,
};
use taskgate_sqlclass::{Classification, Classifier, Strings, as_standard};
use taskgate_store::StoreRead;
use taskgate_wire_pg::encode::backend as enc;
use taskgate_wire_pg::encode::frontend as enc_fe;
use taskgate_wire_pg::frame::{self, Direction, Frame};
use taskgate_wire_pg::frontend::{self, FrontendMessage, param_format};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::watch;

use super::super::ClientStream;
use super::super::app_name::{self, Sending};
use super::super::catalog::SessionCatalog;
use super::super::reading::Reading;
use super::super::record::{Protocol, Statement, param_value};
use super::super::sessions::CloseReason;
use super::super::track::{Expect, NameEffect, Portal, Prepared, Running};
use super::{Ending, INSUFFICIENT_PRIVILEGE, Shared};

/// SQLSTATE for text the grammar refuses.
const SYNTAX_ERROR: &str = "42601";
/// SQLSTATE for a name in another database, as PostgreSQL answers it.
const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// SQLSTATE for an Execute of a portal the gateway does not know.
const INVALID_CURSOR_NAME: &str = "34000";
/// What the server is sent in place of a refused message: text no grammar
/// accepts, so the server meets an error there (see `refuse_here`). Its log
/// shows the refusal's place too.
const REFUSED_STAND_IN: &str = "taskgate refused the statement sent here";
/// The statement name a refused Parse's stand-in takes: a failed Parse of a
/// named statement leaves nothing behind (the unnamed one would drop the
/// client's unnamed statement).
const REFUSED_STATEMENT: &str = "taskgate_refused";
/// SQLSTATE for a limit of the gateway's config reached.
const CONFIGURATION_LIMIT_EXCEEDED: &str = "53400";
/// SQLSTATE for a statement the client cancelled.
const QUERY_CANCELED: &str = "57014";
/// Statements longer than this are classified off the async threads.
const CLASSIFY_INLINE_MAX_BYTES: usize = 64 * 1024;

/// What holding statements for review needs.
pub struct Holds {
    pub reader: Arc<dyn StoreRead>,
    /// How long a held statement waits for a decision.
    pub wait: Duration,
}

/// How often a held statement looks for its decision besides being woken
/// by one (see `Writer::review_decided`): a safety net.
const HOLD_POLL: Duration = Duration::from_secs(1);

pub struct ClientHalf {
    shared: Arc<Shared>,
    policy: StatementPolicy,
    holds: Holds,
    /// Statements this task may run after an approval: the SHA-256 of the
    /// exact text → the review that approved it.
    approved: HashMap<String, Arc<str>>,
    /// A message held for review and approved: it runs next.
    resume: Option<Frame>,
    classifier: Arc<Classifier>,
    ends_at: Option<Timestamp>,
    closing: watch::Receiver<Option<CloseReason>>,
    /// The client's cancel requests: one ends a hold.
    cancels: watch::Receiver<u64>,
    pub commands: u64,
    /// After the gateway refused a message of the extended protocol, the
    /// rest up to Sync is ignored, as the server would after an error.
    skipping: bool,
    unknown: Arc<Classification>,
    /// The target's relations: views widen a statement's tables.
    catalog: SessionCatalog,
    /// What a decided hold left to send upstream first.
    carried: Option<Batch>,
    /// An Execute or FunctionCall was forwarded since the last Sync: what
    /// it did to the session's settings is reported only after the Sync.
    ran_since_sync: bool,
    /// How the server reads the text being decided (its encoding, its
    /// strings), taken from the server's reports once everything before
    /// the text is answered, whenever the text could read otherwise.
    reading: Reading,
    /// The text the message being decided is sent as, when not its own
    /// (see [`app_name`]).
    sent_instead: Option<String>,
}

/// What one read of the client's bytes turns into.
#[derive(Default)]
struct Batch {
    out: Vec<u8>,
    events: Vec<EventDraft>,
    terminate: bool,
    /// Set when the client has more answers outstanding than allowed.
    overflow: Option<usize>,
    /// A statement names relations the catalog read lacks: read it again,
    /// then take the message again.
    read_catalog: bool,
    /// A statement that waits for a review; nothing after it is read yet.
    hold: Option<Held>,
    /// A message that looks a name up behind an unanswered Sync: it is
    /// taken again once the server has answered everything before it.
    wait_for_server: bool,
}

/// A message held until a human decides.
struct Held {
    frame: Option<Frame>,
    /// The exact text the review is bound to (a whole simple query).
    sql: String,
    reason: String,
    by: Vec<String>,
    /// Whether it came in a simple query (which ends with ReadyForQuery).
    simple: bool,
}

/// Lapses a review its session stopped waiting for (the session ended
/// mid-hold), so it does not stay pending.
struct Waiting {
    writer: taskgate_store::Writer,
    review: Option<String>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(review) = self.review.take() {
            let writer = self.writer.clone();
            tokio::spawn(async move {
                let _ = writer
                    .lapse_review(&review, "its session ended while it was held")
                    .await;
            });
        }
    }
}

/// How a hold ended.
enum Verdict {
    Approved(Arc<str>),
    Refused {
        review: String,
        why: String,
    },
    /// The client sent a cancel request while it waited.
    Cancelled {
        review: String,
    },
    /// Its requester has as many statements held as the config allows:
    /// no review was made.
    Limited {
        why: String,
    },
}

impl ClientHalf {
    #[allow(clippy::too_many_arguments)] // each is a separate part of the session
    pub fn new(
        shared: Arc<Shared>,
        policy: StatementPolicy,
        holds: Holds,
        classifier: Arc<Classifier>,
        ends_at: Option<Timestamp>,
        closing: watch::Receiver<Option<CloseReason>>,
        cancels: watch::Receiver<u64>,
        catalog: SessionCatalog,
    ) -> Self {
        let unknown = classifier.classify("");
        Self {
            shared,
            policy,
            holds,
            approved: HashMap::new(),
            resume: None,
            classifier,
            ends_at,
            closing,
            cancels,
            commands: 0,
            skipping: false,
            unknown,
            catalog,
            carried: None,
            ran_since_sync: false,
            reading: Reading::default(),
            sent_instead: None,
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
            let mut batch = self.carried.take().unwrap_or_default();
            loop {
                let frame = match self.resume.take() {
                    Some(approved) => approved,
                    None => match frame::decode(&mut buf, Direction::Frontend, &self.shared.limits)
                    {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => return Ending::ClientProtocol(e.to_string()),
                    },
                };
                if let Err(ending) = self.on_frame(frame, &mut batch) {
                    return ending;
                }
                if let Some(limit) = batch.overflow {
                    return Ending::ClientProtocol(format!(
                        "more than {limit} answers outstanding: the client sends without reading"
                    ));
                }
                if batch.terminate
                    || batch.hold.is_some()
                    || batch.wait_for_server
                    || batch.read_catalog
                {
                    break;
                }
            }
            if !batch.events.is_empty() {
                if let Err(e) = self.shared.writer.append_all(batch.events).await {
                    tracing::error!(error = %e, "cannot commit command events; refusing the statement");
                    return Ending::AuditUnavailable(e.to_string());
                }
                let ready: Vec<_> = {
                    let mut tracker = self.shared.tracker();
                    self.shared
                        .committed_through
                        .store(self.commands, Ordering::Release);
                    if tracker.deferred.is_empty() {
                        Vec::new()
                    } else {
                        let commands = self.commands;
                        let (ready, later) = std::mem::take(&mut tracker.deferred)
                            .into_iter()
                            .partition(|c| c.id <= commands);
                        tracker.deferred = later;
                        ready
                    }
                };
                // Outcomes the server gave before their starts were in.
                for completion in &ready {
                    let draft = self.shared.record.completed(completion);
                    if let Err(e) = self.shared.writer.append_queued(draft).await {
                        return Ending::AuditUnavailable(e.to_string());
                    }
                }
                // The commit may have taken the window past its end.
                if let Err(ending) = self.check_live() {
                    return ending;
                }
            }
            if !batch.out.is_empty()
                && let Err(e) = upstream.write_all(&batch.out).await
            {
                return Ending::Io(e.to_string());
            }
            if batch.terminate {
                return Ending::ClientLeft;
            }
            if batch.wait_for_server {
                if let Err(ending) = self.wait_for_server().await {
                    return ending;
                }
                continue;
            }
            if batch.read_catalog {
                self.catalog.read_again().await;
                continue;
            }
            if let Some(held) = batch.hold.take() {
                // Only this session waits; what came before is on its way.
                // Messages the client sent behind the held one stay in
                // `buf` and are read once it is decided.
                if let Err(ending) = self.hold(held).await {
                    return ending;
                }
                continue;
            }
            match client.read_buf(&mut buf).await {
                Ok(0) => return Ending::ClientLeft,
                Ok(_) => {}
                Err(e) => return Ending::Io(e.to_string()),
            }
        }
    }

    /// Waits until the server has answered every Sync and query sent, so
    /// the names it has are the ones the gateway knows. The server half
    /// ends the session (and this wait with it) on a cut-off.
    async fn wait_for_server(&self) -> Result<(), Ending> {
        loop {
            let answered = self.shared.answered.notified();
            {
                let tracker = self.shared.tracker();
                if let Some(why) = &tracker.unsafe_setting {
                    return Err(Ending::UnsafeSetting(why.clone()));
                }
                if tracker.unanswered() == 0 {
                    return Ok(());
                }
            }
            answered.await;
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

    /// The statement's classification, its relations by catalog identity
    /// and widened by the views it names.
    fn classify(&self, sql: &str) -> Arc<Classification> {
        let class = if sql.len() > CLASSIFY_INLINE_MAX_BYTES {
            // A huge statement can take the parser a while: let the other
            // sessions' tasks move to another thread meanwhile.
            tokio::task::block_in_place(|| self.classifier.classify(sql))
        } else {
            self.classifier.classify(sql)
        };
        if class.command == "EXECUTE"
            && let Some((_, prepared)) = self.executes(sql)
        {
            return executing(&prepared.class);
        }
        self.catalog.resolve(class)
    }

    /// The prepared statement an `EXECUTE name` runs, as the gateway saw
    /// it prepared (by SQL PREPARE or a Parse: one namespace on the
    /// server), with its name.
    fn executes(&self, sql: &str) -> Option<(String, Arc<Prepared>)> {
        let name = taskgate_sqlclass::executed_statement(sql)?;
        let prepared = Arc::clone(self.shared.tracker().names.statement(&name)?);
        Some((name, prepared))
    }

    /// The text a review of `sql` shows and is bound to: each `EXECUTE`
    /// in it followed by the statement it runs, so an approval never
    /// carries over to another statement prepared under the same name, and
    /// the strings setting when the text reads by it.
    fn review_text<S: AsRef<str>>(
        &self,
        sql: &str,
        parts: &[S],
        classes: &[Arc<Classification>],
    ) -> String {
        let mut text = sql.to_owned();
        // Only an EXECUTE is parsed again for its name.
        let executes = parts
            .iter()
            .zip(classes)
            .filter(|(_, c)| c.command == "EXECUTE");
        for (part, _) in executes {
            if let Some((name, prepared)) = self.executes(part.as_ref()) {
                text.push_str(&format!("\n-- EXECUTE {name} runs: {}", prepared.sql));
            }
        }
        // The same text reads otherwise with the setting on: an approval
        // is for this reading only.
        if self.reading.strings == Strings::Backslash
            && taskgate_sqlclass::depends_on_standard_strings(sql)
        {
            text.push_str("\n-- read with standard_conforming_strings = off");
        }
        text
    }

    /// The command that runs a SQL-level PREPARE's statement when it
    /// succeeds.
    fn running(&self, id: u64, now: Instant, text: &str, class: &Classification) -> Running {
        let running = Running::new(id, now);
        if class.command != "PREPARE" {
            return running;
        }
        let Some((name, inner)) = taskgate_sqlclass::prepared_statement(text) else {
            return running;
        };
        let prepared = Arc::new(Prepared {
            sql: inner.into(),
            class: self.classify(inner),
            review: None,
            by_sql: true,
            sent_as: None,
        });
        let epoch = self.shared.tracker().names.statement_epoch();
        running.prepares(name, prepared, epoch)
    }

    fn expect(&self, batch: &mut Batch, e: Expect) {
        if let Err(limit) = self.shared.tracker().expect(e) {
            batch.overflow = Some(limit);
        }
    }

    /// Answers a refused message with `error`, leaving the session as a
    /// server error would have: the server is sent, in the refused
    /// message's place, text no grammar accepts (a simple query, or a
    /// Parse under a name of the gateway's), so it fails the open
    /// transaction (a later COMMIT answers ROLLBACK) and skips the rest of
    /// the batch up to Sync, and its error is replaced by the gateway's.
    fn refuse_here(&mut self, batch: &mut Batch, error: Vec<u8>, simple: bool) {
        if simple {
            batch.out.extend(enc_fe::query(REFUSED_STAND_IN));
            self.expect(
                batch,
                Expect::Refused {
                    error,
                    extended: false,
                },
            );
            self.expect(batch, Expect::Query(VecDeque::new()));
        } else {
            batch
                .out
                .extend(enc_fe::parse(REFUSED_STATEMENT, REFUSED_STAND_IN, &[]));
            self.expect(
                batch,
                Expect::Refused {
                    error,
                    extended: true,
                },
            );
            // The server skips the rest up to Sync; so does the gateway,
            // recording none of it.
            self.skipping = true;
        }
    }

    /// Records a refusal and queues the client's `ERROR`. `ready` ends a
    /// simple query.
    fn refuse(
        &mut self,
        batch: &mut Batch,
        statement: &Statement<'_>,
        decision: &StatementDecision,
        ready: bool,
    ) {
        let (kind, reason) = match decision {
            StatementDecision::Deny { reason } => ("deny", reason.clone()),
            StatementDecision::Invalid { message } => {
                // As the server answers it, and recorded as refused.
                batch.events.push(self.shared.record.denied(
                    statement,
                    "invalid",
                    &format!("the statement is not valid SQL: {message}"),
                ));
                let code = if message.starts_with(super::super::catalog::CROSS_DATABASE) {
                    FEATURE_NOT_SUPPORTED
                } else {
                    SYNTAX_ERROR
                };
                let error = enc::error("ERROR", code, message, None);
                self.refuse_here(batch, error, ready);
                return;
            }
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
        let hint = format!("recorded as denied for task {}", self.shared.record.task);
        let error = enc::error(
            "ERROR",
            INSUFFICIENT_PRIVILEGE,
            &format!("taskgate: {reason}"),
            Some(&hint),
        );
        self.refuse_here(batch, error, ready);
    }

    fn on_frame(&mut self, frame: Frame, batch: &mut Batch) -> Result<(), Ending> {
        // Parse, Bind, Close and Execute change or look up names. Behind an
        // unanswered Sync the server takes them whether or not what came
        // before succeeded (a Parse refused for a reused name, a portal
        // dropped at COMMIT), so the gateway cannot know what they name,
        // or what a name held before them, until it has the answers: it
        // stops taking messages until then.
        //
        // Text that reads by the session's settings -- a byte of 0x80 or
        // more (its characters depend on client_encoding), or a backslash
        // in a plain string (on standard_conforming_strings) -- is read as
        // the server will read it, and a statement ahead of it may change
        // either (SET, set_config, a function), which the server reports
        // only with its ReadyForQuery. So such text waits until everything
        // before it is answered (an encoding the gateway cannot read ends
        // the session there, before it is sent), then is read under what
        // the server reported. Other text reads the same under every
        // setting the gateway follows, and never waits.
        let by_reading =
            matches!(frame.tag, b'Q' | b'P') && !self.skipping && reads_by_session(&frame);
        if (matches!(frame.tag, b'P' | b'B' | b'C' | b'E') || by_reading)
            && !self.skipping
            && self.shared.tracker().unanswered() > 0
        {
            self.resume = Some(frame);
            batch.wait_for_server = true;
            return Ok(());
        }
        if by_reading {
            self.reading = self.shared.tracker().reading;
        }
        // Text in the client's encoding is read in UTF-8; its bytes are
        // forwarded as they came.
        // (UTF-8 text is read as it is: bytes that are not UTF-8 end the
        // session as a malformed message, never reaching the database.)
        let read = if self.reading.encoding.is_utf8() {
            std::borrow::Cow::Borrowed(&frame)
        } else {
            self.reading.encoding.transcode(&frame, Direction::Frontend)
        };
        let message = frontend::decode(&read).map_err(|e| {
            Ending::ClientProtocol(format!(
                "malformed message of type {:?}: {e}",
                frame.tag as char
            ))
        })?;
        let forward = match message {
            // After an error in a batch the server discards everything up
            // to Sync, simple queries and function calls included.
            FrontendMessage::Query(_) | FrontendMessage::FunctionCall { .. } if self.skipping => {
                false
            }
            FrontendMessage::Query(sql) => self.query(sql, by_reading, batch)?,
            FrontendMessage::Parse { name, sql, .. } => self.parse(name, sql, by_reading, batch),
            FrontendMessage::Bind {
                portal,
                statement,
                param_formats,
                params,
            } => {
                if !self.skipping {
                    let params = params
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let binary = param_format(&param_formats, i) == 1;
                            param_value(*v, binary, &self.reading.encoding)
                        })
                        .collect();
                    let mut tracker = self.shared.tracker();
                    // A statement the gateway does not know (prepared by
                    // SQL, or refused) leaves the portal unknown, and its
                    // Execute refused.
                    // Nor one prepared by SQL: the record would name the
                    // statement, the server's log the query that prepared it.
                    let bound = tracker
                        .names
                        .statement(statement)
                        .filter(|p| !p.by_sql)
                        .map(|prepared| Portal {
                            statement: statement.to_owned(),
                            prepared: Arc::clone(prepared),
                            params,
                        });
                    if let Err(limit) = tracker.bind(portal, bound) {
                        batch.overflow = Some(limit);
                    }
                }
                !self.skipping
            }
            FrontendMessage::Execute { portal, .. } => {
                let forward = self.execute(portal, batch)?;
                self.ran_since_sync |= forward;
                forward
            }
            FrontendMessage::Describe { .. } => {
                if !self.skipping {
                    self.expect(batch, Expect::Describe);
                }
                !self.skipping
            }
            FrontendMessage::Close { target, name } => {
                if !self.skipping
                    && let Err(limit) = self.shared.tracker().close(target, name)
                {
                    batch.overflow = Some(limit);
                }
                !self.skipping
            }
            FrontendMessage::Sync => {
                self.skipping = false;
                self.ran_since_sync = false;
                self.expect(batch, Expect::Sync);
                true
            }
            FrontendMessage::Flush => true,
            FrontendMessage::CopyData(data) => {
                self.shared.tracker().copy_in(data.len());
                true
            }
            FrontendMessage::CopyDone | FrontendMessage::CopyFail(_) => {
                self.expect(batch, Expect::CopyEnd);
                true
            }
            FrontendMessage::Terminate => {
                batch.terminate = true;
                true
            }
            FrontendMessage::FunctionCall {
                function_oid,
                arg_formats,
                args,
            } => {
                self.check_live()?;
                let sql = format!("<function call, oid {function_oid}>");
                // Called by oid: the gateway cannot tell what it does.
                let class = Classification {
                    opaque: vec![format!("function call by oid {function_oid}")],
                    ..Classification::unknown("FUNCTION CALL")
                };
                let params: Vec<_> = args
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let binary = param_format(&arg_formats, i) == 1;
                        param_value(*v, binary, &self.reading.encoding)
                    })
                    .collect();
                let statement = Statement {
                    protocol: Protocol::FunctionCall,
                    sql: &sql,
                    classification: &class,
                    params: &params,
                    names: None,
                    review: None,
                    sent_as: None,
                };
                let decision = self.policy.decide(&sql, &class);
                if decision == StatementDecision::Allow {
                    self.ran_since_sync = true;
                    let id = self.next_command();
                    batch
                        .events
                        .push(self.shared.record.started(id, &statement));
                    self.expect(
                        batch,
                        Expect::Query([Running::new(id, Instant::now())].into()),
                    );
                    true
                } else {
                    self.refuse(batch, &statement, &decision, true);
                    false
                }
            }
            FrontendMessage::Password(_) => {
                return Err(Ending::ClientProtocol(
                    "a password message after login".into(),
                ));
            }
        };
        if batch.read_catalog {
            // Decided once the catalog has been read again.
            self.resume = Some(frame);
            return Ok(());
        }
        if forward {
            match self.sent_instead.take() {
                Some(sql) => batch.out.extend(sent_instead(&frame, &sql)),
                None => batch.out.extend_from_slice(&frame.raw),
            }
        } else if let Some(held) = batch.hold.as_mut()
            && held.frame.is_none()
        {
            held.frame = Some(frame);
        }
        Ok(())
    }

    /// The policy's decision on `text` (a statement of `message`), with a
    /// review this task already passed for the message's exact text.
    fn decide(
        &self,
        message: &str,
        text: &str,
        class: &Classification,
    ) -> (StatementDecision, Option<Arc<str>>) {
        match self.policy.decide(text, class) {
            StatementDecision::Review { reason, by } => {
                match self.approved.get(&statement_sha256(message)) {
                    Some(review) => (StatementDecision::Allow, Some(Arc::clone(review))),
                    None => (StatementDecision::Review { reason, by }, None),
                }
            }
            other => (other, None),
        }
    }

    /// Holds a statement for review: records the review, tells the client
    /// which one, waits for the decision (or the hold's end, or the
    /// session's), then lets it run or refuses it.
    async fn hold(&mut self, held: Held) -> Result<(), Ending> {
        let verdict = self.wait_for_review(&held).await?;
        match verdict {
            Verdict::Approved(review) => {
                self.approved
                    .insert(statement_sha256(&held.sql), Arc::clone(&review));
                self.resume = held.frame;
            }
            Verdict::Cancelled { review } => {
                let why = "its client cancelled it while it waited";
                let message = format!(
                    "canceling statement due to user request (taskgate: the held statement was not run; review {review} lapsed)"
                );
                self.refuse_held(
                    &held,
                    Some(&review),
                    "cancelled",
                    why,
                    QUERY_CANCELED,
                    &message,
                )
                .await?;
            }
            Verdict::Refused { review, why } => {
                let reason = format!("review {review}: {why}");
                let message = format!("taskgate: the statement was not run: {reason}");
                self.refuse_held(
                    &held,
                    Some(&review),
                    "review",
                    &why,
                    INSUFFICIENT_PRIVILEGE,
                    &message,
                )
                .await?;
            }
            Verdict::Limited { why } => {
                let message = format!("taskgate: the statement was not held for review: {why}");
                self.refuse_held(
                    &held,
                    None,
                    "limit",
                    &why,
                    CONFIGURATION_LIMIT_EXCEEDED,
                    &message,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Records a held statement as denied and answers the client with an
    /// error; the session goes on.
    async fn refuse_held(
        &mut self,
        held: &Held,
        review: Option<&str>,
        decision: &str,
        why: &str,
        code: &str,
        message: &str,
    ) -> Result<(), Ending> {
        let class = self.classify(&as_standard(&held.sql, self.reading.strings));
        let statement = Statement {
            protocol: if held.simple {
                Protocol::Simple
            } else {
                Protocol::Extended
            },
            sql: &held.sql,
            classification: &class,
            params: &[],
            names: None,
            review,
            sent_as: None,
        };
        let reason = match review {
            Some(review) => format!("review {review}: {why}"),
            None => why.to_owned(),
        };
        let denied = self.shared.record.denied(&statement, decision, &reason);
        if let Err(e) = self.shared.writer.append(denied).await {
            return Err(Ending::AuditUnavailable(e.to_string()));
        }
        let hint = match (decision, review) {
            ("cancelled", Some(review)) => format!("review {review}"),
            (_, Some(review)) => {
                format!("review {review}; ask an approver, or run a different statement")
            }
            (_, None) => format!("recorded as denied for task {}", self.shared.record.task),
        };
        let error = enc::error("ERROR", code, message, Some(&hint));
        let mut batch = Batch::default();
        self.refuse_here(&mut batch, error, held.simple);
        // Goes upstream with the next batch, ahead of anything after it.
        self.carried = Some(batch);
        Ok(())
    }

    async fn wait_for_review(&mut self, held: &Held) -> Result<Verdict, Ending> {
        // Only cancels from now on count, and all of them: one that comes
        // while the review is being recorded (the client already sees the
        // statement as running) must end the hold too.
        let mut cancels = self.cancels.clone();
        cancels.borrow_and_update();
        let sha256 = statement_sha256(&held.sql);
        if let Some(review) = self.approved_before(&sha256).await {
            return Ok(Verdict::Approved(review));
        }
        let record = &self.shared.record;
        let id =
            crate::token::new_id("rev").map_err(|e| Ending::AuditUnavailable(e.to_string()))?;
        let review = Review::for_statement(
            id,
            &record.task,
            &record.identity,
            &held.sql,
            held.by.clone(),
            Timestamp::now(),
        );
        let review = match self
            .shared
            .writer
            .request_statement_review(review, &record.session, &record.connection, &held.reason)
            .await
        {
            Ok(review) => review,
            Err(taskgate_store::OpError::Store(e)) => {
                return Err(Ending::AuditUnavailable(e.to_string()));
            }
            Err(taskgate_store::OpError::Domain(DomainError::Limit(why))) => {
                return Ok(Verdict::Limited { why });
            }
            Err(refused) => {
                // The task ended (or lapsed) as the statement arrived.
                tracing::info!(error = %refused, "statement review refused");
                self.check_live()?;
                return Err(Ending::Closed(CloseReason::WindowEnded));
            }
        };
        let mut waiting = Waiting {
            writer: self.shared.writer.clone(),
            review: Some(review.id.clone()),
        };
        let wait = humantime::format_duration(self.holds.wait);
        let notice = enc::notice(
            "01000",
            &format!(
                "taskgate: statement held for review {} ({}); waiting up to {wait} for a decision",
                review.id, held.reason
            ),
            Some(&format!(
                "an approver ({}) runs: taskgate review approve {}",
                held.by.join(", "),
                review.id
            )),
        );
        let mut batch = Batch::default();
        self.expect(
            &mut batch,
            Expect::Made {
                bytes: notice,
                ready: false,
            },
        );
        self.shared.made.notify_one();
        let deadline = tokio::time::Instant::now() + self.holds.wait;
        let mut closing = self.closing.clone();
        let mut cancelled = false;
        loop {
            self.check_live()?;
            if cancelled {
                waiting.review = None;
                self.shared
                    .writer
                    .lapse_review(&review.id, "its client cancelled it while it waited")
                    .await
                    .map_err(|e| Ending::AuditUnavailable(e.to_string()))?;
                return Ok(Verdict::Cancelled { review: review.id });
            }
            let decided = self.shared.writer.review_decided();
            tokio::pin!(decided);
            decided.as_mut().enable();
            let current = self.review_state(&review.id).await;
            if let Some(verdict) = verdict_of(current) {
                waiting.review = None;
                return Ok(verdict);
            }
            if tokio::time::Instant::now() >= deadline {
                waiting.review = None;
                let why = format!("no decision within {wait}");
                let lapsed = self
                    .shared
                    .writer
                    .lapse_review(&review.id, &why)
                    .await
                    .map_err(|e| Ending::AuditUnavailable(e.to_string()))?;
                // Decided just before it lapsed: that decision stands.
                if lapsed.state == ReviewState::Expired {
                    return Ok(Verdict::Refused {
                        review: review.id,
                        why,
                    });
                }
                if let Some(verdict) = verdict_of(Some(lapsed)) {
                    return Ok(verdict);
                }
            }
            tokio::select! {
                () = &mut decided => {}
                _ = tokio::time::sleep(HOLD_POLL) => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = closing.changed() => {}
                changed = cancels.changed() => cancelled = changed.is_ok(),
            }
        }
    }

    async fn review_state(&self, id: &str) -> Option<Review> {
        let reader = Arc::clone(&self.holds.reader);
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || reader.review(&id).ok().flatten())
            .await
            .ok()
            .flatten()
    }

    /// An approval this task already has for the same exact text (from
    /// another of its sessions, say).
    async fn approved_before(&mut self, sha256: &str) -> Option<Arc<str>> {
        let reader = Arc::clone(&self.holds.reader);
        let query = taskgate_store::ReviewQuery {
            state: Some(ReviewState::Approved),
            task: Some(self.shared.record.task.clone()),
        };
        let wanted = sha256.to_owned();
        let found = tokio::task::spawn_blocking(move || {
            reader.reviews(&query).ok().and_then(|reviews| {
                reviews.into_iter().find(|r| {
                    matches!(&r.kind, ReviewKind::Statement { sha256, .. } if *sha256 == wanted)
                })
            })
        })
        .await
        .ok()
        .flatten()?;
        let id: Arc<str> = found.id.into();
        self.approved.insert(sha256.to_owned(), Arc::clone(&id));
        Some(id)
    }

    /// A simple Query: every statement in it is decided; if any is refused
    /// none runs. Returns whether to forward it.
    fn query(&mut self, sql: &str, by_reading: bool, batch: &mut Batch) -> Result<bool, Ending> {
        self.check_live()?;
        if by_reading && self.refused_unread(sql, Protocol::Simple, batch) {
            return Ok(false);
        }
        let strings = self.reading.strings;
        let mut parts = taskgate_sqlclass::split_as(sql, strings);
        if parts.is_empty() {
            // Nothing but comments or semicolons: the server answers
            // EmptyQueryResponse, and its log holds the text all the same.
            parts.push(sql);
        }
        // DDL early in the string (CREATE VIEW v AS ...) changes what a
        // later statement naming v touches: learn it before going on.
        let mut classes = Vec::with_capacity(parts.len());
        // Each statement as it reads under the server's strings setting.
        let judged: Vec<_> = parts.iter().map(|p| as_standard(p, strings)).collect();
        for part in &judged {
            let class = self.classify(part);
            if self.catalog.should_read_for(&class) {
                // A relation the catalog read lacks: read it again first.
                batch.read_catalog = true;
                return Ok(false);
            }
            if self.catalog.ran(&class) {
                self.shared.catalog_changing.store(true, Ordering::Release);
            }
            classes.push(class);
        }
        // A driver's SET application_name, sent with the task's tag.
        let mut sent_as = None;
        if let [only] = judged.as_slice()
            && let Some(sending) = app_name::sending(
                only.as_ref(),
                &classes[0],
                &self.shared.record.task,
                &self.reading.encoding,
            )
        {
            match sending {
                Sending::Refused(reason) => {
                    let statement = simple(parts[0], &classes[0]);
                    self.refuse(batch, &statement, &StatementDecision::Deny { reason }, true);
                    return Ok(false);
                }
                Sending::AsIs => {}
                Sending::Instead(sql) => sent_as = Some(sql),
            }
            classes[0] = app_name::as_setting(&classes[0]);
        }
        let mut review: Option<Arc<str>> = None;
        let mut needs_review: Option<Held> = None;
        let shown = self.review_text(sql, &judged, &classes);
        for ((text, judged), class) in parts.iter().zip(&judged).zip(&classes) {
            match self.decide(&shown, judged, class) {
                (StatementDecision::Allow, passed) => review = review.or(passed),
                (StatementDecision::Review { reason, by }, _) => {
                    needs_review.get_or_insert(Held {
                        frame: None,
                        sql: shown.clone(),
                        reason,
                        by: by.iter().map(|m| m.to_string()).collect(),
                        simple: true,
                    });
                }
                (deny, _) => {
                    self.refuse(batch, &simple(text, class), &deny, true);
                    return Ok(false);
                }
            }
        }
        if let Some(held) = needs_review {
            batch.hold = Some(held);
            return Ok(false);
        }
        let now = Instant::now();
        let mut running = VecDeque::with_capacity(parts.len());
        for ((text, judged), class) in parts.iter().zip(&judged).zip(&classes) {
            let id = self.next_command();
            let mut statement = simple(text, class);
            statement.review = review.as_deref();
            statement.sent_as = sent_as.as_deref();
            batch
                .events
                .push(self.shared.record.started(id, &statement));
            // What it does to the names happens as it runs: a PREPARE
            // names its statement after what came before it forgot theirs.
            self.shared
                .tracker()
                .names
                .forget(NameEffect::of_statement(judged, class));
            running.push_back(self.running(id, now, judged, class));
        }
        self.expect(batch, Expect::Query(running));
        self.sent_instead = sent_as;
        Ok(true)
    }

    /// Refuses text that reads by the session's settings (see `on_frame`;
    /// the caller asks only for such text), which the gateway cannot know
    /// yet behind an Execute of the same batch (before Sync), which may have changed
    /// them (reported only after the Sync, so waiting cannot help).
    /// Returns whether it was refused.
    fn refused_unread(&mut self, sql: &str, protocol: Protocol, batch: &mut Batch) -> bool {
        if !self.ran_since_sync {
            return false;
        }
        // Not classified: the gateway cannot know how the server reads it.
        let unread = Classification::unknown("UNKNOWN");
        let statement = Statement {
            protocol,
            sql,
            classification: &unread,
            params: &[],
            names: None,
            review: None,
            sent_as: None,
        };
        let reason = "text with non-ASCII characters, or a backslash in a '...' string, after an Execute in the same pipeline (before Sync) cannot be read safely: the statement run before it may have changed client_encoding or standard_conforming_strings; send a Sync first".to_owned();
        let simple = matches!(protocol, Protocol::Simple);
        self.refuse(
            batch,
            &statement,
            &StatementDecision::Deny { reason },
            simple,
        );
        true
    }

    /// Parse: decided here, so a refused statement never gets a name on
    /// the server. Returns whether to forward it.
    fn parse(&mut self, name: &str, sql: &str, by_reading: bool, batch: &mut Batch) -> bool {
        if self.skipping || (by_reading && self.refused_unread(sql, Protocol::Extended, batch)) {
            return false;
        }
        let strings = self.reading.strings;
        let judged = as_standard(sql, strings);
        let mut class = self.classify(&judged);
        if self.catalog.should_read_for(&class) {
            batch.read_catalog = true;
            return false;
        }
        // Judged on the statement as the parser splits it: `;TRUNCATE t`
        // is the statement `TRUNCATE t` to the server, and to rules.
        let text = if judged.contains(';') {
            taskgate_sqlclass::split(&judged)
                .first()
                .copied()
                .unwrap_or(&judged)
        } else {
            // No empty statement can stand before it: no second lexing.
            &judged
        };
        // A driver's SET application_name, sent with the task's tag.
        let mut sent_as = None;
        let mut refused = None;
        if class.statements <= 1
            && let Some(sending) = app_name::sending(
                text,
                &class,
                &self.shared.record.task,
                &self.reading.encoding,
            )
        {
            match sending {
                Sending::Refused(reason) => refused = Some(StatementDecision::Deny { reason }),
                Sending::AsIs => {}
                Sending::Instead(sql) => sent_as = Some(sql),
            }
            class = app_name::as_setting(&class);
        }
        let mut shown = String::new();
        let (decision, review) = if let Some(refused) = refused {
            (refused, None)
        } else if class.statements > 1 {
            // The server refuses it too, but only after its log has the
            // text: refused here, nothing of it reaches the target (a
            // second statement smuggled behind `;`, as through an MCP tool).
            let message = "cannot insert multiple commands into a prepared statement".to_owned();
            (StatementDecision::Invalid { message }, None)
        } else {
            shown = self.review_text(sql, &[text], std::slice::from_ref(&class));
            self.decide(&shown, text, &class)
        };
        if let StatementDecision::Review { reason, by } = decision {
            batch.hold = Some(Held {
                frame: None,
                sql: shown,
                reason,
                by: by.iter().map(|m| m.to_string()).collect(),
                simple: false,
            });
            return false;
        }
        if decision != StatementDecision::Allow {
            let statement = Statement {
                protocol: Protocol::Extended,
                sql,
                classification: &class,
                params: &[],
                names: Some((name, "")),
                review: None,
                sent_as: None,
            };
            self.refuse(batch, &statement, &decision, false);
            return false;
        }
        if self.catalog.ran(&class) {
            self.shared.catalog_changing.store(true, Ordering::Release);
        }
        let mut tracker = self.shared.tracker();
        let prepared = Arc::new(Prepared {
            sql: sql.into(),
            class,
            review,
            by_sql: false,
            sent_as: sent_as.as_deref().map(Arc::from),
        });
        if let Err(limit) = tracker.parse(name, prepared) {
            batch.overflow = Some(limit);
        }
        self.sent_instead = sent_as;
        true
    }

    /// Execute: recorded with the SQL and parameters of the portal as the
    /// gateway knows it; a portal it does not know is never run.
    fn execute(&mut self, portal: &str, batch: &mut Batch) -> Result<bool, Ending> {
        if self.skipping {
            return Ok(false);
        }
        self.check_live()?;
        let found = self.shared.tracker().names.portal(portal).cloned();
        let Some(found) = found else {
            // The server already met an error and discards everything up
            // to Sync (the Parse or Bind this portal needed among it):
            // it would answer nothing, and nothing runs. Neither does the
            // gateway refuse what the server would skip.
            if self.shared.tracker().server_ignoring() {
                return Ok(false);
            }
            let statement = Statement {
                protocol: Protocol::Extended,
                sql: "",
                classification: &self.unknown,
                params: &[],
                names: Some(("", portal)),
                review: None,
                sent_as: None,
            };
            let reason = format!(
                "portal {portal:?} was not bound through the gateway (or its Bind failed), so it cannot be run"
            );
            batch
                .events
                .push(self.shared.record.denied(&statement, "deny", &reason));
            let error = enc::error(
                "ERROR",
                INVALID_CURSOR_NAME,
                &format!("taskgate: {reason}"),
                None,
            );
            self.refuse_here(batch, error, false);
            return Ok(false);
        };
        let id = self.next_command();
        let statement = Statement {
            protocol: Protocol::Extended,
            sql: &found.prepared.sql,
            classification: &found.prepared.class,
            params: &found.params,
            names: Some((found.statement.as_str(), portal)),
            review: found.prepared.review.as_deref(),
            sent_as: found.prepared.sent_as.as_deref(),
        };
        batch
            .events
            .push(self.shared.record.started(id, &statement));
        // What it does to the server's names happens as it runs; later
        // messages of the batch see the names as they will be then.
        self.shared.tracker().names.forget(NameEffect::of_statement(
            &found.prepared.sql,
            &found.prepared.class,
        ));
        let running = self
            .running(
                id,
                Instant::now(),
                &found.prepared.sql,
                &found.prepared.class,
            )
            .executes(&found, portal);
        self.expect(batch, Expect::Execute(running));
        Ok(true)
    }
}

/// The message `frame` (a Query or a Parse) with `sql` in place of its
/// text; a Parse keeps its statement name, as the client's bytes spell it.
fn sent_instead(frame: &Frame, sql: &str) -> Vec<u8> {
    if frame.tag != b'P' {
        return enc_fe::query(sql);
    }
    let body = frame.body();
    let name = body.split(|b| *b == 0).next().unwrap_or_default();
    let mut out = Vec::with_capacity(name.len() + sql.len() + 8);
    out.push(b'P');
    let len = 4 + name.len() + 1 + sql.len() + 1 + 2;
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(name);
    out.push(0);
    out.extend_from_slice(sql.as_bytes());
    out.push(0);
    // No parameter types: a SET takes no parameters.
    out.extend_from_slice(&0i16.to_be_bytes());
    out
}

/// An `EXECUTE` judged and recorded as the statement it runs.
fn executing(prepared: &Classification) -> Arc<Classification> {
    let mut c = prepared.clone();
    c.command = "EXECUTE".to_owned();
    c.commands.push(c.command.clone());
    c.commands.sort();
    c.commands.dedup();
    Arc::new(c)
}

fn simple<'a>(sql: &'a str, class: &'a Classification) -> Statement<'a> {
    Statement {
        protocol: Protocol::Simple,
        sql,
        classification: class,
        params: &[],
        names: None,
        review: None,
        sent_as: None,
    }
}

/// The verdict a review's state gives, once it is decided.
fn verdict_of(review: Option<Review>) -> Option<Verdict> {
    let review = review?;
    let by = || {
        review
            .decision
            .as_ref()
            .map(|d| match &d.comment {
                Some(comment) => format!(" by {}: {comment}", d.by.subject),
                None => format!(" by {}", d.by.subject),
            })
            .unwrap_or_default()
    };
    match review.state {
        ReviewState::Pending => None,
        ReviewState::Approved => Some(Verdict::Approved(review.id.as_str().into())),
        ReviewState::Denied => Some(Verdict::Refused {
            why: format!("denied{}", by()),
            review: review.id,
        }),
        ReviewState::Expired => Some(Verdict::Refused {
            why: "it lapsed undecided".into(),
            review: review.id,
        }),
    }
}

/// Whether a Query's or Parse's text could read otherwise under another
/// `client_encoding` or `standard_conforming_strings` (see `on_frame`).
fn reads_by_session(frame: &Frame) -> bool {
    let body = frame.body();
    if !body.is_ascii() {
        return true;
    }
    if !body.contains(&b'\\') {
        return false;
    }
    match frontend::decode(frame) {
        Ok(FrontendMessage::Query(sql) | FrontendMessage::Parse { sql, .. }) => {
            taskgate_sqlclass::depends_on_standard_strings(sql)
        }
        _ => false,
    }
}
