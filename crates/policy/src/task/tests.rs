use super::*;
use taskgate_audit::IdentityKind;

fn identity(subject: &str, kind: IdentityKind, groups: &[&str]) -> Identity {
    Identity {
        claims: Default::default(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        issuer: "dev".into(),
        kind,
        subject: subject.into(),
    }
}

fn agent() -> Actor {
    Actor {
        identity: identity("copilot", IdentityKind::Agent, &[]),
        admin: false,
    }
}

fn alice() -> Actor {
    Actor {
        identity: identity("alice", IdentityKind::Human, &["dba"]),
        admin: false,
    }
}

fn task(state: TaskState) -> Task {
    let t0 = Timestamp::from_micros(1_000_000);
    Task {
        id: "tsk_1".into(),
        name: "migrate-orders".into(),
        reason: None,
        reference: None,
        connection: "orders-db".into(),
        access: Access::Write,
        window_secs: 60,
        requester: agent().identity,
        state,
        requested_at: t0,
        decide_by: (state == TaskState::Pending).then(|| t0.plus(Duration::from_secs(30))),
        starts_at: (state != TaskState::Pending).then_some(t0),
        ends_at: (state != TaskState::Pending).then(|| t0.plus(Duration::from_secs(60))),
        approvers: vec!["group:dba".into()],
        approval: None,
        closing: None,
    }
}

/// Every (state, action) pair, legal or not, with the state it leads to.
#[test]
fn state_machine_table() {
    use TaskAction as A;
    use TaskState as S;
    let legal = [
        (S::Pending, A::Approve, S::Active),
        (S::Pending, A::Deny, S::Denied),
        (S::Pending, A::Expire, S::Expired),
        (S::Active, A::End, S::Ended),
        (S::Active, A::Expire, S::Expired),
        (S::Active, A::Revoke, S::Revoked),
        (S::Pending, A::End, S::Ended),
    ];
    for from in TaskState::ALL {
        for action in TaskAction::ALL {
            let expected = legal
                .iter()
                .find(|(f, a, _)| *f == from && *a == action)
                .map(|(_, _, to)| *to);
            match (from.after(action), expected) {
                (Ok(to), Some(want)) => assert_eq!(to, want, "{from} {action:?}"),
                (Err(DomainError::IllegalTransition { .. }), None) => {}
                (got, want) => panic!("{from} {action:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}

/// The operations themselves refuse illegal steps and leave the task as it was.
#[test]
fn operations_refuse_illegal_transitions_without_change() {
    let late = Timestamp::from_micros(i64::MAX / 2);
    for state in TaskState::ALL {
        let legal_ops: Vec<TaskAction> = TaskAction::ALL
            .into_iter()
            .filter(|a| state.after(*a).is_ok())
            .collect();
        for action in TaskAction::ALL {
            let mut t = task(state);
            let before = t.clone();
            let result = match action {
                TaskAction::Approve => t.approve(&alice(), late, None, "rev_1"),
                TaskAction::Deny => t.deny(&alice(), late, None, "rev_1"),
                TaskAction::End => t.end(&agent(), late),
                TaskAction::Revoke => t.revoke(&alice(), late, None),
                TaskAction::Expire => t.expire(late),
            };
            if legal_ops.contains(&action) {
                assert!(result.is_ok(), "{state} {action:?}: {result:?}");
                assert_eq!(t.state, state.after(action).unwrap_or(state));
            } else {
                let err = result.err();
                assert!(
                    matches!(err, Some(DomainError::IllegalTransition { .. })),
                    "{state} {action:?}: {err:?}"
                );
                assert_eq!(t, before, "{state} {action:?} changed the task");
            }
        }
    }
}

#[test]
fn approval_opens_the_window_and_records_events() -> Result<(), DomainError> {
    let mut t = task(TaskState::Pending);
    let now = Timestamp::from_micros(5_000_000);
    let events = t.approve(&alice(), now, Some("go".into()), "rev_1")?;
    assert_eq!(t.state, TaskState::Active);
    assert_eq!(t.ends_at, Some(now.plus(Duration::from_secs(60))));
    let types: Vec<_> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(types, [EventType::TaskApproved, EventType::TaskActivated]);
    assert_eq!(events[0].identity.as_ref(), Some(&alice().identity));
    Ok(())
}

#[test]
fn requester_can_never_approve_its_own_task() {
    let mut t = task(TaskState::Pending);
    // Even when the requester is in the approvers' group.
    t.requester = alice().identity;
    let now = Timestamp::from_micros(5_000_000);
    assert_eq!(
        t.approve(&alice(), now, None, "rev_1"),
        Err(DomainError::SelfApproval)
    );
    assert_eq!(
        t.deny(&alice(), now, None, "rev_1"),
        Err(DomainError::SelfApproval)
    );
    assert_eq!(t.state, TaskState::Pending);
}

#[test]
fn only_approvers_decide_and_only_approvers_or_admins_revoke() {
    let now = Timestamp::from_micros(5_000_000);
    let bob = Actor {
        identity: identity("bob", IdentityKind::Human, &["dev"]),
        admin: false,
    };
    let mut pending = task(TaskState::Pending);
    assert!(matches!(
        pending.approve(&bob, now, None, "r"),
        Err(DomainError::Forbidden(_))
    ));
    let mut active = task(TaskState::Active);
    assert!(matches!(
        active.revoke(&bob, now, None),
        Err(DomainError::Forbidden(_))
    ));
    let admin = Actor { admin: true, ..bob };
    assert!(active.revoke(&admin, now, None).is_ok());
    assert_eq!(active.state, TaskState::Revoked);
}

#[test]
fn only_the_requester_ends_its_task() {
    let now = Timestamp::from_micros(5_000_000);
    let mut t = task(TaskState::Active);
    assert!(matches!(
        t.end(&alice(), now),
        Err(DomainError::Forbidden(_))
    ));
    assert!(t.end(&agent(), now).is_ok());
}

#[test]
fn expiry_waits_for_the_deadline() {
    let mut t = task(TaskState::Active);
    let before = Timestamp::from_micros(2_000_000);
    assert!(matches!(t.expire(before), Err(DomainError::Invalid(_))));
    let after = Timestamp::from_micros(61_000_001);
    let events = t.expire(after).unwrap_or_default();
    assert_eq!(t.state, TaskState::Expired);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload["reason"], "window passed");
}

#[test]
fn task_names_are_checked() {
    assert!(validate_task_name("migrate-orders").is_ok());
    assert!(validate_task_name("fix_1.2").is_ok());
    for bad in ["", "-x", "Migrate", "a b", "x;drop", &"a".repeat(65)] {
        assert!(validate_task_name(bad).is_err(), "{bad:?}");
    }
}

mod statement_reviews {
    use super::*;
    use crate::{Review, ReviewKind, ReviewState, statement_sha256};

    fn held(task: &Task) -> Review {
        Review::for_statement(
            "rev_1".into(),
            &task.id,
            &task.requester,
            "ALTER TABLE orders ADD note text",
            vec!["group:dba".into()],
            Timestamp::from_micros(2_000_000),
        )
    }

    #[test]
    fn a_statement_review_is_bound_to_the_exact_text() {
        let review = held(&task(TaskState::Active));
        let ReviewKind::Statement { text, sha256 } = &review.kind else {
            panic!("not a statement review")
        };
        assert_eq!(sha256, &statement_sha256(text));
        assert_ne!(
            sha256,
            &statement_sha256("ALTER TABLE orders ADD note  text")
        );
        assert!(review.may_decide(&alice().identity));
        assert!(!review.may_decide(&agent().identity));
    }

    #[test]
    fn only_an_approver_other_than_the_requester_decides_while_the_task_is_active() {
        let active = task(TaskState::Active);
        let now = Timestamp::from_micros(3_000_000);
        let mut review = held(&active);
        assert_eq!(
            review.decide_statement(&active, &agent(), true, None, now),
            Err(DomainError::SelfApproval)
        );
        let bob = Actor {
            identity: identity("bob", IdentityKind::Human, &["dev"]),
            admin: false,
        };
        assert!(matches!(
            review.decide_statement(&active, &bob, true, None, now),
            Err(DomainError::Forbidden(_))
        ));
        let ended = task(TaskState::Expired);
        assert!(matches!(
            review.decide_statement(&ended, &alice(), true, None, now),
            Err(DomainError::Conflict(_))
        ));
        let events = review
            .decide_statement(&active, &alice(), true, Some("ok".into()), now)
            .unwrap_or_default();
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].event_type,
            taskgate_audit::EventType::ReviewApproved
        );
        assert_eq!(review.state, ReviewState::Approved);
        // Decided once: a second decision, or a lapse, is a conflict.
        assert!(
            review
                .decide_statement(&active, &alice(), false, None, now)
                .is_err()
        );
        assert!(review.lapse(now, "late").is_err());
    }

    #[test]
    fn an_undecided_review_lapses_with_the_reason() {
        let mut review = held(&task(TaskState::Active));
        let events = review
            .lapse(Timestamp::from_micros(4_000_000), "no decision within 5m")
            .unwrap_or_default();
        assert_eq!(review.state, ReviewState::Expired);
        assert_eq!(events[0].payload["reason"], "no decision within 5m");
        assert!(events[0].identity.is_none());
    }
}
