use std::path::{Path, PathBuf};

use serde_json::json;
use taskgate_audit::{EventDraft, EventType, Identity, IdentityKind, Timestamp};

use super::*;
use crate::Writer;
use crate::sqlite::{self, Durability};

fn who(subject: &str, kind: IdentityKind) -> Identity {
    Identity {
        claims: Default::default(),
        groups: vec![],
        issuer: "dev".into(),
        kind,
        subject: subject.into(),
    }
}

/// Minutes after a fixed day's midnight.
fn at(minute: i64) -> Timestamp {
    Timestamp::from_micros(1_795_000_000_000_000 + minute * 60_000_000)
}

struct Script {
    drafts: Vec<EventDraft>,
    commands: u64,
}

impl Script {
    fn task(&mut self, id: &str, name: &str, requester: &Identity, approver: Option<&Identity>) {
        let base = |t, m| EventDraft::new(t, at(m)).task(id).connection("shop");
        self.drafts.push(
            base(EventType::TaskRequested, 0)
                .identity(requester)
                .payload(
                    json!({"name": name, "ref": format!("acme/shop#{name}"), "access": "write"}),
                ),
        );
        if let Some(approver) = approver {
            self.drafts
                .push(base(EventType::TaskApproved, 1).identity(approver));
        }
        self.drafts.push(base(EventType::TaskActivated, 1));
    }

    /// A statement of `task` at `minute`, with its completion.
    fn statement(
        &mut self,
        task: &str,
        who: &Identity,
        minute: i64,
        (sql, class): (&str, &str),
        read: &[&str],
        written: &[&str],
    ) {
        self.commands += 1;
        let base = |t| {
            EventDraft::new(t, at(minute))
                .identity(who)
                .task(task)
                .session(format!("ses_{task}"))
                .connection("shop")
        };
        self.drafts
            .push(base(EventType::CommandStarted).payload(json!({
                "command": self.commands, "class": class, "sql": sql,
                "tables_read": read, "tables_written": written,
            })));
        self.drafts
            .push(base(EventType::CommandCompleted).payload(json!({
                "command": self.commands, "outcome": "ok", "rows": 1, "tag": "X 1",
            })));
    }
}

/// A log with two agents' tasks and a human's, over an hour.
fn script() -> Vec<EventDraft> {
    let copilot = who("copilot", IdentityKind::Agent);
    let claude = who("claude", IdentityKind::Agent);
    let alice = who("alice", IdentityKind::Human);
    let bob = who("bob", IdentityKind::Human);
    let mut s = Script {
        drafts: Vec::new(),
        commands: 0,
    };
    s.task("t_mig", "migrate-orders", &copilot, Some(&alice));
    s.statement(
        "t_mig",
        &copilot,
        2,
        ("SELECT count(*) FROM orders", "read"),
        &["orders"],
        &[],
    );
    s.statement(
        "t_mig",
        &copilot,
        5,
        ("ALTER TABLE shop.orders ADD note text", "ddl"),
        &[],
        &["shop.orders"],
    );
    s.statement(
        "t_mig",
        &copilot,
        10,
        ("UPDATE orders SET note = ''", "write"),
        &["orders"],
        &["orders"],
    );
    s.task("t_rep", "report", &claude, None);
    s.statement(
        "t_rep",
        &claude,
        20,
        ("SELECT * FROM customers", "read"),
        &["customers"],
        &[],
    );
    s.statement(
        "t_rep",
        &claude,
        40,
        ("SELECT * FROM customers JOIN orders USING (id)", "read"),
        &["customers", "orders"],
        &[],
    );
    s.task("t_fix", "fix-customer", &bob, None);
    s.statement(
        "t_fix",
        &bob,
        30,
        ("UPDATE customers SET name = 'x'", "write"),
        &["customers"],
        &["customers"],
    );
    s.drafts.push(
        EventDraft::new(EventType::CommandDenied, at(31))
            .identity(&bob)
            .task("t_fix")
            .session("ses_t_fix")
            .connection("shop")
            .payload(json!({"class": "ddl", "sql": "DROP TABLE customers", "tables_read": [], "tables_written": ["customers"], "reason": "deny rule"})),
    );
    s.drafts
}

