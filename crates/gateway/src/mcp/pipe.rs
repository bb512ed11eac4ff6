//! The client's end of an in-process session (see `pg::in_process`): one
//! statement at a time over the extended protocol, answers as text.
//!
//! Hand-written on `postgres-protocol`'s message codecs rather than
//! tokio-postgres because an MCP answer needs every column as text
//! (tokio-postgres asks for binary results and decodes only the types it
//! knows), must stop at a row cap without the rest being produced (an
//! Execute row limit, which tokio-postgres offers only inside an explicit
//! transaction), and must see the gateway's hold notice as it arrives.

use bytes::{BufMut, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::IsNull;
use postgres_protocol::message::backend::{
    DataRowBody, ErrorResponseBody, Message, NoticeResponseBody, RowDescriptionBody,
};
use postgres_protocol::message::frontend;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::pg::ClientStream;

/// What a statement may return to the caller; the session's record counts
/// what reached it by the same rule.
pub use crate::pg::ResultCaps as Caps;

#[derive(Debug, Serialize)]
pub struct Column {
    pub name: String,
    /// PostgreSQL's name for the type (`int4`, `text`), or its oid.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// A statement that ran.
#[derive(Debug, Default, Serialize)]
pub struct Answer {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
    /// Whether, and by which cap, the rows were cut.
    pub truncated: Truncated,
    /// The command tag (`SELECT 3`, `INSERT 0 1`, `ALTER TABLE`); none
    /// when the rows were cut before the end.
    pub command_tag: Option<String>,
    /// Rows the statement returned or touched, from its tag; when cut, the
    /// rows returned here.
    pub row_count: u64,
}

/// Whether a result was cut: `false`, or `{"reason": "rows" | "bytes",
/// "limit": N}` saying which cap cut it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Truncated {
    #[default]
    No,
    /// Past `max_rows` rows.
    Rows(usize),
    /// Past `max_bytes` bytes of values (a single value may be past it).
    Bytes(usize),
}

impl Truncated {
    pub fn is_cut(self) -> bool {
        self != Truncated::No
    }
}

impl Serialize for Truncated {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (reason, limit) = match *self {
            Truncated::No => return s.serialize_bool(false),
            Truncated::Rows(limit) => ("rows", limit),
            Truncated::Bytes(limit) => ("bytes", limit),
        };
        serde_json::json!({"reason": reason, "limit": limit}).serialize(s)
    }
}

/// What a cap says of one more row of `size` bytes, `bytes` so far
/// included: `None` when it may be returned.
fn cut_by(answer: &Answer, caps: Caps, bytes: usize) -> Option<Truncated> {
    if answer.truncated.is_cut() {
        Some(answer.truncated)
    } else if caps.takes(answer.rows.len(), bytes) {
        None
    } else if answer.rows.len() >= caps.max_rows {
        Some(Truncated::Rows(caps.max_rows))
    } else {
        Some(Truncated::Bytes(caps.max_bytes))
    }
}

/// An `ERROR` or `FATAL` the gateway or the database answered.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub sqlstate: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// `FATAL`: the session ended with it (window ended, revoked).
    #[serde(skip)]
    pub fatal: bool,
    /// Made by the gateway (a policy's refusal, the session's end), not
    /// raised by the database.
    #[serde(skip)]
    pub by_gateway: bool,
}

#[derive(Debug)]
pub enum Outcome {
    Ran(Answer),
    Refused(Refusal),
}

#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error("the session could not open: {} ({})", .0.message, .0.sqlstate)]
    NotOpened(Refusal),
    #[error("the session ended: {}", .0)]
    Ended(String),
    #[error("the session broke the protocol: {0}")]
    Protocol(String),
}

/// A logged-in session, ready for a statement.
pub struct Pipe {
    stream: ClientStream,
    buf: BytesMut,
}

fn refusal_of(fields: &mut postgres_protocol::message::backend::ErrorFields<'_>) -> Refusal {
    let mut refusal = Refusal {
        sqlstate: String::new(),
        message: String::new(),
        hint: None,
        fatal: false,
        by_gateway: false,
    };
    while let Ok(Some(field)) = fields.next() {
        let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
        match field.type_() {
            b'C' => refusal.sqlstate = value,
            b'M' => refusal.message = value,
            b'H' => refusal.hint = Some(value),
            b'V' => refusal.fatal = value == "FATAL" || value == "PANIC",
            b'R' => {
                refusal.by_gateway = value == taskgate_wire_pg::encode::backend::GATEWAY_ROUTINE
            }
            _ => {}
        }
    }
    refusal
}

