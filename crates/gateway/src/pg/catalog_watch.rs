//! Catalog changes made around the gateway, heard as they commit.
//!
//! DDL through the gateway makes every session read its target's catalog
//! again (see [`super::catalog::Catalogs::invalidate`]). DDL made around
//! it (a migration tool with a credential of its own, a DBA's console)
//! would otherwise be seen only when the shared read ages out
//! ([`super::catalog::FRESH_FOR`]). `taskgate connection prepare NAME`
//! installs an event trigger on the target that notifies [`CHANNEL`] at
//! the end of every DDL command; the gateway keeps one connection per
//! target listening on it and invalidates that target's catalog on each
//! notification, which PostgreSQL delivers when the DDL commits.
//! `/healthz` reports the targets that lack the trigger.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskgate_policy::config::{Config, Connection};
use taskgate_policy::{Access, Secret};
use tokio::sync::watch;

use super::own_query::{self, QueryError};
use super::{PgContext, tls, upstream};
use crate::secrets;

/// The channel the trigger notifies.
pub const CHANNEL: &str = "taskgate_catalog";
/// The event trigger's name.
pub const TRIGGER: &str = "taskgate_catalog_changed";

/// What `taskgate connection prepare` runs on a target, in one
/// transaction. Creating an event trigger takes a superuser. The function
/// runs as whoever runs the DDL, and `pg_notify` needs no privilege.
pub const PREPARE_SQL: &str = "CREATE SCHEMA IF NOT EXISTS taskgate; \
GRANT USAGE ON SCHEMA taskgate TO PUBLIC; \
CREATE OR REPLACE FUNCTION taskgate.catalog_changed() RETURNS event_trigger \
LANGUAGE plpgsql SET search_path = pg_catalog AS \
$taskgate$ BEGIN PERFORM pg_notify('taskgate_catalog', tg_tag); END $taskgate$; \
DROP EVENT TRIGGER IF EXISTS taskgate_catalog_changed; \
CREATE EVENT TRIGGER taskgate_catalog_changed ON ddl_command_end \
EXECUTE FUNCTION taskgate.catalog_changed(); \
SELECT pg_notify('taskgate_catalog', 'prepared')";

/// Whether the trigger is there and enabled.
const CHECK_SQL: &str = "SELECT count(*)::text FROM pg_catalog.pg_event_trigger \
WHERE evtname = 'taskgate_catalog_changed' AND evtevent = 'ddl_command_end' AND evtenabled <> 'D'";

/// How often a watch asks again whether the trigger is there (a DBA may
/// drop or disable it), which also keeps its connection in use.
const RECHECK_EVERY: Duration = Duration::from_secs(30);
/// Longest wait between attempts to reach a target that cannot be reached.
const MOST_BACKOFF: Duration = Duration::from_secs(30);

/// How one target's catalog is watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WatchState {
    /// Not yet reached since the gateway started.
    Starting,
    /// The trigger is there: DDL made around the gateway is seen as it
    /// commits.
    Watched,
    /// No trigger (`taskgate connection prepare NAME` installs it): DDL
    /// made around the gateway is seen within the catalog's 30 s window.
    NotPrepared,
    /// The gateway cannot reach the target to listen.
    Unreachable,
}

/// The state of one target's watch, with why when it is not watched.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WatchStatus {
    pub connection: String,
    pub state: WatchState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Every target's watch state, for `/healthz`.
#[derive(Default)]
pub struct Watches(Mutex<BTreeMap<String, WatchStatus>>);

impl Watches {
    fn set(&self, connection: &str, state: WatchState, detail: Option<String>) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(
            connection.to_owned(),
            WatchStatus {
                connection: connection.to_owned(),
                state,
                detail,
            },
        );
    }

    fn state_of(&self, connection: &str) -> Option<WatchState> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.get(connection).map(|s| s.state)
    }

    /// Each target's state, by connection name.
    pub fn snapshot(&self) -> Vec<WatchStatus> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.values().cloned().collect()
    }
}

