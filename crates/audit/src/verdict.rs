//! What became of one statement, read from its events: the one reading
//! that every rendering of an outcome (search, story, CSV, JSON Lines, CLI
//! text, API) shows, so none can say "approved" of a statement a person
//! denied.

use serde::Serialize;
use serde_json::Value;

use crate::{Decision, EventType, Timestamp};

/// What the database or the gateway did with the statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StatementVerdict {
    /// It ran; the database answered with this tag and row count.
    Ran {
        tag: Option<String>,
        rows: Option<u64>,
    },
    /// It reached the database, which refused it.
    Failed { sqlstate: String, error: String },
    /// The database skipped it, after an earlier error of its batch.
    Skipped,
    /// The session ended before the database answered it.
    Unknown,
    /// Started; no answer is recorded yet.
    Running,
    /// The gateway refused it; it never reached the database.
    Refused { decision: String, reason: String },
}

/// How a person's review of a held statement ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HoldVerdict {
    Approved {
        by: String,
        at: Timestamp,
        comment: Option<String>,
    },
    Denied {
        by: String,
        at: Timestamp,
        comment: Option<String>,
    },
    /// Closed with no decision: nobody decided in time, its client
    /// cancelled it, or its session ended while it waited.
    Lapsed { reason: Option<String> },
}

/// One statement's outcome, with the words every rendering shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub statement: StatementVerdict,
    /// When it was held for review.
    pub hold: Option<HoldVerdict>,
    /// The outcome in a few words (see [`Verdict::summary`]).
    pub summary: String,
    /// Who approved it, only when someone did.
    pub approved_by: Option<String>,
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl HoldVerdict {
    pub fn of(decision: &Decision) -> HoldVerdict {
        match (&decision.by, decision.approved) {
            (Some(by), true) => HoldVerdict::Approved {
                by: by.clone(),
                at: decision.at,
                comment: decision.comment.clone(),
            },
            (Some(by), false) => HoldVerdict::Denied {
                by: by.clone(),
                at: decision.at,
                comment: decision.comment.clone(),
            },
            (None, _) => HoldVerdict::Lapsed {
                reason: decision.reason.clone(),
            },
        }
    }

    fn words(&self) -> String {
        let with = |comment: &Option<String>| match comment {
            Some(c) if !c.is_empty() => format!(": {c}"),
            _ => String::new(),
        };
        let hh_mm = |t: &Timestamp| t.clock().get(..5).unwrap_or_default().to_owned();
        match self {
            HoldVerdict::Approved { by, at, comment } => {
                format!("approved by {by} {}{}", hh_mm(at), with(comment))
            }
            HoldVerdict::Denied { by, at, comment } => {
                format!("denied by {by} {}{}", hh_mm(at), with(comment))
            }
            HoldVerdict::Lapsed { reason: Some(r) } => format!("held, not decided: {r}"),
            HoldVerdict::Lapsed { reason: None } => "held, not decided".into(),
        }
    }
}

impl StatementVerdict {
    /// From a `command.started` and its `command.completed` payload, or a
    /// `command.denied`; `None` for any other event.
    pub fn of(
        event_type: EventType,
        payload: &Value,
        completed: Option<&Value>,
    ) -> Option<StatementVerdict> {
        Some(match event_type {
            EventType::CommandDenied => StatementVerdict::Refused {
                decision: text(payload, "decision").unwrap_or_else(|| "deny".into()),
                reason: text(payload, "reason").unwrap_or_default(),
            },
            EventType::CommandStarted => match completed {
                None => StatementVerdict::Running,
                Some(done) => match done.get("outcome").and_then(Value::as_str) {
                    Some("ok") => StatementVerdict::Ran {
                        tag: text(done, "tag"),
                        rows: done.get("rows").and_then(Value::as_u64),
                    },
                    Some("error") => StatementVerdict::Failed {
                        sqlstate: text(done, "sqlstate").unwrap_or_default(),
                        error: text(done, "error").unwrap_or_default(),
                    },
                    Some("skipped") => StatementVerdict::Skipped,
                    _ => StatementVerdict::Unknown,
                },
            },
            _ => return None,
        })
    }

    fn words(&self) -> String {
        match self {
            StatementVerdict::Ran { rows: Some(1), .. } => "1 row".into(),
            StatementVerdict::Ran { rows: Some(n), .. } => format!("{n} rows"),
            StatementVerdict::Ran { tag, rows: None } => tag.clone().unwrap_or_else(|| "ok".into()),
            StatementVerdict::Failed { sqlstate, error } => format!("ERROR {sqlstate} {error}"),
            StatementVerdict::Skipped => {
                "skipped (an earlier statement of its batch failed)".into()
            }
            StatementVerdict::Unknown => "unknown (the session ended before the answer)".into(),
            StatementVerdict::Running => "no outcome recorded".into(),
            StatementVerdict::Refused { decision, reason } if decision == "deny" => {
                format!("DENIED: {reason}")
            }
            StatementVerdict::Refused { decision, reason } => {
                format!("DENIED ({decision}): {reason}")
            }
        }
    }
}

