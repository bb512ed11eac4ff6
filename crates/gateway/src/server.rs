//! Starting and stopping the gateway: store, writer, expiry, API.

use std::net::SocketAddr;
use std::sync::Arc;

use taskgate_policy::config::Config;
use taskgate_store::StoreError;
use taskgate_store::checkpoints::{CheckpointDir, Checkpointing, load_or_create_key};
use taskgate_store::index::AuditIndex;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::api::{self, AppState, Inner};
use crate::identity::dev::DevProviderError;
use crate::identity::oidc::OidcError;
use crate::identity::{Authenticator, DevProvider, IdentityProvider, OidcProvider};
use crate::metrics::Metrics;
use crate::pg::sessions::Sessions;
use crate::pg::{self, PgContext};
use crate::storage::{self, Storage};
use crate::{checkpoints, expiry, fleet, indexer};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Identity(#[from] DevProviderError),
    #[error(transparent)]
    Oidc(#[from] OidcError),
    #[error(transparent)]
    Sink(#[from] crate::sinks::SinkError),
    #[error("cannot open the store at {path}: {error}")]
    Store { path: String, error: StoreError },
    #[error("audit checkpoints ({path}): {error}")]
    Checkpoints { path: String, error: StoreError },
    #[error("cannot expire overdue tasks at start: {0}")]
    Expiry(#[from] taskgate_store::OpError),
    #[error("PostgreSQL listener TLS: {0}")]
    Tls(#[from] pg::TlsError),
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// A running gateway; [`Gateway::stop`] shuts it down cleanly.
pub struct Gateway {
    api_addr: SocketAddr,
    api_url: String,
    postgres_addr: SocketAddr,
    postgres: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    expiry: JoinHandle<()>,
    indexer: JoinHandle<()>,
    checkpointer: JoinHandle<()>,
    sinks: Vec<JoinHandle<()>>,
    /// In a fleet: the connection that listens and holds the leases.
    coordinator: Option<JoinHandle<()>>,
    writer_thread: taskgate_store::WriterThread,
}

fn providers(config: &Config) -> Result<Vec<Box<dyn IdentityProvider>>, GatewayError> {
    let mut providers: Vec<Box<dyn IdentityProvider>> = Vec::new();
    if !config.identity.dev.is_empty() {
        let dev = DevProvider::from_config(config.identity.dev.iter().map(|d| &d.value))?;
        let subjects: Vec<&str> = dev.subjects().collect();
        tracing::warn!(
            subjects = ?subjects,
            "the dev identity provider is enabled: static tokens from the config, for local use and tests only, never production"
        );
        providers.push(Box::new(dev));
    }
    for issuer in &config.identity.oidc {
        providers.push(Box::new(OidcProvider::from_config(
            &issuer.value,
            config.mcp.resource.as_deref(),
        )?));
        tracing::info!(issuer = %issuer.value.issuer, kind = %issuer.value.kind, "OIDC issuer configured");
    }
    Ok(providers)
}

impl Gateway {
    /// Opens the store, expires what passed its window while the gateway
    /// was down, and starts serving the API.
    pub async fn start(config: Config) -> Result<Gateway, GatewayError> {
        let auth = Authenticator::new(providers(&config)?);
        let node = config
            .server
            .node
            .clone()
            .unwrap_or_else(crate::fleet::default_node_name);
        let audit = &config.audit;
        let key =
            load_or_create_key(&audit.signing_key).map_err(|error| GatewayError::Checkpoints {
                path: audit.signing_key.display().to_string(),
                error,
            })?;
        let public_key = key.public_key();
        let dir = CheckpointDir::create(&audit.checkpoint_dir).map_err(|error| {
            GatewayError::Checkpoints {
                path: audit.checkpoint_dir.display().to_string(),
                error,
            }
        })?;
        // A shared store is on another machine; the mirror beside
        // store.path is derived data and protects nothing.
        let warnings: Vec<String> = match config.store.url {
            Some(_) => Vec::new(),
            None => {
                crate::checkpoints::same_disk_warning(&audit.checkpoint_dir, &config.store.path)
                    .into_iter()
                    .collect()
            }
        };
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        let checkpointing = Checkpointing {
            key,
            every: audit.checkpoint_every,
            dir: Some(dir),
        };
        let Storage {
            writer,
            writer_thread,
            reader,
            sinks: sink_state,
            log_file,
            mirror,
            fleet,
            console,
            describe: store_label,
        } = storage::open(&config, &node, checkpointing).await?;
        let metrics = Arc::new(Metrics::new(writer.stats()));
        let caught_up = expiry::expire_due(&writer, Some(&metrics), None).await?;
        if caught_up > 0 {
            tracing::info!(
                tasks = caught_up,
                "expired tasks whose window passed while the gateway was down"
            );
        }
        let index = AuditIndex::open(&log_file).map_err(|error| GatewayError::Store {
            path: AuditIndex::path_for(&log_file).display().to_string(),
            error,
        })?;
        let index = Arc::new(index);
        let deadlines = Arc::new(Notify::new());
        let sessions = Arc::new(Sessions::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let lease = |name: &str| fleet.as_ref().map(|fleet| fleet.lease(name));
        let expiry = tokio::spawn(expiry::run(
            Arc::clone(&reader),
            writer.clone(),
            Arc::clone(&metrics),
            Arc::clone(&sessions),
            Arc::clone(&deadlines),
            lease(fleet::EXPIRY_LEASE),
            shutdown_rx.clone(),
        ));
        let indexer = tokio::spawn(indexer::run(
            Arc::clone(&index),
            mirror.clone(),
            shutdown_rx.clone(),
        ));
        let sink_configs: Vec<_> = config.sinks.iter().map(|s| s.value.clone()).collect();
        let sinks = crate::sinks::start(
            &sink_configs,
            Arc::clone(&sink_state),
            Arc::clone(&reader),
            Arc::clone(&metrics),
            |name| lease(&fleet::sink_lease(name)),
            shutdown_rx.clone(),
        )?;
        let checkpointer = tokio::spawn(checkpoints::run(
            writer.clone(),
            config.audit.checkpoint_interval.0,
            lease(fleet::CHECKPOINT_LEASE),
            shutdown_rx.clone(),
        ));
        let coordinator = fleet.as_ref().map(|fleet| {
            let mut wanted = vec![
                fleet::EXPIRY_LEASE.to_owned(),
                fleet::CHECKPOINT_LEASE.to_owned(),
            ];
            wanted.extend(sink_configs.iter().map(|s| fleet::sink_lease(&s.name)));
            tokio::spawn(Arc::clone(fleet).run(
                wanted,
                fleet::Wakes {
                    sessions: Arc::clone(&sessions),
                    writer: writer.clone(),
                    reader: Arc::clone(&reader),
                    deadlines: Arc::clone(&deadlines),
                },
                shutdown_rx.clone(),
            ))
        });
        let api_listen = config.server.api_listen;
        let listener = TcpListener::bind(api_listen)
            .await
            .map_err(|error| GatewayError::Bind {
                addr: api_listen,
                error,
            })?;
        let api_addr = listener.local_addr().map_err(|error| GatewayError::Bind {
            addr: api_listen,
            error,
        })?;
        let api_tls = match (&config.server.api_tls_cert, &config.server.api_tls_key) {
            (Some(cert), Some(key)) => Some(pg::api_tls_config(cert, key)?),
            _ => None,
        };
        let config = Arc::new(config);
        let pg_listen = config.server.postgres_listen;
        let pg_listener =
            TcpListener::bind(pg_listen)
                .await
                .map_err(|error| GatewayError::Bind {
                    addr: pg_listen,
                    error,
                })?;
        let postgres_addr = pg_listener
            .local_addr()
            .map_err(|error| GatewayError::Bind {
                addr: pg_listen,
                error,
            })?;
        let pg_context = Arc::new(PgContext::new(
            Arc::clone(&config),
            Arc::clone(&reader),
            writer.clone(),
            Arc::clone(&sessions),
            fleet.clone(),
        )?);
        let postgres = tokio::spawn(pg::serve(
            Arc::clone(&pg_context),
            pg_listener,
            shutdown_rx.clone(),
        ));
        let tls = api_tls.is_some();
        let api_url = format!("{}://{api_addr}", if tls { "https" } else { "http" });
        let mcp_resource = config
            .mcp
            .resource
            .clone()
            .unwrap_or_else(|| format!("{api_url}/mcp"));
        let public_url = config
            .console
            .public_url
            .clone()
            .unwrap_or_else(|| api_url.clone());
        let state = AppState::new(Inner {
            config,
            reader,
            writer,
            index,
            mirror,
            node: node.clone(),
            checkpoint_key: public_key,
            sink_state,
            sessions,
            postgres_addr,
            pg: pg_context,
            mcp_resource,
            public_url,
            console: match console {
                Some(shared) => crate::console::Sessions::Shared(shared),
                None => Default::default(),
            },
            console_verify: Default::default(),
            warnings,
            auth,
            metrics,
            deadlines,
        });
        let router = api::router(state);
        let mut server_shutdown = shutdown_rx;
        let server = tokio::spawn(async move {
            let stopped = async move {
                let _ = server_shutdown.changed().await;
            };
            let served = match api_tls {
                None => {
                    axum::serve(
                        listener,
                        router.into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(stopped)
                    .await
                }
                Some(tls) => serve_https(listener, router, tls, stopped).await,
            };
            if let Err(error) = served {
                tracing::error!(%error, "API server failed");
            }
        });
        tracing::info!(api = %api_addr, postgres = %postgres_addr, store = %store_label, %node, "taskgate is serving");
        Ok(Gateway {
            api_url,
            api_addr,
            postgres_addr,
            postgres,
            shutdown,
            server,
            expiry,
            indexer,
            checkpointer,
            sinks,
            coordinator,
            writer_thread,
        })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The API's URL: `https://` when the listener has TLS.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    pub fn postgres_addr(&self) -> SocketAddr {
        self.postgres_addr
    }

    /// Stops accepting requests, lets the running ones finish, and closes
    /// the store after its last commit.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.postgres.await;
        let _ = self.expiry.await;
        let _ = self.indexer.await;
        let _ = self.checkpointer.await;
        for sink in self.sinks {
            let _ = sink.await;
        }
        if let Some(coordinator) = self.coordinator {
            let _ = coordinator.await;
        }
        // Every writer handle is gone with the server and the scheduler, so
        // the writer thread drains its queue and ends.
        let thread = self.writer_thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        tracing::info!("taskgate stopped");
    }
}

/// The API over HTTPS: each connection's handshake runs on its own, so a
/// client that stalls in it holds up no one else.
async fn serve_https(
    listener: TcpListener,
    router: axum::Router,
    tls: Arc<rustls::ServerConfig>,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        stopped.await;
        stopping.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
}
