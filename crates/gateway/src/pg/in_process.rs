//! Sessions the gateway opens for itself, for the MCP tools.
//!
//! An MCP tool call's statement does not get a data path of its own: it is
//! written into an in-memory pipe whose other end is served by the very
//! [`Session`] a client on the listener gets — the same upstream login,
//! relay, classification, statement policy, hold, cut-off and
//! record-before-forward. A rule written once therefore holds for both, and
//! every guarantee the wire's tests check (what runs is what is recorded)
//! covers MCP too. Only the login differs: the API already authenticated
//! the caller and checked that the task is theirs, so there is no SCRAM
//! exchange and no task token to hold.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use taskgate_policy::Task;
use taskgate_wire_pg::startup::Startup;

use super::record::Via;
use super::session::Session;
use super::{ClientStream, PgContext, login};

/// Bytes the pipe buffers each way; the relay's back-pressure does the rest.
const PIPE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum InProcessError {
    #[error("too many connections to the gateway (limit {0})")]
    TooManyConnections(usize),
}

/// Opens a session of `task` (whose requester the caller was checked to
/// be) and returns the client's end of it: the hello, or a `FATAL` saying
/// why the session could not open, is the first thing read from it.
/// `peer` is the address the request came from, for `session.opened`.
pub fn open(
    ctx: &Arc<PgContext>,
    task: Task,
    via: Via,
    peer: SocketAddr,
) -> Result<ClientStream, InProcessError> {
    let permit = Arc::clone(&ctx.connections)
        .try_acquire_owned()
        .map_err(|_| InProcessError::TooManyConnections(ctx.config.server.max_connections))?;
    let (client_end, server_end) = tokio::io::duplex(PIPE_BYTES);
    let ctx = Arc::clone(ctx);
    tokio::spawn(async move {
        let mut server_end: ClientStream = Box::new(server_end);
        let startup = Startup::Startup {
            protocol: 3 << 16,
            params: vec![
                ("user".to_owned(), task.id.clone()),
                ("database".to_owned(), task.connection.clone()),
                ("application_name".to_owned(), "mcp".to_owned()),
            ],
        };
        let login = login::Login {
            task,
            server_final: None,
        };
        if let Some(session) =
            Session::open(&ctx, &mut server_end, login, &startup, peer, false, via).await
        {
            session.run(server_end, BytesMut::new()).await;
        }
        drop(permit);
    });
    Ok(Box::new(client_end))
}
