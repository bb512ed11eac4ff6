//! A logged-in session: the upstream login with the grant's credential,
//! the hello the client gets, then the relay until the session ends, with
//! its `session.opened` and `session.closed` events.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use taskgate_policy::config::Connection;
use taskgate_policy::{Access, StatementPolicy, Task};
use taskgate_wire_pg::encode::backend as enc;
use taskgate_wire_pg::startup::Startup;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::reading::Reading;
use super::record::{SessionRecord, Via};
use super::relay::{self, ClientHalf, Ending, Holds, Shared};
use super::{ClientStream, PgContext, catalog, fatal, login, sessions, startup_params, upstream};
use crate::secrets;

/// How long the server half may take to finish after the client left.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// A logged-in session, connected upstream, not yet relaying.
pub(super) struct Session {
    ctx: Arc<PgContext>,
    task: Task,
    guard: sessions::SessionGuard,
    /// The session's place in the fleet-wide count, given back on drop.
    _seat: Option<crate::fleet::Seat>,
    upstream: upstream::Upstream,
    address: String,
    policy: StatementPolicy,
    record: SessionRecord,
    opened: Instant,
    catalog: catalog::Access,
    relations: Arc<catalog::Relations>,
    /// How the server reads the session's text at login.
    reading: Reading,
    /// The process id the client was given (the gateway's, not the
    /// server's).
    client_pid: u32,
}

/// The startup parameters the gateway logs in upstream with: its own, then
/// the client's `settings` as `startup_params` let them through.
fn upstream_params<'a>(
    connection: &'a Connection,
    access: Access,
    application_name: &'a str,
    settings: &'a [(String, String)],
) -> Option<Vec<(&'a str, &'a str)>> {
    let credential = connection.credential(access)?;
    let mut params = vec![
        ("user", credential.user.as_str()),
        ("database", connection.database.as_str()),
        ("application_name", application_name),
    ];
    // Unless the client asked for others (`startup_params` let through
    // only what the gateway can read), a role or database default must
    // not pick how the server reads text: the gateway follows its reports,
    // but an encoding it cannot read would end the session at once.
    for (name, default) in [
        ("standard_conforming_strings", "on"),
        ("client_encoding", "UTF8"),
    ] {
        if !settings.iter().any(|(k, _)| k == name) {
            params.push((name, default));
        }
    }
    let read_only_asked = settings
        .iter()
        .any(|(k, _)| k == "default_transaction_read_only");
    if access == Access::Read && !read_only_asked {
        params.push(("default_transaction_read_only", "on"));
    }
    for (k, v) in settings {
        params.push((k.as_str(), v.as_str()));
    }
    Some(params)
}

