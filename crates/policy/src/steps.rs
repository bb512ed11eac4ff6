//! Each step on tasks and reviews as a pure function: given what the store
//! read, the [`Change`] to write (rows and events, in one transaction) and
//! the answer for the caller. Every store applies these; none decides a
//! domain rule of its own (which task may be ended, that an overdue task
//! expires before anything else happens to it, ...).

use taskgate_audit::{EventDraft, Timestamp};

use crate::review::{Review, ReviewKind, ReviewState};
use crate::task::{Actor, DomainError, Task, TaskState};

/// Rows to write and events to append, all or nothing.
#[derive(Debug, Default)]
pub struct Change {
    /// A new task (with its token's secrets, which the store holds).
    pub new_task: Option<Task>,
    pub new_reviews: Vec<Review>,
    /// Tasks and reviews as they are after the step.
    pub tasks: Vec<Task>,
    pub reviews: Vec<Review>,
    pub events: Vec<EventDraft>,
}

impl Change {
    fn then(mut self, more: Change) -> Change {
        self.new_task = self.new_task.or(more.new_task);
        self.new_reviews.extend(more.new_reviews);
        self.tasks.extend(more.tasks);
        self.reviews.extend(more.reviews);
        self.events.extend(more.events);
        self
    }
}

/// A step's outcome: what to write (even when the caller is refused: an
/// overdue task expires either way), and the caller's answer.
#[derive(Debug)]
pub struct Step<T> {
    pub change: Change,
    pub answer: Result<T, DomainError>,
}

impl<T> Step<T> {
    fn refused(change: Change, error: DomainError) -> Self {
        Step {
            change,
            answer: Err(error),
        }
    }
}

/// Expires `task` if its deadline has passed, with its pending grant review
/// (`pending_grant`): the change and why the caller's step is refused.
/// Every step on a task goes through here first, so no late approval, end
/// or revoke can outrun the scheduler and give a task time it no longer has.
pub fn expire_if_overdue(
    task: &mut Task,
    pending_grant: Option<Review>,
    now: Timestamp,
) -> Option<(Change, DomainError)> {
    let deadline = task.deadline().filter(|d| *d <= now)?;
    let events = task.expire(now).ok()?;
    let mut change = Change {
        tasks: vec![task.clone()],
        events,
        ..Change::default()
    };
    if let Some(mut review) = pending_grant
        && review.expire().is_ok()
    {
        change.reviews.push(review);
    }
    let why = DomainError::Conflict(format!("task {} expired at {deadline}", task.id));
    Some((change, why))
}

/// How much one identity may have open at once, so one agent cannot bury
/// a real request under its own (`[server]` `max_open_tasks_per_identity`,
/// `max_held_statements_per_identity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityLimits {
    /// Pending and active tasks it requested.
    pub open_tasks: usize,
    /// Statements of its tasks waiting for a review.
    pub held_statements: usize,
}

impl IdentityLimits {
    pub const NONE: IdentityLimits = IdentityLimits {
        open_tasks: usize::MAX,
        held_statements: usize::MAX,
    };
}

/// A new task, with the grant review it waits on when it needs one.
/// `open` is how many pending or active tasks its requester has.
pub fn create_task(
    exists: bool,
    open: usize,
    limits: IdentityLimits,
    task: Task,
    review: Option<Review>,
) -> Step<Task> {
    if exists {
        let why = DomainError::Conflict(format!("task {} already exists", task.id));
        return Step::refused(Change::default(), why);
    }
    if open >= limits.open_tasks {
        let why = DomainError::Limit(format!(
            "{} already has {open} open tasks, the most server.max_open_tasks_per_identity ({}) allows: end one first",
            task.requester.subject, limits.open_tasks
        ));
        return Step::refused(Change::default(), why);
    }
    let events = task.requested_events(review.as_ref().map(|r| r.id.as_str()));
    Step {
        change: Change {
            new_task: Some(task.clone()),
            new_reviews: review.into_iter().collect(),
            events,
            ..Change::default()
        },
        answer: Ok(task),
    }
}

/// A step that changes one task (end, revoke), after the overdue check.
fn on_task(
    mut task: Task,
    pending_grant: Option<Review>,
    now: Timestamp,
    step: impl FnOnce(&mut Task) -> Result<Vec<EventDraft>, DomainError>,
) -> (Step<Task>, Option<Review>) {
    let grant = pending_grant.clone();
    if let Some((change, why)) = expire_if_overdue(&mut task, pending_grant, now) {
        return (Step::refused(change, why), None);
    }
    match step(&mut task) {
        Err(why) => (Step::refused(Change::default(), why), None),
        Ok(events) => (
            Step {
                change: Change {
                    tasks: vec![task.clone()],
                    events,
                    ..Change::default()
                },
                answer: Ok(task),
            },
            grant,
        ),
    }
}

