//! Pending decisions and deciding them.

use axum::Json;
use axum::extract::{Path, State};
use taskgate_policy::{ReviewKind, ReviewState, Task};
use taskgate_store::ReviewQuery;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Caller, checked_text};
use super::views::{CommentRequest, ReviewView};

/// Pending reviews the caller may decide (never its own requests).
#[utoipa::path(
    get, path = "/v1/reviews",
    responses(
        (status = 200, description = "pending reviews", body = Vec<ReviewView>),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
    )
)]
pub async fn list_reviews(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ReviewView>>, ApiError> {
    let pending = state
        .read(|r| {
            let reviews = r.reviews(&ReviewQuery {
                state: Some(ReviewState::Pending),
                task: None,
            })?;
            let mut out: Vec<(taskgate_policy::Review, Task)> = Vec::new();
            for review in reviews {
                if let Some(task) = r.task(&review.task_id)? {
                    out.push((review, task));
                }
            }
            Ok(out)
        })
        .await?;
    let views = pending
        .iter()
        .filter(|(review, task)| match review.kind {
            ReviewKind::Grant => {
                !caller.identity.same_principal(&review.requested_by)
                    && task.may_decide(&caller.identity)
            }
            ReviewKind::Statement { .. } => review.may_decide(&caller.identity),
        })
        .map(|(review, task)| ReviewView::new(review, task))
        .collect();
    Ok(Json(views))
}

async fn decide(
    state: AppState,
    caller: Caller,
    id: String,
    approve: bool,
    comment: Option<String>,
) -> Result<Json<ReviewView>, ApiError> {
    let comment = checked_text("comment", comment)?;
    let (review, task) = state
        .writer
        .decide_review(&id, caller.actor(), approve, comment)
        .await?;
    if review.kind == ReviewKind::Grant {
        state.deadlines.notify_one();
        state.metrics.task_entered(task.state.as_str());
    }
    tracing::info!(review = %review.id, task = %task.id, by = ?caller.identity.subject,
        decision = %review.state, "review decided");
    Ok(Json(ReviewView::new(&review, &task)))
}

/// Approve: the task's window opens now. The requester can never approve itself.
#[utoipa::path(
    post, path = "/v1/reviews/{id}/approve", params(("id" = String, Path, description = "review id")),
    request_body(content = CommentRequest, description = "optional"),
    responses(
        (status = 200, description = "approved", body = ReviewView),
        (status = 403, description = "not an approver, or the requester itself", body = ErrorBody),
        (status = 404, description = "no such review", body = ErrorBody),
        (status = 409, description = "already decided", body = ErrorBody),
    )
)]
pub async fn approve_review(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CommentRequest>,
) -> Result<Json<ReviewView>, ApiError> {
    decide(state, caller, id, true, body.comment).await
}

/// Deny: the task never opens.
#[utoipa::path(
    post, path = "/v1/reviews/{id}/deny", params(("id" = String, Path, description = "review id")),
    request_body(content = CommentRequest, description = "optional"),
    responses(
        (status = 200, description = "denied", body = ReviewView),
        (status = 403, description = "not an approver, or the requester itself", body = ErrorBody),
        (status = 404, description = "no such review", body = ErrorBody),
        (status = 409, description = "already decided", body = ErrorBody),
    )
)]
pub async fn deny_review(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CommentRequest>,
) -> Result<Json<ReviewView>, ApiError> {
    decide(state, caller, id, false, body.comment).await
}
