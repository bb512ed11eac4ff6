//! The auditor's questions as a form: table, class, identity, kind,
//! connection and time; results link to their tasks' stories and export
//! as JSON Lines or CSV (auditors and admins, as the API's search).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde_json::Value;

use super::layout::{self, badge, field, shown, when};
use super::{Refused, Viewer};
use crate::api::extract::ApiQuery;
use crate::api::{ApiError, AppState, audit};
use crate::audit_search::AuditSearchParams;

/// Hits one export carries at most (the API's page limit).
const EXPORT_LIMIT: usize = 1000;

/// The form's blank fields mean "any".
fn cleaned(mut p: AuditSearchParams) -> AuditSearchParams {
    for f in [
        &mut p.table,
        &mut p.class,
        &mut p.identity,
        &mut p.kind,
        &mut p.task,
        &mut p.connection,
        &mut p.event_type,
        &mut p.since,
        &mut p.until,
    ] {
        if f.as_deref().is_some_and(|v| v.trim().is_empty()) {
            *f = None;
        }
    }
    p
}

fn asked(p: &AuditSearchParams) -> bool {
    p.table.is_some()
        || p.class.is_some()
        || p.identity.is_some()
        || p.kind.is_some()
        || p.task.is_some()
        || p.connection.is_some()
        || p.event_type.is_some()
        || p.since.is_some()
        || p.until.is_some()
}

async fn hits(
    state: &AppState,
    viewer: &Viewer,
    params: AuditSearchParams,
) -> Result<Vec<Value>, Refused> {
    let axum::Json(page) = audit::search(
        State(state.clone()),
        viewer.caller.clone(),
        ApiQuery(params),
    )
    .await?;
    Ok(page
        .get("hits")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

fn query_string(p: &AuditSearchParams) -> String {
    serde_urlencoded::to_string(p).unwrap_or_default()
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    ApiQuery(params): ApiQuery<AuditSearchParams>,
) -> Result<Response, Refused> {
    let params = cleaned(params);
    let results = if asked(&params) {
        Some(hits(&state, &viewer, params.clone()).await?)
    } else {
        None
    };
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let qs = query_string(&params);
    let body = html! {
        h1 { "Search the record" }
        p.muted { "Who changed this table? Did any agent read it during the incident? Which task authorized it?" }
        form.filters method="get" action="/ui/search" {
            label { "Table" input type="text" name="table" value=(value(&params.table)) placeholder="orders"; }
            label { "Class"
                select name="class" {
                    option value="" { "any" }
                    @for c in ["read", "write", "ddl", "dcl", "tcl", "utility", "unknown"] {
                        option value=(c) selected[params.class.as_deref() == Some(c)] { (c) }
                    }
                }
            }
            label { "Kind"
                select name="kind" {
                    option value="" { "any" }
                    @for k in ["agent", "human"] { option value=(k) selected[params.kind.as_deref() == Some(k)] { (k) } }
                }
            }
            label { "Identity" input type="text" name="identity" value=(value(&params.identity)) placeholder="subject"; }
            label { "Connection" input type="text" name="connection" value=(value(&params.connection)); }
            label { "Since" input type="text" name="since" value=(value(&params.since)) placeholder="7d or 2026-12-01"; }
            label { "Until" input type="text" name="until" value=(value(&params.until)); }
            button type="submit" { "Search" }
        }
        @if let Some(results) = &results {
            div.actions {
                span.muted { (results.len()) " results" }
                a href={ "/ui/search/export.jsonl?" (qs) } { "Export JSON Lines" }
                a href={ "/ui/search/export.csv?" (qs) } { "Export CSV" }
            }
            @if results.is_empty() { div.empty { "Nothing in the record matches." } }
            @else {
                table {
                    thead { tr { th { "Time" } th { "Who" } th { "Task" } th { "Event" } th { "Statement" } th { "Outcome" } } }
                    tbody {
                        @for hit in results {
                            @let event = &hit["event"];
                            @let payload = &event["payload"];
                            tr {
                                td { (when(&field(event, "time"))) }
                                td { (field(&event["identity"], "subject")) " " span.muted { (field(&event["identity"], "kind")) } }
                                td {
                                    @if let Some(task) = event["task"].as_str() {
                                        a href={ "/ui/tasks/" (task) } { (hit["task"]["name"].as_str().map(shown).unwrap_or_else(|| task.to_owned())) }
                                        @if let Some(by) = hit["task"]["decision"]["by"].as_str() { br; span.muted { (if hit["task"]["decision"]["approved"] == true { "approved by " } else { "denied by " }) (shown(by)) } }
                                    }
                                }
                                td { (field(event, "type")) @if let Some(c) = payload["class"].as_str() { " " (badge(c)) } }
                                td { @if let Some(sql) = payload["sql"].as_str() { code.sql { (shown(sql)) } } }
                                td {
                                    @if let Some(summary) = hit["verdict"]["summary"].as_str() { (shown(summary)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&viewer, "search", "Search", body).into_response())
}

async fn export(
    state: AppState,
    viewer: Viewer,
    params: AuditSearchParams,
) -> Result<Vec<Value>, Refused> {
    let mut params = cleaned(params);
    if !asked(&params) {
        return Err(Refused::Api(ApiError::invalid(
            "name at least one filter to export",
        )));
    }
    params.limit = Some(EXPORT_LIMIT);
    hits(&state, &viewer, params).await
}

pub async fn export_jsonl(
    State(state): State<AppState>,
    viewer: Viewer,
    ApiQuery(params): ApiQuery<AuditSearchParams>,
) -> Result<Response, Refused> {
    let hits = export(state, viewer, params).await?;
    let mut out = String::new();
    for hit in &hits {
        out.push_str(&hit.to_string());
        out.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"taskgate-search.jsonl\"",
            ),
        ],
        out,
    )
        .into_response())
}

/// A CSV field: quoted when it must be, and never read as a formula by a
/// spreadsheet (a leading `=`, `+`, `-` or `@` gets a quote mark first).
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

pub async fn export_csv(
    State(state): State<AppState>,
    viewer: Viewer,
    ApiQuery(params): ApiQuery<AuditSearchParams>,
) -> Result<Response, Refused> {
    let hits = export(state, viewer, params).await?;
    let mut out = String::from(
        "seq,time,type,identity,kind,task,task_name,connection,class,sql,outcome,approved_by\n",
    );
    for hit in &hits {
        let e = &hit["event"];
        let p = &e["payload"];
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let row = [
            e["seq"].to_string(),
            s(&e["time"]),
            s(&e["type"]),
            s(&e["identity"]["subject"]),
            s(&e["identity"]["kind"]),
            s(&e["task"]),
            s(&hit["task"]["name"]),
            s(&e["connection"]),
            s(&p["class"]),
            s(&p["sql"]),
            s(&hit["verdict"]["summary"]),
            s(&hit["verdict"]["approved_by"]),
        ];
        let line: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"taskgate-search.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
    }
}
