//! The gateway's own queries, on connections of its own to a target: the
//! catalog read, the catalog watch and `taskgate connection prepare`.
//!
//! Hand-written over the gateway's upstream login rather than through
//! tokio-postgres so these connections log in exactly as sessions do (the
//! same TLS, SCRAM and startup parameters), and so a watch can read
//! notifications between queries on one connection.

use bytes::Buf;
use taskgate_wire_pg::backend::{self, BackendMessage};
use taskgate_wire_pg::encode::frontend as enc;
use taskgate_wire_pg::frame::{self, Direction, Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::upstream::Upstream;

/// Why a query of the gateway's own failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

impl From<std::io::Error> for QueryError {
    fn from(e: std::io::Error) -> Self {
        QueryError(e.to_string())
    }
}

/// A `NOTIFY` the server delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub channel: String,
    pub payload: String,
}

/// What a simple-protocol query answered: each statement's rows as text,
/// and the notifications that arrived while it ran.
#[derive(Debug, Default)]
pub struct Answer {
    pub results: Vec<Vec<Vec<String>>>,
    pub notifications: Vec<Notification>,
}

/// Runs `sql` (one or more statements) and reads up to its ReadyForQuery.
/// The first error the server reports fails it, as `code message`.
pub async fn simple_query(up: &mut Upstream, sql: &str) -> Result<Answer, QueryError> {
    up.stream.write_all(&enc::query(sql)).await?;
    let mut answer = Answer::default();
    let mut failed = None;
    loop {
        let frame = next_frame(up).await?;
        match backend::decode(&frame).map_err(|e| QueryError(e.to_string()))? {
            BackendMessage::RowDescription => answer.results.push(Vec::new()),
            BackendMessage::DataRow => {
                let row = data_row(frame.body())
                    .ok_or_else(|| QueryError("a malformed data row".into()))?;
                if let Some(rows) = answer.results.last_mut() {
                    rows.push(row);
                }
            }
            BackendMessage::NotificationResponse => {
                answer.notifications.extend(notification(frame.body()));
            }
            BackendMessage::ErrorResponse(f) => {
                failed.get_or_insert(format!("{} {}", f.code, f.message));
            }
            BackendMessage::ReadyForQuery(_) => {
                return match failed {
                    Some(why) => Err(QueryError(why)),
                    None => Ok(answer),
                };
            }
            _ => {}
        }
    }
}

/// Waits for the next notification (the connection must be idle, as after
/// `LISTEN`).
pub async fn next_notification(up: &mut Upstream) -> Result<Notification, QueryError> {
    loop {
        let frame = next_frame(up).await?;
        match backend::decode(&frame).map_err(|e| QueryError(e.to_string()))? {
            BackendMessage::NotificationResponse => {
                if let Some(n) = notification(frame.body()) {
                    return Ok(n);
                }
            }
            BackendMessage::ErrorResponse(f) => {
                return Err(QueryError(format!("{} {}", f.code, f.message)));
            }
            _ => {}
        }
    }
}

/// Ends the connection politely.
pub async fn terminate(up: &mut Upstream) {
    let _ = up.stream.write_all(&enc::terminate()).await;
}

async fn next_frame(up: &mut Upstream) -> Result<Frame, QueryError> {
    loop {
        match frame::decode(&mut up.buf, Direction::Backend, &Limits::default()) {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {
                if up.stream.read_buf(&mut up.buf).await? == 0 {
                    return Err(QueryError("the server closed the connection".into()));
                }
            }
            Err(e) => return Err(QueryError(e.to_string())),
        }
    }
}

/// A DataRow's columns as text; NULL reads as the empty string.
fn data_row(mut body: &[u8]) -> Option<Vec<String>> {
    if body.len() < 2 {
        return None;
    }
    let n = body.get_i16();
    let mut row = Vec::with_capacity(usize::try_from(n).ok()?);
    for _ in 0..n {
        if body.len() < 4 {
            return None;
        }
        let len = body.get_i32();
        if len < 0 {
            row.push(String::new());
            continue;
        }
        let len = usize::try_from(len).ok()?;
        let bytes = body.get(..len)?;
        row.push(String::from_utf8_lossy(bytes).into_owned());
        body = &body[len..];
    }
    Some(row)
}

/// A NotificationResponse body: the sender's pid, the channel, the payload.
fn notification(body: &[u8]) -> Option<Notification> {
    let rest = body.get(4..)?;
    let mut parts = rest.split(|b| *b == 0);
    let channel = String::from_utf8_lossy(parts.next()?).into_owned();
    let payload = String::from_utf8_lossy(parts.next()?).into_owned();
    Some(Notification { channel, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_body_reads_as_channel_and_payload() {
        let mut body = 42u32.to_be_bytes().to_vec();
        body.extend_from_slice(b"taskgate_catalog\0CREATE TABLE\0");
        assert_eq!(
            notification(&body),
            Some(Notification {
                channel: "taskgate_catalog".into(),
                payload: "CREATE TABLE".into()
            })
        );
        assert_eq!(notification(b"\0\0"), None);
    }

    #[test]
    fn a_data_row_reads_nulls_as_empty_and_refuses_short_bodies() {
        let mut body = 2i16.to_be_bytes().to_vec();
        body.extend_from_slice(&1i32.to_be_bytes());
        body.push(b'x');
        body.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(data_row(&body), Some(vec!["x".into(), String::new()]));
        assert_eq!(data_row(&body[..5]), None);
    }
}
