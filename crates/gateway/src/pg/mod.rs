//! The PostgreSQL listener (SPEC §2): per-task token login, the gateway's
//! own upstream login, and a proxy that records every statement before it
//! is forwarded.
//!
//! Per connection: startup negotiation ([`handshake`]), SCRAM login
//! ([`login`]), upstream login ([`upstream`]), then the session ([`session`])
//! relays ([`relay`]) until it ends.
//! A fault in one connection ends that connection only.

mod app_name;
mod catalog;
pub mod catalog_watch;
mod handshake;
pub mod in_process;
mod login;
mod own_query;
mod ratelimit;
mod reading;
mod record;
mod relay;
mod session;
pub mod sessions;
mod startup_params;
mod tls;
mod track;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use taskgate_policy::config::Config;
use taskgate_sqlclass::Classifier;
use taskgate_store::{StoreRead, Writer};
use taskgate_wire_pg::encode::backend as enc;
use taskgate_wire_pg::frame::Limits;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use self::ratelimit::LoginLimiter;
use self::sessions::Sessions;

/// Classifications kept in the shared cache.
const CLASSIFIER_CAPACITY: usize = 10_000;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type ClientStream = Box<dyn Io>;

/// Everything the listener's connections share.
pub struct PgContext {
    pub config: Arc<Config>,
    pub reader: Arc<dyn StoreRead>,
    pub writer: Writer,
    pub sessions: Arc<Sessions>,
    /// The fleet this node belongs to, when the store is shared.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    pub classifier: Arc<Classifier>,
    limiter: LoginLimiter,
    connections: Arc<Semaphore>,
    /// The listener's TLS, when a certificate is configured.
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// Its certificate's `tls-server-end-point` binding for SCRAM-PLUS.
    end_point: Option<Vec<u8>>,
    /// TLS to each target configured with `tls`, by connection name.
    upstream_tls: HashMap<String, tls::Upstream>,
    /// Each target's relations and views, shared by its sessions.
    catalogs: catalog::Catalogs,
    /// Whether each target's catalog changes are heard as they commit.
    pub catalog_watches: catalog_watch::Watches,
}

pub use record::Via;
pub use tls::{TlsError, api_config as api_tls_config, client_config as tls_client_config};
pub use track::ResultCaps;

impl PgContext {
    /// Loads the TLS material the config names; a bad certificate stops
    /// the start rather than surfacing at the first client.
    pub fn new(
        config: Arc<Config>,
        reader: Arc<dyn StoreRead>,
        writer: Writer,
        sessions: Arc<Sessions>,
        fleet: Option<Arc<crate::fleet::Fleet>>,
    ) -> Result<Self, TlsError> {
        let (acceptor, end_point) = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => (
                Some(tls::acceptor(cert, key)?),
                tls::listener_end_point(cert)?,
            ),
            _ => (None, None),
        };
        let mut upstream_tls = HashMap::new();
        for connection in config.connections.iter().map(|c| &c.value) {
            if let Some(settings) = &connection.tls {
                if !settings.verify {
                    tracing::warn!(connection = %connection.name, "TLS to this target does not verify its certificate");
                }
                upstream_tls.insert(
                    connection.name.clone(),
                    tls::upstream(settings, &connection.address)?,
                );
            }
        }
        let connections = Arc::new(Semaphore::new(config.server.max_connections));
        Ok(Self {
            config,
            reader,
            writer,
            sessions,
            fleet,
            classifier: Arc::new(Classifier::new(CLASSIFIER_CAPACITY)),
            limiter: LoginLimiter::default(),
            connections,
            acceptor,
            end_point,
            upstream_tls,
            catalogs: catalog::Catalogs::default(),
            catalog_watches: catalog_watch::Watches::default(),
        })
    }

    fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.config.server.max_message_bytes,
        }
    }
}

/// Accepts connections until `shutdown` changes.
pub async fn serve(
    ctx: Arc<PgContext>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    catalog_watch::spawn_all(&ctx, &shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ctx = Arc::clone(&ctx);
                    tokio::spawn(async move { serve_connection(ctx, stream, peer).await });
                }
                Err(error) => {
                    // Out of file descriptors, say: back off, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => {
                ctx.sessions.close_all(sessions::CloseReason::ShuttingDown);
                return;
            }
        }
    }
}

async fn fatal(client: &mut ClientStream, code: &str, message: &str) {
    let _ = client
        .write_all(&enc::error("FATAL", code, message, None))
        .await;
    let _ = client.shutdown().await;
}

async fn serve_connection(ctx: Arc<PgContext>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut client: ClientStream = Box::new(stream);
    let Ok(permit) = Arc::clone(&ctx.connections).try_acquire_owned() else {
        fatal(
            &mut client,
            "53300",
            &format!(
                "too many connections to the gateway (limit {})",
                ctx.config.server.max_connections
            ),
        )
        .await;
        return;
    };
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut tls = false;
    let started = tokio::time::timeout(ctx.config.server.startup_timeout.0, async {
        let startup = handshake::read_startup(&ctx, &mut client, &mut buf, &mut tls).await?;
        handshake::negotiate(&ctx, &mut client, &mut buf, peer, startup, tls).await
    })
    .await;
    match started {
        Err(_) => fatal(&mut client, "08P01", "startup did not finish in time").await,
        Ok(None) => {}
        Ok(Some(session)) => session.run(client, buf).await,
    }
    drop(permit);
}