fn error_of(body: &ErrorResponseBody) -> Refusal {
    refusal_of(&mut body.fields())
}

fn notice_of(body: &NoticeResponseBody) -> Refusal {
    refusal_of(&mut body.fields())
}

/// A parameter as the server should read it, in text format.
pub fn param_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// A column value as JSON: numbers, booleans and JSON as themselves,
/// everything else (numeric, dates, bytea...) as PostgreSQL's text.
fn json_value(oid: u32, text: &str) -> Value {
    use postgres_types::Type;
    let ty = Type::from_oid(oid);
    match ty {
        Some(Type::BOOL) => Value::Bool(text == "t"),
        Some(Type::INT2 | Type::INT4 | Type::INT8 | Type::OID) => text
            .parse::<i64>()
            .map_or_else(|_| Value::String(text.to_owned()), Value::from),
        Some(Type::FLOAT4 | Type::FLOAT8) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(text.to_owned()), Value::Number),
        Some(Type::JSON | Type::JSONB) => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        }
        _ => Value::String(text.to_owned()),
    }
}

fn columns_of(body: &RowDescriptionBody) -> Result<(Vec<Column>, Vec<u32>), PipeError> {
    let mut columns = Vec::new();
    let mut oids = Vec::new();
    let mut fields = body.fields();
    while let Some(field) = fields
        .next()
        .map_err(|e| PipeError::Protocol(e.to_string()))?
    {
        let oid = field.type_oid();
        let type_name = postgres_types::Type::from_oid(oid)
            .map_or_else(|| oid.to_string(), |t| t.name().to_owned());
        columns.push(Column {
            name: field.name().to_owned(),
            type_name,
        });
        oids.push(oid);
    }
    Ok((columns, oids))
}

/// One row's values.
fn row_of(body: &DataRowBody, oids: &[u32]) -> Result<Vec<Value>, PipeError> {
    let mut values = Vec::with_capacity(oids.len());
    let mut ranges = body.ranges();
    let mut i = 0;
    while let Some(range) = ranges
        .next()
        .map_err(|e| PipeError::Protocol(e.to_string()))?
    {
        let value = match range {
            None => Value::Null,
            Some(range) => {
                let raw = body
                    .buffer()
                    .get(range)
                    .ok_or_else(|| PipeError::Protocol("a value past its row".into()))?;
                json_value(
                    oids.get(i).copied().unwrap_or(0),
                    &String::from_utf8_lossy(raw),
                )
            }
        };
        values.push(value);
        i += 1;
    }
    Ok(values)
}

