//! Reviews: pending human decisions. A grant review decides a pending task;
//! statement reviews (held statements) arrive with the data plane.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use taskgate_audit::{EventDraft, Identity, Timestamp};

use crate::task::{Actor, Decision, DomainError, Task};

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
        Ok(events)
    }

    /// Closes a review whose task can no longer use it.
    pub fn expire(&mut self) -> Result<(), DomainError> {
        self.ensure_pending()?;
        self.state = ReviewState::Expired;
        Ok(())
    }
}
