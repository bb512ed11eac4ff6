//! The PostgreSQL listener (SPEC §2): per-task token login, the gateway's
//! own upstream login, and a proxy that records every statement before it
//! is forwarded.
//!
//! Per connection: startup negotiation ([`serve_connection`]), SCRAM login
//! ([`login`]), upstream login ([`upstream`]), then the relay ([`relay`]).
//! A fault in one connection ends that connection only.

mod login;
mod ratelimit;
mod record;
mod relay;
pub mod sessions;
mod tls;
mod track;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use taskgate_policy::config::{Config, Connection};
use taskgate_policy::{Access, StatementPolicy, Task};
use taskgate_sqlclass::Classifier;
use taskgate_store::{StoreRead, Writer};
use taskgate_wire_pg::encode::backend as enc;
use taskgate_wire_pg::frame::Limits;
use taskgate_wire_pg::startup::{self, Startup};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

use self::ratelimit::LoginLimiter;
use self::record::SessionRecord;
use self::relay::{ClientHalf, Ending, Shared};
use self::sessions::Sessions;
use crate::secrets;

/// Longest time from TCP accept to a logged-in session; a client that
/// stalls during startup is closed after it.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Classifications kept in the shared cache.
const CLASSIFIER_CAPACITY: usize = 10_000;
/// How long the server half may take to finish after the client left.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Startup parameters a client may pass on to the target. Anything else
/// (notably `options`, which can set any server parameter, and
/// `replication`) is dropped: the gateway decides the session's settings.
const PASSED_PARAMETERS: &[&str] = &[
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
    "search_path",
];

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type ClientStream = Box<dyn Io>;

/// Everything the listener's connections share.
pub struct PgContext {
    pub config: Arc<Config>,
    pub reader: Arc<dyn StoreRead>,
    pub writer: Writer,
    pub sessions: Arc<Sessions>,
    pub classifier: Arc<Classifier>,
    limiter: LoginLimiter,
    connections: Arc<Semaphore>,
    /// The listener's TLS, when a certificate is configured.
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// TLS to each target configured with `tls`, by connection name.
    upstream_tls: HashMap<String, tls::Upstream>,
}

pub use tls::TlsError;

