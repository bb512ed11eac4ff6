// Expectations whose Result is not checked are under the limit by construction.
#![allow(unused_must_use)]

use super::*;
use taskgate_wire_pg::backend::Fields;

fn t0() -> Instant {
    Instant::now()
}

fn error(code: &'static str) -> BackendMessage<'static> {
    BackendMessage::ErrorResponse(Fields {
        severity: "ERROR",
        code,
        message: "boom",
        hint: None,
    })
}

fn feed(
    tracker: &mut Tracker,
    messages: &[BackendMessage<'_>],
) -> Vec<(u64, Outcome, Option<u64>)> {
    let mut done = Vec::new();
    for m in messages {
        tracker.on_backend(m, 10, t0(), &mut done);
    }
    done.into_iter()
        .map(|c| (c.id, c.outcome, c.rows))
        .collect()
}

fn ok(tag: &str) -> Outcome {
    Outcome::Ok { tag: tag.into() }
}

#[test]
fn simple_query_completes_each_statement_in_order() {
    let mut t = Tracker::default();
    t.expect(Expect::Query(
        [Running::new(1, t0()), Running::new(2, t0())].into(),
    ));
    let done = feed(
        &mut t,
        &[
            BackendMessage::RowDescription,
            BackendMessage::DataRow,
            BackendMessage::DataRow,
            BackendMessage::CommandComplete("SELECT 2"),
            BackendMessage::CommandComplete("INSERT 0 3"),
            BackendMessage::ReadyForQuery(b'I'),
        ],
    );
    assert_eq!(
        done,
        vec![(1, ok("SELECT 2"), Some(2)), (2, ok("INSERT 0 3"), Some(3))]
    );
    assert!(t.is_idle());
}

#[test]
fn an_error_in_a_simple_query_skips_the_rest() {
    let mut t = Tracker::default();
    t.expect(Expect::Query(
        [
            Running::new(1, t0()),
            Running::new(2, t0()),
            Running::new(3, t0()),
        ]
        .into(),
    ));
    let done = feed(
        &mut t,
        &[
            BackendMessage::CommandComplete("BEGIN"),
            error("42P01"),
            BackendMessage::ReadyForQuery(b'E'),
        ],
    );
    let error = Outcome::Error {
        sqlstate: "42P01".into(),
        message: "boom".into(),
    };
    assert_eq!(
        done,
        vec![
            (1, ok("BEGIN"), None),
            (2, error, None),
            (3, Outcome::Skipped, None)
        ]
    );
}

fn prepared(sql: &str) -> Arc<Prepared> {
    Arc::new(Prepared {
        sql: sql.into(),
        class: Arc::new(taskgate_sqlclass::classify(sql)),
        review: None,
        by_sql: false,
        sent_as: None,
    })
}

fn portal(statement: &str, sql: &str) -> Option<Portal> {
    Some(Portal {
        statement: statement.into(),
        prepared: prepared(sql),
        params: Vec::new(),
    })
}

#[test]
fn extended_errors_skip_to_the_next_sync() {
    let mut t = Tracker::default();
    t.parse("", prepared("select 1")).unwrap();
    t.bind("", portal("", "select 1")).unwrap();
    t.expect(Expect::Execute(Running::new(1, t0()))).unwrap();
    t.parse("", prepared("selec 2")).unwrap();
    t.bind("", portal("", "selec 2")).unwrap();
    t.expect(Expect::Execute(Running::new(2, t0()))).unwrap();
    t.expect(Expect::Made {
        bytes: b"X".to_vec(),
        ready: false,
    })
    .unwrap();
    t.expect(Expect::Sync).unwrap();
    t.parse("", prepared("update t set x = 1")).unwrap();
    t.bind("", portal("", "update t set x = 1")).unwrap();
    t.expect(Expect::Execute(Running::new(3, t0()))).unwrap();
    t.expect(Expect::Sync).unwrap();
    let done = feed(
        &mut t,
        &[
            BackendMessage::ParseComplete,
            BackendMessage::BindComplete,
            BackendMessage::DataRow,
            BackendMessage::CommandComplete("SELECT 1"),
            error("42601"),
            BackendMessage::ReadyForQuery(b'I'),
            BackendMessage::ParseComplete,
            BackendMessage::BindComplete,
            BackendMessage::CommandComplete("UPDATE 4"),
            BackendMessage::ReadyForQuery(b'I'),
        ],
    );
    assert_eq!(
        done,
        vec![
            (1, ok("SELECT 1"), Some(1)),
            (2, Outcome::Skipped, None),
            (3, ok("UPDATE 4"), Some(4)),
        ]
    );
    assert!(t.is_idle(), "the made answer was skipped with the batch");
}

/// The server keeps the old statement when a Parse reuses a name (42P05):
/// the gateway must not believe the new text.
#[test]
fn a_refused_parse_leaves_the_old_statement() {
    let mut t = Tracker::default();
    t.parse("s1", prepared("delete from t")).unwrap();
    t.expect(Expect::Sync).unwrap();
    feed(
        &mut t,
        &[
            BackendMessage::ParseComplete,
            BackendMessage::ReadyForQuery(b'I'),
        ],
    );
    t.parse("s1", prepared("select 1")).unwrap();
    t.expect(Expect::Sync).unwrap();
    feed(
        &mut t,
        &[error("42P05"), BackendMessage::ReadyForQuery(b'I')],
    );
    assert_eq!(&*t.names.statement("s1").unwrap().sql, "delete from t");
    // A failed Parse of the unnamed statement leaves none (the server drops
    // the old one first).
    t.parse("", prepared("select 1")).unwrap();
    t.expect(Expect::Sync).unwrap();
    feed(
        &mut t,
        &[
            BackendMessage::ParseComplete,
            BackendMessage::ReadyForQuery(b'I'),
        ],
    );
    t.parse("", prepared("selec")).unwrap();
    t.expect(Expect::Sync).unwrap();
    feed(
        &mut t,
        &[error("42601"), BackendMessage::ReadyForQuery(b'I')],
    );
    assert!(t.names.statement("").is_none());
}

/// Messages the server skipped after an error undo their changes, newest
/// first: a skipped Close keeps the name, a skipped Parse adds none.
#[test]
fn skipped_messages_undo_their_changes() {
    let mut t = Tracker::default();
    t.parse("s1", prepared("delete from t")).unwrap();
    t.expect(Expect::Sync).unwrap();
    feed(
        &mut t,
        &[
            BackendMessage::ParseComplete,
            BackendMessage::ReadyForQuery(b'I'),
        ],
    );
    t.parse("", prepared("selec")).unwrap();
    t.close(Target::Statement, "s1").unwrap();
    t.parse("s1", prepared("select 1")).unwrap();
    t.parse("s2", prepared("select 2")).unwrap();
    t.expect(Expect::Sync).unwrap();
    assert_eq!(&*t.names.statement("s1").unwrap().sql, "select 1");
    feed(
        &mut t,
        &[error("42601"), BackendMessage::ReadyForQuery(b'I')],
    );
    assert_eq!(&*t.names.statement("s1").unwrap().sql, "delete from t");
    assert!(t.names.statement("s2").is_none());
    assert!(t.is_idle());
}

#[test]
fn clearing_the_names_outlasts_older_undos() {
    let mut t = Tracker::default();
    t.parse("s1", prepared("delete from t")).unwrap();
    t.expect(Expect::Sync).unwrap();
    feed(
        &mut t,
        &[
            BackendMessage::ParseComplete,
            BackendMessage::ReadyForQuery(b'I'),
        ],
    );
    t.close(Target::Statement, "s1").unwrap();
    t.expect(Expect::Sync).unwrap();
    t.names.forget(NameEffect::All);
    feed(
        &mut t,
        &[error("XX000"), BackendMessage::ReadyForQuery(b'I')],
    );
    assert!(
        t.names.statement("s1").is_none(),
        "the undo predates the clearing"
    );
}

/// In COPY IN the server ignores Sync: a Sync sent after the COPY's
/// Execute gets no ReadyForQuery of its own.
#[test]
fn syncs_during_copy_in_expect_nothing() {
    let mut t = Tracker::default();
    t.parse("", prepared("copy t from stdin")).unwrap();
    t.bind("", portal("", "copy t from stdin")).unwrap();
    t.expect(Expect::Execute(Running::new(1, t0()))).unwrap();
    t.expect(Expect::Sync).unwrap();
    let mut done = Vec::new();
    for m in [
        BackendMessage::ParseComplete,
        BackendMessage::BindComplete,
        BackendMessage::CopyInResponse,
    ] {
        t.on_backend(&m, 0, t0(), &mut done);
    }
    t.copy_in(10);
    t.expect(Expect::CopyEnd).unwrap();
    t.expect(Expect::Sync).unwrap();
    t.expect(Expect::Query([Running::new(2, t0())].into()))
        .unwrap();
    let done = feed(
        &mut t,
        &[
            BackendMessage::CommandComplete("COPY 2"),
            BackendMessage::ReadyForQuery(b'I'),
            BackendMessage::CommandComplete("SELECT 1"),
            BackendMessage::ReadyForQuery(b'I'),
        ],
    );
    assert_eq!(
        done,
        vec![(1, ok("COPY 2"), Some(2)), (2, ok("SELECT 1"), Some(1))]
    );
    assert!(t.is_idle());
}

#[test]
fn made_answers_go_out_between_the_servers() {
    let mut t = Tracker::default();
    t.parse("", prepared("select 1")).unwrap();
    t.expect(Expect::Execute(Running::new(1, t0()))).unwrap();
    t.expect(Expect::Made {
        bytes: b"ERR".to_vec(),
        ready: false,
    })
    .unwrap();
    t.expect(Expect::Sync).unwrap();
    let mut out = Vec::new();
    let mut done = Vec::new();
    for m in [
        BackendMessage::ParseComplete,
        BackendMessage::CommandComplete("SELECT 1"),
    ] {
        t.on_backend(&m, 0, t0(), &mut done);
        t.take_due(&mut out);
        out.extend_from_slice(b"|");
        t.take_made(&mut out);
    }
    assert_eq!(out, b"||ERR");
    t.on_backend(&BackendMessage::ReadyForQuery(b'I'), 0, t0(), &mut done);
    assert!(t.is_idle());
}

#[test]
fn outstanding_answers_are_bounded() {
    let mut t = Tracker::default();
    for _ in 0..MAX_OUTSTANDING {
        t.expect(Expect::Sync).unwrap();
    }
    assert_eq!(t.expect(Expect::Sync), Err(MAX_OUTSTANDING));
}

#[test]
fn made_answers_wait_their_turn() {
    let mut t = Tracker::default();
    t.expect(Expect::Query([Running::new(1, t0())].into()));
    t.expect(Expect::Made {
        bytes: b"ERR".to_vec(),
        ready: true,
    });
    let mut out = Vec::new();
    t.take_made(&mut out);
    assert!(out.is_empty(), "the query before it is still running");
    feed(
        &mut t,
        &[
            BackendMessage::CommandComplete("BEGIN"),
            BackendMessage::ReadyForQuery(b'T'),
        ],
    );
    t.take_made(&mut out);
    let mut want = b"ERR".to_vec();
    want.extend(enc::ready_for_query(b'T'));
    assert_eq!(
        out, want,
        "the made ReadyForQuery carries the current status"
    );
}

#[test]
fn copy_bytes_and_suspended_portals_are_counted() {
    let mut t = Tracker::default();
    t.expect(Expect::Execute(Running::new(1, t0())));
    t.expect(Expect::Execute(Running::new(2, t0())));
    t.copy_in(100);
    t.copy_in(50);
    let mut done = Vec::new();
    t.on_backend(
        &BackendMessage::CommandComplete("COPY 7"),
        0,
        t0(),
        &mut done,
    );
    t.on_backend(&BackendMessage::CopyData, 40, t0(), &mut done);
    t.on_backend(&BackendMessage::PortalSuspended, 0, t0(), &mut done);
    assert_eq!((done[0].copy_in_bytes, done[0].rows), (150, Some(7)));
    assert_eq!(
        (done[1].copy_out_bytes, done[1].outcome.clone()),
        (40, ok("SUSPENDED"))
    );
}

#[test]
fn abandoning_marks_open_commands_unknown() {
    let mut t = Tracker::default();
    t.expect(Expect::Execute(Running::new(1, t0())));
    t.expect(Expect::Query([Running::new(2, t0())].into()));
    let ids: Vec<_> = t
        .abandon(t0())
        .into_iter()
        .map(|c| (c.id, c.outcome))
        .collect();
    assert_eq!(ids, vec![(1, Outcome::Unknown), (2, Outcome::Unknown)]);
}

/// After an error in the extended protocol the server discards everything
/// up to Sync, simple queries included; the count of outstanding answers
/// follows, so nothing waits for an answer that will not come.
#[test]
fn a_query_after_an_extended_error_is_skipped_with_the_rest() {
    let mut t = Tracker::default();
    t.expect(Expect::Execute(Running::new(1, t0())));
    t.expect(Expect::Query([Running::new(2, t0())].into()));
    t.expect(Expect::Sync);
    assert_eq!(t.unanswered(), 2);
    let done = feed(&mut t, &[error("22012")]);
    assert_eq!(done.len(), 2);
    assert_eq!(done[1], (2, Outcome::Skipped, None));
    assert_eq!(t.unanswered(), 1, "only the Sync is still to be answered");
    feed(&mut t, &[BackendMessage::ReadyForQuery(b'I')]);
    assert_eq!(t.unanswered(), 0);
    assert!(t.is_idle());
}

/// An error that came back before the Sync was sent: a query sent after it
/// is discarded by the server too, so it is completed as skipped and
/// waits for no answer.
#[test]
fn a_query_sent_while_the_server_discards_is_skipped() {
    let mut t = Tracker::default();
    t.expect(Expect::Execute(Running::new(1, t0())));
    feed(&mut t, &[error("22012")]);
    t.expect(Expect::Query([Running::new(2, t0())].into()));
    assert_eq!(t.unanswered(), 0);
    t.expect(Expect::Sync);
    let done = feed(&mut t, &[BackendMessage::ReadyForQuery(b'I')]);
    assert_eq!(done, vec![(2, Outcome::Skipped, None)]);
    assert_eq!(t.unanswered(), 0);
    // After the Sync, queries are answered again.
    t.expect(Expect::Query([Running::new(3, t0())].into()));
    assert_eq!(t.unanswered(), 1);
}

/// A refusal of the gateway's own at the head of the line goes out before
/// the next server message, which then finds what it answers.
#[test]
fn a_made_answer_ahead_of_a_server_error_goes_first() {
    let mut t = Tracker::default();
    t.expect(Expect::Made {
        bytes: b"made".to_vec(),
        ready: true,
    });
    t.expect(Expect::Execute(Running::new(1, t0())));
    t.expect(Expect::Sync);
    let mut done = Vec::new();
    t.on_backend(&error("26000"), 10, t0(), &mut done);
    let mut out = Vec::new();
    t.take_due(&mut out);
    assert!(out.starts_with(b"made"), "{out:?}");
    assert_eq!(done.len(), 1, "the error completes the Execute");
    feed(&mut t, &[BackendMessage::ReadyForQuery(b'I')]);
    assert_eq!(t.unanswered(), 0);
    assert!(t.is_idle());
}

/// Portals end with their transaction.
#[test]
fn portals_are_dropped_when_the_server_is_idle_again() {
    let mut t = Tracker::default();
    let prepared = Arc::new(Prepared {
        sql: "SELECT 1".into(),
        class: Arc::new(taskgate_sqlclass::classify("SELECT 1")),
        review: None,
        by_sql: false,
        sent_as: None,
    });
    t.parse("s", Arc::clone(&prepared));
    t.bind(
        "p",
        Some(Portal {
            statement: "s".into(),
            prepared,
            params: vec![],
        }),
    );
    t.expect(Expect::Sync);
    feed(
        &mut t,
        &[
            BackendMessage::ParseComplete,
            BackendMessage::BindComplete,
            BackendMessage::ReadyForQuery(b'T'),
        ],
    );
    assert!(t.names.portal("p").is_some(), "kept inside a transaction");
    assert!(t.names.statement("s").is_some());
    t.expect(Expect::Sync);
    feed(&mut t, &[BackendMessage::ReadyForQuery(b'I')]);
    assert!(t.names.portal("p").is_none(), "gone with the transaction");
    assert!(t.names.statement("s").is_some(), "statements outlive it");
}

#[test]
fn rows_past_a_cap_are_counted_but_not_delivered() {
    let caps = ResultCaps {
        max_rows: 2,
        max_bytes: 10,
    };
    let mut d = Delivered::default();
    for bytes in [3, 3, 3] {
        d.row(caps, bytes);
    }
    assert_eq!((d.taken, d.cut), (2, true), "cut by rows");
    let mut d = Delivered::default();
    for bytes in [4, 20, 1] {
        d.row(caps, bytes);
    }
    // Once a row is not taken, no later one is, small as it may be.
    assert_eq!((d.taken, d.cut), (1, true), "cut by bytes");
}
