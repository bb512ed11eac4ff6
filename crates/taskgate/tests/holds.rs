//! Statements held for a human's review, end to end: the agent's session
//! waits, an approver decides over the API, and the statement runs (or is
//! refused) with every step in the log. Real cluster, real gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::cluster::{REVIEW_DDL, TestCluster};
use common::raw::{Answer, RawPg, frontend, tags};
use common::{TestGateway, pending_review};
use serde_json::{Value, json};

struct Setup {
    cluster: TestCluster,
    gw: TestGateway,
}

fn setup(hold: &str) -> Setup {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_full(
        &format!("review_hold = \"{hold}\""),
        &format!("{}{REVIEW_DDL}", cluster.gateway_config()),
    );
    Setup { cluster, gw }
}

/// Runs `sql` as a simple query on a session of its own, on a thread.
fn run_held(
    gw: &TestGateway,
    task: &str,
    token: &str,
    sql: &str,
) -> thread::JoinHandle<Vec<Answer>> {
    let mut pg = RawPg::connect(gw.postgres, task, token, "shop");
    let query = frontend::query(sql);
    thread::spawn(move || {
        pg.send(&query);
        pg.until_ready(1)
    })
}

fn decide(gw: &TestGateway, token: &str, review: &str, verb: &str, comment: &str) -> (u16, Value) {
    gw.http().post(
        token,
        &format!("/v1/reviews/{review}/{verb}"),
        &json!({"comment": comment}),
    )
}

fn error_of(answers: &[Answer]) -> &Answer {
    answers
        .iter()
        .find(|a| a.tag == 'E')
        .unwrap_or_else(|| panic!("no error in {}", tags(answers)))
}

