//! The control plane's HTTP API (SPEC §3).

pub(crate) mod audit;
mod error;
pub(crate) mod extract;
mod ops;
pub(crate) mod reviews;
pub(crate) mod sinks;
pub(crate) mod tasks;
pub(crate) mod views;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use taskgate_policy::config::Config;
use taskgate_store::index::AuditIndex;
use taskgate_store::{StoreRead, Writer};
use tokio::sync::Notify;
use utoipa::OpenApi;

pub use error::ApiError;
pub use views::VerifyView;

use crate::identity::Authenticator;
use crate::metrics::{HttpLabels, Metrics};
use crate::pg::sessions::Sessions;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Arc<Config>,
    pub reader: Arc<dyn StoreRead>,
    pub writer: Writer,
    /// The audit search index, caught up before each search.
    pub index: Arc<AuditIndex>,
    /// In a fleet: this node's mirror of the shared log, which the index
    /// reads; caught up before each search.
    pub mirror: Option<Arc<crate::storage::SharedLogMirror>>,
    /// This gateway's name in events and `/healthz`.
    pub node: String,
    /// The key checkpoints are signed with, to verify them.
    pub checkpoint_key: taskgate_audit::PublicKey,
    /// Export sinks' cursors.
    pub sink_state: Arc<dyn taskgate_store::sinks::SinkLedger>,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    /// Woken when a task gets a new deadline, so the expiry scheduler
    /// re-plans its sleep.
    pub deadlines: Arc<Notify>,
    /// Live data-plane sessions, closed when their task ends.
    pub sessions: Arc<Sessions>,
    /// Where the PostgreSQL listener actually listens, for connection strings.
    pub postgres_addr: std::net::SocketAddr,
    /// The data plane, for the sessions MCP tool calls run statements in.
    pub pg: Arc<crate::pg::PgContext>,
    /// The URL of `/mcp` as agents reach it: the OAuth resource it is.
    pub mcp_resource: String,
    /// The URL browsers reach the gateway at (the console's redirects).
    pub public_url: String,
    /// The web console's sessions and sign-ins in progress.
    pub console: crate::console::Sessions,
    /// The last chain verification run from the console.
    pub console_verify: crate::console::LastVerify,
    /// What the operator should know about how this gateway is set up (a
    /// checkpoint folder on the store's disk), shown by `/healthz`.
    pub warnings: Vec<String>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Runs a store read off the async threads.
    pub async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn StoreRead) -> taskgate_store::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let reader = Arc::clone(&self.reader);
        blocking(move || work(reader.as_ref())).await
    }
}

/// Runs store work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> taskgate_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Taskgate",
        description = "Per-task, time-boxed, recorded access for AI agents."
    ),
    paths(
        tasks::create_task,
        tasks::list_tasks,
        tasks::get_task,
        tasks::end_task,
        tasks::revoke_task,
        reviews::list_reviews,
        reviews::approve_review,
        reviews::deny_review,
        audit::search,
        audit::story,
        audit::verify,
        sinks::sinks,
        sinks::parked,
        sinks::redeliver,
        ops::healthz,
        ops::metrics,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/tasks", post(tasks::create_task).get(tasks::list_tasks))
        .route("/v1/tasks/{id}", get(tasks::get_task))
        .route("/v1/tasks/{id}/end", post(tasks::end_task))
        .route("/v1/tasks/{id}/revoke", post(tasks::revoke_task))
        .route("/v1/reviews", get(reviews::list_reviews))
        .route("/v1/reviews/{id}/approve", post(reviews::approve_review))
        .route("/v1/reviews/{id}/deny", post(reviews::deny_review))
        .route("/v1/audit/events", get(audit::search))
        .route("/v1/audit/tasks/{id}/story", get(audit::story))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/sinks", get(sinks::sinks))
        .route("/v1/sinks/{name}/parked", get(sinks::parked))
        .route("/v1/sinks/{name}/redeliver", post(sinks::redeliver))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .merge(crate::mcp::routes(state.clone()))
        .merge(crate::console::routes())
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Counts and logs every request: method, route, status, time. Never
/// headers or bodies, which may carry tokens.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state
        .metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method: method.clone(),
            route,
            status,
        })
        .inc();
    tracing::info!(
        target: "taskgate::api",
        %method,
        %path,
        status,
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}
