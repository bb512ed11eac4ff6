//! Tasks and their state machine (SPEC §1):
//!
//! ```text
//! pending ──approve──▶ active ──end────▶ ended
//!    │                   ├────expire──▶ expired
//!    ├──deny──▶ denied   └────revoke──▶ revoked
//!    └──expire──▶ expired (nobody decided in time)
//! ```
//!
//! No transition goes back. Every step returns the events that record it;
//! the store commits the new state and those events in one transaction.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use taskgate_audit::{EventDraft, EventType, Identity, Timestamp};

use crate::Matcher;

/// The access level a task asks for; each maps to one upstream credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
    Admin,
}

impl Access {
    pub const ALL: [Access; 3] = [Access::Read, Access::Write, Access::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Access {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            other => Err(format!(
                "unknown access level {other:?} (expected read, write or admin)"
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Pending,
    Active,
    Ended,
    Expired,
    Revoked,
    Denied,
}

impl TaskState {
    pub const ALL: [TaskState; 6] = [
        Self::Pending,
        Self::Active,
        Self::Ended,
        Self::Expired,
        Self::Revoked,
        Self::Denied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Denied => "denied",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Active)
    }

    /// The state machine itself: the one place that says which step is legal.
    pub fn after(self, action: TaskAction) -> Result<TaskState, DomainError> {
        use TaskAction as A;
        use TaskState as S;
        match (self, action) {
            (S::Pending, A::Approve) => Ok(S::Active),
            (S::Pending, A::Deny) => Ok(S::Denied),
            (S::Pending, A::Expire) => Ok(S::Expired),
            (S::Active, A::End) => Ok(S::Ended),
            // The requester withdraws a request still waiting for approval.
            (S::Pending, A::End) => Ok(S::Ended),
            (S::Active, A::Expire) => Ok(S::Expired),
            (S::Active, A::Revoke) => Ok(S::Revoked),
            (from, action) => Err(DomainError::IllegalTransition { from, action }),
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown task status {s:?}"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskAction {
    Approve,
    Deny,
    End,
    Revoke,
    Expire,
}

impl TaskAction {
    pub const ALL: [TaskAction; 5] = [
        Self::Approve,
        Self::Deny,
        Self::End,
        Self::Revoke,
        Self::Expire,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::End => "end",
            Self::Revoke => "revoke",
            Self::Expire => "expire",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("cannot {} a task that is {from}", action.as_str())]
    IllegalTransition { from: TaskState, action: TaskAction },
    #[error("a requester cannot approve its own task or statement")]
    SelfApproval,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    /// The thing was already decided or done; repeating it changes nothing.
    #[error("{0}")]
    Conflict(String),
    /// One identity has as much open as the config lets it have.
    #[error("{0}")]
    Limit(String),
}

/// Who is acting, and whether the roles config makes them an admin.
#[derive(Clone, Debug)]
pub struct Actor {
    pub identity: Identity,
    pub admin: bool,
}

/// A human decision: who made it, when, and what they said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub by: Identity,
    pub at: Timestamp,
    pub comment: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub name: String,
    pub reason: Option<String>,
    /// External reference: an issue or pull request URL.
    pub reference: Option<String>,
    pub connection: String,
    pub access: Access,
    /// How long the window stays open once active.
    pub window_secs: u64,
    pub requester: Identity,
    pub state: TaskState,
    pub requested_at: Timestamp,
    /// While pending: when the request expires if nobody decides.
    pub decide_by: Option<Timestamp>,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    /// Who may approve, deny and revoke (from the policy's `approve.by`).
    pub approvers: Vec<String>,
    pub approval: Option<Decision>,
    /// The decision that ended, revoked or denied the task.
    pub closing: Option<Decision>,
}

/// Maximum length of a task name; names must also be shell- and URL-safe.
pub const MAX_TASK_NAME_CHARS: usize = 64;

/// Task names look like `migrate-orders`: lowercase letters, digits, `-`,
/// `_` and `.`, starting with a letter or digit.
pub fn validate_task_name(name: &str) -> Result<(), DomainError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TASK_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(DomainError::Invalid(format!(
            "task name {name:?} must be 1-{MAX_TASK_NAME_CHARS} characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}

impl Task {
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }

    fn event(&self, event_type: EventType, at: Timestamp, actor: Option<&Identity>) -> EventDraft {
        let draft = EventDraft::new(event_type, at)
            .task(self.id.clone())
            .connection(self.connection.clone());
        match actor {
            Some(identity) => draft.identity(identity),
            None => draft,
        }
    }

    /// The `task.requested` event (and `task.activated` when no approval is
    /// needed) for a task that has just been created in its initial state.
    pub fn requested_events(&self, review_id: Option<&str>) -> Vec<EventDraft> {
        let mut events = vec![
            self.event(
                EventType::TaskRequested,
                self.requested_at,
                Some(&self.requester),
            )
            .payload(json!({
                "name": self.name,
                "reason": self.reason,
                "ref": self.reference,
                "access": self.access.as_str(),
                "window_secs": self.window_secs,
                "needs_approval": self.state == TaskState::Pending,
                "approvers": self.approvers,
                "review": review_id,
                "decide_by": self.decide_by.map(|t| t.to_string()),
            })),
        ];
        if self.state == TaskState::Active {
            events.push(self.activated_event());
        }
        events
    }

    fn activated_event(&self) -> EventDraft {
        let at = self.starts_at.unwrap_or(self.requested_at);
        self.event(EventType::TaskActivated, at, None)
            .payload(json!({
                "starts_at": self.starts_at.map(|t| t.to_string()),
                "ends_at": self.ends_at.map(|t| t.to_string()),
            }))
    }

    pub(crate) fn check_approver(&self, actor: &Actor) -> Result<(), DomainError> {
        if actor.identity.same_principal(&self.requester) {
            return Err(DomainError::SelfApproval);
        }
        if self.may_decide(&actor.identity) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!(
                "{} is not among this task's approvers ({})",
                actor.identity.subject,
                self.approvers.join(", ")
            )))
        }
    }

    /// Whether an identity is one of the task's approvers.
    pub fn may_decide(&self, identity: &Identity) -> bool {
        self.approvers
            .iter()
            .filter_map(|text| text.parse::<Matcher>().ok())
            .any(|m| m.matches(identity))
    }

    /// An approver grants the task: its window opens now.
    pub fn approve(
        &mut self,
        actor: &Actor,
        now: Timestamp,
        comment: Option<String>,
        review_id: &str,
    ) -> Result<Vec<EventDraft>, DomainError> {
        // Authority first: whoever may not decide learns nothing of the state.
        self.check_approver(actor)?;
        let next = self.state.after(TaskAction::Approve)?;
        self.state = next;
        self.decide_by = None;
        self.starts_at = Some(now);
        self.ends_at = Some(now.plus(self.window()));
        self.approval = Some(Decision {
            by: actor.identity.clone(),
            at: now,
            comment: comment.clone(),
        });
        let approved = self
            .event(EventType::TaskApproved, now, Some(&actor.identity))
            .payload(json!({"review": review_id, "comment": comment}));
        Ok(vec![approved, self.activated_event()])
    }

    /// An approver refuses the task.
    pub fn deny(
        &mut self,
        actor: &Actor,
        now: Timestamp,
        comment: Option<String>,
        review_id: &str,
    ) -> Result<Vec<EventDraft>, DomainError> {
        self.check_approver(actor)?;
        let next = self.state.after(TaskAction::Deny)?;
        self.state = next;
        self.decide_by = None;
        self.closing = Some(Decision {
            by: actor.identity.clone(),
            at: now,
            comment: comment.clone(),
        });
        let denied = self
            .event(EventType::TaskDenied, now, Some(&actor.identity))
            .payload(json!({"review": review_id, "comment": comment}));
        Ok(vec![denied])
    }

    /// The requester ends its own task before the window closes.
    pub fn end(&mut self, actor: &Actor, now: Timestamp) -> Result<Vec<EventDraft>, DomainError> {
        if !actor.identity.same_principal(&self.requester) {
            return Err(DomainError::Forbidden(
                "only the requester may end a task; approvers and admins revoke it".into(),
            ));
        }
        let was_pending = self.state == TaskState::Pending;
        let next = self.state.after(TaskAction::End)?;
        self.state = next;
        self.ends_at = Some(now);
        self.decide_by = None;
        self.closing = Some(Decision {
            by: actor.identity.clone(),
            at: now,
            comment: None,
        });
        let reason = if was_pending {
            "withdrawn by requester before a decision"
        } else {
            "ended by requester"
        };
        Ok(vec![
            self.event(EventType::TaskEnded, now, Some(&actor.identity))
                .payload(json!({"reason": reason})),
        ])
    }

    /// An approver of the task or an admin cuts it now.
    pub fn revoke(
        &mut self,
        actor: &Actor,
        now: Timestamp,
        comment: Option<String>,
    ) -> Result<Vec<EventDraft>, DomainError> {
        if !actor.admin && !self.may_decide(&actor.identity) {
            return Err(DomainError::Forbidden(format!(
                "{} may not revoke this task: only its approvers ({}) and admins may",
                actor.identity.subject,
                self.approvers.join(", ")
            )));
        }
        let next = self.state.after(TaskAction::Revoke)?;
        self.state = next;
        self.ends_at = Some(now);
        self.closing = Some(Decision {
            by: actor.identity.clone(),
            at: now,
            comment: comment.clone(),
        });
        Ok(vec![
            self.event(EventType::TaskRevoked, now, Some(&actor.identity))
                .payload(json!({"comment": comment})),
        ])
    }

    /// When the task must next change by itself: the end of its window, or
    /// the deadline of its pending request.
    pub fn deadline(&self) -> Option<Timestamp> {
        match self.state {
            TaskState::Pending => self.decide_by,
            TaskState::Active => self.ends_at,
            _ => None,
        }
    }

    /// Expires the task if its deadline has passed at `now`.
    pub fn expire(&mut self, now: Timestamp) -> Result<Vec<EventDraft>, DomainError> {
        let next = self.state.after(TaskAction::Expire)?;
        let deadline = self.deadline();
        if deadline.is_none_or(|d| d > now) {
            return Err(DomainError::Invalid(format!(
                "task {} is not due to expire yet",
                self.id
            )));
        }
        let reason = match self.state {
            TaskState::Pending => "nobody decided in time",
            _ => "window passed",
        };
        // The event is stamped when it is recorded, so the log's times never
        // run backwards; the payload keeps the deadline it passed, which
        // differs when the gateway was down at that moment.
        let deadline = deadline.unwrap_or(now);
        self.state = next;
        self.decide_by = None;
        Ok(vec![self.event(EventType::TaskExpired, now, None).payload(
            json!({"reason": reason, "deadline": deadline.to_string()}),
        )])
    }
}

#[cfg(test)]
mod tests;
