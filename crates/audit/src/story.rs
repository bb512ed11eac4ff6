//! A task's story: its whole record told in order, as data and as the text
//! of SPEC §6. Built from the task's events alone, so it tells what the log
//! holds, not what the current state says.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::{Event, EventType, Identity, Timestamp};

/// Statement text kept on one line of the text story.
const SQL_COLUMN_CHARS: usize = 50;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Story {
    pub task: String,
    pub name: Option<String>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub reason: Option<String>,
    pub access: Option<String>,
    pub connection: Option<String>,
    pub requester: Option<Identity>,
    pub requested_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// The grant's approval or denial, when it needed one.
    pub decision: Option<Decision>,
    /// How the task ended: "window passed", "ended by requester", ...
    pub ending: Option<String>,
    pub sessions: u64,
    pub commands: u64,
    pub denied: u64,
    pub entries: Vec<Entry>,
}

/// A human's decision on a grant or a statement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub approved: bool,
    pub by: Option<String>,
    pub at: Timestamp,
    pub comment: Option<String>,
    /// Why a review closed with no one's decision (it lapsed, or its
    /// client or session gave up on it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    pub seq: u64,
    pub time: Timestamp,
    pub session: Option<String>,
    #[serde(flatten)]
    pub what: What,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum What {
    Command {
        command: Option<u64>,
        sql: String,
        class: String,
        tables_read: Vec<String>,
        tables_written: Vec<String>,
        /// The `command.completed` payload, once it was recorded.
        outcome: Option<Value>,
        /// The review that let it run, when it was held.
        review: Option<String>,
        approval: Option<Decision>,
    },
    Denied {
        sql: String,
        class: String,
        /// `deny`, `review`, `invalid`, `limit`, `cancelled`, ...
        decision: String,
        reason: String,
        /// The review it was held in, when it was.
        review: Option<String>,
        approval: Option<Decision>,
    },
    SessionOpened {
        client_addr: Option<String>,
        application_name: Option<String>,
        /// The MCP tool call the session ran, when it came that way.
        #[serde(skip_serializing_if = "Option::is_none")]
        mcp_request_id: Option<String>,
    },
    SessionClosed {
        reason: String,
    },
    AuthFailed {
        reason: String,
        client_addr: Option<String>,
    },
    Review {
        review: Option<String>,
        event: String,
        by: Option<String>,
        comment: Option<String>,
    },
}

impl What {
    /// A statement entry's outcome, as every rendering tells it.
    pub fn verdict(&self) -> Option<crate::Verdict> {
        match self {
            What::Command {
                outcome, approval, ..
            } => crate::Verdict::of(
                EventType::CommandStarted,
                &Value::Null,
                outcome.as_ref(),
                approval.as_ref(),
            ),
            What::Denied {
                decision,
                reason,
                approval,
                ..
            } => Some(crate::Verdict::new(
                crate::StatementVerdict::Refused {
                    decision: decision.clone(),
                    reason: reason.clone(),
                },
                approval.as_ref().map(crate::HoldVerdict::of),
            )),
            _ => None,
        }
    }
}

/// Reading a field out of an event's payload moves it: a long task's story
/// is thousands of events, each read once.
fn take(payload: &mut Value, key: &str) -> Option<Value> {
    payload
        .as_object_mut()
        .and_then(|fields| fields.remove(key))
}

fn text(payload: &mut Value, key: &str) -> Option<String> {
    match take(payload, key) {
        Some(Value::String(text)) => Some(text),
        _ => None,
    }
}