impl Verdict {
    /// The verdict on a statement event (`command.started` with its
    /// completion, or `command.denied`), with the decision on its review
    /// when it was held; `None` for any other event.
    pub fn of(
        event_type: EventType,
        payload: &Value,
        completed: Option<&Value>,
        review: Option<&Decision>,
    ) -> Option<Verdict> {
        let statement = StatementVerdict::of(event_type, payload, completed)?;
        let hold = review.map(HoldVerdict::of);
        Some(Verdict::new(statement, hold))
    }

    pub fn new(statement: StatementVerdict, hold: Option<HoldVerdict>) -> Verdict {
        let mut summary = statement.words();
        if let Some(hold) = &hold {
            summary = format!("{summary} ({})", hold.words());
        }
        let approved_by = match &hold {
            Some(HoldVerdict::Approved { by, .. }) => Some(by.clone()),
            _ => None,
        };
        Verdict {
            statement,
            hold,
            summary,
            approved_by,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Timestamp;

    fn decision(
        approved: bool,
        by: Option<&str>,
        comment: Option<&str>,
        reason: Option<&str>,
    ) -> Decision {
        Decision {
            approved,
            by: by.map(str::to_owned),
            at: Timestamp::from_micros(0),
            comment: comment.map(str::to_owned),
            reason: reason.map(str::to_owned),
        }
    }

    /// Every outcome, once: what it says, and who it names as approver.
    #[test]
    fn each_outcome_is_told_as_it_happened() {
        let ran = json!({"outcome": "ok", "tag": "ALTER TABLE"});
        let started = EventType::CommandStarted;
        let denied = EventType::CommandDenied;
        let cases: Vec<(Verdict, &str, Option<&str>)> = vec![
            (
                Verdict::of(started, &json!({}), Some(&ran), Some(&decision(true, Some("alice"), Some("fine"), None))).unwrap(),
                "ALTER TABLE (approved by alice 00:00: fine)",
                Some("alice"),
            ),
            (
                Verdict::of(
                    denied,
                    &json!({"decision": "review", "reason": "denied by alice in review rev_1"}),
                    None,
                    Some(&decision(false, Some("alice"), Some("not now"), None)),
                )
                .unwrap(),
                "DENIED (review): denied by alice in review rev_1 (denied by alice 00:00: not now)",
                None,
            ),
            (
                Verdict::of(
                    denied,
                    &json!({"decision": "review", "reason": "no decision"}),
                    None,
                    Some(&decision(false, None, None, Some("no decision within 5m"))),
                )
                .unwrap(),
                "DENIED (review): no decision (held, not decided: no decision within 5m)",
                None,
            ),
            (
                Verdict::of(
                    denied,
                    &json!({"decision": "cancelled", "reason": "cancelled"}),
                    None,
                    Some(&decision(false, None, None, Some("its client cancelled it while it waited"))),
                )
                .unwrap(),
                "DENIED (cancelled): cancelled (held, not decided: its client cancelled it while it waited)",
                None,
            ),
            (
                Verdict::of(denied, &json!({"decision": "deny", "reason": "denied by rule agents.statements[1]"}), None, None).unwrap(),
                "DENIED: denied by rule agents.statements[1]",
                None,
            ),
            (
                Verdict::of(
                    started,
                    &json!({}),
                    Some(&json!({"outcome": "error", "sqlstate": "42P01", "error": "relation \"nope\" does not exist"})),
                    None,
                )
                .unwrap(),
                "ERROR 42P01 relation \"nope\" does not exist",
                None,
            ),
            (
                Verdict::of(started, &json!({}), Some(&json!({"outcome": "ok", "rows": 1})), None).unwrap(),
                "1 row",
                None,
            ),
            (
                Verdict::of(started, &json!({}), Some(&json!({"outcome": "skipped"})), None).unwrap(),
                "skipped (an earlier statement of its batch failed)",
                None,
            ),
            (
                Verdict::of(started, &json!({}), None, None).unwrap(),
                "no outcome recorded",
                None,
            ),
        ];
        for (verdict, summary, approved_by) in cases {
            assert_eq!(verdict.summary, summary);
            assert_eq!(verdict.approved_by.as_deref(), approved_by, "{summary}");
            if approved_by.is_none() {
                assert!(!verdict.summary.contains("approved"), "{summary}");
            }
        }
        assert_eq!(
            Verdict::of(EventType::SessionOpened, &json!({}), None, None),
            None
        );
    }
}
