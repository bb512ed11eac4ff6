//! Pending reviews, newest first, updating live: each shows who asks, for
//! which task and why, the window or the exact statement (with its class
//! and tables), and who may decide it. Approve and deny buttons appear only
//! to someone who may decide; the API refuses anyone else anyway.

use std::convert::Infallible;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::stream::{self, Stream};
use maud::{Markup, html};
use serde::Deserialize;
use taskgate_policy::{Review, ReviewKind, ReviewState, Task};
use taskgate_store::ReviewQuery;

use super::layout::{self, badge, shown, when};
use super::{Refused, Viewer};
use crate::api::views::{CommentRequest, ReviewView};
use crate::api::{ApiError, AppState, reviews};

/// How often the live list looks for changes when nothing wakes it (a
/// task expiring, a change made by another writer).
const LIVE_POLL: Duration = Duration::from_secs(1);

/// The pending reviews this viewer may see, newest first, and whether each
/// is theirs to decide.
async fn visible(state: &AppState, viewer: &Viewer) -> Result<Vec<(ReviewView, bool)>, ApiError> {
    let pending: Vec<(Review, Task)> = state
        .read(|r| {
            let reviews = r.reviews(&ReviewQuery {
                state: Some(ReviewState::Pending),
                task: None,
            })?;
            let mut out = Vec::new();
            for review in reviews {
                if let Some(task) = r.task(&review.task_id)? {
                    out.push((review, task));
                }
            }
            Ok(out)
        })
        .await?;
    let caller = &viewer.caller;
    let mut shown: Vec<(ReviewView, bool)> = pending
        .iter()
        .filter_map(|(review, task)| {
            let own = caller.identity.same_principal(&review.requested_by);
            let may_decide = !own
                && match review.kind {
                    ReviewKind::Grant => task.may_decide(&caller.identity),
                    ReviewKind::Statement { .. } => review.may_decide(&caller.identity),
                };
            (may_decide || own || caller.reads_everything())
                .then(|| (ReviewView::new(review, task), may_decide))
        })
        .collect();
    shown.sort_by(|a, b| b.0.requested_at.cmp(&a.0.requested_at));
    Ok(shown)
}

fn review_card(review: &ReviewView, may_decide: bool, csrf: &str) -> Markup {
    let task = &review.task;
    let class = review.statement.as_deref().map(taskgate_sqlclass::classify);
    html! {
        article.panel.review id={ "review-" (review.id) } data-review=(review.id) {
            div {
                div.actions {
                    @if review.kind == "grant" { (badge("pending")) strong { " Access request" } }
                    @else { (badge("held")) strong { " Held statement" } }
                    span.muted { (when(&review.requested_at)) " · " code { (review.id) } }
                }
                dl {
                    dt { "Requester" } dd { (shown(&task.requester.subject)) " (" (task.requester.kind) ", " (shown(&task.requester.issuer)) ")" }
                    dt { "Task" } dd { a href={ "/ui/tasks/" (task.id) } { (shown(&task.name)) } " " code.muted { (task.id) } }
                    dt { "Reason" } dd { (task.reason.as_deref().map(shown).unwrap_or_else(|| "—".into())) }
                    dt { "Ref" } dd { (task.reference.as_deref().map(shown).unwrap_or_else(|| "—".into())) }
                    dt { "Access" } dd { (badge(&task.access)) " on " strong { (shown(&task.connection)) } }
                    @if review.kind == "grant" {
                        dt { "Window" } dd { (task.window) " asked" }
                    }
                    dt { "Approvers" } dd { (review.approvers.iter().map(|a| shown(a)).collect::<Vec<_>>().join(", ")) }
                }
                @if let (Some(statement), Some(class)) = (&review.statement, &class) {
                    (layout::sql(statement))
                    div.facts.muted {
                        (badge(class.class.as_str())) " " (class.command)
                        @if !class.tables_read.is_empty() { " · reads " (class.tables_read.join(", ")) }
                        @if !class.tables_written.is_empty() { " · writes " (class.tables_written.join(", ")) }
                        @if !class.opaque.is_empty() { " · runs code the gateway cannot see into: " (class.opaque.join(", ")) }
                    }
                }
            }
            @if may_decide {
                form.decide method="post" action={ "/ui/reviews/" (review.id) "/approve" } {
                    input type="hidden" name="csrf" value=(csrf);
                    label { span.muted { "Comment" } input type="text" name="comment" maxlength="2000" aria-label="Comment"; }
                    div.buttons {
                        button.approve type="submit" { "Approve" }
                        button.deny type="submit" formaction={ "/ui/reviews/" (review.id) "/deny" } { "Deny" }
                    }
                }
            } @else {
                p.muted { "You may not decide this review." }
            }
        }
    }
}

fn list(reviews: &[(ReviewView, bool)], csrf: &str) -> Markup {
    html! {
        @if reviews.is_empty() {
            div.empty { "No pending reviews." }
        }
        @for (review, may_decide) in reviews {
            (review_card(review, *may_decide, csrf))
        }
    }
}

pub async fn page(State(state): State<AppState>, viewer: Viewer) -> Result<Response, Refused> {
    let reviews = visible(&state, &viewer).await?;
    let body = html! {
        div.actions {
            h1 { "Reviews" }
            span.live { "live" }
        }
        div #reviews data-live="/ui/reviews/events" aria-live="polite" {
            (list(&reviews, &viewer.csrf))
        }
    };
    Ok(layout::page(&viewer, "reviews", "Reviews", body).into_response())
}

/// The list again, as server-sent events, whenever it changes.
pub async fn events(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = stream::unfold(
        (state, viewer, None::<String>),
        |(state, viewer, last)| async move {
            loop {
                let writer = state.writer.clone();
                let decided = writer.reviews_changed();
                tokio::pin!(decided);
                decided.as_mut().enable();
                let html = match visible(&state, &viewer).await {
                    Ok(reviews) => list(&reviews, &viewer.csrf).into_string(),
                    Err(e) => html! { p.error { (e.message()) } }.into_string(),
                };
                if last.as_deref() != Some(html.as_str()) {
                    let event = Event::default().data(html.clone());
                    return Some((Ok(event), (state, viewer, Some(html))));
                }
                tokio::select! {
                    () = decided => {}
                    () = tokio::time::sleep(LIVE_POLL) => {}
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(Deserialize)]
pub struct DecideForm {
    /// Missing is refused as a wrong token (403), not as a bad form.
    #[serde(default)]
    csrf: String,
    comment: Option<String>,
}

pub async fn decide(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    Form(form): Form<DecideForm>,
) -> Result<Response, Refused> {
    viewer.check_form(&headers, &form.csrf)?;
    let body = crate::api::extract::ApiJson(CommentRequest {
        comment: form.comment,
    });
    let caller = viewer.caller.clone();
    let _decided = match verb.as_str() {
        "approve" => reviews::approve_review(State(state), caller, Path(id), body).await?,
        "deny" => reviews::deny_review(State(state), caller, Path(id), body).await?,
        _ => return Err(Refused::Api(ApiError::not_found("no such decision"))),
    };
    Ok(Redirect::to("/ui/reviews").into_response())
}
