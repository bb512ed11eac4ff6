//! The proxy loop of one logged-in session.
//!
//! Two halves run at once. The client half ([`client`]) reads client
//! messages, decides each statement, and forwards the original bytes
//! upstream; the server half ([`server`]) forwards the server's answers and
//! records each command's outcome. A shared [`Tracker`] ties the two.
//!
//! Invariant: a statement's `command.started` event is committed before the
//! first byte of the message that runs it goes upstream. The client half
//! gathers everything already read into one batch, commits the batch's
//! events, and only then writes the batch with a single write.

mod client;
mod server;

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};

use taskgate_store::Writer;
use taskgate_wire_pg::encode::backend as enc;
use taskgate_wire_pg::frame::Limits;
use tokio::sync::Notify;

pub use client::{ClientHalf, Holds};
pub use server::server_half;

use super::record::SessionRecord;
use super::sessions::CloseReason;
use super::track::Tracker;

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
    /// The server reports a setting the gateway cannot police under.
    UnsafeSetting(String),
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
            Ending::UnsafeSetting(m) => m.clone(),
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
            Ending::UnsafeSetting(m) => (
                INSUFFICIENT_PRIVILEGE,
                format!("taskgate ends the session: {m}"),
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
    /// Wakes the client half when a ReadyForQuery has been taken in.
    pub answered: Notify,
    pub limits: Limits,
    /// The highest command id whose `command.started` is committed: only
    /// those may get a `command.completed`.
    pub committed_through: AtomicU64,
    /// The server's process id for this session and the one the client was
    /// given: the session's own notifications name the client's.
    pub own_pid: Option<(u32, u32)>,
    /// DDL (or code that may run it) was sent in the open transaction.
    pub catalog_changing: std::sync::atomic::AtomicBool,
    /// Called when such a transaction ends, before its ReadyForQuery
    /// reaches the client: every session's view of the catalog is stale.
    pub catalog_changed: Box<dyn Fn() + Send + Sync>,
}

impl Shared {
    pub fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }
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
