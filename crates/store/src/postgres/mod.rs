//! The shared store: one PostgreSQL database that every node of a fleet
//! writes to and reads from. Events are committed there, not on the node's
//! disk (see `shared.rs` for the writer), so a node that dies loses nothing.
//!
//! Blocking clients (the `postgres` crate), because the store's callers are
//! the writer thread and blocking tasks, as with SQLite.

mod console;
mod copy;
mod fast;
pub mod fleet;
mod read;
mod schema;
mod sinks;
mod write;

use std::sync::Arc;
use std::time::Duration;

use postgres::NoTls;

pub use console::{PgConsole, StoredSession};
pub use copy::{CopyReport, copy_from_sqlite};
pub use read::PgReader;
pub use sinks::PgSinks;
pub use write::{NOTIFY_CHANNEL, PgWriter};

use crate::{Result, StoreError};

/// Where the shared store is and how to reach it.
#[derive(Clone)]
pub struct PgOptions {
    /// Host, port, database, user and password (never logged).
    pub config: tokio_postgres::Config,
    /// TLS to the store; plain TCP when absent.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// How long a connection attempt to the store may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl PgOptions {
    pub fn new(mut config: tokio_postgres::Config, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("taskgate/store");
        }
        Self { config, tls }
    }

    /// A blocking client, for the writer thread and readers (never on an
    /// async thread: the `postgres` crate runs a runtime of its own).
    pub(crate) fn connect(&self) -> Result<postgres::Client> {
        let config = postgres::Config::from(self.config.clone());
        let client = match &self.tls {
            None => config.connect(NoTls)?,
            Some(tls) => config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(
                rustls::ClientConfig::clone(tls),
            ))?,
        };
        Ok(client)
    }

    /// An async client on the current runtime, with the server's
    /// notifications (LISTEN) forwarded to the receiver; the receiver ends
    /// when the connection does.
    pub async fn connect_async(
        &self,
    ) -> Result<(
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
    )> {
        match &self.tls {
            None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                Ok((client, drive(connection)))
            }
            Some(tls) => {
                let (client, connection) = self
                    .config
                    .connect(tokio_postgres_rustls::MakeRustlsConnect::new(
                        rustls::ClientConfig::clone(tls),
                    ))
                    .await?;
                Ok((client, drive(connection)))
            }
        }
    }
}

/// Runs a connection on its own task, passing on its notifications.
fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
) -> tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    if tx.send(n).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!(%error, "the shared store's connection ended");
                    return;
                }
                None => return,
            }
        }
    });
    rx
}

/// Connects to the shared store, creating or migrating its schema.
pub fn open(options: PgOptions, node: &str) -> Result<(PgWriter, PgReader)> {
    let mut client = options.connect()?;
    schema::migrate(&mut client)?;
    let chain_id: String = client
        .query_one("SELECT chain_id FROM taskgate.chain WHERE id = 1", &[])?
        .get(0);
    let reader = PgReader::new(options.clone());
    Ok((
        PgWriter::new(client, options, chain_id, node.to_owned()),
        reader,
    ))
}

/// Opens an existing shared store for reading only, for offline tools.
/// Creates nothing and migrates nothing.
pub fn open_read_only(options: PgOptions) -> Result<PgReader> {
    let mut client = options.connect()?;
    let found = schema::version(&mut client)?;
    if found == 0 || found > schema::current_version() {
        return Err(StoreError::Incompatible(format!(
            "the PostgreSQL store has schema version {found}; this build reads 1 to {}",
            schema::current_version()
        )));
    }
    Ok(PgReader::new(options))
}

fn i64_of(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{n} is out of range")))
}

fn hash_of(seq: i64, bytes: Vec<u8>) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("hash of event {seq} is not 32 bytes")))
}

#[cfg(test)]
mod tests;
