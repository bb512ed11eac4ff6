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

#[test]
fn extended_errors_skip_to_the_next_sync() {
    let mut t = Tracker::default();
    for e in [
        Expect::Parse,
        Expect::Bind,
        Expect::Execute(Running::new(1, t0())),
        Expect::Parse,
        Expect::Bind,
        Expect::Execute(Running::new(2, t0())),
        Expect::Made {
            bytes: b"X".to_vec(),
            ready: false,
        },
        Expect::Sync,
        Expect::Parse,
        Expect::Bind,
        Expect::Execute(Running::new(3, t0())),
        Expect::Sync,
    ] {
        t.expect(e);
    }
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