/// Why a target could not be prepared or watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("no connection named {0} in the config")]
    NoConnection(String),
    #[error("connection {connection} has no {access} credential")]
    NoCredential { connection: String, access: Access },
    #[error("connection {connection}: {error}")]
    Secret {
        connection: String,
        error: secrets::SecretError,
    },
    #[error("connection {connection}: {error}")]
    Tls {
        connection: String,
        error: tls::TlsError,
    },
    #[error("connection {connection}: {error}")]
    Login {
        connection: String,
        error: upstream::UpstreamError,
    },
    #[error("connection {connection}: {error}")]
    Query {
        connection: String,
        error: QueryError,
    },
}

/// How the gateway logs in to a target for its own queries.
struct Login {
    user: String,
    database: String,
    password: Option<Secret>,
    timeout: Duration,
}

impl Login {
    /// With the credential of `access`, or (for `None`) the least one the
    /// connection has: listening needs no privilege.
    fn of(connection: &Connection, access: Option<Access>) -> Result<Login, WatchError> {
        let credential = match access {
            Some(access) => connection
                .credential(access)
                .ok_or(WatchError::NoCredential {
                    connection: connection.name.clone(),
                    access,
                })?,
            None => [Access::Read, Access::Write, Access::Admin]
                .into_iter()
                .find_map(|a| connection.credential(a))
                .ok_or(WatchError::NoCredential {
                    connection: connection.name.clone(),
                    access: Access::Read,
                })?,
        };
        let password = match credential.password_ref() {
            None => None,
            Some(reference) => {
                Some(
                    secrets::resolve(&reference).map_err(|error| WatchError::Secret {
                        connection: connection.name.clone(),
                        error,
                    })?,
                )
            }
        };
        Ok(Login {
            user: credential.user.clone(),
            database: connection.database.clone(),
            password,
            timeout: connection
                .connect_timeout
                .map_or(upstream::UPSTREAM_CONNECT_TIMEOUT, |t| t.0),
        })
    }

    async fn connect(
        &self,
        connection: &Connection,
        tls: Option<&tls::Upstream>,
        application_name: &str,
    ) -> Result<upstream::Upstream, WatchError> {
        let params = [
            ("user", self.user.as_str()),
            ("database", self.database.as_str()),
            ("application_name", application_name),
        ];
        upstream::connect(
            &connection.address,
            tls,
            &params,
            self.password.as_ref(),
            self.timeout,
        )
        .await
        .map_err(|error| WatchError::Login {
            connection: connection.name.clone(),
            error,
        })
    }

    async fn query(
        &self,
        connection: &Connection,
        up: &mut upstream::Upstream,
        sql: &str,
    ) -> Result<own_query::Answer, WatchError> {
        let failed = |error| WatchError::Query {
            connection: connection.name.clone(),
            error,
        };
        tokio::time::timeout(self.timeout, own_query::simple_query(up, sql))
            .await
            .map_err(|_| failed(QueryError("timed out".into())))?
            .map_err(failed)
    }
}

/// Whether the check query found the trigger.
fn prepared(answer: &own_query::Answer) -> bool {
    answer
        .results
        .first()
        .and_then(|rows| rows.first())
        .and_then(|row| row.first())
        .is_some_and(|count| count != "0")
}

/// Installs the trigger on a target, logged in with the credential of
/// `access` (creating an event trigger takes a superuser), and checks that
/// it is there.
pub async fn prepare(config: &Config, name: &str, access: Access) -> Result<(), WatchError> {
    let connection = config
        .connection(name)
        .ok_or_else(|| WatchError::NoConnection(name.to_owned()))?;
    let tls = match &connection.tls {
        Some(settings) => Some(
            tls::upstream(settings, &connection.address).map_err(|error| WatchError::Tls {
                connection: name.to_owned(),
                error,
            })?,
        ),
        None => None,
    };
    let login = Login::of(connection, Some(access))?;
    let mut up = login
        .connect(connection, tls.as_ref(), "taskgate/prepare")
        .await?;
    login.query(connection, &mut up, PREPARE_SQL).await?;
    let answer = login.query(connection, &mut up, CHECK_SQL).await?;
    own_query::terminate(&mut up).await;
    if prepared(&answer) {
        Ok(())
    } else {
        Err(WatchError::Query {
            connection: name.to_owned(),
            error: QueryError("the trigger was created but is not enabled".into()),
        })
    }
}