impl PgContext {
    /// Loads the TLS material the config names; a bad certificate stops
    /// the start rather than surfacing at the first client.
    pub fn new(
        config: Arc<Config>,
        reader: Arc<dyn StoreRead>,
        writer: Writer,
        sessions: Arc<Sessions>,
    ) -> Result<Self, TlsError> {
        let acceptor = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
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
            classifier: Arc::new(Classifier::new(CLASSIFIER_CAPACITY)),
            limiter: LoginLimiter::default(),
            connections,
            acceptor,
            upstream_tls,
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
    let started = tokio::time::timeout(STARTUP_TIMEOUT, async {
        let startup = read_startup(&ctx, &mut client, &mut buf, &mut tls).await?;
        negotiate(&ctx, &mut client, &mut buf, peer, startup, tls).await
    })
    .await;
    match started {
        Err(_) => fatal(&mut client, "08P01", "startup did not finish in time").await,
        Ok(None) => {}
        Ok(Some(session)) => session.run(client, buf).await,
    }
    drop(permit);
}

/// Reads the startup packet, switching to TLS when asked and able, and
/// serving cancel requests. `None` when the connection ends here.
async fn read_startup(
    ctx: &PgContext,
    client: &mut ClientStream,
    buf: &mut BytesMut,
    tls: &mut bool,
) -> Option<Startup> {
    loop {
        match startup::decode(buf) {
            Ok(Some(Startup::SslRequest)) if !*tls => {
                if !buf.is_empty() {
                    // Bytes sent in the clear after SSLRequest could be
                    // injected by anyone on the path (CVE-2021-23214).
                    fatal(client, "08P01", "unencrypted data after SSLRequest").await;
                    return None;
                }
                let Some(acceptor) = &ctx.acceptor else {
                    client.write_all(b"N").await.ok()?;
                    continue;
                };
                client.write_all(b"S").await.ok()?;
                let plain = std::mem::replace(client, Box::new(tokio::io::duplex(1).0));
                match acceptor.accept(plain).await {
                    Ok(stream) => {
                        *client = Box::new(stream);
                        *tls = true;
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "TLS handshake with a client failed");
                        return None;
                    }
                }
                continue;
            }
            Ok(Some(Startup::GssEncRequest)) if !*tls => {
                client.write_all(b"N").await.ok()?;
                continue;
            }
            Ok(Some(Startup::Cancel {
                process_id,
                secret_key,
            })) => {
                if let Some(target) = ctx.sessions.cancel_target(process_id, &secret_key) {
                    relay::cancel_running(
                        target.address,
                        Some((target.process_id, target.secret_key)),
                    )
                    .await;
                }
                return None;
            }
            Ok(Some(s @ Startup::Startup { .. })) => {
                if ctx.config.server.require_tls && !*tls {
                    fatal(
                        client,
                        "28000",
                        "this gateway requires TLS: connect with sslmode=require",
                    )
                    .await;
                    return None;
                }
                return Some(s);
            }
            Ok(Some(_)) => {
                fatal(client, "08P01", "a second SSL or GSS request").await;
                return None;
            }
            Ok(None) => {}
            Err(e) => {
                fatal(client, "08P01", &e.to_string()).await;
                return None;
            }
        }
        match client.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Logs the client in and opens the upstream session. `None` when the
/// connection ended here.
async fn negotiate(
    ctx: &Arc<PgContext>,
    client: &mut ClientStream,
    buf: &mut BytesMut,
    peer: SocketAddr,
    startup: Startup,
    tls: bool,
) -> Option<Session> {
    let task_id = startup.param("user").unwrap_or_default().to_owned();
    let database = startup.param("database").unwrap_or(&task_id).to_owned();
    let refuse = |message: String, task_exists: bool| {
        let task = (!task_id.is_empty()).then_some(task_id.as_str());
        record::auth_failed(peer, task, task_exists, Some(&database), &message)
    };
    if let Some(limited) = ctx.limiter.check(peer.ip(), Instant::now()) {
        let message = format!(
            "too many failed logins from {}; try again in {} s",
            peer.ip(),
            limited.wait.as_secs().max(1)
        );
        if limited.first {
            let _ = ctx.writer.append(refuse(message.clone(), false)).await;
        }
        fatal(client, login::INVALID_AUTHORIZATION, &message).await;
        return None;
    }
    if startup
        .param("replication")
        .is_some_and(|v| v != "false" && v != "0")
    {
        fatal(
            client,
            "28000",
            "replication connections are not supported through taskgate",
        )
        .await;
        return None;
    }
    if let Some(message) = client_encoding_refusal(&startup) {
        fatal(client, "22023", &message).await;
        return None;
    }
    if task_id.is_empty() {
        fatal(
            client,
            "28000",
            "no task id: connect with user=<task id> and the task's token as password",
        )
        .await;
        return None;
    }
    let login = match login::authenticate(Arc::clone(&ctx.reader), client, buf, &task_id, &database)
        .await
    {
        Ok(login) => login,
        Err(refusal) => {
            ctx.limiter.failed(peer.ip(), Instant::now());
            tracing::info!(client = %peer, task = %task_id, reason = %refusal.message, "login refused");
            if let Err(e) = ctx
                .writer
                .append(refuse(refusal.message.clone(), refusal.task_exists))
                .await
            {
                tracing::error!(error = %e, "cannot record a failed login");
            }
            fatal(client, refusal.sqlstate, &refusal.message).await;
            return None;
        }
    };
    Session::open(ctx, client, login, &startup, peer, tls).await
}

/// The gateway splits and classifies statements as UTF-8; a client that
/// encodes them otherwise could hide one statement inside another's string
/// (a multibyte character whose second byte is a quote or backslash), so
/// only UTF-8 is accepted.
fn client_encoding_refusal(startup: &Startup) -> Option<String> {
    let asked = startup.param("client_encoding")?;
    let normalized: String = asked
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    (!matches!(normalized.as_str(), "utf8" | "unicode")).then(|| {
        format!("client_encoding {asked:?} is not supported: taskgate reads statements as UTF-8, so connect with client_encoding=UTF8")
    })
}

/// A logged-in session, connected upstream, not yet relaying.
struct Session {
    ctx: Arc<PgContext>,
    task: Task,
    guard: sessions::SessionGuard,
    upstream: upstream::Upstream,
    address: String,
    policy: StatementPolicy,
    record: SessionRecord,
    opened: Instant,
}

fn upstream_params<'a>(
    connection: &'a Connection,
    access: Access,
    startup: &'a Startup,
    application_name: &'a str,
    timeouts: &'a [(String, String)],
) -> Option<Vec<(&'a str, &'a str)>> {
    let credential = connection.credential(access)?;
    let mut params = vec![
        ("user", credential.user.as_str()),
        ("database", connection.database.as_str()),
        ("application_name", application_name),
        // The classifier reads string literals this way; a role or database
        // default must not make the server read them another.
        ("standard_conforming_strings", "on"),
        // The same for the bytes: the gateway reads statements as UTF-8, so
        // the server must too (see `client_encoding_refusal`).
        ("client_encoding", "UTF8"),
    ];
    if access == Access::Read {
        params.push(("default_transaction_read_only", "on"));
    }
    for (k, v) in timeouts {
        params.push((k.as_str(), v.as_str()));
    }
    if let Startup::Startup { params: client, .. } = startup {
        for (k, v) in client {
            if PASSED_PARAMETERS.contains(&k.to_ascii_lowercase().as_str()) {
                params.push((k.as_str(), v.as_str()));
            }
        }
    }
    Some(params)
}

impl Session {
    async fn open(
        ctx: &Arc<PgContext>,
        client: &mut ClientStream,
        login: login::Login,
        startup: &Startup,
        peer: SocketAddr,
        tls: bool,
    ) -> Option<Session> {
        let task = login.task;
        let guard = match ctx
            .sessions
            .register(&task.id, ctx.config.server.max_connections_per_task)
        {
            Ok(guard) => guard,
            Err(e) => {
                fatal(client, "53300", &e.to_string()).await;
                return None;
            }
        };
        // The task was read before the SCRAM exchange, which the client can
        // drag out; a revoke in between found no session to close. Now that
        // the session is registered, read it again.
        let id = task.id.clone();
        let reader = Arc::clone(&ctx.reader);
        let fresh = tokio::task::spawn_blocking(move || reader.task(&id)).await;
        let task = match fresh {
            Ok(Ok(Some(task))) => task,
            _ => {
                fatal(client, "58000", "the gateway cannot read its task store").await;
                return None;
            }
        };
        let database = startup.param("database").unwrap_or(&task.id);
        if let Err(refusal) = login::check_usable(&task, database, taskgate_audit::Timestamp::now())
        {
            fatal(client, refusal.sqlstate, &refusal.message).await;
            return None;
        }
        let Some(connection) = ctx.config.connection(&task.connection) else {
            fatal(
                client,
                "28000",
                &format!("connection {:?} is no longer configured", task.connection),
            )
            .await;
            return None;
        };
        let policy = match StatementPolicy::for_task(&ctx.config, &task) {
            Ok(policy) => policy,
            Err(e) => {
                fatal(
                    client,
                    "58000",
                    &format!("the statement rules cannot be compiled: {e}"),
                )
                .await;
                return None;
            }
        };
        let client_app = startup.param("application_name").unwrap_or_default();
        let application_name = if client_app.is_empty() {
            format!("taskgate/{}", task.id)
        } else {
            format!("taskgate/{} {client_app}", task.id)
        };
        let timeouts = vec![
            (
                "statement_timeout".to_owned(),
                connection.statement_timeout_ms().to_string(),
            ),
            (
                "lock_timeout".to_owned(),
                connection.lock_timeout_ms().to_string(),
            ),
        ];
        let Some(params) = upstream_params(
            connection,
            task.access,
            startup,
            &application_name,
            &timeouts,
        ) else {
            fatal(
                client,
                "28000",
                &format!(
                    "connection {} has no {} credential",
                    connection.name, task.access
                ),
            )
            .await;
            return None;
        };
        let password = match connection
            .credential(task.access)
            .and_then(|c| c.password_ref())
        {
            None => None,
            Some(reference) => match secrets::resolve(&reference) {
                Ok(secret) => Some(secret),
                Err(e) => {
                    tracing::error!(connection = %connection.name, error = %e, "cannot resolve an upstream password");
                    fatal(
                        client,
                        "58000",
                        &format!(
                            "connection {}: the gateway cannot read its credential",
                            connection.name
                        ),
                    )
                    .await;
                    return None;
                }
            },
        };
        let upstream_tls = ctx.upstream_tls.get(&connection.name);
        let upstream = match upstream::connect(
            &connection.address,
            upstream_tls,
            &params,
            password.as_ref(),
        )
        .await
        {
            Ok(upstream) => upstream,
            Err(e) => {
                tracing::warn!(task = %task.id, connection = %connection.name, error = %e, "upstream login failed");
                fatal(client, "08006", &e.client_message(&connection.name)).await;
                return None;
            }
        };
        let session_id = match crate::token::new_id("ses") {
            Ok(id) => id,
            Err(e) => {
                fatal(client, "58000", &e.to_string()).await;
                return None;
            }
        };
        let record = SessionRecord {
            identity: task.requester.clone(),
            task: task.id.clone(),
            session: session_id,
            connection: task.connection.clone(),
        };
        if let Err(e) = ctx
            .writer
            .append(record.opened(peer, client_app, tls, task.access.as_str()))
            .await
        {
            tracing::error!(error = %e, "cannot record session.opened");
            fatal(
                client,
                "58000",
                "taskgate could not record the session in its audit log",
            )
            .await;
            return None;
        }
        // Only now does the client learn it is in: the server proof, then
        // the target's parameters and the gateway's own cancel key.
        let Ok((pid, key)) = crate::token::cancel_key() else {
            fatal(client, "58000", "no randomness for a cancel key").await;
            return None;
        };
        if let Some((upstream_pid, upstream_key)) = &upstream.key {
            ctx.sessions.set_cancel_key(
                &guard,
                pid,
                key,
                sessions::UpstreamKey {
                    address: connection.address.clone(),
                    process_id: *upstream_pid,
                    secret_key: upstream_key.clone(),
                },
            );
        }
        let mut hello = enc::sasl_final(login.server_final.as_bytes());
        hello.extend(enc::authentication_ok());
        hello.extend_from_slice(&upstream.parameter_status);
        hello.extend(enc::backend_key_data(pid, &key));
        hello.extend(enc::ready_for_query(b'I'));
        if client.write_all(&hello).await.is_err() {
            return None;
        }
        tracing::info!(task = %task.id, session = %record.session, client = %peer, "session opened");
        Some(Session {
            ctx: Arc::clone(ctx),
            address: connection.address.clone(),
            task,
            guard,
            upstream,
            policy,
            record,
            opened: Instant::now(),
        })
    }