async fn store_with(drafts: Vec<EventDraft>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("taskgate.db");
    append(&path, drafts).await;
    (dir, path)
}

async fn append(path: &Path, drafts: Vec<EventDraft>) {
    let (w, _r) = sqlite::open(path, Durability::Normal).expect("open");
    let (writer, thread) = Writer::start(w).expect("start");
    writer.append_all(drafts).await.expect("append");
    drop(writer);
    thread.join();
}

fn sqls(index: &AuditIndex, query: EventQuery) -> Vec<String> {
    let page = index
        .search(&EventQuery {
            limit: 100,
            ..query
        })
        .expect("search");
    page.hits
        .iter()
        .map(
            |h| match h.event.payload.get("sql").and_then(|s| s.as_str()) {
                Some(sql) => sql.to_owned(),
                None => h.event.event_type.to_string(),
            },
        )
        .collect()
}

fn statements(index: &AuditIndex, query: EventQuery) -> Vec<String> {
    let types = vec![EventType::CommandStarted, EventType::CommandDenied];
    sqls(index, EventQuery { types, ..query })
}

#[tokio::test]
async fn each_filter_narrows_the_hits() {
    let (_dir, path) = store_with(script()).await;
    let index = AuditIndex::open(&path).expect("index");
    let q = EventQuery::default;

    // A bare name finds the table in any schema; a qualified one only there.
    let orders = statements(
        &index,
        EventQuery {
            table: Some("orders".into()),
            ..q()
        },
    );
    assert_eq!(orders.len(), 4, "{orders:?}");
    let qualified = statements(
        &index,
        EventQuery {
            table: Some("shop.orders".into()),
            ..q()
        },
    );
    // `orders` named without its schema may be shop.orders (the session's
    // search_path decided): found too, and only a qualified name elsewhere
    // would be left out.
    assert_eq!(
        qualified,
        [
            "SELECT count(*) FROM orders",
            "ALTER TABLE shop.orders ADD note text",
            "UPDATE orders SET note = ''",
            "SELECT * FROM customers JOIN orders USING (id)"
        ]
    );
    let elsewhere = statements(
        &index,
        EventQuery {
            table: Some("other.orders".into()),
            ..q()
        },
    );
    assert!(!elsewhere.contains(&"ALTER TABLE shop.orders ADD note text".to_owned()));

    let ddl = statements(
        &index,
        EventQuery {
            classes: vec!["ddl".into()],
            ..q()
        },
    );
    assert_eq!(
        ddl,
        [
            "ALTER TABLE shop.orders ADD note text",
            "DROP TABLE customers"
        ]
    );

    let bob = statements(
        &index,
        EventQuery {
            subject: Some("bob".into()),
            ..q()
        },
    );
    assert_eq!(
        bob,
        ["UPDATE customers SET name = 'x'", "DROP TABLE customers"]
    );

    let humans = sqls(
        &index,
        EventQuery {
            kind: Some(IdentityKind::Human),
            ..q()
        },
    );
    // alice's approval and bob's task, statements and denial.
    assert_eq!(humans.len(), 4, "{humans:?}");

    let task = statements(
        &index,
        EventQuery {
            task: Some("t_rep".into()),
            ..q()
        },
    );
    assert_eq!(task.len(), 2);

    let none = sqls(
        &index,
        EventQuery {
            connection: Some("other".into()),
            ..q()
        },
    );
    assert!(none.is_empty());

    let requested = sqls(
        &index,
        EventQuery {
            types: vec![EventType::TaskRequested],
            ..q()
        },
    );
    assert_eq!(requested, ["task.requested"; 3]);

    // The window: [since, until).
    let window = statements(
        &index,
        EventQuery {
            since: Some(at(5)),
            until: Some(at(30)),
            ..q()
        },
    );
    assert_eq!(
        window,
        [
            "ALTER TABLE shop.orders ADD note text",
            "UPDATE orders SET note = ''",
            "SELECT * FROM customers"
        ]
    );
}

