//! Printing API answers as text or JSON.

use std::borrow::Cow;

use serde_json::Value;
use taskgate_audit::display::visible;

use super::Format;

pub fn json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// A field as shown to a person: control characters escaped, so a
/// requester's text cannot move the cursor or draw lines of its own.
fn text<'a>(value: &'a Value, key: &str) -> Cow<'a, str> {
    visible(value.get(key).and_then(Value::as_str).unwrap_or("-"))
}

/// An optional field, shown the same way.
fn optional<'a>(value: &'a Value, key: &str) -> Option<Cow<'a, str>> {
    value.get(key).and_then(Value::as_str).map(visible)
}

fn subject(value: &Value, key: &str) -> String {
    value
        .get(key)
        .map(|i| format!("{} ({})", text(i, "subject"), text(i, "kind")))
        .unwrap_or_else(|| "-".into())
}

/// One task in detail.
pub fn task(task: &Value, format: Format) {
    if format == Format::Json {
        return json(task);
    }
    println!("task       {} ({})", text(task, "id"), text(task, "name"));
    println!("status     {}", text(task, "status"));
    println!("requester  {}", subject(task, "requester"));
    println!(
        "access     {} on {} for {}",
        text(task, "access"),
        text(task, "connection"),
        text(task, "window")
    );
    if let Some(reason) = optional(task, "reason") {
        println!("reason     {reason}");
    }
    if let Some(reference) = optional(task, "ref") {
        println!("ref        {reference}");
    }
    println!("requested  {}", text(task, "requested_at"));
    if let Some(by) = optional(task, "decide_by") {
        println!("decide by  {by}");
    }
    if let Some(review) = optional(task, "review") {
        println!("review     {review} (approvers: {})", approvers(task));
    }
    if task.get("starts_at").is_some_and(|v| !v.is_null()) {
        println!(
            "window     {} to {}",
            text(task, "starts_at"),
            text(task, "ends_at")
        );
    }
    if let Some(approval) = task.get("approval").filter(|v| !v.is_null()) {
        println!(
            "approved   by {} at {}",
            subject(approval, "by"),
            text(approval, "at")
        );
    }
    if let Some(closing) = task.get("closing").filter(|v| !v.is_null()) {
        println!(
            "closed     by {} at {}",
            subject(closing, "by"),
            text(closing, "at")
        );
    }
}

fn approvers(task: &Value) -> String {
    task.get("approvers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

pub fn task_list(tasks: &Value, format: Format) {
    if format == Format::Json {
        return json(tasks);
    }
    let rows = tasks.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        println!("no tasks");
        return;
    }
    println!(
        "{:<21} {:<20} {:<8} {:<6} {:<14} {:<16} REQUESTED",
        "ID", "NAME", "STATUS", "ACCESS", "CONNECTION", "REQUESTER"
    );
    for t in rows {
        println!(
            "{:<21} {:<20} {:<8} {:<6} {:<14} {:<16} {}",
            text(t, "id"),
            text(t, "name"),
            text(t, "status"),
            text(t, "access"),
            text(t, "connection"),
            t.get("requester")
                .map(|r| text(r, "subject"))
                .unwrap_or(Cow::Borrowed("-")),
            text(t, "requested_at"),
        );
    }
}

pub fn review_list(reviews: &Value, format: Format) {
    if format == Format::Json {
        return json(reviews);
    }
    let rows = reviews.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        println!("no pending reviews for you");
        return;
    }
    for r in rows {
        let task = r.get("task").cloned().unwrap_or_default();
        println!("review {} ({})", text(r, "id"), text(r, "kind"));
        println!(
            "  task       {} ({})",
            text(&task, "id"),
            text(&task, "name")
        );
        println!("  requester  {}", subject(&task, "requester"));
        println!(
            "  asks       {} on {} for {}",
            text(&task, "access"),
            text(&task, "connection"),
            text(&task, "window")
        );
        println!("  reason     {}", text(&task, "reason"));
        println!("  ref        {}", text(&task, "ref"));
        // Shown whole and exactly (escaped, never cut): it is what the
        // approver approves.
        if let Some(statement) = optional(r, "statement") {
            println!("  statement  {statement}");
        }
        println!(
            "  decide     taskgate review approve {0} | taskgate review deny {0}",
            text(r, "id")
        );
    }
}

/// `HH:MM` of an RFC 3339 time.
fn hh_mm(time: &str) -> &str {
    time.get(11..16).unwrap_or(time)
}

/// What a search hit's statement did, in a few words.
fn outcome(hit: &Value) -> String {
    hit["verdict"]["summary"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// One page of search hits, one line each, then how to go on.
pub fn search_page(page: &Value) {
    let hits = page["hits"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if hits.is_empty() {
        println!("no events match");
    }
    for hit in hits {
        let event = &hit["event"];
        let payload = &event["payload"];
        let time = text(event, "time");
        let mut line = format!(
            "{:>8} {} {} {}",
            event["seq"].as_u64().unwrap_or(0),
            time.get(..19).unwrap_or(&time).replace('T', " "),
            subject(event, "identity"),
            text(event, "type"),
        );
        if let Some(task) = hit.get("task").filter(|t| !t.is_null()) {
            line.push_str(&format!(" task={}", text(task, "name")));
            if let Some(reference) = optional(task, "ref") {
                line.push_str(&format!(" ref={reference}"));
            }
            if let Some(by) = optional(&task["decision"], "by") {
                let verb = if task["decision"]["approved"] == true {
                    "approved"
                } else {
                    "denied"
                };
                line.push_str(&format!(
                    " (grant {verb} by {by} {})",
                    hh_mm(&text(&task["decision"], "at"))
                ));
            }
        }
        if let Some(sql) = payload["sql"].as_str() {
            let sql = visible(&sql.split_whitespace().collect::<Vec<_>>().join(" ")).into_owned();
            line.push_str(&format!(
                " | {} {sql} | {}",
                text(payload, "class"),
                outcome(hit)
            ));
        }
        println!("{line}");
    }
    if let Some(next) = page["next_after"].as_u64() {
        println!("more: add --after {next}");
    }
}
