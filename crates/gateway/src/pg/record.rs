//! The events one data-plane session writes: who (the task's requester),
//! which task, session and connection, and what each command was and did.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use taskgate_audit::{EventDraft, EventType, Identity, Timestamp};
use taskgate_sqlclass::Classification;
use taskgate_wire_pg::encoding::ClientEncoding;

use super::track::{Completion, Outcome};

/// Statement text kept in an event; longer text is cut, with the full
/// text's length and SHA-256 recorded beside it.
pub const MAX_RECORDED_SQL_BYTES: usize = 256 * 1024;
/// Bytes of one parameter value kept in an event.
pub const MAX_RECORDED_PARAM_BYTES: usize = 1024;

/// How a statement arrived.
#[derive(Clone, Copy, Debug)]
pub enum Protocol {
    Simple,
    Extended,
    FunctionCall,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
            Protocol::FunctionCall => "function_call",
        }
    }
}

/// A statement as recorded: text, how it came, what it touches.
pub struct Statement<'a> {
    pub protocol: Protocol,
    pub sql: &'a str,
    pub classification: &'a Classification,
    /// Parameters as recorded (see [`param_value`]); empty for simple queries.
    pub params: &'a [Value],
    /// Prepared statement and portal names, for the extended protocol.
    pub names: Option<(&'a str, &'a str)>,
    /// The review that let it run, when it was held.
    pub review: Option<&'a str>,
    /// What the gateway sent in its place, when not the client's text
    /// (a `SET application_name` sent with the task's tag).
    pub sent_as: Option<&'a str>,
}

fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A parameter value for the record: text as text, binary as `\x` hex,
/// NULL as null; cut at [`MAX_RECORDED_PARAM_BYTES`].
pub fn param_value(value: Option<&[u8]>, binary: bool, encoding: &ClientEncoding) -> Value {
    let Some(bytes) = value else {
        return Value::Null;
    };
    let kept = &bytes[..bytes.len().min(MAX_RECORDED_PARAM_BYTES)];
    let mut text = if binary {
        format!("\\x{}", hex::encode(kept))
    } else {
        // Text in the session's encoding, as the server reads it.
        encoding.decode(kept).into_owned()
    };
    if kept.len() < bytes.len() {
        text.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    Value::String(text)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Which interface carried a session's statements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A client on the PostgreSQL listener.
    Wire,
    /// An MCP tool call, with the JSON-RPC request id its client sent and
    /// what it takes of each result.
    Mcp {
        request_id: String,
        caps: super::track::ResultCaps,
    },
}

/// The fixed facts of a session that every one of its events carries.
pub struct SessionRecord {
    pub identity: Identity,
    pub task: String,
    pub session: String,
    pub connection: String,
    pub via: Via,
}

impl SessionRecord {
    fn draft(&self, event_type: EventType, mut payload: Value) -> EventDraft {
        if let (Via::Mcp { request_id, .. }, Value::Object(fields)) = (&self.via, &mut payload) {
            fields.insert("via".into(), json!("mcp"));
            fields.insert("mcp_request_id".into(), json!(request_id));
        }
        EventDraft::new(event_type, Timestamp::now())
            .identity(&self.identity)
            .task(self.task.clone())
            .session(self.session.clone())
            .connection(self.connection.clone())
            .payload(payload)
    }

    pub fn opened(
        &self,
        client: SocketAddr,
        application_name: &str,
        tls: bool,
        access: &str,
    ) -> EventDraft {
        self.draft(
            EventType::SessionOpened,
            json!({
                "access": access,
                "application_name": application_name,
                "client_addr": client.to_string(),
                "tls": tls,
            }),
        )
    }

    pub fn closed(&self, reason: &str, commands: u64, duration: Duration) -> EventDraft {
        self.draft(
            EventType::SessionClosed,
            json!({
                "commands": commands,
                "duration_us": micros(duration),
                "reason": reason,
            }),
        )
    }

    fn statement_fields(statement: &Statement<'_>) -> serde_json::Map<String, Value> {
        let c = statement.classification;
        let mut fields = serde_json::Map::new();
        fields.insert("class".into(), json!(c.class.as_str()));
        fields.insert("command_type".into(), json!(c.command));
        fields.insert("protocol".into(), json!(statement.protocol.as_str()));
        fields.insert(
            "sql".into(),
            json!(cut(statement.sql, MAX_RECORDED_SQL_BYTES)),
        );
        fields.insert("tables_read".into(), json!(c.tables_read));
        fields.insert("tables_written".into(), json!(c.tables_written));
        if !c.opaque.is_empty() {
            fields.insert("opaque".into(), json!(c.opaque));
        }
        if statement.sql.len() > MAX_RECORDED_SQL_BYTES {
            fields.insert("sql_bytes".into(), json!(statement.sql.len()));
            fields.insert(
                "sql_sha256".into(),
                json!(hex::encode(Sha256::digest(statement.sql.as_bytes()))),
            );
        }
        if !statement.params.is_empty() {
            fields.insert("params".into(), Value::Array(statement.params.to_vec()));
        }
        if let Some((name, portal)) = statement.names {
            fields.insert("statement_name".into(), json!(name));
            fields.insert("portal".into(), json!(portal));
        }
        if let Some(sent) = statement.sent_as {
            fields.insert("sent_as".into(), json!(sent));
        }
        if let Some(review) = statement.review {
            fields.insert("review".into(), json!(review));
        }
        fields
    }

    pub fn started(&self, command: u64, statement: &Statement<'_>) -> EventDraft {
        let mut fields = Self::statement_fields(statement);
        fields.insert("command".into(), json!(command));
        self.draft(EventType::CommandStarted, Value::Object(fields))
    }

    pub fn denied(&self, statement: &Statement<'_>, decision: &str, reason: &str) -> EventDraft {
        let mut fields = Self::statement_fields(statement);
        fields.insert("decision".into(), json!(decision));
        fields.insert("reason".into(), json!(reason));
        self.draft(EventType::CommandDenied, Value::Object(fields))
    }

    pub fn completed(&self, c: &Completion) -> EventDraft {
        let mut fields = serde_json::Map::new();
        fields.insert("command".into(), json!(c.id));
        fields.insert("duration_us".into(), json!(micros(c.duration)));
        let outcome = match &c.outcome {
            Outcome::Ok { tag } => {
                fields.insert("tag".into(), json!(tag));
                "ok"
            }
            Outcome::Error { sqlstate, message } => {
                fields.insert("sqlstate".into(), json!(sqlstate));
                fields.insert(
                    "error".into(),
                    json!(cut(message, MAX_RECORDED_PARAM_BYTES)),
                );
                "error"
            }
            Outcome::Skipped => "skipped",
            Outcome::Unknown => "unknown",
        };
        fields.insert("outcome".into(), json!(outcome));
        if let Some(rows) = c.rows {
            fields.insert("rows".into(), json!(rows));
        }
        if let Some(returned) = c.rows_returned {
            fields.insert("rows_returned".into(), json!(returned));
        }
        if c.copy_in_bytes > 0 {
            fields.insert("copy_in_bytes".into(), json!(c.copy_in_bytes));
        }
        if c.copy_out_bytes > 0 {
            fields.insert("copy_out_bytes".into(), json!(c.copy_out_bytes));
        }
        self.draft(EventType::CommandCompleted, Value::Object(fields))
    }
}

/// An `auth.failed` event: the claimed task and connection, never the
/// password or any part of the exchange.
pub fn auth_failed(
    client: SocketAddr,
    claimed_task: Option<&str>,
    task_exists: bool,
    claimed_connection: Option<&str>,
    reason: &str,
) -> EventDraft {
    let mut draft = EventDraft::new(EventType::AuthFailed, Timestamp::now()).payload(json!({
        "client_addr": client.to_string(),
        "claimed_connection": claimed_connection,
        "claimed_task": claimed_task,
        "protocol": "postgres",
        "reason": reason,
    }));
    if let (true, Some(task)) = (task_exists, claimed_task) {
        draft = draft.task(task.to_owned());
    }
    draft
}

#[cfg(test)]
mod tests {
    use super::*;

    const UTF8: ClientEncoding = ClientEncoding::UTF8;

    #[test]
    fn parameters_are_kept_readable_and_bounded() {
        assert_eq!(param_value(None, false, &UTF8), Value::Null);
        assert_eq!(param_value(Some(b"42"), false, &UTF8), json!("42"));
        assert_eq!(param_value(Some(&[0, 255]), true, &UTF8), json!("\\x00ff"));
        let long = vec![b'a'; MAX_RECORDED_PARAM_BYTES + 5];
        let Value::String(text) = param_value(Some(&long), false, &UTF8) else {
            panic!("not a string")
        };
        assert!(text.ends_with(&format!("… ({} bytes)", long.len())));
        let latin1 = ClientEncoding::named("LATIN1").unwrap();
        assert_eq!(param_value(Some(b"caf\xe9"), false, &latin1), json!("café"));
    }

    #[test]
    fn cutting_respects_characters() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("abc", 10), "abc");
    }
}