    async fn run(self, client: ClientStream, buf: BytesMut) {
        let Session {
            ctx,
            task,
            guard,
            upstream,
            address,
            policy,
            record,
            opened,
        } = self;
        let shared = Arc::new(Shared {
            record,
            writer: ctx.writer.clone(),
            tracker: Default::default(),
            made: Default::default(),
            limits: ctx.limits(),
            committed_through: Default::default(),
        });
        let (client_read, client_write) = tokio::io::split(client);
        let (upstream_read, upstream_write) = tokio::io::split(upstream.stream);
        let (stop_tx, stop_rx) = mpsc::channel(1);
        let mut server = tokio::spawn(relay::server_half(
            Arc::clone(&shared),
            upstream_read,
            upstream.buf,
            client_write,
            guard.closing.clone(),
            task.ends_at,
            stop_rx,
        ));
        let mut half = ClientHalf::new(
            Arc::clone(&shared),
            policy,
            Arc::clone(&ctx.classifier),
            task.ends_at,
            guard.closing.clone(),
        );
        let ending = tokio::select! {
            ending = half.run(client_read, buf, upstream_write) => {
                // Tell the server half why, unless the client simply left:
                // then it ends when the target closes after Terminate.
                if ending != Ending::ClientLeft {
                    let _ = stop_tx.send(ending.clone()).await;
                }
                match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                    Ok(Ok(server_ending)) if ending == Ending::ClientLeft => {
                        if server_ending == Ending::ServerClosed { ending } else { server_ending }
                    }
                    Ok(_) => ending,
                    Err(_) => {
                        server.abort();
                        ending
                    }
                }
            }
            joined = &mut server => joined.unwrap_or_else(|e| Ending::Io(e.to_string())),
        };
        let now = Instant::now();
        let open: Vec<_> = shared.tracker().abandon(now);
        if !open.is_empty() {
            // The cut-off must stop work already running, not just close.
            tokio::spawn(relay::cancel_running(address, upstream.key.clone()));
        }
        let committed = shared
            .committed_through
            .load(std::sync::atomic::Ordering::Acquire);
        // Only commands whose start is in the log get an outcome there.
        for completion in open.iter().filter(|c| c.id <= committed) {
            let _ = ctx
                .writer
                .append_queued(shared.record.completed(completion))
                .await;
        }
        let reason = ending.describe();
        if let Err(e) = ctx
            .writer
            .append(shared.record.closed(&reason, half.commands, now - opened))
            .await
        {
            tracing::error!(error = %e, "cannot record session.closed");
        }
        tracing::info!(task = %task.id, session = %shared.record.session, reason = %reason, "session closed");
        drop(guard);
    }
}