fn strings(payload: &mut Value, key: &str) -> Vec<String> {
    match take(payload, key) {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl Story {
    /// Tells the story of `task` from its events, in sequence order.
    pub fn from_events(task: &str, events: impl IntoIterator<Item = Event>) -> Story {
        let mut story = Story {
            task: task.to_owned(),
            ..Story::default()
        };
        // (session, command) → index of its entry, to fold outcomes in.
        let mut commands: HashMap<(String, u64), usize> = HashMap::new();
        // review id → decision, for statements held for review.
        let mut reviews: HashMap<String, Decision> = HashMap::new();
        for event in events {
            story.take(event, &mut commands, &mut reviews);
        }
        for entry in &mut story.entries {
            if let What::Command {
                review: Some(id),
                approval,
                ..
            }
            | What::Denied {
                review: Some(id),
                approval,
                ..
            } = &mut entry.what
            {
                *approval = reviews.get(id).cloned();
            }
        }
        story
    }

    fn take(
        &mut self,
        mut event: Event,
        commands: &mut HashMap<(String, u64), usize>,
        reviews: &mut HashMap<String, Decision>,
    ) {
        let p = &mut event.payload;
        let subject = event.identity.as_ref().map(|i| i.subject.clone());
        let at = event.time;
        let decision = |approved, comment, reason| Decision {
            approved,
            by: subject.clone(),
            at,
            comment,
            reason,
        };
        let what = match event.event_type {
            EventType::TaskRequested => {
                self.name = text(p, "name");
                self.reference = text(p, "ref");
                self.reason = text(p, "reason");
                self.access = text(p, "access");
                self.connection = event.connection.clone();
                self.requester = event.identity.clone();
                self.requested_at = Some(event.time);
                return;
            }
            EventType::TaskApproved | EventType::TaskDenied => {
                let approved = event.event_type == EventType::TaskApproved;
                self.decision = Some(decision(approved, text(p, "comment"), None));
                if !approved {
                    self.ending = Some("denied".into());
                    self.ended_at = Some(event.time);
                }
                return;
            }
            EventType::TaskActivated => {
                self.started_at = Some(event.time);
                return;
            }
            EventType::TaskEnded | EventType::TaskExpired | EventType::TaskRevoked => {
                self.ended_at = Some(event.time);
                self.ending = Some(match event.event_type {
                    EventType::TaskRevoked => {
                        let by = subject.clone().unwrap_or_else(|| "?".into());
                        match text(p, "comment") {
                            Some(comment) => format!("revoked by {by}: {comment}"),
                            None => format!("revoked by {by}"),
                        }
                    }
                    _ => text(p, "reason").unwrap_or_else(|| event.event_type.to_string()),
                });
                return;
            }
            EventType::ReviewRequested | EventType::ReviewApproved | EventType::ReviewDenied => {
                let review = text(p, "review");
                let comment = text(p, "comment");
                if event.event_type != EventType::ReviewRequested
                    && let Some(id) = &review
                {
                    let approved = event.event_type == EventType::ReviewApproved;
                    let reason = p.get("reason").and_then(Value::as_str).map(str::to_owned);
                    reviews.insert(id.clone(), decision(approved, comment.clone(), reason));
                }
                What::Review {
                    review,
                    event: event.event_type.to_string(),
                    by: subject.clone(),
                    comment,
                }
            }
            EventType::SessionOpened => {
                self.sessions += 1;
                let mcp_request_id = match take(p, "mcp_request_id") {
                    Some(Value::String(id)) => Some(id),
                    Some(Value::Number(id)) => Some(id.to_string()),
                    _ => None,
                };
                What::SessionOpened {
                    client_addr: text(p, "client_addr"),
                    application_name: text(p, "application_name"),
                    mcp_request_id,
                }
            }
            EventType::SessionClosed => What::SessionClosed {
                reason: text(p, "reason").unwrap_or_default(),
            },
            EventType::CommandStarted => {
                self.commands += 1;
                let command = p.get("command").and_then(Value::as_u64);
                if let (Some(session), Some(n)) = (&event.session, command) {
                    commands.insert((session.clone(), n), self.entries.len());
                }
                What::Command {
                    command,
                    sql: text(p, "sql").unwrap_or_default(),
                    class: text(p, "class").unwrap_or_default(),
                    tables_read: strings(p, "tables_read"),
                    tables_written: strings(p, "tables_written"),
                    outcome: None,
                    review: text(p, "review"),
                    approval: None,
                }
            }
            EventType::CommandCompleted => {
                let key = event
                    .session
                    .clone()
                    .zip(p.get("command").and_then(Value::as_u64));
                if let Some(index) = key.and_then(|k| commands.get(&k).copied())
                    && let Some(What::Command { outcome, .. }) =
                        self.entries.get_mut(index).map(|e| &mut e.what)
                {
                    *outcome = Some(event.payload);
                }
                return;
            }
            EventType::CommandDenied => {
                self.denied += 1;
                What::Denied {
                    sql: text(p, "sql").unwrap_or_default(),
                    class: text(p, "class").unwrap_or_default(),
                    decision: text(p, "decision").unwrap_or_else(|| "deny".into()),
                    reason: text(p, "reason").unwrap_or_default(),
                    review: text(p, "review"),
                    approval: None,
                }
            }
            EventType::AuthFailed => What::AuthFailed {
                reason: text(p, "reason").unwrap_or_default(),
                client_addr: text(p, "client_addr"),
            },
            EventType::Checkpoint => return,
        };
        self.entries.push(Entry {
            seq: event.seq,
            time: event.time,
            session: event.session.clone(),
            what,
        });
    }

    /// The story as text, in the format of SPEC §6. Every value from a
    /// requester or a statement is shown with its control characters
    /// escaped (see [`crate::display`]), so none can draw a line of its own.
    pub fn render(&self) -> String {
        use crate::display::visible;
        let mut out = String::new();
        let who = match &self.requester {
            Some(i) => format!("{} ({}, {})", i.subject, i.kind, issuer_label(i)),
            None => "?".into(),
        };
        let _ = write!(
            out,
            "identity={} task={}",
            visible(&who),
            visible(self.name.as_deref().unwrap_or("?"))
        );
        if let Some(reference) = &self.reference {
            let _ = write!(out, " ref={}", visible(reference));
        }
        let _ = writeln!(out, " id={}", self.task);
        let date = self
            .started_at
            .or(self.requested_at)
            .map(|t| t.to_string()[..10].to_owned())
            .unwrap_or_default();
        let from = self.started_at.map(hh_mm).unwrap_or_else(|| "--:--".into());
        let to = self.ended_at.map(hh_mm).unwrap_or_else(|| "now".into());
        let _ = write!(out, "window={date} {from}-{to}");
        if let Some(d) = &self.decision {
            let verb = if d.approved { "approved" } else { "denied" };
            let by = visible(d.by.as_deref().unwrap_or("?"));
            let _ = write!(out, " ({verb} by {by} {})", hh_mm(d.at));
        }
        match &self.ending {
            Some(ending) => {
                let _ = writeln!(out, " ended: {}", visible(ending));
            }
            None => {
                let _ = writeln!(out, " still open");
            }
        }
        for entry in &self.entries {
            let _ = writeln!(
                out,
                "  {} {}",
                entry.time.clock(),
                visible(&line(&entry.what))
            );
        }
        out
    }
}

/// Where an identity came from, shortly: `github:acme/shop` for an Actions
/// token, otherwise the issuer.
fn issuer_label(identity: &Identity) -> String {
    match identity.claims.get("repository") {
        Some(repo) => format!("github:{repo}"),
        None => identity.issuer.clone(),
    }
}

fn hh_mm(t: Timestamp) -> String {
    t.clock()[..5].to_owned()
}

/// The statement on one line, cut and padded to a fixed column.
fn sql_column(sql: &str) -> String {
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut shown: String = one_line.chars().take(SQL_COLUMN_CHARS).collect();
    if one_line.chars().count() > SQL_COLUMN_CHARS {
        shown.pop();
        shown.push('…');
    }
    format!("{shown:<SQL_COLUMN_CHARS$}")
}

fn line(what: &What) -> String {
    match what {
        What::Command { sql, class, .. } => {
            let result = what.verdict().map(|v| v.summary).unwrap_or_default();
            format!("{} {class:<5} {result}", sql_column(sql))
        }
        What::Denied { sql, class, .. } => {
            let result = what.verdict().map(|v| v.summary).unwrap_or_default();
            format!("{} {class:<5} {result}", sql_column(sql))
        }
        What::SessionOpened {
            client_addr,
            mcp_request_id: Some(id),
            ..
        } => format!(
            "MCP tool call {id} from {}",
            client_addr.as_deref().unwrap_or("?")
        ),
        What::SessionOpened {
            client_addr,
            application_name,
            mcp_request_id: None,
        } => match application_name.as_deref().filter(|a| !a.is_empty()) {
            Some(app) => format!(
                "session opened from {} ({app})",
                client_addr.as_deref().unwrap_or("?")
            ),
            None => format!(
                "session opened from {}",
                client_addr.as_deref().unwrap_or("?")
            ),
        },
        What::SessionClosed { reason } => format!("session closed: {reason}"),
        What::AuthFailed {
            reason,
            client_addr,
        } => format!(
            "login refused from {}: {reason}",
            client_addr.as_deref().unwrap_or("?")
        ),
        What::Review {
            review,
            event,
            by,
            comment,
        } => {
            let mut s = format!("{event} {}", review.as_deref().unwrap_or(""));
            if let Some(by) = by {
                let _ = write!(s, " by {by}");
            }
            if let Some(c) = comment {
                let _ = write!(s, ": {c}");
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, ChainHead, EventDraft, IdentityKind};
    use serde_json::json;

    fn at(clock: &str) -> Timestamp {
        Timestamp::parse(&format!("2026-11-25T{clock}Z")).unwrap_or(Timestamp::from_micros(0))
    }

    fn who(subject: &str, kind: IdentityKind) -> Identity {
        Identity {
            claims: Default::default(),
            groups: vec![],
            issuer: "dev".into(),
            kind,
            subject: subject.into(),
        }
    }

    fn events() -> Vec<Event> {
        let agent = who("copilot-agent", IdentityKind::Agent);
        let alice = who("alice", IdentityKind::Human);
        let t = |e: EventType, clock: &str| EventDraft::new(e, at(clock)).task("tsk_1");
        let drafts = vec![
            t(EventType::TaskRequested, "14:01:30")
                .identity(&agent)
                .connection("orders-db")
                .payload(
                    json!({"name": "migrate-orders", "ref": "acme/shop#1234", "access": "write"}),
                ),
            t(EventType::TaskApproved, "14:02:10").identity(&alice),
            t(EventType::TaskActivated, "14:02:10"),
            t(EventType::SessionOpened, "14:03:00")
                .session("s1")
                .payload(json!({"client_addr": "127.0.0.1:5000", "application_name": "psql"})),
            t(EventType::CommandStarted, "14:03:11")
                .session("s1")
                .payload(json!({
                    "command": 1, "class": "read", "sql": "SELECT count(*)\n  FROM orders",
                    "tables_read": ["orders"], "tables_written": []
                })),
            t(EventType::CommandCompleted, "14:03:11")
                .session("s1")
                .payload(json!({"command": 1, "outcome": "ok", "rows": 1, "tag": "SELECT 1"})),
            t(EventType::ReviewApproved, "14:07:39")
                .identity(&alice)
                .payload(json!({"review": "rev_9"})),
            t(EventType::CommandStarted, "14:07:40")
                .session("s1")
                .payload(json!({
                    "command": 2, "class": "ddl", "sql": "ALTER TABLE orders ADD COLUMN note text",
                    "tables_read": [], "tables_written": ["orders"], "review": "rev_9"
                })),
            t(EventType::CommandCompleted, "14:07:41")
                .session("s1")
                .payload(json!({"command": 2, "outcome": "ok", "tag": "ALTER TABLE"})),
            t(EventType::CommandDenied, "14:08:00")
                .session("s1")
                .payload(json!({
                    "class": "ddl", "sql": "DROP TABLE orders", "reason": "matches a deny rule"
                })),
            t(EventType::TaskExpired, "14:19:00").payload(json!({"reason": "window passed"})),
            t(EventType::SessionClosed, "14:19:00")
                .session("s1")
                .payload(json!({"reason": "task window ended"})),
        ];
        let mut chain = Chain::new("c", ChainHead::EMPTY);
        drafts
            .into_iter()
            .filter_map(|d| chain.seal(d).ok())
            .filter_map(|s| serde_json::from_slice(&s.body).ok())
            .collect()
    }

    #[test]
    fn renders_the_spec_format() {
        let story = Story::from_events("tsk_1", events());
        let expected = "\
identity=copilot-agent (agent, dev) task=migrate-orders ref=acme/shop#1234 id=tsk_1
window=2026-11-25 14:02-14:19 (approved by alice 14:02) ended: window passed
  14:03:00 session opened from 127.0.0.1:5000 (psql)
  14:03:11 SELECT count(*) FROM orders                        read  1 row
  14:07:39 review.approved rev_9 by alice
  14:07:40 ALTER TABLE orders ADD COLUMN note text            ddl   ALTER TABLE (approved by alice 14:07)
  14:08:00 DROP TABLE orders                                  ddl   DENIED: matches a deny rule
  14:19:00 session closed: task window ended
";
        assert_eq!(story.render(), expected);
        assert_eq!((story.sessions, story.commands, story.denied), (1, 2, 1));
    }

    #[test]
    fn json_folds_each_outcome_into_its_command() -> Result<(), serde_json::Error> {
        let story = Story::from_events("tsk_1", events());
        let value = serde_json::to_value(&story)?;
        assert_eq!(value["ref"], "acme/shop#1234");
        assert_eq!(value["decision"]["by"], "alice");
        let first = &value["entries"][1];
        assert_eq!(first["entry"], "command");
        assert_eq!(first["outcome"]["rows"], 1);
        assert_eq!(value["entries"][3]["approval"]["by"], "alice");
        Ok(())
    }

    /// A ref and a statement written to forge lines of the story stay on
    /// their own lines, their control characters shown.
    #[test]
    fn a_forged_ref_or_statement_cannot_draw_a_line() {
        let mut forged = events();
        forged[0].payload["ref"] = json!(
            "x\nidentity=alice (human, dev) task=harmless window=all approved by alice ended"
        );
        forged[4].payload["sql"] =
            json!("DELETE FROM orders /*\r\u{1b}[2K  14:03:11 SELECT 1 read 1 row */");
        let text = Story::from_events("tsk_1", forged).render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8, "{text}");
        assert!(lines[0].contains("ref=x\\nidentity=alice"), "{text}");
        // The column folds whitespace (the \r among it); the escape shows.
        assert!(
            lines[3].contains("DELETE FROM orders /* \\x1b[2K"),
            "{text}"
        );
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text}");
    }

    /// A session an MCP tool call opened names the call.
    #[test]
    fn mcp_sessions_name_their_tool_call() {
        let mut mcp = events();
        mcp[3].payload = json!({
            "client_addr": "127.0.0.1:6000", "application_name": "mcp",
            "via": "mcp", "mcp_request_id": 7
        });
        let text = Story::from_events("tsk_1", mcp).render();
        assert!(
            text.contains("14:03:00 MCP tool call 7 from 127.0.0.1:6000\n"),
            "{text}"
        );
    }

    #[test]
    fn long_statements_are_cut_on_one_line() {
        let column = sql_column(&format!("SELECT {}\nFROM t", "x, ".repeat(40)));
        assert_eq!(column.chars().count(), SQL_COLUMN_CHARS);
        assert!(column.ends_with('…'));
    }
}