#[tokio::test]
async fn the_recipes_combine_filters() {
    let (_dir, path) = store_with(script()).await;
    let index = AuditIndex::open(&path).expect("index");

    // Who changed orders between minute 0 and minute 60?
    let changed = index
        .search(&EventQuery {
            table: Some("orders".into()),
            classes: vec!["write".into(), "ddl".into()],
            since: Some(at(0)),
            until: Some(at(60)),
            limit: 10,
            ..EventQuery::default()
        })
        .expect("search");
    let who: Vec<_> = changed
        .hits
        .iter()
        .map(|h| {
            h.event
                .identity
                .as_ref()
                .map(|i| i.subject.as_str())
                .unwrap_or("?")
        })
        .collect();
    assert_eq!(who, ["copilot", "copilot"]);
    let first = &changed.hits[0];
    let task = first.task.as_ref().expect("task summary");
    assert_eq!(task.name.as_deref(), Some("migrate-orders"));
    assert_eq!(task.reference.as_deref(), Some("acme/shop#migrate-orders"));
    assert_eq!(
        task.decision.as_ref().and_then(|d| d.by.as_deref()),
        Some("alice")
    );
    assert_eq!(
        first.outcome.as_ref().map(|o| o["rows"].clone()),
        Some(json!(1))
    );

    // Did any agent read customers between minute 15 and 35?
    let read = statements(
        &index,
        EventQuery {
            table: Some("customers".into()),
            kind: Some(IdentityKind::Agent),
            since: Some(at(15)),
            until: Some(at(35)),
            ..EventQuery::default()
        },
    );
    assert_eq!(read, ["SELECT * FROM customers"]);

    // Which task authorized DDL on orders?
    let ddl = index
        .search(&EventQuery {
            table: Some("orders".into()),
            classes: vec!["ddl".into()],
            limit: 10,
            ..EventQuery::default()
        })
        .expect("search");
    assert_eq!(ddl.hits.len(), 1);
    assert_eq!(ddl.hits[0].event.task.as_deref(), Some("t_mig"));
}

#[tokio::test]
async fn pages_follow_the_sequence_and_completions_fold_into_their_start() {
    let (_dir, path) = store_with(script()).await;
    let index = AuditIndex::open(&path).expect("index");
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = index
            .search(&EventQuery {
                after,
                limit: 3,
                ..EventQuery::default()
            })
            .expect("search");
        assert!(page.hits.len() <= 3);
        seen.extend(page.hits.iter().map(|h| h.event.seq));
        match page.next_after {
            Some(next) => after = next,
            None => break,
        }
    }
    let all = index
        .search(&EventQuery {
            limit: 1000,
            ..EventQuery::default()
        })
        .expect("search");
    assert_eq!(
        seen,
        all.hits.iter().map(|h| h.event.seq).collect::<Vec<_>>()
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    // Each hit carries the record's id and hash, as the store holds them.
    let reader = crate::sqlite::open_read_only(&path).expect("reader");
    let mut hashes = std::collections::HashMap::new();
    crate::StoreRead::scan_events(&reader, &mut |row| {
        hashes.insert(u64::try_from(row.seq).expect("seq"), hex::encode(&row.hash));
        true
    })
    .expect("scan");
    for hit in &all.hits {
        assert_eq!(hit.id, format!("{}:{}", hit.event.chain, hit.event.seq));
        assert_eq!(Some(&hit.hash), hashes.get(&hit.event.seq));
    }
    assert!(
        all.hits
            .iter()
            .all(|h| h.event.event_type != EventType::CommandCompleted)
    );
    let completed = sqls(
        &index,
        EventQuery {
            types: vec![EventType::CommandCompleted],
            ..EventQuery::default()
        },
    );
    assert_eq!(completed.len(), 6);
    // Outcomes are left out of most indexes, but a filter still finds them.
    let by_subject = |subject: &str, types: Vec<EventType>| {
        sqls(
            &index,
            EventQuery {
                subject: Some(subject.into()),
                connection: Some("shop".into()),
                types,
                ..EventQuery::default()
            },
        )
    };
    let completed_by_claude = by_subject("claude", vec![EventType::CommandCompleted]);
    let started_by_claude = by_subject("claude", vec![EventType::CommandStarted]);
    assert!(!completed_by_claude.is_empty());
    assert_eq!(completed_by_claude.len(), started_by_claude.len());
    let both = by_subject(
        "claude",
        vec![EventType::CommandStarted, EventType::CommandCompleted],
    );
    assert_eq!(both.len(), 2 * started_by_claude.len());
}