/// Watches every target of the config until shutdown.
pub fn spawn_all(ctx: &Arc<PgContext>, shutdown: &watch::Receiver<bool>) {
    for connection in ctx.config.connections.iter().map(|c| &c.value) {
        ctx.catalog_watches
            .set(&connection.name, WatchState::Starting, None);
        let ctx = Arc::clone(ctx);
        let name = connection.name.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { run(ctx, name, shutdown).await });
    }
}

async fn run(ctx: Arc<PgContext>, name: String, mut shutdown: watch::Receiver<bool>) {
    let Some(connection) = ctx.config.connection(&name).cloned() else {
        return;
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        let failed = tokio::select! {
            listened = listen(&ctx, &connection, &mut backoff) => match listened {
                Err(e) => e,
                Ok(never) => match never {},
            },
            _ = shutdown.changed() => return,
        };
        if ctx.catalog_watches.state_of(&name) != Some(WatchState::Unreachable) {
            tracing::warn!(connection = %name, error = %failed, "cannot watch the target's catalog; DDL made around the gateway is seen within 30 s");
        }
        ctx.catalog_watches
            .set(&name, WatchState::Unreachable, Some(failed.to_string()));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(MOST_BACKOFF);
    }
}

/// Listens on one connection until it fails.
async fn listen(
    ctx: &PgContext,
    connection: &Connection,
    backoff: &mut Duration,
) -> Result<Infallible, WatchError> {
    let name = connection.name.as_str();
    let login = Login::of(connection, None)?;
    let mut up = login
        .connect(
            connection,
            ctx.upstream_tls.get(name),
            "taskgate/catalog-watch",
        )
        .await?;
    let listening = login
        .query(
            connection,
            &mut up,
            &format!("LISTEN {CHANNEL}; {CHECK_SQL}"),
        )
        .await?;
    // Whatever changed while no one listened: every session reads again.
    ctx.catalogs.invalidate(name);
    *backoff = Duration::from_secs(1);
    report(ctx, name, prepared(&listening));
    loop {
        let check = match tokio::time::timeout(RECHECK_EVERY, own_query::next_notification(&mut up))
            .await
        {
            Ok(Ok(n)) if n.channel == CHANNEL => {
                ctx.catalogs.invalidate(name);
                // `prepare` notifies once it is done: say so at once.
                ctx.catalog_watches.state_of(name) != Some(WatchState::Watched)
            }
            Ok(Ok(_)) => false,
            Ok(Err(error)) => {
                return Err(WatchError::Query {
                    connection: name.to_owned(),
                    error,
                });
            }
            Err(_) => true,
        };
        if check {
            let answer = login.query(connection, &mut up, CHECK_SQL).await?;
            if answer.notifications.iter().any(|n| n.channel == CHANNEL) {
                ctx.catalogs.invalidate(name);
            }
            report(ctx, name, prepared(&answer));
        }
    }
}

fn report(ctx: &PgContext, name: &str, prepared: bool) {
    let state = if prepared {
        WatchState::Watched
    } else {
        WatchState::NotPrepared
    };
    if ctx.catalog_watches.state_of(name) != Some(state) {
        match state {
            WatchState::Watched => {
                tracing::info!(connection = %name, "watching the target's catalog")
            }
            _ => {
                tracing::warn!(connection = %name, "the target has no taskgate catalog trigger (taskgate connection prepare {name}); DDL made around the gateway is seen within 30 s")
            }
        }
    }
    ctx.catalog_watches.set(name, state, None);
}
