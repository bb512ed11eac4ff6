//! From TCP accept to a logged-in client: the startup packet (with TLS,
//! GSSENC and cancel requests), the login checks, then the session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use taskgate_wire_pg::startup::{self, Startup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::session::Session;
use super::{ClientStream, PgContext, fatal, login, record, relay};

/// The Terminate message: type `X`, length 4.
const TERMINATE: &[u8] = b"X\0\0\0\x04";

/// Reads the startup packet, switching to TLS when asked and able, and
/// serving cancel requests. `None` when the connection ends here.
pub(super) async fn read_startup(
    ctx: &PgContext,
    client: &mut ClientStream,
    buf: &mut BytesMut,
    tls: &mut bool,
) -> Option<Startup> {
    loop {
        // A client that connects and ends at once sends Terminate without a
        // startup packet (drivers' "end" before "connect" finished):
        // PostgreSQL closes without a word, and so does the gateway.
        if buf.starts_with(TERMINATE) {
            return None;
        }
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
                if let Some(target) = ctx.sessions.cancel(process_id, &secret_key) {
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
pub(super) async fn negotiate(
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
    if let Some(limited) = ctx.limiter.check(peer.ip(), &task_id, Instant::now()) {
        let message = format!(
            "too many failed logins for this task from {}; try again in {} s",
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
    if task_id.is_empty() {
        fatal(
            client,
            "28000",
            "no task id: connect with user=<task id> and the task's token as password",
        )
        .await;
        return None;
    }
    let binding = match (&ctx.end_point, tls) {
        (Some(end_point), true) => taskgate_wire_pg::scram::Binding::EndPoint(end_point),
        _ => taskgate_wire_pg::scram::Binding::None,
    };
    let login = match login::authenticate(
        Arc::clone(&ctx.reader),
        client,
        buf,
        &task_id,
        &database,
        binding,
    )
    .await
    {
        Ok(login) => login,
        Err(refusal) => {
            ctx.limiter.failed(peer.ip(), &task_id, Instant::now());
            tracing::info!(client = %peer, task = ?task_id, reason = ?refusal.message, "login refused");
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
    Session::open(ctx, client, login, &startup, peer, tls, record::Via::Wire).await
}
