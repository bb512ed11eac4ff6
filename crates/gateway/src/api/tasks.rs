//! Requesting, listing, ending and revoking tasks.

use crate::pg::sessions::CloseReason;
use std::net::SocketAddr;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use taskgate_audit::Timestamp;
use taskgate_policy::{
    Access, GrantDecision, Review, ReviewState, Task, TaskRequest, TaskState, evaluate_request,
    parse_duration, validate_task_name,
};
use taskgate_store::{ReviewQuery, TaskQuery};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Caller, checked_text};
use super::views::{CommentRequest, CreateTaskRequest, CreatedTask, TaskListQuery, TaskView};
use crate::token;

/// Tasks listed when the caller names no limit.
const DEFAULT_LIST_LIMIT: usize = 100;

/// `postgres://TASK:TOKEN@HOST:PORT/CONNECTION` for the gateway's listener.
fn connection_string(listen: SocketAddr, task: &str, token: &str, connection: &str) -> String {
    let host = if listen.ip().is_unspecified() {
        "localhost".to_owned()
    } else if listen.is_ipv6() {
        format!("[{}]", listen.ip())
    } else {
        listen.ip().to_string()
    };
    format!(
        "postgres://{task}:{token}@{host}:{}/{connection}",
        listen.port()
    )
}

/// Whether the caller may see a task: its requester, its approvers, and
/// those who read the whole trail.
fn visible(caller: &Caller, task: &Task) -> bool {
    caller.reads_everything()
        || caller.identity.same_principal(&task.requester)
        || task.may_decide(&caller.identity)
}

async fn pending_review(state: &AppState, task: &Task) -> Result<Option<String>, ApiError> {
    if task.state != TaskState::Pending {
        return Ok(None);
    }
    let query = ReviewQuery {
        state: Some(ReviewState::Pending),
        task: Some(task.id.clone()),
    };
    let reviews = state.read(move |r| r.reviews(&query)).await?;
    Ok(reviews.into_iter().next().map(|r| r.id))
}

/// Request a task. The token is in this answer and nowhere else, ever.
#[utoipa::path(
    post, path = "/v1/tasks", request_body = CreateTaskRequest,
    responses(
        (status = 201, description = "created: active, or pending approval", body = CreatedTask),
        (status = 400, description = "invalid request", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "no policy allows it", body = ErrorBody),
    )
)]
pub async fn create_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTaskRequest>,
) -> Result<(StatusCode, Json<CreatedTask>), ApiError> {
    validate_task_name(&body.name)?;
    let access: Access = body.access.parse().map_err(ApiError::invalid)?;
    let window = parse_duration(&body.window).map_err(ApiError::invalid)?;
    let reason = checked_text("reason", body.reason)?;
    let reference = checked_text("ref", body.reference)?;
    let request = TaskRequest {
        name: body.name.clone(),
        connection: body.connection.clone(),
        access,
        window,
    };
    let decision = evaluate_request(&state.config, &caller.identity, &request);
    let now = Timestamp::now();
    let (approvers, decide_by) = match &decision {
        GrantDecision::Refused(reason) => {
            tracing::info!(subject = ?caller.identity.subject, reason = ?reason, "task request refused");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "policy_refused",
                reason.clone(),
            ));
        }
        GrantDecision::Granted { approvers } => {
            (approvers.iter().map(ToString::to_string).collect(), None)
        }
        GrantDecision::NeedsApproval { approvers, timeout } => (
            approvers.iter().map(ToString::to_string).collect(),
            Some(now.plus(*timeout)),
        ),
    };
    let granted = matches!(decision, GrantDecision::Granted { .. });
    let task = Task {
        id: token::new_id("tsk").map_err(ApiError::internal)?,
        name: body.name,
        reason,
        reference,
        connection: body.connection,
        access,
        window_secs: window.as_secs().max(1),
        requester: caller.identity.clone(),
        state: if granted {
            TaskState::Active
        } else {
            TaskState::Pending
        },
        requested_at: now,
        decide_by,
        starts_at: granted.then_some(now),
        ends_at: granted.then(|| now.plus(window)),
        approvers,
        approval: None,
        closing: None,
    };
    let review = if granted {
        None
    } else {
        let id = token::new_id("rev").map_err(ApiError::internal)?;
        Some(Review::for_grant(id, &task))
    };
    let review_id = review.as_ref().map(|r| r.id.clone());
    let secret = token::new_token().map_err(ApiError::internal)?;
    let secrets = token::secrets_for(&secret).map_err(ApiError::internal)?;
    let task = state.writer.create_task(task, secrets, review).await?;
    state.deadlines.notify_one();
    state.metrics.task_entered(task.state.as_str());
    tracing::info!(task = %task.id, name = ?task.name, subject = ?task.requester.subject,
        status = %task.state, "task requested");
    let connection_string = connection_string(
        state.postgres_addr,
        &task.id,
        secret.expose(),
        &task.connection,
    );
    Ok((
        StatusCode::CREATED,
        Json(CreatedTask {
            task: TaskView::new(&task, review_id),
            token: secret.expose().to_owned(),
            connection_string,
        }),
    ))
}