/// How SQLite plans a search: which indexes it names.
fn plan(index: &AuditIndex, query: &EventQuery) -> String {
    let (sql, args) = search::matching_sql(query, 10, (1, i64::MAX));
    index
        .read(|conn| {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let rows =
                stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.join("; "))
        })
        .expect("plan")
}

#[tokio::test]
async fn searches_use_the_indexes_that_leave_outcomes_out() {
    let (_dir, path) = store_with(script()).await;
    let index = AuditIndex::open(&path).expect("index");
    index.catch_up().expect("catch up");
    let q = EventQuery::default;
    for (query, wanted) in [
        (
            EventQuery {
                subject: Some("claude".into()),
                ..q()
            },
            "ev_by_subject",
        ),
        (
            EventQuery {
                connection: Some("shop".into()),
                ..q()
            },
            "ev_by_connection",
        ),
        (
            EventQuery {
                types: vec![EventType::TaskApproved],
                ..q()
            },
            "ev_by_type",
        ),
        (
            EventQuery {
                task: Some("tsk_1".into()),
                ..q()
            },
            "ev_by_task",
        ),
    ] {
        let plan = plan(&index, &query);
        assert!(plan.contains(wanted), "{wanted} not in {plan}");
    }
    let outcome = index
        .read(|conn| {
            let sql = format!(
                "EXPLAIN QUERY PLAN SELECT seq FROM ev WHERE session = 's' AND command = 1 AND type = {}",
                schema::completed()
            );
            Ok(conn.query_row(&sql, [], |r| r.get::<_, String>(3))?)
        })
        .expect("plan");
    assert!(outcome.contains("ev_by_command"), "{outcome}");
}

#[tokio::test]
async fn a_rebuilt_index_gives_the_same_answers() {
    let drafts = script();
    let (first, rest) = drafts.split_at(9);
    let (_dir, path) = store_with(first.to_vec()).await;
    let index = AuditIndex::open(&path).expect("index");
    let state = index.catch_up().expect("catch up");
    assert_eq!(state.through_seq, 9);
    append(&path, rest.to_vec()).await;
    let queries = [
        EventQuery {
            table: Some("orders".into()),
            ..EventQuery::default()
        },
        EventQuery {
            kind: Some(IdentityKind::Agent),
            since: Some(at(3)),
            ..EventQuery::default()
        },
        EventQuery {
            classes: vec!["read".into()],
            until: Some(at(25)),
            ..EventQuery::default()
        },
    ];
    let answers = |index: &AuditIndex| -> Vec<Vec<String>> {
        queries.iter().map(|q| sqls(index, q.clone())).collect()
    };
    let incremental = answers(&index);
    let rebuilt = index.rebuild().expect("rebuild");
    assert!(rebuilt.rebuilt);
    assert_eq!(
        rebuilt.through_seq,
        u64::try_from(drafts.len()).unwrap_or(0)
    );
    assert_eq!(answers(&index), incremental);
}

