//! The console's page shell and the small pieces pages share. Every value
//! a requester or a statement wrote goes through maud's escaping, and is
//! shown with its control characters as visible escapes.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::Viewer;

pub const CSS: &str = include_str!("assets/app.css");
pub const JS: &str = include_str!("assets/app.js");

/// Text someone else wrote, as it is: control characters made visible.
pub fn shown(text: &str) -> String {
    taskgate_audit::display::visible(text).into_owned()
}

/// A string field of a JSON answer, shown.
pub fn field(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(shown)
        .unwrap_or_default()
}

/// `2026-12-05T14:03:11.123456Z` as `2026-12-05 14:03:11`.
pub fn when(rfc3339: &str) -> String {
    rfc3339
        .get(..19)
        .map(|t| t.replace('T', " "))
        .unwrap_or_else(|| shown(rfc3339))
}

pub fn badge(kind: &str) -> Markup {
    html! { span class={ "badge " (kind) } { (kind) } }
}

/// The `<head>` every page has.
fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Taskgate" }
            link rel="stylesheet" href="/ui/assets/app.css";
            script src="/ui/assets/app.js" defer {}
        }
    }
}

/// A page without navigation (sign-in, refusals).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { span.brand { "Taskgate" } }
                (body)
            }
        }
    }
}

/// A console page: navigation, who is signed in, the body.
pub fn page(viewer: &Viewer, current: &str, title: &str, body: Markup) -> Markup {
    let caller = &viewer.caller;
    let role = if caller.admin {
        "admin"
    } else if caller.auditor {
        "auditor"
    } else {
        caller.identity.kind.as_str()
    };
    let links = [
        ("reviews", "/ui/reviews", "Reviews"),
        ("tasks", "/ui/tasks", "Tasks"),
        ("search", "/ui/search", "Search"),
        ("integrity", "/ui/integrity", "Integrity"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    span.brand { "Taskgate" }
                    nav aria-label="Console" {
                        @for (key, href, label) in links {
                            @if key == current {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                    div.who {
                        span { (shown(&caller.identity.subject)) " · " (role) }
                        form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A `<pre>` for a statement: whole, escaped, wrapped.
pub fn sql(text: &str) -> Markup {
    html! { pre.sql { (shown(text)) } }
}
