//! Tasks, filtered by state, identity, connection and time; a task's page
//! is its story as a timeline (request, approvals, sessions, every
//! statement with its class, tables, rows, duration and outcome, holds and
//! denials, the cut), with revoke for those who may, and the same story as
//! text and JSON.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use taskgate_audit::{Entry, StatementVerdict, Story, Timestamp, What};
use taskgate_policy::{TaskState, parse_time_bound};

use super::layout::{self, badge, shown, when};
use super::{Refused, Viewer};
use crate::api::extract::{ApiJson, ApiQuery};
use crate::api::views::{CommentRequest, TaskListQuery, TaskView};
use crate::api::{ApiError, AppState, tasks};

/// Tasks the list fetches before the time filter narrows it.
const LIST_LIMIT: usize = 500;

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    status: Option<String>,
    identity: Option<String>,
    connection: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

fn blank_none(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|s| !s.trim().is_empty()).cloned()
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(filters): Query<Filters>,
) -> Result<Response, Refused> {
    let now = Timestamp::now();
    let bound = |v: &Option<String>, what: &str| -> Result<Option<Timestamp>, Refused> {
        blank_none(v)
            .map(|t| parse_time_bound(&t, now))
            .transpose()
            .map_err(|e| Refused::Api(ApiError::invalid(format!("{what}: {e}"))))
    };
    let (since, until) = (
        bound(&filters.since, "since")?,
        bound(&filters.until, "until")?,
    );
    let query = TaskListQuery {
        status: blank_none(&filters.status),
        identity: blank_none(&filters.identity),
        connection: blank_none(&filters.connection),
        limit: Some(LIST_LIMIT),
    };
    let axum::Json(found) =
        tasks::list_tasks(State(state.clone()), viewer.caller.clone(), ApiQuery(query)).await?;
    let found: Vec<TaskView> = found
        .into_iter()
        .filter(|t| {
            let at = Timestamp::parse(&t.requested_at).ok();
            since.is_none_or(|s| at.is_some_and(|a| a >= s))
                && until.is_none_or(|u| at.is_some_and(|a| a < u))
        })
        .collect();
    let connections: Vec<&str> = state
        .config
        .connections
        .iter()
        .map(|c| c.value.name.as_str())
        .collect();
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        h1 { "Tasks" }
        form.filters method="get" action="/ui/tasks" {
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for s in ["pending", "active", "ended", "expired", "revoked", "denied"] {
                        option value=(s) selected[filters.status.as_deref() == Some(s)] { (s) }
                    }
                }
            }
            label { "Identity" input type="text" name="identity" value=(value(&filters.identity)) placeholder="subject"; }
            label { "Connection"
                select name="connection" {
                    option value="" { "any" }
                    @for c in &connections {
                        option value=(c) selected[filters.connection.as_deref() == Some(*c)] { (c) }
                    }
                }
            }
            label { "Since" input type="text" name="since" value=(value(&filters.since)) placeholder="2026-12-01 or 7d"; }
            label { "Until" input type="text" name="until" value=(value(&filters.until)) placeholder="2026-12-05"; }
            button type="submit" { "Filter" }
        }
        @if found.is_empty() {
            div.empty { "No tasks match." }
        } @else {
            table {
                thead { tr { th { "Task" } th { "Status" } th { "Requester" } th { "Connection" } th { "Access" } th { "Requested" } th { "Window" } th { "Approved by" } } }
                tbody {
                    @for t in &found {
                        tr {
                            td { a href={ "/ui/tasks/" (t.id) } { (shown(&t.name)) } br; code.muted { (t.id) } }
                            td { (badge(&t.status)) }
                            td { (shown(&t.requester.subject)) " " span.muted { (t.requester.kind) } }
                            td { (shown(&t.connection)) }
                            td { (badge(&t.access)) }
                            td { (when(&t.requested_at)) }
                            td { (t.window) }
                            td { (t.approval.as_ref().map(|a| shown(&a.by.subject)).unwrap_or_default()) }
                        }
                    }
                }
            }
            p.muted { (found.len()) " tasks" }
        }
    };
    Ok(layout::page(&viewer, "tasks", "Tasks", body).into_response())
}

/// The task's story, for a viewer who may see the task.
async fn story_of(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
) -> Result<(TaskView, Story), Refused> {
    let task = tasks::load_visible(state, &viewer.caller, id.to_owned()).await?;
    let task_id = task.id.clone();
    let events = state
        .index(move |index| index.task_events(&task_id))
        .await?;
    Ok((
        TaskView::new(&task, None),
        Story::from_events(&task.id, events),
    ))
}

fn hms(t: Timestamp) -> String {
    when(&t.to_string())
        .get(11..)
        .unwrap_or_default()
        .to_owned()
}

/// A statement's outcome as every rendering tells it, with a badge for
/// how it went and how long it took.
fn outcome(e: &What, done: Option<&Value>) -> Markup {
    let Some(verdict) = e.verdict() else {
        return html! {};
    };
    let kind = match verdict.statement {
        StatementVerdict::Ran { .. } => "ok",
        StatementVerdict::Refused { .. } => "refused",
        StatementVerdict::Running => "running",
        _ => "error",
    };
    let micros = done
        .and_then(|o| o.get("duration_us"))
        .and_then(Value::as_u64);
    html! {
        (badge(kind)) " " (shown(&verdict.summary))
        @if let Some(us) = micros { span.muted { " · " (format!("{:.1} ms", us as f64 / 1000.0)) } }
    }
}