#[test]
fn a_held_statement_runs_once_approved_and_its_record_names_the_approver() {
    let Setup { cluster, gw } = setup("30s");
    let (task, token) = gw.active_task("shop", "write", "15m");
    let sql = "CREATE INDEX IF NOT EXISTS orders_qty ON orders (qty)";
    let client = run_held(&gw, &task, &token, sql);
    let review = pending_review(&gw, &task);
    let id = review["id"].as_str().unwrap();
    assert_eq!(review["statement"], sql);
    assert_eq!(review["task"]["requester"]["subject"], "copilot-agent");
    // Not run yet: the database has not seen it.
    assert!(!cluster.log().contains("orders_qty"), "ran before approval");

    // The requester can never approve its own statement.
    let (status, body) = decide(&gw, &gw.tokens.agent, id, "approve", "me");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("self_approval")),
        "{body}"
    );
    // Nor over the CLI.
    let out = gw.cli(
        &gw.tokens.agent,
        &["review", "approve", id, "--comment", "me"],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("self_approval") || out.stderr.contains("own"),
        "{}",
        out.stderr
    );
    // Bob is not a DBA.
    let (status, _) = decide(&gw, &gw.tokens.bob, id, "approve", "me");
    assert_eq!(status, 403);
    // Alice sees what she is asked to approve.
    let out = gw.cli(&gw.tokens.alice, &["review", "list"]);
    assert!(
        out.stdout.contains(&format!("review {id} (statement)")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("statement  {sql}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("requester  copilot-agent (agent)"),
        "{}",
        out.stdout
    );

    let (status, body) = decide(&gw, &gw.tokens.alice, id, "approve", "index is fine");
    assert_eq!(status, 200, "{body}");
    let answers = client.join().unwrap();
    assert_eq!(tags(&answers), "NCZ", "{answers:?}");
    let notice = &answers[0];
    assert!(notice.text.contains(id), "{notice:?}");
    assert!(
        notice
            .hint
            .as_deref()
            .unwrap_or("")
            .contains(&format!("taskgate review approve {id}")),
        "{notice:?}"
    );
    assert!(cluster.log().contains("orders_qty"));

    // The record: requested, approved by alice, then the command naming it.
    let requested = gw.events_of("review.requested");
    assert_eq!(requested[0]["payload"]["review"], id);
    assert_eq!(requested[0]["payload"]["sql"], sql);
    let approved = gw.events_of("review.approved");
    assert_eq!(approved[0]["identity"]["subject"], "alice");
    assert_eq!(approved[0]["payload"]["comment"], "index is fine");
    let started: Vec<Value> = gw
        .events_of("command.started")
        .into_iter()
        .filter(|e| e["payload"]["sql"] == sql)
        .collect();
    assert_eq!(started[0]["payload"]["review"], id);

    // The story says who approved it.
    let out = gw.cli(&gw.tokens.auditor, &["audit", "story", &task]);
    assert!(out.stdout.contains("(approved by alice"), "{}", out.stdout);

    // The same text again runs without a new review, in a new session too;
    // a different statement needs its own.
    let mut pg = RawPg::connect(gw.postgres, &task, &token, "shop");
    pg.send(&frontend::query(sql));
    let again = pg.until_ready(1);
    // PostgreSQL's own notice ("already exists, skipping"), no hold.
    assert_eq!(tags(&again), "NCZ", "{again:?}");
    assert!(again[0].text.contains("already exists"), "{again:?}");
    assert_eq!(gw.events_of("review.requested").len(), 1);
    let other = "CREATE INDEX IF NOT EXISTS orders_item ON orders (item)";
    let client = run_held(&gw, &task, &token, other);
    let second = pending_review(&gw, &task);
    assert_ne!(second["id"], id);
    assert_eq!(second["statement"], other);
    decide(
        &gw,
        &gw.tokens.alice,
        second["id"].as_str().unwrap(),
        "deny",
        "not now",
    );
    let answers = client.join().unwrap();
    assert_eq!(error_of(&answers).sqlstate.as_deref(), Some("42501"));
}

#[test]
fn a_denied_statement_is_refused_with_its_review_and_the_session_goes_on() {
    let Setup { cluster, gw } = setup("30s");
    let (task, token) = gw.active_task("shop", "write", "15m");
    let mut pg = RawPg::connect(gw.postgres, &task, &token, "shop");
    pg.send(&frontend::query(
        "ALTER TABLE orders ADD COLUMN denied_note text",
    ));
    let decider = {
        let review = pending_review(&gw, &task);
        let id = review["id"].as_str().unwrap().to_owned();
        let (status, body) = decide(&gw, &gw.tokens.alice, &id, "deny", "use a migration");
        assert_eq!(status, 200, "{body}");
        id
    };
    let answers = pg.until_ready(1);
    assert_eq!(tags(&answers), "NEZ", "{answers:?}");
    let error = error_of(&answers);
    assert_eq!(error.sqlstate.as_deref(), Some("42501"));
    assert!(
        error.text.contains("denied by alice: use a migration"),
        "{error:?}"
    );
    assert!(
        error.hint.as_deref().unwrap_or("").contains(&decider),
        "{error:?}"
    );
    assert!(
        !cluster.log().contains("denied_note"),
        "a denied statement ran"
    );
    let denied = gw.events_of("command.denied");
    assert_eq!(denied[0]["payload"]["decision"], "review");
    assert_eq!(denied[0]["payload"]["review"], decider.as_str());

    // The session goes on.
    pg.send(&frontend::query("SELECT count(*) FROM orders"));
    assert_eq!(tags(&pg.until_ready(1)), "TDCZ");
}

#[test]
fn an_undecided_statement_is_refused_when_its_hold_ends() {
    let Setup { cluster, gw } = setup("2s");
    let (task, token) = gw.active_task("shop", "write", "15m");
    let started = Instant::now();
    let answers = run_held(
        &gw,
        &task,
        &token,
        "ALTER TABLE orders ADD COLUMN late text",
    )
    .join()
    .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2));
    let error = error_of(&answers);
    assert_eq!(error.sqlstate.as_deref(), Some("42501"));
    assert!(error.text.contains("no decision within 2s"), "{error:?}");
    assert!(!cluster.log().contains("late text"));
    // Lapsed: nobody can approve it any more.
    let (_, reviews) = gw.http().get(&gw.tokens.alice, "/v1/reviews");
    assert!(
        reviews
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] != "statement"),
        "{reviews}"
    );
}

