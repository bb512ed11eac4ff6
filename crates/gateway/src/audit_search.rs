//! The auditor's search filters as text (query string or CLI flags), turned
//! into an index query in one place so the API and the offline CLI agree.

use serde::{Deserialize, Serialize};
use taskgate_audit::{EventType, IdentityKind, Timestamp};
use taskgate_policy::parse_time_bound;
use taskgate_store::index::EventQuery;
use utoipa::IntoParams;

/// Hits per page when the caller names no limit.
pub const DEFAULT_PAGE: usize = 100;

#[derive(Clone, Debug, Default, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditSearchParams {
    /// A table the statement read or wrote (`orders` matches any schema's,
    /// `shop.orders` only that one).
    pub table: Option<String>,
    /// Statement classes, comma-separated: read, write, ddl, dcl, tcl, utility, unknown.
    pub class: Option<String>,
    /// The acting identity's subject.
    pub identity: Option<String>,
    /// `agent` or `human`.
    pub kind: Option<String>,
    /// A task id.
    pub task: Option<String>,
    /// A connection name.
    pub connection: Option<String>,
    /// Event types, comma-separated (e.g. `command.started,command.denied`).
    /// Without it, a command's completion shows as its start's outcome.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// From this time: RFC 3339, a date (`2026-11-25`) or an age (`7d`, `2h`).
    pub since: Option<String>,
    /// Before this time (same forms).
    pub until: Option<String>,
    /// Only events after this sequence number (the previous page's `next_after`).
    pub after: Option<u64>,
    /// Hits per page, 1 to 1000; default 100.
    pub limit: Option<usize>,
}

const CLASSES: &[&str] = &["read", "write", "ddl", "dcl", "tcl", "utility", "unknown"];

fn list(text: &Option<String>) -> Vec<String> {
    text.iter()
        .flat_map(|t| t.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

impl AuditSearchParams {
    /// The index query these filters ask for, or what is wrong with them.
    pub fn to_query(&self, now: Timestamp) -> Result<EventQuery, String> {
        let classes = list(&self.class);
        if let Some(bad) = classes.iter().find(|c| !CLASSES.contains(&c.as_str())) {
            return Err(format!(
                "unknown class {bad:?}: use one of {}",
                CLASSES.join(", ")
            ));
        }
        let kind = match self.kind.as_deref() {
            None => None,
            Some("agent") => Some(IdentityKind::Agent),
            Some("human") => Some(IdentityKind::Human),
            Some(other) => return Err(format!("unknown kind {other:?}: use agent or human")),
        };
        let types = list(&self.event_type)
            .iter()
            .map(|t| t.parse::<EventType>())
            .collect::<Result<Vec<_>, _>>()?;
        let bound = |name: &str, text: &Option<String>| {
            text.as_deref()
                .map(|t| parse_time_bound(t, now).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        let since = bound("since", &self.since)?;
        let until = bound("until", &self.until)?;
        if let (Some(s), Some(u)) = (since, until)
            && s >= u
        {
            return Err(format!("since ({s}) must be before until ({u})"));
        }
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=taskgate_store::index::MAX_PAGE).contains(&limit) {
            return Err(format!(
                "limit must be 1 to {}",
                taskgate_store::index::MAX_PAGE
            ));
        }
        Ok(EventQuery {
            table: self.table.clone().map(|t| t.to_lowercase()),
            classes,
            subject: self.identity.clone(),
            kind,
            task: self.task.clone(),
            connection: self.connection.clone(),
            types,
            since,
            until,
            after: self.after.unwrap_or(0),
            limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_and_named() {
        let now = Timestamp::from_micros(10_000_000_000_000);
        let ok = AuditSearchParams {
            table: Some("Orders".into()),
            class: Some("write, ddl".into()),
            kind: Some("agent".into()),
            event_type: Some("command.started".into()),
            since: Some("7d".into()),
            ..Default::default()
        }
        .to_query(now);
        let q = ok.unwrap_or_default();
        assert_eq!(q.table.as_deref(), Some("orders"));
        assert_eq!(q.classes, ["write", "ddl"]);
        assert_eq!(q.types, [EventType::CommandStarted]);
        assert_eq!(q.limit, DEFAULT_PAGE);
        let error = |p: AuditSearchParams| p.to_query(now).err().unwrap_or_default();
        let bad_class = AuditSearchParams {
            class: Some("reads".into()),
            ..Default::default()
        };
        assert!(error(bad_class).contains("unknown class \"reads\""));
        let bad_kind = AuditSearchParams {
            kind: Some("robot".into()),
            ..Default::default()
        };
        assert!(error(bad_kind).contains("agent or human"));
        let bad_type = AuditSearchParams {
            event_type: Some("command.begun".into()),
            ..Default::default()
        };
        assert!(error(bad_type).contains("command.begun"));
        let bad_time = AuditSearchParams {
            since: Some("soon".into()),
            ..Default::default()
        };
        assert!(error(bad_time).starts_with("since:"));
        let backwards = AuditSearchParams {
            since: Some("2026-11-25".into()),
            until: Some("2026-11-24".into()),
            ..Default::default()
        };
        assert!(error(backwards).contains("must be before"));
        let huge = AuditSearchParams {
            limit: Some(5000),
            ..Default::default()
        };
        assert!(error(huge).contains("limit"));
    }
}