/// List tasks the caller may see, newest first.
#[utoipa::path(
    get, path = "/v1/tasks", params(TaskListQuery),
    responses(
        (status = 200, description = "tasks", body = Vec<TaskView>),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
    )
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<TaskListQuery>,
) -> Result<Json<Vec<TaskView>>, ApiError> {
    let status = query
        .status
        .as_deref()
        .map(str::parse::<TaskState>)
        .transpose()
        .map_err(ApiError::invalid)?;
    let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    // Who may see a task depends on its approvers, which the store does not
    // index; only callers who see everything can have the store cut the list.
    let store_query = TaskQuery {
        state: status,
        requester: query.identity,
        connection: query.connection,
        limit: caller.reads_everything().then_some(limit),
    };
    let tasks = state.read(move |r| r.tasks(&store_query)).await?;
    let views = tasks
        .iter()
        .filter(|t| visible(&caller, t))
        .take(limit)
        .map(|t| TaskView::new(t, None))
        .collect();
    Ok(Json(views))
}

pub(crate) async fn load_visible(
    state: &AppState,
    caller: &Caller,
    id: String,
) -> Result<Task, ApiError> {
    let shown = id.clone();
    let task = state
        .read(move |r| r.task(&id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task {shown} not found")))?;
    if !visible(caller, &task) {
        return Err(ApiError::forbidden(format!(
            "{} may not see task {shown}",
            caller.identity.subject
        )));
    }
    Ok(task)
}

/// Counts, logs and answers a task that has just changed state.
fn transitioned(state: &AppState, caller: &Caller, task: &Task) -> Json<TaskView> {
    state.metrics.task_entered(task.state.as_str());
    tracing::info!(task = %task.id, by = ?caller.identity.subject, status = %task.state, "task closed");
    Json(TaskView::new(task, None))
}

/// Show one task.
#[utoipa::path(
    get, path = "/v1/tasks/{id}", params(("id" = String, Path, description = "task id")),
    responses(
        (status = 200, description = "the task", body = TaskView),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not the caller's to see", body = ErrorBody),
        (status = 404, description = "no such task", body = ErrorBody),
    )
)]
pub async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let task = load_visible(&state, &caller, id).await?;
    let review = pending_review(&state, &task).await?;
    Ok(Json(TaskView::new(&task, review)))
}

/// The requester ends its own task now.
#[utoipa::path(
    post, path = "/v1/tasks/{id}/end", params(("id" = String, Path, description = "task id")),
    responses(
        (status = 200, description = "ended", body = TaskView),
        (status = 403, description = "not the requester", body = ErrorBody),
        (status = 404, description = "no such task", body = ErrorBody),
        (status = 409, description = "the task is not active", body = ErrorBody),
    )
)]
pub async fn end_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    load_visible(&state, &caller, id.clone()).await?;
    let task = state.writer.end_task(&id, caller.actor()).await?;
    state.sessions.close_task(&task.id, CloseReason::Ended);
    Ok(transitioned(&state, &caller, &task))
}

/// An approver of the task, or an admin, cuts it now.
#[utoipa::path(
    post, path = "/v1/tasks/{id}/revoke", params(("id" = String, Path, description = "task id")),
    request_body(content = CommentRequest, description = "optional"),
    responses(
        (status = 200, description = "revoked", body = TaskView),
        (status = 403, description = "neither an approver of the task nor an admin", body = ErrorBody),
        (status = 404, description = "no such task", body = ErrorBody),
        (status = 409, description = "the task is not active", body = ErrorBody),
    )
)]
pub async fn revoke_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CommentRequest>,
) -> Result<Json<TaskView>, ApiError> {
    load_visible(&state, &caller, id.clone()).await?;
    let comment = checked_text("comment", body.comment)?;
    let task = state
        .writer
        .revoke_task(&id, caller.actor(), comment)
        .await?;
    state.sessions.close_task(&task.id, CloseReason::Revoked);
    state.metrics.task_entered(task.state.as_str());
    tracing::info!(task = %task.id, by = ?caller.identity.subject, "task revoked");
    Ok(Json(TaskView::new(&task, None)))
}
