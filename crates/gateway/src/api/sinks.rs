//! The export sinks: where each stands, the events it parked, and sending
//! parked events again once the receiver is fixed.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Caller};

impl AppState {
    /// Runs sink state work off the async threads.
    async fn sink_state<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn taskgate_store::sinks::SinkLedger) -> taskgate_store::Result<T>
        + Send
        + 'static,
    ) -> Result<T, ApiError> {
        let state = Arc::clone(&self.sink_state);
        super::blocking(move || work(&*state)).await
    }

    /// The configured sink called `name`, or 404.
    fn configured_sink(&self, name: &str) -> Result<String, ApiError> {
        self.config
            .sinks
            .iter()
            .find(|s| s.value.name == name)
            .map(|s| s.value.name.clone())
            .ok_or_else(|| ApiError::not_found(format!("no export sink is named {name:?}")))
    }
}

fn may_see_sinks(caller: &Caller) -> Result<(), ApiError> {
    if caller.reads_everything() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only auditors and admins may see the export sinks",
        ))
    }
}

/// Each export sink: its cursor, how far behind the log it is, what it
/// delivered and parked, and its last error.
#[utoipa::path(
    get, path = "/v1/sinks",
    responses(
        (status = 200, description = "one entry per configured sink", body = Object),
        (status = 403, description = "not an auditor or admin", body = ErrorBody),
    )
)]
pub async fn sinks(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    may_see_sinks(&caller)?;
    let head = state.read(|r| r.head_seq()).await?;
    let configured: Vec<(String, String)> = state
        .config
        .sinks
        .iter()
        .map(|s| (s.value.name.clone(), s.value.kind.as_str().to_owned()))
        .collect();
    let entries = state
        .sink_state(move |sink_state| {
            configured
                .into_iter()
                .map(|(name, kind)| {
                    let progress = sink_state.progress(&name)?;
                    Ok(json!({
                        "name": name,
                        "kind": kind,
                        "cursor": progress.cursor,
                        "head": head,
                        "lag": head.saturating_sub(progress.cursor),
                        "delivered": progress.delivered,
                        "parked": progress.parked,
                        "last_delivery": progress.last_delivery,
                        "last_error": progress.last_error,
                        "last_error_at": progress.last_error_at,
                    }))
                })
                .collect::<taskgate_store::Result<Vec<Value>>>()
        })
        .await?;
    Ok(Json(Value::Array(entries)))
}

/// The events a sink refused for good, oldest first, with why and whether
/// each is queued to be sent again.
#[utoipa::path(
    get, path = "/v1/sinks/{name}/parked", params(("name" = String, Path, description = "sink name")),
    responses(
        (status = 200, description = "the sink's parked events", body = Object),
        (status = 403, description = "not an auditor or admin", body = ErrorBody),
        (status = 404, description = "no such sink", body = ErrorBody),
    )
)]
pub async fn parked(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    may_see_sinks(&caller)?;
    let name = state.configured_sink(&name)?;
    let parked = state.sink_state(move |s| s.parked(&name)).await?;
    Ok(Json(json!(parked)))
}

/// Which parked events to send again: all of them unless bounded.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeliverRequest {
    /// The first sequence number to send again.
    pub from: Option<u64>,
    /// The last sequence number to send again.
    pub to: Option<u64>,
}

/// An admin queues a sink's parked events to be sent again, once the
/// receiver takes them: they go before the sink's next page, and leave the
/// parked list once acknowledged.
#[utoipa::path(
    post, path = "/v1/sinks/{name}/redeliver", params(("name" = String, Path, description = "sink name")),
    request_body(content = RedeliverRequest, description = "optional"),
    responses(
        (status = 200, description = "how many parked events were queued", body = Object),
        (status = 400, description = "`from` is past `to`", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such sink", body = ErrorBody),
    )
)]
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RedeliverRequest>,
) -> Result<Json<Value>, ApiError> {
    if !caller.admin {
        return Err(ApiError::forbidden(
            "only admins may send parked events again",
        ));
    }
    let name = state.configured_sink(&name)?;
    let (from, to) = (body.from.unwrap_or(0), body.to.unwrap_or(u64::MAX));
    if from > to {
        return Err(ApiError::invalid(format!(
            "from ({from}) is past to ({to})"
        )));
    }
    let sink = name.clone();
    let queued = state
        .sink_state(move |s| s.requeue(&sink, from, to))
        .await?;
    tracing::info!(sink = %name, queued, by = ?caller.identity.subject, "parked events queued to be sent again");
    Ok(Json(json!({ "sink": name, "queued": queued })))
}
