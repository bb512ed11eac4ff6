//! Opening the store the config names: a node's own SQLite file, or the
//! PostgreSQL store a fleet shares (with this node's read mirror of the
//! shared log beside `store.path`, for search and stories).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use taskgate_policy::config::{Config, StoreDurability};
use taskgate_store::checkpoints::Checkpointing;
use taskgate_store::postgres::{self, PgConsole, PgOptions, PgReader, PgSinks};
use taskgate_store::sinks::{SinkLedger, SinkState};
use taskgate_store::sqlite::mirror::Mirror;
use taskgate_store::sqlite::{self, Durability};
use taskgate_store::{StoreError, StoreRead, Writer, WriterThread};

use crate::fleet::Fleet;
use crate::server::GatewayError;

/// The store a gateway runs on, whichever kind it is.
pub struct Storage {
    pub writer: Writer,
    pub writer_thread: WriterThread,
    pub reader: Arc<dyn StoreRead>,
    pub sinks: Arc<dyn SinkLedger>,
    /// The SQLite file holding the log the search index reads: the store
    /// itself, or this node's mirror of the shared log.
    pub log_file: PathBuf,
    /// In a fleet: the mirror to catch up before the index reads it.
    pub mirror: Option<Arc<SharedLogMirror>>,
    pub fleet: Option<Arc<Fleet>>,
    /// In a fleet: the console's sign-ins, shared by every node.
    pub console: Option<Arc<PgConsole>>,
    /// What the start-up line says the store is (never a password).
    pub describe: String,
}

/// The mirror and the shared store it copies.
pub struct SharedLogMirror {
    mirror: Mirror,
    source: Arc<PgReader>,
    chain: String,
}

impl SharedLogMirror {
    /// Copies what the shared log gained since the last call.
    pub fn catch_up(&self) -> taskgate_store::Result<u64> {
        self.mirror.catch_up(&*self.source, &self.chain)
    }
}

fn failed(path: impl std::fmt::Display) -> impl FnOnce(StoreError) -> GatewayError {
    let path = path.to_string();
    move |error| GatewayError::Store { path, error }
}

/// Opens the store `config` names, with its writer running.
pub async fn open(
    config: &Config,
    node: &str,
    checkpointing: Checkpointing,
) -> Result<Storage, GatewayError> {
    match &config.store.url {
        None => open_local(config, node, checkpointing),
        Some(url) => open_shared(config, url, node, checkpointing).await,
    }
}

fn open_local(
    config: &Config,
    node: &str,
    checkpointing: Checkpointing,
) -> Result<Storage, GatewayError> {
    let path = config.store.path.clone();
    let durability = match config.store.durability() {
        StoreDurability::Full => Durability::Full,
        StoreDurability::Normal => Durability::Normal,
    };
    let (store, reader) = sqlite::open(&path, durability).map_err(failed(path.display()))?;
    let (writer, writer_thread) =
        Writer::start_as(Some(node), store, Some(checkpointing)).map_err(failed(path.display()))?;
    let writer = writer.with_identity_limits(config.server.identity_limits());
    let sinks = SinkState::open(&path).map_err(failed(SinkState::path_for(&path).display()))?;
    Ok(Storage {
        writer,
        writer_thread,
        reader: Arc::new(reader),
        sinks: Arc::new(sinks),
        describe: path.display().to_string(),
        log_file: path,
        mirror: None,
        fleet: None,
        console: None,
    })
}

/// How to reach the shared store: the URL, its password from where the
/// config says, and TLS.
pub fn shared_options(config: &Config, url: &str) -> Result<PgOptions, GatewayError> {
    let invalid = |detail: String| GatewayError::Store {
        path: "store.url".into(),
        error: StoreError::Incompatible(detail),
    };
    let mut pg = tokio_postgres::Config::from_str(url)
        .map_err(|e| invalid(format!("not a PostgreSQL URL: {e}")))?;
    if let Some(reference) = config.store.password_ref() {
        let password = crate::secrets::resolve(&reference)
            .map_err(|e| invalid(format!("the store's password: {e}")))?;
        pg.password(password.expose());
    }
    let tls = match &config.store.tls {
        None => None,
        Some(tls) => Some(
            crate::pg::tls_client_config(tls)
                .map_err(|e| invalid(format!("TLS to the store: {e}")))?,
        ),
    };
    Ok(PgOptions::new(pg, tls))
}

/// The host, port and database of the shared store, for messages.
fn describe(options: &PgOptions) -> String {
    let config = &options.config;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db}")
}

async fn open_shared(
    config: &Config,
    url: &str,
    node: &str,
    checkpointing: Checkpointing,
) -> Result<Storage, GatewayError> {
    let options = shared_options(config, url)?;
    let describe = describe(&options);
    // The blocking client runs a runtime of its own: open it off this one.
    let opening = {
        let (options, node) = (options.clone(), node.to_owned());
        tokio::task::spawn_blocking(move || {
            let (store, reader) = postgres::open(options.clone(), &node)?;
            let chain = reader.chain_id()?;
            let (writer, thread) = Writer::start_shared(store, Some(checkpointing))?;
            Ok::<_, StoreError>((writer, thread, reader, chain))
        })
    };
    let (writer, writer_thread, reader, chain) = opening
        .await
        .map_err(|e| failed(&describe)(StoreError::Corrupt(e.to_string())))?
        .map_err(failed(&describe))?;
    let writer = writer.with_identity_limits(config.server.identity_limits());
    let reader = Arc::new(reader);
    let log_file = Mirror::path_for(&config.store.path);
    let mirror = Arc::new(SharedLogMirror {
        mirror: Mirror::new(&log_file),
        source: Arc::clone(&reader),
        chain,
    });
    // The index opens the mirror's file: it must exist, caught up once.
    let first = Arc::clone(&mirror);
    tokio::task::spawn_blocking(move || first.catch_up())
        .await
        .map_err(|e| failed(log_file.display())(StoreError::Corrupt(e.to_string())))?
        .map_err(failed(log_file.display()))?;
    Ok(Storage {
        writer,
        writer_thread,
        reader,
        sinks: Arc::new(PgSinks::new(options.clone())),
        log_file,
        mirror: Some(mirror),
        console: Some(Arc::new(PgConsole::new(options.clone()))),
        fleet: Some(Fleet::new(options, node)),
        describe,
    })
}