/// Rows counted in a command tag: the last number of `SELECT 3`,
/// `INSERT 0 1`, `UPDATE 2`; 0 for tags without one.
fn tag_rows(tag: &str) -> u64 {
    tag.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Pipe {
    /// Reads the session's hello up to its first ReadyForQuery.
    pub async fn open(stream: ClientStream) -> Result<Pipe, PipeError> {
        let mut pipe = Pipe {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
        };
        loop {
            match pipe.next().await? {
                Message::ReadyForQuery(_) => return Ok(pipe),
                Message::ErrorResponse(body) => return Err(PipeError::NotOpened(error_of(&body))),
                _ => {}
            }
        }
    }

    async fn next(&mut self) -> Result<Message, PipeError> {
        loop {
            match Message::parse(&mut self.buf) {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(e) => return Err(PipeError::Protocol(e.to_string())),
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err(PipeError::Ended("the gateway closed it".into())),
                Ok(_) => {}
                Err(e) => return Err(PipeError::Ended(e.to_string())),
            }
        }
    }

    async fn send(&mut self, out: &BytesMut) -> Result<(), PipeError> {
        self.stream
            .write_all(out)
            .await
            .map_err(|e| PipeError::Ended(e.to_string()))
    }

    /// Runs one statement: Parse, Bind (text parameters, text results),
    /// Describe, Execute with a row limit one past the cap, Sync. Every
    /// notice is sent to `notices` as it comes (the gateway's hold notice
    /// among them).
    pub async fn run(
        &mut self,
        sql: &str,
        params: &[Option<String>],
        caps: Caps,
        notices: &mpsc::UnboundedSender<Refusal>,
    ) -> Result<Outcome, PipeError> {
        let encode = |e: std::io::Error| PipeError::Protocol(e.to_string());
        let mut out = BytesMut::new();
        frontend::parse("", sql, std::iter::empty(), &mut out).map_err(encode)?;
        frontend::bind(
            "",
            "",
            std::iter::once(0),
            params.iter(),
            |value, buf| match value {
                Some(text) => {
                    buf.put_slice(text.as_bytes());
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            std::iter::once(0),
            &mut out,
        )
        .map_err(|e| match e {
            frontend::BindError::Conversion(e) => PipeError::Protocol(e.to_string()),
            frontend::BindError::Serialization(e) => PipeError::Protocol(e.to_string()),
        })?;
        frontend::describe(b'P', "", &mut out).map_err(encode)?;
        let limit = i32::try_from(caps.max_rows.saturating_add(1)).unwrap_or(i32::MAX);
        frontend::execute("", limit, &mut out).map_err(encode)?;
        frontend::sync(&mut out);
        self.send(&out).await?;

        let mut answer = Answer::default();
        let mut oids = Vec::new();
        let mut bytes = 0usize;
        let mut refused = None;
        loop {
            match self.next().await? {
                Message::RowDescription(body) => (answer.columns, oids) = columns_of(&body)?,
                Message::DataRow(body) => {
                    // Past a cap, rows are only counted, never decoded.
                    bytes += body.buffer().len();
                    match cut_by(&answer, caps, bytes) {
                        None => answer.rows.push(row_of(&body, &oids)?),
                        Some(cut) => answer.truncated = cut,
                    }
                }
                Message::PortalSuspended if !answer.truncated.is_cut() => {
                    answer.truncated = Truncated::Rows(caps.max_rows);
                }
                Message::CommandComplete(body) => {
                    let tag = body.tag().map_err(|e| PipeError::Protocol(e.to_string()))?;
                    answer.row_count = tag_rows(tag);
                    answer.command_tag = Some(tag.to_owned());
                }
                Message::EmptyQueryResponse => answer.command_tag = Some(String::new()),
                Message::CopyInResponse(_) => {
                    // Nothing to send: the tool takes no data.
                    let mut fail = BytesMut::new();
                    frontend::copy_fail("COPY FROM STDIN is not available through MCP", &mut fail)
                        .map_err(encode)?;
                    self.send(&fail).await?;
                }
                Message::CopyData(body) => {
                    bytes += body.data().len();
                    match cut_by(&answer, caps, bytes) {
                        None => {
                            let line = String::from_utf8_lossy(body.data()).into_owned();
                            answer.rows.push(vec![Value::String(line)]);
                        }
                        Some(cut) => answer.truncated = cut,
                    }
                }
                Message::CopyOutResponse(_) if answer.columns.is_empty() => {
                    answer.columns.push(Column {
                        name: "copy".into(),
                        type_name: "text".into(),
                    });
                }
                Message::ErrorResponse(body) => {
                    let error = error_of(&body);
                    if error.fatal {
                        // The session is gone (window ended, revoked).
                        return Ok(Outcome::Refused(error));
                    }
                    refused = Some(error);
                }
                Message::NoticeResponse(body) => {
                    let _ = notices.send(notice_of(&body));
                }
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        if answer.truncated.is_cut() {
            answer.row_count = answer.rows.len() as u64;
            answer.command_tag = None;
        }
        Ok(match refused {
            Some(error) => Outcome::Refused(error),
            None => Outcome::Ran(answer),
        })
    }

    /// Ends the session as a client would (Terminate).
    pub async fn close(mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = self.stream.write_all(&out).await;
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_json_kinds() {
        assert_eq!(json_value(23, "42"), Value::from(42));
        assert_eq!(
            json_value(20, "9007199254740993"),
            Value::from(9007199254740993i64)
        );
        assert_eq!(json_value(16, "t"), Value::Bool(true));
        assert_eq!(json_value(701, "NaN"), Value::String("NaN".into()));
        assert_eq!(json_value(3802, r#"{"a":1}"#), serde_json::json!({"a": 1}));
        assert_eq!(json_value(1700, "1.10"), Value::String("1.10".into()));
        assert_eq!(json_value(25, "x"), Value::String("x".into()));
    }

    #[test]
    fn tags_give_row_counts() {
        assert_eq!(tag_rows("SELECT 3"), 3);
        assert_eq!(tag_rows("INSERT 0 7"), 7);
        assert_eq!(tag_rows("ALTER TABLE"), 0);
    }

    #[test]
    fn parameters_are_text() {
        assert_eq!(param_text(&Value::Null), None);
        assert_eq!(param_text(&serde_json::json!(5)), Some("5".into()));
        assert_eq!(param_text(&serde_json::json!("a'b")), Some("a'b".into()));
        assert_eq!(param_text(&serde_json::json!([1])), Some("[1]".into()));
    }
}
