//! Integrity and export: the last `audit verify` (run from here on
//! demand, as it reads the whole chain) with its checkpoints, and each
//! sink's lag and parked events, with redelivery for admins.

use std::sync::{Arc, Mutex};

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde_json::Value;
use taskgate_audit::Timestamp;

use super::layout::{self, badge, shown, when};
use super::{CsrfForm, Refused, Viewer};
use crate::api::extract::ApiJson;
use crate::api::sinks::RedeliverRequest;
use crate::api::views::VerifyView;
use crate::api::{AppState, audit, sinks};

/// A verification's report and when it ran.
type Verified = (Timestamp, Arc<VerifyView>);

/// The last verification run from the console, and when.
#[derive(Clone, Default)]
pub struct LastVerify(Arc<Mutex<Option<Verified>>>);

impl LastVerify {
    fn get(&self) -> Option<Verified> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, view: VerifyView) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Timestamp::now(), Arc::new(view)));
    }
}

fn verify_panel(last: Option<&Verified>) -> maud::Markup {
    html! {
        @match last {
            None => p.muted { "Not verified from the console since the gateway started." },
            Some((at, v)) => {
                div.summary {
                    div { span { "Result" } @if v.ok { (badge("ok")) " chain intact" } @else { (badge("error")) " " span.error { (v.problem.as_deref().map(shown).unwrap_or_else(|| "see the index check".into())) } } }
                    div { span { "Verified" } (when(&at.to_string())) }
                    div { span { "Events" } (v.events) " (head " (v.head_seq) ")" }
                    div { span { "Head hash" } code { (v.head_hash.get(..16).unwrap_or_default()) "…" } }
                    div { span { "Signed checkpoints" } (v.checkpoints) @if let Some(seq) = v.checkpoint_seq { " (newest covers " (seq) ")" } }
                    div { span { "Signatures checked" } (if v.signatures_checked { "yes" } else { "no" }) }
                    div { span { "Copies outside the store" } (v.external_checkpoints) }
                    div { span { "Search index" }
                        @match &v.index {
                            Some(i) => { @match &i.problem { Some(p) => span.error { (shown(p)) }, None => { "matches the chain through " (i.through_seq) } } },
                            None => "not checked",
                        }
                    }
                    @if v.checkpoint_dir_on_store_disk == Some(true) {
                        div { span { "Warning" } span.error { "checkpoint copies are on the store's disk" } }
                    }
                }
            }
        }
    }
}

pub async fn page(State(state): State<AppState>, viewer: Viewer) -> Result<Response, Refused> {
    let axum::Json(sinks) = sinks::sinks(State(state.clone()), viewer.caller.clone()).await?;
    let sinks = sinks.as_array().cloned().unwrap_or_default();
    let mut parked: Vec<(String, Value)> = Vec::new();
    for sink in &sinks {
        let name = sink["name"].as_str().unwrap_or_default().to_owned();
        if sink["parked"].as_u64().unwrap_or(0) > 0 {
            let axum::Json(list) = sinks::parked(
                State(state.clone()),
                viewer.caller.clone(),
                Path(name.clone()),
            )
            .await?;
            parked.push((name, list));
        }
    }
    let last = state.console_verify.get();
    let body = html! {
        h1 { "Integrity and export" }
        section.panel {
            div.actions {
                h2 { "Audit chain" }
                form method="post" action="/ui/integrity/verify" {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    button type="submit" { "Verify now" }
                }
            }
            (verify_panel(last.as_ref()))
        }
        h2 { "Sinks" }
        @if sinks.is_empty() { div.empty { "No export sinks are configured." } }
        @else {
            table {
                thead { tr { th { "Sink" } th { "Kind" } th { "Lag" } th { "Delivered" } th { "Parked" } th { "Last delivery" } th { "Last error" } @if viewer.caller.admin { th {} } } }
                tbody {
                    @for s in &sinks {
                        tr {
                            td { (layout::field(s, "name")) }
                            td { (layout::field(s, "kind")) }
                            td { (s["lag"]) " events" }
                            td { (s["delivered"]) }
                            td { @if s["parked"].as_u64().unwrap_or(0) > 0 { (badge("error")) " " } (s["parked"]) }
                            td { (when(&layout::field(s, "last_delivery"))) }
                            td.error { (layout::field(s, "last_error")) }
                            @if viewer.caller.admin {
                                td {
                                    @if s["parked"].as_u64().unwrap_or(0) > 0 {
                                        form method="post" action={ "/ui/sinks/" (layout::field(s, "name")) "/redeliver" } {
                                            input type="hidden" name="csrf" value=(viewer.csrf);
                                            button type="submit" { "Send parked again" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @for (name, list) in &parked {
            h2 { "Parked at " (shown(name)) }
            table {
                thead { tr { th { "Event" } th { "Why" } th { "Since" } th { "Queued again" } } }
                tbody {
                    @for p in list.as_array().into_iter().flatten() {
                        tr { td { (p["seq"]) } td { (layout::field(p, "reason")) } td { (when(&layout::field(p, "at"))) } td { (p["queued"]) } }
                    }
                }
            }
        }
    };
    Ok(layout::page(&viewer, "integrity", "Integrity", body).into_response())
}

pub async fn verify(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Refused> {
    viewer.check_form(&headers, &form.csrf)?;
    let axum::Json(view) = audit::verify(State(state.clone()), viewer.caller.clone()).await?;
    state.console_verify.set(view);
    Ok(Redirect::to("/ui/integrity").into_response())
}

pub async fn redeliver(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Refused> {
    viewer.check_form(&headers, &form.csrf)?;
    let _queued = sinks::redeliver(
        State(state),
        viewer.caller.clone(),
        Path(name),
        ApiJson(RedeliverRequest::default()),
    )
    .await?;
    Ok(Redirect::to("/ui/integrity").into_response())
}