fn entry(e: &Entry) -> Markup {
    let time = hms(e.time);
    match &e.what {
        What::Command {
            sql,
            class,
            tables_read,
            tables_written,
            outcome: done,
            approval,
            ..
        } => html! {
            li.command {
                span.time { (time) } (badge(class)) " " (outcome(&e.what, done.as_ref()))
                @if approval.is_some() { " " (badge("held")) }
                (layout::sql(sql))
                div.facts {
                    @if !tables_read.is_empty() { "reads " (tables_read.join(", ")) " " }
                    @if !tables_written.is_empty() { "writes " (tables_written.join(", ")) }
                }
            }
        },
        What::Denied { sql, class, .. } => html! {
            li.denied {
                span.time { (time) } (badge(class)) " " span.error { (outcome(&e.what, None)) }
                (layout::sql(sql))
            }
        },
        What::SessionOpened {
            client_addr,
            application_name,
            mcp_request_id,
        } => html! {
            li.session {
                span.time { (time) } "session opened from " (client_addr.as_deref().map(shown).unwrap_or_default())
                @if let Some(id) = mcp_request_id { " · MCP tool call " code { (shown(id)) } }
                @else if let Some(app) = application_name.as_deref().filter(|a| !a.is_empty()) { " (" (shown(app)) ")" }
            }
        },
        What::SessionClosed { reason } => html! {
            li.session { span.time { (time) } "session closed: " (shown(reason)) }
        },
        What::AuthFailed {
            reason,
            client_addr,
        } => html! {
            li.denied { span.time { (time) } "login refused from " (client_addr.as_deref().map(shown).unwrap_or_default()) ": " (shown(reason)) }
        },
        What::Review {
            review,
            event,
            by,
            comment,
        } => html! {
            li.decision {
                span.time { (time) } strong { (event) } " " code { (review.as_deref().unwrap_or_default()) }
                @if let Some(by) = by { " by " (shown(by)) }
                @if let Some(c) = comment { ": " em { (shown(c)) } }
            }
        },
    }
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, Refused> {
    let (task, story) = story_of(&state, &viewer, &id).await?;
    let may_revoke = task.status == TaskState::Active.as_str()
        && (viewer.caller.admin
            || task.approvers.iter().any(|a| {
                a.parse::<taskgate_policy::Matcher>()
                    .is_ok_and(|m| m.matches(&viewer.caller.identity))
            }));
    let body = html! {
        div.actions {
            h1 { (shown(&task.name)) " " (badge(&task.status)) }
            a href={ "/ui/tasks/" (task.id) "/story.txt" } { "as text" }
            a href={ "/ui/tasks/" (task.id) "/story.json" } { "as JSON" }
        }
        section.panel.summary {
            div { span { "Task" } code { (task.id) } }
            div { span { "Requester" } (shown(&task.requester.subject)) " (" (task.requester.kind) ")" }
            div { span { "Connection" } (shown(&task.connection)) " · " (badge(&task.access)) }
            div { span { "Reason" } (task.reason.as_deref().map(shown).unwrap_or_else(|| "—".into())) }
            div { span { "Ref" } (task.reference.as_deref().map(shown).unwrap_or_else(|| "—".into())) }
            div { span { "Window" } (task.window) @if let (Some(s), Some(e)) = (&task.starts_at, &task.ends_at) { br; (when(s)) " → " (when(e).get(11..).unwrap_or_default()) } }
            div { span { "Approved by" }
                @if let Some(a) = &task.approval { (shown(&a.by.subject)) " at " (when(&a.at)) @if let Some(c) = &a.comment { ": " em { (shown(c)) } } }
                @else { "—" }
            }
            div { span { "Ending" } (story.ending.as_deref().map(shown).unwrap_or_else(|| "—".into())) }
            div { span { "Record" } "sessions " (story.sessions) " · statements " (story.commands) " · refused " (story.denied) }
        }
        @if may_revoke {
            form.actions method="post" action={ "/ui/tasks/" (task.id) "/revoke" } {
                input type="hidden" name="csrf" value=(viewer.csrf);
                input type="text" name="comment" placeholder="why (optional)" aria-label="Why";
                button.danger type="submit" { "Revoke now" }
            }
        }
        h2 { "Story" }
        ol.timeline {
            li { span.time { (story.requested_at.map(hms).unwrap_or_default()) } "requested by " (shown(&task.requester.subject)) }
            @for e in &story.entries { (entry(e)) }
        }
    };
    Ok(layout::page(&viewer, "tasks", &task.name, body).into_response())
}

pub async fn story_text(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, Refused> {
    let (_, story) = story_of(&state, &viewer, &id).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        story.render(),
    )
        .into_response())
}

pub async fn story_json(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, Refused> {
    let (_, story) = story_of(&state, &viewer, &id).await?;
    let mut value =
        serde_json::to_value(&story).map_err(|e| Refused::Api(ApiError::internal(e)))?;
    value["text"] = Value::String(story.render());
    Ok(axum::Json(value).into_response())
}

#[derive(Deserialize)]
pub struct RevokeForm {
    /// Missing is refused as a wrong token (403), not as a bad form.
    #[serde(default)]
    csrf: String,
    comment: Option<String>,
}

pub async fn revoke(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, Refused> {
    viewer.check_form(&headers, &form.csrf)?;
    let comment = form.comment.filter(|c| !c.trim().is_empty());
    let _revoked = tasks::revoke_task(
        State(state),
        viewer.caller.clone(),
        Path(id.clone()),
        ApiJson(CommentRequest { comment }),
    )
    .await?;
    Ok(Redirect::to(&format!("/ui/tasks/{id}")).into_response())
}
