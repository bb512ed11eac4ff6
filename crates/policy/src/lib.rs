//! Taskgate's domain: configuration and policy types, who may request what,
//! and the task and review state machines with the events each step records.
//!
//! Pure: no sockets, no files, no clock. Callers pass the time in.
#![forbid(unsafe_code)]

pub mod config;
mod duration;
mod grant;
mod matcher;
mod review;
mod secret;
mod statement;
pub mod steps;
mod task;

pub use duration::{HumanDuration, parse_duration, parse_time_bound};
pub use grant::{GrantDecision, Offer, TaskRequest, evaluate_request, offers};
pub use matcher::{Matcher, MatcherError};
pub use review::{Review, ReviewKind, ReviewState, statement_sha256};
pub use secret::{Secret, SecretRef};
pub use statement::{RuleError, StatementDecision, StatementPolicy};
pub use task::{
    Access, Actor, Decision, DomainError, Task, TaskAction, TaskState, validate_task_name,
};
pub use taskgate_audit::{Identity, IdentityKind};
