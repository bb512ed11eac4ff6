//! Reading the trail: search, task stories and verification.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use taskgate_audit::{Story, Timestamp};
use taskgate_store::checkpoints::CheckpointDir;
use taskgate_store::index::AuditIndex;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, Caller};
use super::tasks::load_visible;
use super::views::VerifyView;
use crate::audit_search::AuditSearchParams;

impl AppState {
    /// Runs an index read off the async threads, over every event
    /// journaled before the call.
    pub(crate) async fn index<T: Send + 'static>(
        &self,
        work: impl FnOnce(&AuditIndex) -> taskgate_store::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.writer.flush().await?;
        let index = Arc::clone(&self.index);
        let mirror = self.mirror.clone();
        super::blocking(move || {
            if let Some(mirror) = mirror {
                mirror.catch_up()?;
            }
            work(&index)
        })
        .await
    }
}

/// Search the trail: by table, statement class, identity, kind, task,
/// connection, event type and time window, one page at a time.
#[utoipa::path(
    get, path = "/v1/audit/events", params(AuditSearchParams),
    responses(
        (status = 200, description = "one page of hits, in sequence order; `next_after` continues", body = Object),
        (status = 400, description = "a filter is invalid", body = ErrorBody),
        (status = 403, description = "not an auditor or admin", body = ErrorBody),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<AuditSearchParams>,
) -> Result<Json<Value>, ApiError> {
    if !caller.reads_everything() {
        return Err(ApiError::forbidden(
            "only auditors and admins may search the whole trail; a task's requester reads its story at /v1/audit/tasks/{id}/story",
        ));
    }
    let query = params
        .to_query(Timestamp::now())
        .map_err(ApiError::invalid)?;
    let page = state.index(move |index| index.search(&query)).await?;
    Ok(Json(
        serde_json::to_value(page).map_err(ApiError::internal)?,
    ))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StoryParams {
    /// `json` (the default: the story as data, with its text) or `text`.
    pub format: Option<String>,
}

/// A task's whole record, told in order.
#[utoipa::path(
    get, path = "/v1/audit/tasks/{id}/story", params(("id" = String, Path, description = "task id"), StoryParams),
    responses(
        (status = 200, description = "the story as JSON (with `text`), or as text with format=text", body = Object),
        (status = 403, description = "not the task's requester, approver, an auditor or admin", body = ErrorBody),
        (status = 404, description = "no such task", body = ErrorBody),
    )
)]
pub async fn story(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<StoryParams>,
) -> Result<Response, ApiError> {
    let as_text = match params.format.as_deref() {
        None | Some("json") => false,
        Some("text") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "unknown format {other:?}: use json or text"
            )));
        }
    };
    let task = load_visible(&state, &caller, id).await?;
    let task_id = task.id.clone();
    let events = state
        .index(move |index| index.task_events(&task_id))
        .await?;
    let story = Story::from_events(&task.id, events);
    let text = story.render();
    if as_text {
        return Ok(text.into_response());
    }
    let mut value = serde_json::to_value(&story).map_err(ApiError::internal)?;
    value["text"] = json!(text);
    Ok(Json(value).into_response())
}

/// Verify the whole chain and report the first bad record.
#[utoipa::path(
    get, path = "/v1/audit/verify",
    responses(
        (status = 200, description = "verification report", body = VerifyView),
        (status = 403, description = "not an auditor or admin", body = ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<VerifyView>, ApiError> {
    if !caller.reads_everything() {
        return Err(ApiError::forbidden(
            "only auditors and admins may verify the whole trail",
        ));
    }
    state.writer.flush().await?;
    let key = state.checkpoint_key;
    let dir = state.config.audit.checkpoint_dir.clone();
    let same_disk = crate::checkpoints::on_store_disk(&dir, &state.config.store.path);
    let report = state
        .read(move |r| {
            let external = CheckpointDir::read_all(&dir)?;
            r.verify_chain(Some(key), &external)
        })
        .await?;
    let index = state
        .index(|index| {
            index.catch_up()?;
            index.check()
        })
        .await?;
    Ok(Json(
        VerifyView::from(report)
            .with_index(index)
            .with_checkpoint_disk(same_disk),
    ))
}
