//! Printing API answers as text or JSON.

use serde_json::Value;

use super::Format;

pub fn json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("-")
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
    if let Some(reason) = task.get("reason").and_then(Value::as_str) {
        println!("reason     {reason}");
    }
    if let Some(reference) = task.get("ref").and_then(Value::as_str) {
        println!("ref        {reference}");
    }
    println!("requested  {}", text(task, "requested_at"));
    if let Some(by) = task.get("decide_by").and_then(Value::as_str) {
        println!("decide by  {by}");
    }
    if let Some(review) = task.get("review").and_then(Value::as_str) {
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
                .unwrap_or("-"),
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
        if let Some(statement) = r.get("statement").and_then(Value::as_str) {
            println!("  statement  {statement}");
        }
        println!(
            "  decide     taskgate review approve {0} | taskgate review deny {0}",
            text(r, "id")
        );
    }
}