#[test]
fn a_held_statement_blocks_only_its_own_session() {
    let Setup {
        cluster: _cluster,
        gw,
    } = setup("30s");
    let (task, token) = gw.active_task("shop", "write", "15m");
    let (other_task, other_token) = gw.active_task("shop", "read", "15m");
    let held = run_held(
        &gw,
        &task,
        &token,
        "CREATE INDEX IF NOT EXISTS orders_held ON orders (qty)",
    );
    let review = pending_review(&gw, &task);
    for (t, k) in [(&task, &token), (&other_task, &other_token)] {
        let mut pg = RawPg::connect(gw.postgres, t, k, "shop");
        pg.send(&frontend::query("SELECT count(*) FROM orders"));
        assert_eq!(tags(&pg.until_ready(1)), "TDCZ");
    }
    decide(
        &gw,
        &gw.tokens.alice,
        review["id"].as_str().unwrap(),
        "approve",
        "ok",
    );
    assert_eq!(tags(&held.join().unwrap()), "NCZ");
}

#[test]
fn a_statement_held_when_the_window_ends_never_runs() {
    let Setup { cluster, gw } = setup("60s");
    let (task, token) = gw.active_task("shop", "write", "3s");
    let mut pg = RawPg::connect(gw.postgres, &task, &token, "shop");
    let started = Instant::now();
    pg.send(&frontend::query(
        "ALTER TABLE orders ADD COLUMN too_late text",
    ));
    let review = pending_review(&gw, &task);
    let answers = pg.until_ready_or_closed();
    assert!(started.elapsed() < Duration::from_secs(6), "cut too late");
    let fatal = error_of(&answers);
    assert_eq!(fatal.sqlstate.as_deref(), Some("57P01"), "{answers:?}");
    // Approving after the window is refused, and nothing ever ran.
    let (status, _) = decide(
        &gw,
        &gw.tokens.alice,
        review["id"].as_str().unwrap(),
        "approve",
        "late",
    );
    assert_eq!(status, 409);
    assert!(!cluster.log().contains("too_late"));
}