/// The requester ends its task; a request still pending is withdrawn, and
/// its grant review lapses with it, so no one is asked to decide it.
pub fn end_task(
    task: Task,
    pending_grant: Option<Review>,
    actor: &Actor,
    now: Timestamp,
) -> Step<Task> {
    let was_pending = task.state == TaskState::Pending;
    let (mut step, grant) = on_task(task, pending_grant, now, |t| t.end(actor, now));
    if was_pending
        && step.answer.is_ok()
        && let Some(mut review) = grant
        && review.expire().is_ok()
    {
        step.change.reviews.push(review);
    }
    step
}

pub fn revoke_task(
    task: Task,
    pending_grant: Option<Review>,
    actor: &Actor,
    comment: Option<String>,
    now: Timestamp,
) -> Step<Task> {
    on_task(task, pending_grant, now, |t| t.revoke(actor, now, comment)).0
}

/// Decides a grant or statement review of `task`.
pub fn decide_review(
    mut review: Review,
    mut task: Task,
    pending_grant: Option<Review>,
    actor: &Actor,
    approve: bool,
    comment: Option<String>,
    now: Timestamp,
) -> Step<(Review, Task)> {
    if let Some((change, why)) = expire_if_overdue(&mut task, pending_grant, now) {
        return Step::refused(change, why);
    }
    let decided = match review.kind {
        ReviewKind::Grant => review.decide_grant(&mut task, actor, approve, comment, now),
        ReviewKind::Statement { .. } => {
            review.decide_statement(&task, actor, approve, comment, now)
        }
    };
    match decided {
        Err(why) => Step::refused(Change::default(), why),
        Ok(events) => Step {
            change: Change {
                tasks: vec![task.clone()],
                reviews: vec![review.clone()],
                events,
                ..Change::default()
            },
            answer: Ok((review, task)),
        },
    }
}

/// What a statement review is asked in: where it was held, why, and how
/// many statements of the requester's tasks already wait.
pub struct StatementHold<'a> {
    pub session: &'a str,
    pub connection: &'a str,
    pub reason: &'a str,
    pub held: usize,
}

/// Holds a statement for review, if its task is still active and its
/// requester is under its limit of held statements.
pub fn request_statement_review(
    mut task: Task,
    pending_grant: Option<Review>,
    review: Review,
    hold: StatementHold<'_>,
    limits: IdentityLimits,
    now: Timestamp,
) -> Step<Review> {
    if let Some((change, why)) = expire_if_overdue(&mut task, pending_grant, now) {
        return Step::refused(change, why);
    }
    if task.state != TaskState::Active {
        let why = DomainError::Conflict(format!("task {} is {}", task.id, task.state));
        return Step::refused(Change::default(), why);
    }
    if hold.held >= limits.held_statements {
        let why = DomainError::Limit(format!(
            "{} already has {} statements waiting for review, the most server.max_held_statements_per_identity ({}) allows: wait for one to be decided",
            task.requester.subject, hold.held, limits.held_statements
        ));
        return Step::refused(Change::default(), why);
    }
    let (session, connection, reason) = (hold.session, hold.connection, hold.reason);
    let event = review.requested_event(session, connection, reason);
    Step {
        change: Change {
            new_reviews: vec![review.clone()],
            events: vec![event],
            ..Change::default()
        },
        answer: Ok(review),
    }
}

/// Closes a statement review nobody decided in time; one already decided
/// is answered as it stands.
pub fn lapse_review(mut review: Review, why: &str, now: Timestamp) -> Step<Review> {
    if review.state != ReviewState::Pending {
        return Step {
            change: Change::default(),
            answer: Ok(review),
        };
    }
    match review.lapse(now, why) {
        Err(e) => Step::refused(Change::default(), e),
        Ok(events) => Step {
            change: Change {
                reviews: vec![review.clone()],
                events,
                ..Change::default()
            },
            answer: Ok(review),
        },
    }
}

