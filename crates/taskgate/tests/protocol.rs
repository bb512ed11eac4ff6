//! Exact protocol sequences through the gateway, sent by a bare client:
//! the cases where what the gateway believes and what the server does could
//! drift apart (reused statement names, refusals inside pipelined batches,
//! COPY in the extended protocol, client encodings, clients that stop
//! reading). Each checks the database's own log or the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestGateway;
use common::cluster::{TestCluster, pg_bindir};
use common::raw::{RawPg, frontend as fe, tags};
use serde_json::Value;

fn task(gw: &TestGateway, access: &str) -> (String, String) {
    gw.active_task("shop", access, "10m")
}

fn events_of(gw: &TestGateway, kind: &str) -> Vec<Value> {
    gw.events_of(kind)
}

fn batch(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// The server keeps the old statement when a Parse reuses its name; the
/// gateway must record (and judge) what actually runs.
#[test]
fn a_reused_statement_name_runs_and_is_recorded_as_the_server_has_it() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let t = task(&gw, "write");
    let mut pg = RawPg::connect(gw.postgres, &t.0, &t.1, "shop");
    pg.send(&batch(&[
        fe::parse("s1", "UPDATE orders SET qty = qty + 100", &[]),
        fe::sync(),
    ]));
    assert_eq!(tags(&pg.until_ready(1)), "1Z");
    pg.send(&batch(&[fe::parse("s1", "SELECT 1", &[]), fe::sync()]));
    let answers = pg.until_ready(1);
    assert_eq!(answers[0].sqlstate.as_deref(), Some("42P05"), "{answers:?}");
    pg.send(&batch(&[
        fe::bind("", "s1", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]));
    let answers = pg.until_ready(1);
    assert_eq!(tags(&answers), "2CZ");
    assert_eq!(answers[1].text, "UPDATE 2");
    let started = events_of(&gw, "command.started");
    assert_eq!(started.len(), 1);
    assert_eq!(
        started[0]["payload"]["sql"],
        "UPDATE orders SET qty = qty + 100"
    );
    assert_eq!(started[0]["payload"]["class"], "write");
}

/// A portal the gateway never saw bound (a statement prepared by SQL) is
/// not run: its text and class would be unknown.
#[test]
fn portals_of_sql_prepared_statements_are_refused() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let t = task(&gw, "write");
    let mut pg = RawPg::connect(gw.postgres, &t.0, &t.1, "shop");
    pg.send(&fe::query("PREPARE p2 AS DELETE FROM orders"));
    assert_eq!(tags(&pg.until_ready(1)), "CZ");
    pg.send(&batch(&[
        fe::bind("", "p2", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]));
    let answers = pg.until_ready(1);
    assert_eq!(tags(&answers), "2EZ", "{answers:?}");
    assert_eq!(answers[1].sqlstate.as_deref(), Some("34000"));
    assert_eq!(cluster.psql("shop", "SELECT count(*) FROM orders"), "2");
    assert_eq!(events_of(&gw, "command.denied").len(), 1);
}

/// A refusal inside a pipelined batch answers in its place: after the
/// answers to what came before it, before the batch's ReadyForQuery.
#[test]
fn a_refusal_inside_a_batch_answers_in_order() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let t = task(&gw, "read");
    let mut pg = RawPg::connect(gw.postgres, &t.0, &t.1, "shop");
    pg.send(&batch(&[
        fe::parse("", "SELECT count(*) FROM orders", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::parse("", "DELETE FROM orders", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
        fe::query("SELECT 1"),
    ]));
    let answers = pg.until_ready(2);
    assert_eq!(tags(&answers), "12DCEZTDCZ", "{answers:?}");
    assert_eq!(answers[4].sqlstate.as_deref(), Some("42501"));
    assert!(!cluster.log().contains("DELETE FROM orders"));
}

/// COPY FROM STDIN in the extended protocol (the server ignores Sync while
/// copying): outcomes stay tied to the right commands afterwards.
#[test]
fn extended_copy_keeps_outcomes_in_step() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let t = task(&gw, "write");
    let mut pg = RawPg::connect(gw.postgres, &t.0, &t.1, "shop");
    pg.send(&batch(&[
        fe::parse("", "COPY orders (item, qty) FROM STDIN", &[]),
        fe::bind("", "", &[]),
        fe::execute("", 0),
        fe::sync(),
    ]));
    // Wait for CopyInResponse before sending the data, as drivers do.
    std::thread::sleep(Duration::from_millis(200));
    pg.send(&batch(&[
        taskgate_wire_pg::encode::message(b'd', b"fig\t1\nkiwi\t2\n"),
        taskgate_wire_pg::encode::message(b'c', b""),
        fe::sync(),
        fe::query("SELECT count(*) FROM orders"),
    ]));
    let answers = pg.until_ready(2);
    assert_eq!(tags(&answers), "12GCZTDCZ", "{answers:?}");
    // Outcomes are committed just after the client hears them.
    gw.eventually(Duration::from_secs(5), || {
        events_of(&gw, "command.completed").len() == 2
    });
    let completed = events_of(&gw, "command.completed");
    let outcomes: Vec<(u64, &str)> = completed
        .iter()
        .map(|e| {
            (
                e["payload"]["command"].as_u64().unwrap(),
                e["payload"]["tag"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes, vec![(1, "COPY 2"), (2, "SELECT 1")]);
    assert_eq!(completed[0]["payload"]["copy_in_bytes"], 13);
}

/// Encodings in which a quote or backslash byte can be part of a multibyte
/// character could hide one statement inside another's string: refused at
/// login, and a change to one ends the session. The others are read as the
/// server reads them: psql with PGCLIENTENCODING=LATIN1 sends LATIN1 bytes,
/// and the record holds the text in UTF-8.
#[test]
fn clients_in_encodings_the_gateway_can_read_are_served() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let t = task(&gw, "read");
    let psql = |encoding: &str, sql: &[u8]| {
        let mut child = Command::new(pg_bindir().join("psql"))
            .args([
                "-X",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                &gw.postgres.port().to_string(),
                "-U",
                &t.0,
                "-d",
                "shop",
            ])
            .env("PGPASSWORD", &t.1)
            .env("PGCLIENTENCODING", encoding)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(sql).unwrap();
        child.wait_with_output().unwrap()
    };
    for unreadable in ["SJIS", "BIG5", "GBK"] {
        let out = psql(unreadable, b"SELECT 1;");
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("multibyte"),
            "{out:?}"
        );
    }
    // LATIN1 bytes of 'café', and a column named in them.
    let out = psql(
        "LATIN1",
        b"SELECT 'caf\xe9' AS \"cr\xe8me\";\nSHOW client_encoding;\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"caf\xe9\nLATIN1\n", "{out:?}");
    let out = psql("UTF8", b"SET client_encoding = 'SJIS';\nSELECT 2;\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("client_encoding changed"),
        "{out:?}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains('2'),
        "{out:?}"
    );
    common::settle(&gw);
    let started: Vec<String> = gw
        .events_of("command.started")
        .iter()
        .map(|e| e["payload"]["sql"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        started.iter().any(|s| s == "SELECT 'café' AS \"crème\""),
        "{started:?}"
    );
}

/// A client that stops reading in the middle of a large result cannot keep
/// its session past a revoke.
#[test]
fn a_client_that_stops_reading_is_still_cut() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let t = task(&gw, "read");
    let mut child = Command::new(pg_bindir().join("psql"))
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &gw.postgres.port().to_string(),
            "-U",
            &t.0,
            "-d",
            "shop",
        ])
        .args([
            "-c",
            "SELECT repeat('x', 1000) FROM generate_series(1, 10000000)",
        ])
        .env("PGPASSWORD", &t.1)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    Command::new("kill")
        .args(["-STOP", &child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = gw.http().post(
        &gw.tokens.admin,
        &format!("/v1/tasks/{}/revoke", t.0),
        &serde_json::json!({}),
    );
    assert_eq!(status, 200, "{body}");
    let revoked = Instant::now();
    let cut = gw.eventually(Duration::from_secs(5), || {
        !events_of(&gw, "session.closed").is_empty()
    });
    let took = revoked.elapsed();
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
    assert!(cut, "the session outlived its task\n{}", gw.log());
    assert!(took < Duration::from_secs(1), "cut took {took:?}");
    let closed = events_of(&gw, "session.closed");
    assert_eq!(closed[0]["payload"]["reason"], "task revoked");
    // The statement it was running was cancelled upstream.
    let running = || {
        cluster.psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT repeat%' AND pid <> pg_backend_pid()")
    };
    assert!(
        gw.eventually(Duration::from_secs(5), || running() == "0"),
        "the statement still runs"
    );
}

/// Issue 28, item 0b: a `DEALLOCATE name` forgets that statement only
/// (psycopg with a libpq older than 17 evicts its cached statements so),
/// `DEALLOCATE ALL` all of them; the others go on running, in either
/// protocol.
#[test]
fn deallocate_forgets_only_the_statement_it_names() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let (task, token) = gw.active_task("shop", "read", "10m");
    let mut pg = RawPg::connect(gw.postgres, &task, &token, "shop");
    let run = |pg: &mut RawPg, name: &str| -> String {
        pg.send(&[fe::bind("", name, &[]), fe::execute("", 0), fe::sync()].concat());
        tags(&pg.until_ready(1))
    };
    let mut prepare = Vec::new();
    for i in 0..3 {
        prepare.extend(fe::parse(&format!("_pg3_{i}"), &format!("SELECT {i}"), &[]));
    }
    prepare.extend(fe::sync());
    pg.send(&prepare);
    assert_eq!(tags(&pg.until_ready(1)), "111Z");
    for (step, want) in [("DEALLOCATE _pg3_0", "CZ"), ("SELECT 'between'", "TDCZ")] {
        pg.send(&fe::query(step));
        assert_eq!(tags(&pg.until_ready(1)), want, "{step}");
    }
    assert_eq!(
        run(&mut pg, "_pg3_1"),
        "2DCZ",
        "a statement not named stays"
    );
    assert_eq!(run(&mut pg, "_pg3_2"), "2DCZ");
    // The one dropped is unknown to the gateway as to the server.
    assert!(run(&mut pg, "_pg3_0").contains('E'));
    // The same through the extended protocol.
    pg.send(&common::raw::extended("DEALLOCATE _pg3_1"));
    assert_eq!(tags(&pg.until_ready(1)), "12CZ");
    assert_eq!(run(&mut pg, "_pg3_2"), "2DCZ");
    assert!(run(&mut pg, "_pg3_1").contains('E'));
    pg.send(&fe::query("DEALLOCATE ALL"));
    assert_eq!(tags(&pg.until_ready(1)), "CZ");
    assert!(run(&mut pg, "_pg3_2").contains('E'));
}

/// Issue 28, item 0b: a session's own notifications name the process id
/// the client was given (the gateway's), so a client telling its own from
/// others' by it is not fooled; another session's keep the server's.
#[test]
fn a_sessions_own_notifications_name_the_pid_it_was_given() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let (task, token) = gw.active_task("shop", "write", "10m");
    let mut me = RawPg::connect(gw.postgres, &task, &token, "shop");
    me.send(&fe::query("LISTEN orders_changed"));
    assert_eq!(tags(&me.until_ready(1)), "CZ");
    me.send(&fe::query("NOTIFY orders_changed, 'mine'"));
    let answers = me.until_ready(1);
    let notified: Vec<_> = answers.iter().filter(|a| a.tag == 'A').collect();
    assert_eq!(notified.len(), 1, "{answers:?}");
    assert_eq!(notified[0].text, format!("{} orders_changed", me.pid));
    cluster.psql("shop", "NOTIFY orders_changed, 'theirs'");
    me.send(&fe::query("SELECT 1"));
    let answers = me.until_ready(1);
    let theirs = answers.iter().find(|a| a.tag == 'A').expect("notified");
    assert_ne!(theirs.text, format!("{} orders_changed", me.pid));
}

/// Issue 28, item 2: outcomes follow the server's answers message by
/// message. A Parse or Bind the server refuses is the failure of the
/// statement its Execute runs (with the SQLSTATE), the Executes after it
/// are skipped; an Execute the server would discard after such an error
/// is not refused by the gateway either.
#[test]
fn a_parse_or_bind_the_server_refuses_fails_the_statement_it_runs() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let (task, token) = gw.active_task("shop", "write", "10m");
    let mut pg = RawPg::connect(gw.postgres, &task, &token, "shop");
    // An unknown table: the Parse fails.
    pg.send(&common::raw::extended("SELECT * FROM o_missing_table"));
    assert_eq!(tags(&pg.until_ready(1)), "EZ");
    // As the MCP tools send it, with a Describe of the portal.
    pg.send(
        &[
            fe::parse("", "SELECT * FROM o_missing_described", &[]),
            fe::bind("", "", &[]),
            fe::describe(b'P', ""),
            fe::execute("", 0),
            fe::sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&pg.until_ready(1)), "EZ");
    // executemany: the second row's Bind fails, the third is skipped.
    let mut many = fe::parse("m", "SELECT $1::bigint AS o_many", &[]);
    for value in ["1", "x", "3"] {
        many.extend(fe::bind("", "m", &[Some(value.as_bytes())]));
        many.extend(fe::execute("", 0));
    }
    many.extend(fe::sync());
    pg.send(&many);
    assert_eq!(tags(&pg.until_ready(1)), "12DCEZ");
    // A later Parse, Bind and Execute of the failed statement's name, sent
    // after the server answered the error: the server discards them.
    pg.send(&fe::parse("gone", "SELECT * FROM o_missing_too", &[]));
    pg.send(&fe::flush());
    let answers = pg.until_error();
    assert_eq!(answers.last().unwrap().sqlstate.as_deref(), Some("42P01"));
    pg.send(&[fe::bind("", "gone", &[]), fe::execute("", 0), fe::sync()].concat());
    assert_eq!(tags(&pg.until_ready(1)), "Z");
    pg.send(&fe::query("SELECT 1"));
    assert_eq!(tags(&pg.until_ready(1)), "TDCZ");

    common::settle(&gw);
    let started = gw.events_of("command.started");
    let completed = gw.events_of("command.completed");
    let outcome_of = |e: &Value| {
        let command = &e["payload"]["command"];
        let done = completed
            .iter()
            .find(|c| c["session"] == e["session"] && c["payload"]["command"] == *command)
            .unwrap_or_else(|| panic!("no completion for {e}"));
        (
            done["payload"]["outcome"].as_str().unwrap().to_owned(),
            done["payload"]["sqlstate"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let of = |mark: &str| -> Vec<(String, String)> {
        started
            .iter()
            .filter(|e| e["payload"]["sql"].as_str().unwrap().contains(mark))
            .map(outcome_of)
            .collect()
    };
    let pair = |o: &str, s: &str| (o.to_owned(), s.to_owned());
    assert_eq!(of("o_missing_table"), [pair("error", "42P01")]);
    assert_eq!(of("o_missing_described"), [pair("error", "42P01")]);
    assert_eq!(
        of("o_many"),
        [pair("ok", ""), pair("error", "22P02"), pair("skipped", "")]
    );
    assert!(of("o_missing_too").is_empty(), "never ran, never started");
    assert!(
        gw.events_of("command.denied").is_empty(),
        "nothing the server would skip is refused"
    );
}