#[test]
fn an_extended_protocol_statement_is_held_at_parse() {
    let Setup { cluster, gw } = setup("30s");
    let (task, token) = gw.active_task("shop", "write", "15m");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = gw.postgres.port();
    let (t, k) = (task.clone(), token.clone());
    let client = thread::spawn(move || {
        rt.block_on(async move {
            let (client, connection) = tokio_postgres::Config::new()
                .host("127.0.0.1")
                .port(port)
                .user(&t)
                .password(&k)
                .dbname("shop")
                .connect(tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .execute(
                    "CREATE INDEX IF NOT EXISTS orders_ext ON orders (item)",
                    &[],
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    });
    let review = pending_review(&gw, &task);
    decide(
        &gw,
        &gw.tokens.alice,
        review["id"].as_str().unwrap(),
        "approve",
        "ok",
    );
    client.join().unwrap().unwrap();
    assert!(cluster.log().contains("orders_ext"));
    let started = gw.events_of("command.started");
    let ours = started
        .iter()
        .find(|e| {
            e["payload"]["sql"]
                .as_str()
                .unwrap_or("")
                .contains("orders_ext")
        })
        .unwrap();
    assert_eq!(ours["payload"]["protocol"], "extended");
    assert_eq!(ours["payload"]["review"], review["id"]);
}

#[test]
fn a_cancel_request_ends_a_hold_and_the_statement_never_runs() {
    let Setup { cluster, gw } = setup("30s");
    let (task, token) = gw.active_task("shop", "write", "15m");
    // Multi-threaded, so the client's connection task runs while this
    // thread waits for the review.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(common::connect(&gw, &task, &token, "shop"))
        .unwrap();
    let cancel = client.cancel_token();
    let held = std::thread::scope(|scope| {
        let held = scope.spawn(|| {
            common::rt()
                .block_on(client.simple_query("ALTER TABLE orders ADD COLUMN cancelled text"))
        });
        let review = pending_review(&gw, &task);
        rt.block_on(cancel.cancel_query(tokio_postgres::NoTls))
            .unwrap();
        (held.join().unwrap(), review)
    });
    let (answer, review) = held;
    let err = answer.unwrap_err();
    let db = err.as_db_error().expect("an error from the gateway");
    assert_eq!(db.code().code(), "57014", "{db:?}");
    assert!(
        db.message()
            .contains("canceling statement due to user request")
    );
    assert!(!cluster.log().contains("cancelled text"));
    // The review lapsed (nobody can approve it any more), and the session
    // goes on.
    let id = review["id"].as_str().unwrap();
    let (_, reviews) = gw.http().get(&gw.tokens.alice, "/v1/reviews");
    assert!(
        reviews.as_array().unwrap().iter().all(|r| r["id"] != id),
        "{reviews}"
    );
    let rows = rt.block_on(client.simple_query("SELECT 1")).unwrap();
    assert!(!rows.is_empty());
    let denied = gw.events_of("command.denied");
    assert!(
        denied
            .iter()
            .any(|e| e["payload"]["decision"] == "cancelled" && e["payload"]["review"] == id),
        "{denied:?}"
    );
}

/// Issue 27, finding 8: one identity can hold no more statements for
/// review than `max_held_statements_per_identity`, over all its tasks and
/// sessions, nor open more tasks than `max_open_tasks_per_identity`: one
/// agent cannot bury a real request under its own. The statement over the
/// limit is refused with an error naming the key and recorded as denied;
/// the session goes on.
#[test]
fn an_identity_holds_and_opens_no_more_than_its_limits() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_full(
        "review_hold = \"30s\"\nmax_held_statements_per_identity = 1\nmax_open_tasks_per_identity = 2",
        &format!("{}{REVIEW_DDL}", cluster.gateway_config()),
    );
    let (task, token) = gw.active_task("shop", "write", "15m");
    let (other, other_token) = gw.active_task("shop", "write", "15m");
    let held = run_held(
        &gw,
        &task,
        &token,
        "CREATE INDEX IF NOT EXISTS orders_limit_a ON orders (qty)",
    );
    let review = pending_review(&gw, &task);
    // The same identity's other task: over the limit.
    let mut pg = RawPg::connect(gw.postgres, &other, &other_token, "shop");
    pg.send(&frontend::query(
        "CREATE INDEX IF NOT EXISTS orders_limit_b ON orders (qty)",
    ));
    let answers = pg.until_ready(1);
    let error = error_of(&answers);
    assert_eq!(error.sqlstate.as_deref(), Some("53400"), "{answers:?}");
    assert!(
        error.text.contains("max_held_statements_per_identity (1)"),
        "{answers:?}"
    );
    pg.send(&frontend::query("SELECT 1"));
    assert_eq!(tags(&pg.until_ready(1)), "TDCZ");
    assert!(!cluster.log().contains("orders_limit_b"));
    // A third open task is refused, naming the key.
    let (status, body) = gw.http().post(
        &gw.tokens.agent,
        "/v1/tasks",
        &json!({"name": "one-more", "connection": "shop", "access": "read", "window": "5m", "reason": "limit test"}),
    );
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "limit", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_open_tasks_per_identity (2)")),
        "{body}"
    );
    decide(
        &gw,
        &gw.tokens.alice,
        review["id"].as_str().unwrap(),
        "deny",
        "not now",
    );
    let _ = held.join().unwrap();
    // Decided: the next statement may be held again.
    let again = run_held(
        &gw,
        &other,
        &other_token,
        "CREATE INDEX IF NOT EXISTS orders_limit_c ON orders (qty)",
    );
    let review = pending_review(&gw, &other);
    decide(
        &gw,
        &gw.tokens.alice,
        review["id"].as_str().unwrap(),
        "deny",
        "no",
    );
    let _ = again.join().unwrap();
    let denied = gw.events_of("command.denied");
    assert!(
        denied.iter().any(|e| e["payload"]["decision"] == "limit"
            && e["payload"]["sql"]
                .as_str()
                .is_some_and(|s| s.contains("orders_limit_b"))),
        "{denied:?}"
    );
}

/// Issue 27, findings 6 and 7: an `EXECUTE` is held as the statement it
/// runs, the review shows that statement, and the approval is bound to it:
/// the same `EXECUTE` text after the name was prepared again as another
/// statement is held again, not run on the old approval.
#[test]
fn an_execute_is_held_and_approved_as_the_statement_it_runs() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_full(
        "review_hold = \"30s\"",
        &format!(
            "{}\n[[policies.statements]]\nmatch = {{ command = [\"DELETE\"] }}\naction = \"review\"\nby = [\"group:dba\"]\n",
            cluster.gateway_config()
        ),
    );
    let (task, token) = gw.active_task("shop", "write", "15m");
    let mut pg = RawPg::connect(gw.postgres, &task, &token, "shop");
    let approve_next = |pg: &mut RawPg, sql: &str| -> (Value, Vec<Answer>) {
        let mut moved = std::mem::replace(pg, RawPg::connect(gw.postgres, &task, &token, "shop"));
        let query = frontend::query(sql);
        let client = thread::spawn(move || {
            moved.send(&query);
            let answers = moved.until_ready(1);
            (moved, answers)
        });
        let review = pending_review(&gw, &task);
        let (status, body) = decide(
            &gw,
            &gw.tokens.alice,
            review["id"].as_str().unwrap(),
            "approve",
            "ok",
        );
        assert_eq!(status, 200, "{body}");
        let (back, answers) = client.join().unwrap();
        *pg = back;
        (review, answers)
    };
    let (_, answers) = approve_next(&mut pg, "PREPARE d AS DELETE FROM orders WHERE id = -1");
    assert!(tags(&answers).ends_with("CZ"), "{answers:?}");
    let (review, answers) = approve_next(&mut pg, "EXECUTE d");
    assert!(tags(&answers).ends_with("CZ"), "{answers:?}");
    assert_eq!(
        review["statement"], "EXECUTE d\n-- EXECUTE d runs: DELETE FROM orders WHERE id = -1",
        "{review}"
    );
    // The same name, another statement: the old approval does not carry.
    pg.send(&frontend::query("DEALLOCATE d"));
    assert!(tags(&pg.until_ready(1)).ends_with("CZ"));
    let (_, _) = approve_next(&mut pg, "PREPARE d AS DELETE FROM orders WHERE id = -2");
    let (review, answers) = approve_next(&mut pg, "EXECUTE d");
    assert!(tags(&answers).ends_with("CZ"), "{answers:?}");
    assert_eq!(
        review["statement"], "EXECUTE d\n-- EXECUTE d runs: DELETE FROM orders WHERE id = -2",
        "{review}"
    );
    let started = gw.events_of("command.started");
    let executes: Vec<_> = started
        .iter()
        .filter(|e| e["payload"]["sql"] == "EXECUTE d")
        .collect();
    assert_eq!(executes.len(), 2, "{started:?}");
    assert!(
        executes.iter().all(|e| e["payload"]["review"].is_string()),
        "{executes:?}"
    );
}

/// Issue 28, item 1: every rendering of a statement's outcome -- the API's
/// search, the CLI's search and story, the console's search, task page,
/// CSV and JSON Lines -- says the same of each: approved, denied, not
/// decided, refused by rule, failed at the database, ran; and names an
/// approver only where someone approved.
#[test]
fn every_rendering_tells_each_outcome_as_it_happened() {
    let Setup {
        cluster: _cluster,
        gw,
    } = setup("3s");
    let (task, token) = gw.active_task("shop", "write", "15m");
    let held = |sql: &str, verdict: Option<(&str, &str)>| {
        let client = run_held(&gw, &task, &token, sql);
        if let Some((verb, comment)) = verdict {
            let review = pending_review(&gw, &task);
            let id = review["id"].as_str().unwrap();
            let (status, body) = decide(&gw, &gw.tokens.alice, id, verb, comment);
            assert_eq!(status, 200, "{body}");
        }
        client.join().unwrap()
    };
    held(
        "ALTER TABLE orders ADD COLUMN v_ok text",
        Some(("approve", "fine")),
    );
    held(
        "ALTER TABLE orders ADD COLUMN v_no text",
        Some(("deny", "use a migration")),
    );
    held("ALTER TABLE orders ADD COLUMN v_late text", None);
    let mut pg = RawPg::connect(gw.postgres, &task, &token, "shop");
    for sql in [
        "DROP TABLE orders",
        "SELECT * FROM v_missing_table",
        "SELECT count(*) AS v_count FROM orders",
    ] {
        pg.send(&frontend::query(sql));
        pg.until_ready(1);
    }
    common::settle(&gw);
    // (the statement's mark, what is said of it, who approved it)
    let cases: [(&str, &str, Option<&str>); 6] = [
        ("v_ok", "approved by alice", Some("alice")),
        ("v_no", "denied by alice", None),
        ("v_late", "held, not decided: no decision within 3s", None),
        ("DROP TABLE orders", "DENIED: denied by rule", None),
        ("v_missing_table", "ERROR 42P01", None),
        ("v_count", "1 row", None),
    ];
    let check = |rendering: &str, line_of: &dyn Fn(&str) -> Option<String>| {
        for (mark, said, approver) in cases {
            let line = line_of(mark).unwrap_or_else(|| panic!("{rendering}: nothing for {mark}"));
            assert!(
                line.contains(said),
                "{rendering}: {mark} should say {said:?}: {line}"
            );
            if approver.is_none() {
                assert!(!line.contains("approved by"), "{rendering}: {mark}: {line}");
            }
            let comment = match mark {
                "v_ok" => "fine",
                "v_no" => "use a migration",
                _ => "",
            };
            assert!(line.contains(comment), "{rendering}: {mark}: {line}");
        }
    };

    // The API: a verdict on each statement event.
    let (status, page) = gw.http().get(
        &gw.tokens.auditor,
        &format!("/v1/audit/events?task={task}&limit=500"),
    );
    assert_eq!(status, 200, "{page}");
    let hits = page["hits"].as_array().unwrap().clone();
    let statement_hit = |mark: &str| {
        hits.iter()
            .filter(|h| h["verdict"].is_object())
            .find(|h| {
                h["event"]["payload"]["sql"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(mark)
            })
            .cloned()
    };
    check("api", &|mark| {
        statement_hit(mark).map(|h| h["verdict"].to_string())
    });
    for (mark, _, approver) in cases {
        let hit = statement_hit(mark).unwrap();
        assert_eq!(
            hit["verdict"]["approved_by"].as_str(),
            approver,
            "api: {mark}"
        );
    }

    // The CLI: search and story.
    let line_in = |text: String| {
        move |mark: &str| {
            text.lines()
                .find(|l| l.contains(mark) && !l.contains("review.requested"))
                .map(str::to_owned)
        }
    };
    let search = gw.cli(&gw.tokens.auditor, &["audit", "search", "--task", &task]);
    assert_eq!(search.code, 0, "{}", search.stderr);
    let in_search = line_in(
        search
            .stdout
            .lines()
            .filter(|l| l.contains("command."))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    check("cli search", &in_search);
    let story = gw.cli(&gw.tokens.auditor, &["audit", "story", &task]);
    assert_eq!(story.code, 0, "{}", story.stderr);
    check("cli story", &line_in(story.stdout));

    // The console: search, its exports, and the task's page.
    let (http, cookie) = common::console_sign_in(&gw.base, &gw.tokens.auditor);
    let page = |path: &str| {
        let answer = http
            .get(format!("{}{path}", gw.base))
            .header("cookie", format!("tg_console={cookie}"))
            .send()
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        answer.text().unwrap()
    };
    let rows = |html: String, split: &'static str| {
        move |mark: &str| {
            html.split(split)
                .find(|row| row.contains(mark) && !row.contains("review.requested"))
                .map(str::to_owned)
        }
    };
    check(
        "console search",
        &rows(page(&format!("/ui/search?task={task}")), "<tr"),
    );
    check(
        "console task page",
        &rows(page(&format!("/ui/tasks/{task}")), "<li"),
    );
    let csv = page(&format!("/ui/search/export.csv?task={task}"));
    check("csv", &line_in(csv.clone()));
    for (mark, _, approver) in cases {
        let line = line_in(csv.clone())(mark).unwrap();
        let last = line.rsplit(',').next().unwrap();
        assert_eq!(last, approver.unwrap_or(""), "csv approved_by: {line}");
    }
    let jsonl = page(&format!("/ui/search/export.jsonl?task={task}"));
    check("jsonl", &line_in(jsonl));
}