/// Expires every task in `due` (each with its pending grant review) whose
/// deadline has passed; answers the expired ones.
pub fn expire_due(due: Vec<(Task, Option<Review>)>, now: Timestamp) -> Step<Vec<Task>> {
    let mut change = Change::default();
    let mut expired = Vec::new();
    for (mut task, grant) in due {
        if let Some((more, _)) = expire_if_overdue(&mut task, grant, now) {
            change = change.then(more);
            expired.push(task);
        }
    }
    Step {
        change,
        answer: Ok(expired),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use taskgate_audit::{EventType, Identity, IdentityKind};

    use super::*;
    use crate::Access;

    fn agent() -> Actor {
        Actor {
            identity: Identity {
                claims: Default::default(),
                groups: vec![],
                issuer: "dev".into(),
                kind: IdentityKind::Agent,
                subject: "copilot".into(),
            },
            admin: false,
        }
    }

    fn t0() -> Timestamp {
        Timestamp::from_micros(1_000_000)
    }

    fn pending() -> Task {
        Task {
            id: "tsk_1".into(),
            name: "migrate-orders".into(),
            reason: None,
            reference: None,
            connection: "orders-db".into(),
            access: Access::Write,
            window_secs: 60,
            requester: agent().identity,
            state: TaskState::Pending,
            requested_at: t0(),
            decide_by: Some(t0().plus(Duration::from_secs(30))),
            starts_at: None,
            ends_at: None,
            approvers: vec!["group:dba".into()],
            approval: None,
            closing: None,
        }
    }

    fn types(change: &Change) -> Vec<EventType> {
        change.events.iter().map(|e| e.event_type).collect()
    }

    #[test]
    fn an_overdue_task_expires_before_any_step_and_the_step_is_refused() {
        let task = pending();
        let grant = Review::for_grant("rev_1".into(), &task);
        let late = t0().plus(Duration::from_secs(31));
        let step = end_task(task, Some(grant), &agent(), late);
        assert!(matches!(step.answer, Err(DomainError::Conflict(ref m)) if m.contains("expired")));
        assert_eq!(step.change.tasks[0].state, TaskState::Expired);
        assert_eq!(step.change.reviews[0].state, ReviewState::Expired);
        assert_eq!(types(&step.change), [EventType::TaskExpired]);
    }

    #[test]
    fn a_withdrawn_request_lapses_its_grant_review() {
        let task = pending();
        let grant = Review::for_grant("rev_1".into(), &task);
        let step = end_task(task, Some(grant), &agent(), t0());
        assert_eq!(step.answer.map(|t| t.state).ok(), Some(TaskState::Ended));
        assert_eq!(step.change.reviews[0].state, ReviewState::Expired);
    }

    #[test]
    fn a_task_is_created_once() {
        let none = IdentityLimits::NONE;
        let again = create_task(true, 0, none, pending(), None);
        assert!(again.answer.is_err());
        assert!(again.change.new_task.is_none() && again.change.events.is_empty());
        let first = create_task(false, 0, none, pending(), None);
        assert_eq!(
            first.change.new_task.as_ref().map(|t| t.id.as_str()),
            Some("tsk_1")
        );
        assert_eq!(types(&first.change)[0], EventType::TaskRequested);
    }

    #[test]
    fn an_identity_opens_and_holds_no_more_than_its_limits() {
        let limits = IdentityLimits {
            open_tasks: 2,
            held_statements: 3,
        };
        assert!(
            create_task(false, 1, limits, pending(), None)
                .answer
                .is_ok()
        );
        let over = create_task(false, 2, limits, pending(), None);
        assert!(
            matches!(&over.answer, Err(DomainError::Limit(m)) if m.contains("max_open_tasks_per_identity (2)")),
            "{:?}",
            over.answer
        );
        assert!(over.change.new_task.is_none() && over.change.events.is_empty());
        let active = || {
            let mut task = pending();
            task.state = TaskState::Active;
            task
        };
        let hold = |held| StatementHold {
            session: "ses_1",
            connection: "orders-db",
            reason: "ddl",
            held,
        };
        let review = |task: &Task| {
            Review::for_statement(
                "rev_3".into(),
                &task.id,
                &task.requester,
                "ALTER TABLE t ADD c int",
                vec![],
                t0(),
            )
        };
        let task = active();
        let r = review(&task);
        assert!(
            request_statement_review(task, None, r, hold(2), limits, t0())
                .answer
                .is_ok()
        );
        let task = active();
        let r = review(&task);
        let over = request_statement_review(task, None, r, hold(3), limits, t0());
        assert!(
            matches!(&over.answer, Err(DomainError::Limit(m)) if m.contains("max_held_statements_per_identity (3)")),
            "{:?}",
            over.answer
        );
        assert!(over.change.new_reviews.is_empty() && over.change.events.is_empty());
    }

    #[test]
    fn statements_are_held_only_while_the_task_is_active() {
        let task = pending();
        let review = Review::for_statement(
            "rev_2".into(),
            &task.id,
            &task.requester,
            "ALTER TABLE t ADD c int",
            vec![],
            t0(),
        );
        let hold = StatementHold {
            session: "ses_1",
            connection: "orders-db",
            reason: "ddl",
            held: 0,
        };
        let step = request_statement_review(task, None, review, hold, IdentityLimits::NONE, t0());
        assert!(matches!(step.answer, Err(DomainError::Conflict(ref m)) if m.contains("pending")));
        assert!(step.change.new_reviews.is_empty());
    }
}
