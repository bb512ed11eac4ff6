//! Liveness, metrics, the OpenAPI document, and the 404 fallback.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use super::{ApiDoc, ApiError, AppState};
use crate::pg::catalog_watch::{WatchState, WatchStatus};

/// Liveness: the process is up and serving, with what an operator should
/// know about how it is set up.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok` when it answers.
    pub status: &'static str,
    /// This gateway's name (`[server] node`, or the host name).
    pub node: String,
    /// Set-up problems that weaken a guarantee (a checkpoint folder on the
    /// store's disk, a target without the catalog trigger); empty when
    /// none.
    pub warnings: Vec<String>,
    /// Per target, whether DDL made around the gateway is heard as it
    /// commits (`watched`) or only within the catalog's 30 s window.
    pub catalogs: Vec<WatchStatus>,
}

#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, description = "alive", body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let catalogs = state.pg.catalog_watches.snapshot();
    let mut warnings = state.warnings.clone();
    warnings.extend(
        catalogs
            .iter()
            .filter(|w| w.state == WatchState::NotPrepared)
            .map(|w| {
                format!(
                    "connection {0} has no catalog trigger (taskgate connection prepare {0}): DDL made around the gateway is seen within 30 s",
                    w.connection
                )
            }),
    );
    Json(Health {
        status: "ok",
        node: state.node.clone(),
        warnings,
        catalogs,
    })
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", security(()), responses((status = 200, description = "metrics", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.metrics.render().map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}
