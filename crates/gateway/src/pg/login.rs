//! Who is connecting: the startup's `user` names a task, `database` names
//! its connection, and the password is the task's token, proven with
//! SCRAM-SHA-256 against the stored verifier (the token itself is never
//! stored, and never crosses the wire).
//!
//! Every refusal says which check failed; the caller sends it as `FATAL`
//! and records an `auth.failed` event.

use std::sync::Arc;

use bytes::BytesMut;
use taskgate_audit::Timestamp;
use taskgate_policy::{Task, TaskState};
use taskgate_store::StoreRead;
use taskgate_wire_pg::encode::backend as enc;
use taskgate_wire_pg::frame::{self, Direction, Frame, Limits};
use taskgate_wire_pg::frontend::{FrontendMessage, decode, sasl_initial_response};
use taskgate_wire_pg::scram::{self, Verifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ClientStream;

/// SQLSTATEs of login refusals.
pub const INVALID_AUTHORIZATION: &str = "28000";
pub const INVALID_PASSWORD: &str = "28P01";
pub const PROTOCOL_VIOLATION: &str = "08P01";

#[derive(Debug)]
pub struct Refusal {
    pub sqlstate: &'static str,
    pub message: String,
    /// Whether the claimed task exists (so the event can name it).
    pub task_exists: bool,
}

impl Refusal {
    fn new(sqlstate: &'static str, message: impl Into<String>, task_exists: bool) -> Self {
        Self {
            sqlstate,
            message: message.into(),
            task_exists,
        }
    }
}

/// A client that proved it holds the token of an active task.
pub struct Login {
    pub task: Task,
    /// The SCRAM server-final message, sent once the upstream is ready;
    /// none for a session the gateway opens for itself (MCP), whose caller
    /// the API authenticated.
    pub server_final: Option<String>,
}

async fn read_password(client: &mut ClientStream, buf: &mut BytesMut) -> Result<Frame, Refusal> {
    // Only password messages are expected: every other type is capped at
    // zero body bytes, so nobody can make the gateway buffer a large
    // message before proving anything.
    let limits = Limits {
        max_message_bytes: 0,
    };
    loop {
        match frame::decode(buf, Direction::Frontend, &limits) {
            Ok(Some(f)) if f.tag == b'p' => return Ok(f),
            Ok(Some(f)) => {
                return Err(Refusal::new(
                    PROTOCOL_VIOLATION,
                    format!(
                        "expected a SASL response, got message type {:?}",
                        f.tag as char
                    ),
                    true,
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(Refusal::new(PROTOCOL_VIOLATION, e.to_string(), true)),
        }
        match client.read_buf(buf).await {
            Ok(0) | Err(_) => {
                return Err(Refusal::new(
                    PROTOCOL_VIOLATION,
                    "the client closed the connection during authentication",
                    true,
                ));
            }
            Ok(_) => {}
        }
    }
}

async fn send(client: &mut ClientStream, bytes: &[u8]) -> Result<(), Refusal> {
    client.write_all(bytes).await.map_err(|e| {
        Refusal::new(
            PROTOCOL_VIOLATION,
            format!("cannot write to the client: {e}"),
            true,
        )
    })
}

fn password_body(frame: &Frame) -> Result<&[u8], Refusal> {
    match decode(frame) {
        Ok(FrontendMessage::Password(body)) => Ok(body),
        _ => Err(Refusal::new(
            PROTOCOL_VIOLATION,
            "malformed SASL message",
            true,
        )),
    }
}

/// Runs the SCRAM exchange for `task_id`, then checks that the task may
/// connect to `database` now.
/// `binding` is what the client's TLS channel offers to bind SCRAM to.
pub async fn authenticate(
    reader: Arc<dyn StoreRead>,
    client: &mut ClientStream,
    buf: &mut BytesMut,
    task_id: &str,
    database: &str,
    binding: scram::Binding<'_>,
) -> Result<Login, Refusal> {
    let id = task_id.to_owned();
    let found = tokio::task::spawn_blocking(move || {
        Ok::<_, taskgate_store::StoreError>((reader.task(&id)?, reader.task_secrets(&id)?))
    })
    .await;
    let (task, secrets) = match found {
        Ok(Ok((Some(task), Some(secrets)))) => (task, secrets),
        Ok(Ok(_)) => {
            return Err(Refusal::new(
                INVALID_AUTHORIZATION,
                format!(
                    "unknown task {task_id:?}: connect with user=<task id> as `taskgate task request` printed it"
                ),
                false,
            ));
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the task store during login");
            return Err(Refusal::new(
                "58000",
                "the gateway cannot read its task store",
                false,
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "task lookup failed");
            return Err(Refusal::new(
                "58000",
                "the gateway cannot read its task store",
                false,
            ));
        }
    };
    let verifier = Verifier::parse(&secrets.scram_verifier).map_err(|_| {
        Refusal::new(
            "58000",
            format!("the stored verifier of task {task_id} is unreadable"),
            true,
        )
    })?;

    let offered = binding.mechanisms();
    send(client, &enc::authentication_sasl(offered)).await?;
    let first = read_password(client, buf).await?;
    let (mechanism, client_first) = sasl_initial_response(password_body(&first)?).map_err(|e| {
        Refusal::new(
            PROTOCOL_VIOLATION,
            format!("malformed SASL initial response: {e}"),
            true,
        )
    })?;
    if !offered.contains(&mechanism) {
        return Err(Refusal::new(
            INVALID_PASSWORD,
            format!(
                "SASL mechanism {mechanism:?} is not offered; use {}",
                offered.join(" or ")
            ),
            true,
        ));
    }
    let nonce =
        crate::token::scram_nonce().map_err(|e| Refusal::new("58000", e.to_string(), true))?;
    let (exchange, server_first) = scram::start(verifier, mechanism, binding, client_first, &nonce)
        .map_err(|e| Refusal::new(INVALID_PASSWORD, e.to_string(), true))?;
    send(client, &enc::sasl_continue(server_first.as_bytes())).await?;
    let last = read_password(client, buf).await?;
    let server_final = exchange.finish(password_body(&last)?).map_err(|e| match e {
        scram::ScramError::WrongProof => Refusal::new(
            INVALID_PASSWORD,
            format!("password authentication failed for task {task_id}: the password must be the task's token"),
            true,
        ),
        other => Refusal::new(INVALID_PASSWORD, other.to_string(), true),
    })?;

    check_usable(&task, database, Timestamp::now())?;
    Ok(Login {
        task,
        server_final: Some(server_final),
    })
}

/// The checks after the token is proven: the task is active, inside its
/// window, and this is its connection.
pub fn check_usable(task: &Task, database: &str, now: Timestamp) -> Result<(), Refusal> {
    let refuse = |m: String| Err(Refusal::new(INVALID_AUTHORIZATION, m, true));
    match task.state {
        TaskState::Active => {}
        TaskState::Pending => {
            return refuse(format!(
                "task {} is waiting for approval, not active yet",
                task.id
            ));
        }
        other => {
            return refuse(format!(
                "task {} is {}, not active",
                task.id,
                other.as_str()
            ));
        }
    }
    if task.ends_at.is_some_and(|end| now >= end) {
        return refuse(format!("task {} window ended", task.id));
    }
    if database != task.connection {
        return refuse(format!(
            "task {} is for connection {:?}, not {database:?}: connect with dbname={}",
            task.id, task.connection, task.connection
        ));
    }
    Ok(())
}
