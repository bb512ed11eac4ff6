//! The API's request and response shapes, documented in the OpenAPI file.

use serde::{Deserialize, Serialize};
use taskgate_audit::Timestamp;
use taskgate_policy::{Decision, Identity, Review, ReviewKind, Task};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityView {
    pub subject: String,
    pub issuer: String,
    /// `agent` or `human`.
    pub kind: String,
    pub groups: Vec<String>,
    /// Claims kept from the identity's token (for GitHub Actions: the
    /// repository, workflow, run id and actor).
    pub claims: std::collections::BTreeMap<String, String>,
}

impl From<&Identity> for IdentityView {
    fn from(i: &Identity) -> Self {
        Self {
            subject: i.subject.clone(),
            issuer: i.issuer.clone(),
            kind: i.kind.as_str().to_owned(),
            groups: i.groups.clone(),
            claims: i.claims.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    pub by: IdentityView,
    pub at: String,
    pub comment: Option<String>,
}

impl From<&Decision> for DecisionView {
    fn from(d: &Decision) -> Self {
        Self {
            by: (&d.by).into(),
            at: d.at.to_string(),
            comment: d.comment.clone(),
        }
    }
}

fn time(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_string())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    pub id: String,
    pub name: String,
    pub reason: Option<String>,
    /// External reference: an issue or pull request.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub connection: String,
    /// `read`, `write` or `admin`.
    pub access: String,
    /// The window length, e.g. `15m`.
    pub window: String,
    pub window_secs: u64,
    /// `pending`, `active`, `ended`, `expired`, `revoked` or `denied`.
    pub status: String,
    pub requester: IdentityView,
    pub requested_at: String,
    /// While pending: when the request expires undecided.
    pub decide_by: Option<String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    /// Who may approve, deny and revoke.
    pub approvers: Vec<String>,
    pub approval: Option<DecisionView>,
    /// Who ended, revoked or denied the task.
    pub closing: Option<DecisionView>,
    /// The pending grant review, if the task awaits one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
}

impl TaskView {
    pub fn new(t: &Task, review: Option<String>) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            reason: t.reason.clone(),
            reference: t.reference.clone(),
            connection: t.connection.clone(),
            access: t.access.as_str().to_owned(),
            window: humantime::format_duration(t.window()).to_string(),
            window_secs: t.window_secs,
            status: t.state.as_str().to_owned(),
            requester: (&t.requester).into(),
            requested_at: t.requested_at.to_string(),
            decide_by: time(t.decide_by),
            starts_at: time(t.starts_at),
            ends_at: time(t.ends_at),
            approvers: t.approvers.clone(),
            approval: t.approval.as_ref().map(Into::into),
            closing: t.closing.as_ref().map(Into::into),
            review,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedTask {
    #[serde(flatten)]
    pub task: TaskView,
    /// The task's token. Shown once: the gateway keeps only its hash.
    pub token: String,
    /// Ready to use with any PostgreSQL client once the task is active.
    pub connection_string: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewView {
    pub id: String,
    /// `grant` (whether a task gets its window) or `statement`.
    pub kind: String,
    pub status: String,
    /// The exact statement, for statement reviews.
    pub statement: Option<String>,
    pub requested_at: String,
    pub approvers: Vec<String>,
    pub decision: Option<DecisionView>,
    /// The task under review: who asked, for what, and why.
    pub task: TaskView,
}

impl ReviewView {
    pub fn new(r: &Review, task: &Task) -> Self {
        let statement = match &r.kind {
            ReviewKind::Grant => None,
            ReviewKind::Statement { text, .. } => Some(text.clone()),
        };
        Self {
            id: r.id.clone(),
            kind: match r.kind {
                ReviewKind::Grant => "grant",
                ReviewKind::Statement { .. } => "statement",
            }
            .to_owned(),
            status: r.state.as_str().to_owned(),
            statement,
            requested_at: r.requested_at.to_string(),
            approvers: r.approvers.clone(),
            decision: r.decision.as_ref().map(Into::into),
            task: TaskView::new(task, None),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    /// A short name for the work, e.g. `migrate-orders`.
    pub name: String,
    pub connection: String,
    /// `read`, `write` or `admin`.
    pub access: String,
    /// How long the window stays open once active, e.g. `15m`.
    pub window: String,
    pub reason: Option<String>,
    /// An issue or pull request URL.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentRequest {
    pub comment: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskListQuery {
    /// Only tasks in this status.
    pub status: Option<String>,
    /// Only tasks requested by this subject.
    pub identity: Option<String>,
    /// Only tasks on this connection.
    pub connection: Option<String>,
    /// At most this many (newest first); default 100.
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyView {
    pub ok: bool,
    pub events: u64,
    pub chain: Option<String>,
    pub head_seq: u64,
    pub head_hash: String,
    /// Signed checkpoints found in the chain.
    pub checkpoints: u64,
    /// The last record the newest checkpoint in the chain covers.
    pub checkpoint_seq: Option<u64>,
    /// Whether checkpoint signatures were checked against a trusted key.
    pub signatures_checked: bool,
    /// Checkpoint copies from outside the store that were checked.
    pub external_checkpoints: u64,
    /// The first bad record, if any.
    pub problem: Option<String>,
    /// The search index checked against the chain, when it was.
    pub index: Option<IndexCheckView>,
    /// Whether the checkpoint copies sit on the same disk as the store, and
    /// so protect nothing against someone who holds that disk.
    pub checkpoint_dir_on_store_disk: Option<bool>,
}

/// The search index compared with a fresh one built from the chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexCheckView {
    /// The last record the index covers, and so the check.
    pub through_seq: u64,
    /// The first difference; `taskgate audit reindex` mends the index.
    pub problem: Option<String>,
}

impl VerifyView {
    /// Adds the index check; a difference makes the answer not ok.
    pub fn with_index(mut self, check: taskgate_store::index::IndexCheck) -> Self {
        self.ok &= check.problem.is_none();
        self.index = Some(IndexCheckView {
            through_seq: check.through_seq,
            problem: check.problem,
        });
        self
    }

    pub fn with_checkpoint_disk(mut self, same_disk: Option<bool>) -> Self {
        self.checkpoint_dir_on_store_disk = same_disk;
        self
    }
}

impl From<taskgate_audit::VerifyReport> for VerifyView {
    fn from(report: taskgate_audit::VerifyReport) -> Self {
        Self {
            index: None,
            checkpoint_dir_on_store_disk: None,
            ok: report.ok(),
            events: report.events,
            chain: report.chain,
            head_seq: report.head_seq,
            head_hash: report.head_hash,
            checkpoints: report.checkpoints,
            checkpoint_seq: report.checkpoint_seq,
            signatures_checked: report.signatures_checked,
            external_checkpoints: report.external_checkpoints,
            problem: report.problem.map(|p| p.to_string()),
        }
    }
}