#[tokio::test]
async fn an_index_of_another_history_is_rebuilt() {
    let (dir, path) = store_with(script()).await;
    let index = AuditIndex::open(&path).expect("index");
    index.catch_up().expect("catch up");
    drop(index);
    // A different store in the same place: the index must not answer for it.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let bob = who("bob", IdentityKind::Human);
    append(
        &path,
        vec![
            EventDraft::new(EventType::TaskRequested, at(0))
                .identity(&bob)
                .task("t_new"),
        ],
    )
    .await;
    let index = AuditIndex::open(&path).expect("index");
    let state = index.catch_up().expect("catch up");
    assert!(state.rebuilt);
    assert_eq!(state.through_seq, 1);
    let all = sqls(&index, EventQuery::default());
    assert_eq!(all, ["task.requested"]);
    drop(dir);
}

#[tokio::test]
async fn a_time_window_finds_events_recorded_out_of_time_order() {
    // Times come from the callers, so a later record may carry an earlier
    // time; the window must still find it.
    let alice = who("alice", IdentityKind::Human);
    let drafts: Vec<EventDraft> = [10, 50, 20, 60]
        .into_iter()
        .map(|m| {
            EventDraft::new(EventType::TaskEnded, at(m))
                .identity(&alice)
                .task(format!("t{m}"))
        })
        .collect();
    let (_dir, path) = store_with(drafts).await;
    let index = AuditIndex::open(&path).expect("index");
    let tasks = |since, until| -> Vec<String> {
        index
            .search(&EventQuery {
                since,
                until,
                limit: 10,
                ..EventQuery::default()
            })
            .expect("search")
            .hits
            .iter()
            .filter_map(|h| h.event.task.clone())
            .collect()
    };
    assert_eq!(tasks(Some(at(15)), Some(at(25))), ["t20"]);
    assert_eq!(tasks(None, Some(at(21))), ["t10", "t20"]);
    assert_eq!(tasks(Some(at(55)), None), ["t60"]);
}

#[tokio::test]
async fn a_task_s_events_come_back_in_order() {
    let (_dir, path) = store_with(script()).await;
    let index = AuditIndex::open(&path).expect("index");
    let events = index.task_events("t_fix").expect("events");
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "task.requested",
            "task.activated",
            "command.started",
            "command.completed",
            "command.denied"
        ]
    );
}

#[tokio::test]
async fn the_index_is_checked_against_the_chain() {
    let (_dir, path) = store_with(script()).await;
    let index = AuditIndex::open(&path).expect("index");
    let state = index.catch_up().expect("catch up");
    let intact = index.check().expect("check");
    assert_eq!(intact.through_seq, state.through_seq);
    assert_eq!(intact.problem, None);
    // Each edit someone with the index file could make, one at a time,
    // undone by a rebuild before the next.
    for (edit, named) in [
        (
            "DELETE FROM ev_table WHERE name = 'orders' AND seq = (SELECT max(seq) FROM ev_table WHERE name = 'orders')",
            "ev_table",
        ),
        (
            "UPDATE ev_table SET class = 'read' WHERE class = 'write'",
            "ev_table",
        ),
        (
            "INSERT INTO ev_table (name, seq, written, class) VALUES ('vault', 3, 0, 'read')",
            "ev_table",
        ),
        ("DELETE FROM ev WHERE seq = 5", "ev"),
        (
            "UPDATE ev SET subject = 'someone-else' WHERE subject = 'copilot'",
            "ev",
        ),
        ("DELETE FROM task_event", "task_event"),
    ] {
        {
            let conn = Connection::open(index.path()).expect("open index");
            let changed = conn.execute(edit, []).expect(edit);
            assert!(changed > 0, "{edit} changed nothing");
        }
        let check = index.check().expect("check");
        let problem = check
            .problem
            .unwrap_or_else(|| panic!("{edit} went unnoticed"));
        assert!(problem.contains(named), "{edit}: {problem}");
        index.rebuild().expect("rebuild");
        assert_eq!(index.check().expect("check").problem, None);
    }
    // The scratch index is gone afterwards.
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".check-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
