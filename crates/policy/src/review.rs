//! Reviews: pending human decisions. A grant review decides a pending task;
//! statement reviews (held statements) arrive with the data plane.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use taskgate_audit::{EventDraft, EventType, Identity, Timestamp};

use crate::task::{Actor, Decision, DomainError, Task, TaskState};

/// The hash a statement review is bound to: of the exact text, byte for byte.
pub fn statement_sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ReviewKind {
    /// Whether a pending task gets its window.
    Grant,
    /// Whether one statement may run; bound to the task and the SHA-256 of
    /// the statement's exact text.
    Statement { text: String, sha256: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewState {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl ReviewState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }
}

impl fmt::Display for ReviewState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReviewState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Self::Pending, Self::Approved, Self::Denied, Self::Expired]
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown review status {s:?}"))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub id: String,
    pub task_id: String,
    #[serde(flatten)]
    pub kind: ReviewKind,
    pub state: ReviewState,
    pub requested_at: Timestamp,
    pub requested_by: Identity,
    /// Who may decide it (identity matchers, as written in the policy).
    pub approvers: Vec<String>,
    pub decision: Option<Decision>,
}

impl Review {
    /// The grant review that a task needing approval waits on.
    pub fn for_grant(id: String, task: &Task) -> Self {
        Self {
            id,
            task_id: task.id.clone(),
            kind: ReviewKind::Grant,
            state: ReviewState::Pending,
            requested_at: task.requested_at,
            requested_by: task.requester.clone(),
            approvers: task.approvers.clone(),
            decision: None,
        }
    }

    /// A review of one statement a task's session wants to run: bound to
    /// the task and the SHA-256 of the statement's exact text.
    pub fn for_statement(
        id: String,
        task_id: &str,
        requester: &Identity,
        text: &str,
        approvers: Vec<String>,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            task_id: task_id.to_owned(),
            kind: ReviewKind::Statement {
                text: text.to_owned(),
                sha256: statement_sha256(text),
            },
            state: ReviewState::Pending,
            requested_at: now,
            requested_by: requester.clone(),
            approvers,
            decision: None,
        }
    }

    /// Whether an identity may decide this review: one of its approvers,
    /// never the one whose request it is.
    pub fn may_decide(&self, identity: &Identity) -> bool {
        !identity.same_principal(&self.requested_by)
            && self
                .approvers
                .iter()
                .filter_map(|text| text.parse::<crate::Matcher>().ok())
                .any(|m| m.matches(identity))
    }

    /// The `review.requested` event of a statement review, in the session
    /// that is held.
    pub fn requested_event(&self, session: &str, connection: &str, reason: &str) -> EventDraft {
        let (text, sha256) = match &self.kind {
            ReviewKind::Statement { text, sha256 } => (Some(text.as_str()), Some(sha256.as_str())),
            ReviewKind::Grant => (None, None),
        };
        EventDraft::new(EventType::ReviewRequested, self.requested_at)
            .identity(&self.requested_by)
            .task(self.task_id.clone())
            .session(session)
            .connection(connection)
            .payload(json!({
                "review": self.id,
                "sql": text,
                "sql_sha256": sha256,
                "reason": reason,
                "approvers": self.approvers,
            }))
    }

    /// Decides a statement review. The task must still be active: a
    /// decision cannot outlive its window.
    pub fn decide_statement(
        &mut self,
        task: &Task,
        actor: &Actor,
        approve: bool,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, DomainError> {
        let ReviewKind::Statement { sha256, .. } = &self.kind else {
            return Err(DomainError::Invalid(format!(
                "review {} is not a statement review",
                self.id
            )));
        };
        if actor.identity.same_principal(&self.requested_by) {
            return Err(DomainError::SelfApproval);
        }
        if !self.may_decide(&actor.identity) {
            return Err(DomainError::Forbidden(format!(
                "{} is not among this statement's approvers ({})",
                actor.identity.subject,
                self.approvers.join(", ")
            )));
        }
        self.ensure_pending()?;
        if task.state != TaskState::Active {
            return Err(DomainError::Conflict(format!(
                "task {} is {}: its statements can no longer run",
                task.id, task.state
            )));
        }
        let event_type = if approve {
            EventType::ReviewApproved
        } else {
            EventType::ReviewDenied
        };
        let event = EventDraft::new(event_type, now)
            .identity(&actor.identity)
            .task(task.id.clone())
            .connection(task.connection.clone())
            .payload(json!({"review": self.id, "comment": comment, "sql_sha256": sha256}));
        self.record(actor, approve, comment, now);
        Ok(vec![event])
    }

    /// Records a decision on this review.
    fn record(&mut self, actor: &Actor, approve: bool, comment: Option<String>, now: Timestamp) {
        self.state = if approve {
            ReviewState::Approved
        } else {
            ReviewState::Denied
        };
        self.decision = Some(Decision {
            by: actor.identity.clone(),
            at: now,
            comment,
        });
    }

    /// Closes a statement review nobody decided in time (or whose session
    /// ended while it waited), with the event that says so.
    pub fn lapse(&mut self, now: Timestamp, why: &str) -> Result<Vec<EventDraft>, DomainError> {
        self.ensure_pending()?;
        self.state = ReviewState::Expired;
        Ok(vec![
            EventDraft::new(EventType::ReviewDenied, now)
                .task(self.task_id.clone())
                .payload(json!({"review": self.id, "comment": null, "reason": why})),
        ])
    }

    fn ensure_pending(&self) -> Result<(), DomainError> {
        if self.state == ReviewState::Pending {
            Ok(())
        } else {
            Err(DomainError::Conflict(format!(
                "review {} is already {}",
                self.id, self.state
            )))
        }
    }

    /// Decides a grant review and, with it, its task. Both change or neither.
    pub fn decide_grant(
        &mut self,
        task: &mut Task,
        actor: &Actor,
        approve: bool,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, DomainError> {
        if self.kind != ReviewKind::Grant || self.task_id != task.id {
            return Err(DomainError::Invalid(format!(
                "review {} does not decide task {}",
                self.id, task.id
            )));
        }
        task.check_approver(actor)?;
        self.ensure_pending()?;
        let events = if approve {
            task.approve(actor, now, comment.clone(), &self.id)?
        } else {
            task.deny(actor, now, comment.clone(), &self.id)?
        };
        self.record(actor, approve, comment, now);
        Ok(events)
    }

    /// Closes a review whose task can no longer use it.
    pub fn expire(&mut self) -> Result<(), DomainError> {
        self.ensure_pending()?;
        self.state = ReviewState::Expired;
        Ok(())
    }
}