impl Session {
    pub(super) async fn open(
        ctx: &Arc<PgContext>,
        client: &mut ClientStream,
        login: login::Login,
        startup: &Startup,
        peer: SocketAddr,
        tls: bool,
        via: Via,
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
        let session_id = match crate::token::new_id("ses") {
            Ok(id) => id,
            Err(e) => {
                fatal(client, "58000", &e.to_string()).await;
                return None;
            }
        };
        // In a fleet, the task's limit counts its sessions on every node.
        let seat = match &ctx.fleet {
            None => None,
            Some(fleet) => match fleet
                .seat(
                    &session_id,
                    &task.id,
                    ctx.config.server.max_connections_per_task,
                )
                .await
            {
                Ok(seat) => Some(seat),
                Err(e) => {
                    let code = match e {
                        crate::fleet::SeatError::Full { .. } => "53300",
                        crate::fleet::SeatError::Unreachable => "58000",
                    };
                    fatal(client, code, &e.to_string()).await;
                    return None;
                }
            },
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
        let client_app = startup.setting("application_name").unwrap_or_default();
        let application_name = super::app_name::tagged(client_app, &task.id);
        let ceilings = [
            ("statement_timeout", connection.statement_timeout_ms()),
            ("lock_timeout", connection.lock_timeout_ms()),
        ];
        let client_params = match startup {
            Startup::Startup { params, .. } => params.clone(),
            _ => Vec::new(),
        };
        let settings = match startup_params::settings(&client_params, &ceilings, task.access) {
            Ok(settings) => settings,
            Err(startup_params::Refused(message)) => {
                fatal(client, "22023", &format!("startup parameter {message}")).await;
                return None;
            }
        };
        let Some(params) = upstream_params(connection, task.access, &application_name, &settings)
        else {
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
        let timeout = connection
            .connect_timeout
            .map_or(upstream::UPSTREAM_CONNECT_TIMEOUT, |t| t.0);
        let catalog = catalog::Access::new(
            &connection.name,
            &connection.address,
            &params,
            password.clone(),
            timeout,
        );
        let upstream = match upstream::connect(
            &connection.address,
            upstream_tls,
            &params,
            password.as_ref(),
            timeout,
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
        let relations = match catalog.relations(ctx, false).await {
            Ok(relations) => relations,
            Err(e) => {
                tracing::warn!(task = %task.id, connection = %connection.name, error = %e, "cannot read the target's catalog");
                let (code, message) = match &e {
                    catalog::CatalogError::Login(e) => {
                        ("08006", e.client_message(&connection.name))
                    }
                    catalog::CatalogError::Query(_) => (
                        "58000",
                        format!(
                            "connection {}: the gateway could not read the database's catalog (its views decide which tables a statement touches); the gateway's log has details",
                            connection.name
                        ),
                    ),
                };
                fatal(client, code, &message).await;
                return None;
            }
        };
        let record = SessionRecord {
            identity: task.requester.clone(),
            task: task.id.clone(),
            session: session_id,
            connection: task.connection.clone(),
            via,
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
        let reading = match Reading::reported(&upstream.parameter_status, &task.id) {
            Ok(reading) => reading,
            Err(why) => {
                fatal(client, "22023", &why).await;
                return None;
            }
        };
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
        let mut hello = match &login.server_final {
            Some(server_final) => enc::sasl_final(server_final.as_bytes()),
            None => Vec::new(),
        };
        hello.extend(enc::authentication_ok());
        hello.extend(super::app_name::shown_reports(
            &upstream.parameter_status,
            &task.id,
        ));
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
            _seat: seat,
            upstream,
            policy,
            record,
            opened: Instant::now(),
            catalog,
            relations,
            reading,
            client_pid: pid,
        })
    }

    pub(super) async fn run(self, client: ClientStream, buf: BytesMut) {
        let Session {
            ctx,
            task,
            guard,
            // Held until the session ends.
            _seat,
            upstream,
            address,
            policy,
            record,
            opened,
            catalog,
            relations,
            reading,
            client_pid,
        } = self;
        let shared = Arc::new(Shared {
            record,
            writer: ctx.writer.clone(),
            tracker: Default::default(),
            made: Default::default(),
            answered: Default::default(),
            limits: ctx.limits(),
            committed_through: Default::default(),
            catalog_changing: Default::default(),
            own_pid: upstream
                .key
                .as_ref()
                .map(|(server, _)| (*server, client_pid)),
            catalog_changed: {
                let ctx = Arc::clone(&ctx);
                let connection = catalog.connection.clone();
                Box::new(move || ctx.catalogs.invalidate(&connection))
            },
        });
        {
            let mut tracker = shared.tracker();
            tracker.reading = reading;
            if let Via::Mcp { caps, .. } = &shared.record.via {
                tracker.caps = Some(*caps);
            }
        }
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
        let holds = Holds {
            reader: Arc::clone(&ctx.reader),
            wait: ctx.config.server.review_hold.0,
        };
        let mut half = ClientHalf::new(
            Arc::clone(&shared),
            policy,
            holds,
            Arc::clone(&ctx.classifier),
            task.ends_at,
            guard.closing.clone(),
            guard.cancels.clone(),
            catalog::SessionCatalog::new(Arc::clone(&ctx), catalog, relations),
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
        let deferred = std::mem::take(&mut shared.tracker().deferred);
        // Only commands whose start is in the log get an outcome there.
        for completion in deferred.iter().chain(&open).filter(|c| c.id <= committed) {
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
        tracing::info!(task = %task.id, session = %shared.record.session, reason = ?reason, "session closed");
        drop(guard);
    }
}
