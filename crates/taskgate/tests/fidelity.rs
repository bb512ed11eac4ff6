//! The gateway behaves like the PostgreSQL it fronts: a refusal leaves the
//! session, transaction and batch as a server error would; empty and
//! unparsable statements answer as the server answers them; a client that
//! ends before its startup packet is let go without a word; the session
//! keeps its task's name in the database's logs. Each checks the rows
//! committed and the database's own log, not only what the client saw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestGateway;
use common::cluster::TestCluster;
use common::raw::{RawPg, frontend as fe, tags};

fn gateway(cluster: &TestCluster) -> TestGateway {
    TestGateway::start_full("review_hold = \"1s\"", &cluster.gateway_config())
}

/// Runs `script` as psql runs a file: statement by statement, going on
/// after errors (no ON_ERROR_STOP).
fn psql(gw: &TestGateway, task: &(String, String), script: &str) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), script).unwrap();
    let out = Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &gw.postgres.port().to_string(),
            "-U",
            &task.0,
            "-d",
            "shop",
            "-f",
            file.path().to_str().unwrap(),
        ])
        .env("PGPASSWORD", &task.1)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn count(cluster: &TestCluster, item: &str) -> String {
    cluster.psql(
        "shop",
        &format!("SELECT count(*) FROM orders WHERE item = '{item}'"),
    )
}

/// Item 1: a refused statement inside BEGIN fails the transaction, as a
/// server error does, so the COMMIT that follows rolls back.
#[test]
fn a_refusal_inside_a_transaction_fails_it() {
    let cluster = TestCluster::start();
    let gw = gateway(&cluster);
    let task = gw.active_task("shop", "write", "10m");
    // psql without ON_ERROR_STOP goes on after the error, as scripts do.
    let out = psql(
        &gw,
        &task,
        "BEGIN;\nINSERT INTO orders (item) VALUES ('r1');\nSELECT pg_cancel_backend(0);\nINSERT INTO orders (item) VALUES ('r2');\nCOMMIT;\n",
    );
    assert!(out.contains("ERROR:  taskgate:"), "{out}");
    assert!(
        out.contains("current transaction is aborted"),
        "the INSERT after the refusal must fail as after any error: {out}"
    );
    assert!(
        out.lines().any(|l| l == "ROLLBACK"),
        "COMMIT answers ROLLBACK: {out}"
    );
    assert_eq!(count(&cluster, "r1"), "0");
    assert_eq!(count(&cluster, "r2"), "0");

    // The extended protocol: the rest of the batch is skipped, the
    // transaction fails, COMMIT answers ROLLBACK.
    let mut pg = RawPg::connect(gw.postgres, &task.0, &task.1, "shop");
    pg.send(
        &[
            fe::query("BEGIN"),
            fe::parse("", "INSERT INTO orders (item) VALUES ('r3')", &[]),
            fe::bind("", "", &[]),
            fe::execute("", 0),
            fe::parse("", "DROP TABLE orders", &[]),
            fe::bind("", "", &[]),
            fe::execute("", 0),
            fe::parse("", "INSERT INTO orders (item) VALUES ('r4')", &[]),
            fe::bind("", "", &[]),
            fe::execute("", 0),
            fe::sync(),
            fe::query("COMMIT"),
        ]
        .concat(),
    );
    let answers = pg.until_ready(3);
    assert_eq!(tags(&answers), "CZ12CEZCZ", "{answers:?}");
    assert_eq!(answers[5].sqlstate.as_deref(), Some("42501"));
    assert_eq!(answers[7].text, "ROLLBACK");
    assert_eq!(count(&cluster, "r3"), "0");
    assert_eq!(count(&cluster, "r4"), "0");

    // A held statement that lapses undecided fails it too.
    let mut pg = RawPg::connect(gw.postgres, &task.0, &task.1, "shop");
    pg.send(&fe::query("BEGIN"));
    pg.until_ready(1);
    pg.send(&fe::query("INSERT INTO orders (item) VALUES ('r5')"));
    pg.until_ready(1);
    pg.send(&fe::query("DO $$ BEGIN PERFORM 1; END $$"));
    let answers = pg.until_ready(1);
    assert!(
        answers
            .iter()
            .any(|a| a.sqlstate.as_deref() == Some("42501")),
        "{answers:?}"
    );
    pg.send(&fe::query("COMMIT"));
    let answers = pg.until_ready(1);
    assert_eq!(answers[0].text, "ROLLBACK", "{answers:?}");
    assert_eq!(count(&cluster, "r5"), "0");
    // The refusals' stand-ins never ran anything: the database's log holds
    // them only as syntax errors.
    let log = cluster.log();
    assert!(!log.contains("DROP TABLE orders"));
    assert!(log.contains("taskgate refused the statement sent here"));
}

/// Items 2 and 3: an empty statement answers EmptyQueryResponse at once; a
/// syntax error answers 42601 at once and is never forwarded.
#[test]
fn empty_and_unparsable_statements_answer_as_the_server_does() {
    let cluster = TestCluster::start();
    let gw = gateway(&cluster);
    let task = gw.active_task("shop", "read", "10m");
    let mut pg = RawPg::connect(gw.postgres, &task.0, &task.1, "shop");
    let started = Instant::now();
    pg.send(
        &[
            fe::parse("", "", &[]),
            fe::bind("", "", &[]),
            fe::execute("", 0),
            fe::sync(),
            fe::parse("", "/* only a comment */", &[]),
            fe::bind("", "", &[]),
            fe::execute("", 0),
            fe::sync(),
        ]
        .concat(),
    );
    let answers = pg.until_ready(2);
    assert_eq!(tags(&answers), "12IZ12IZ", "{answers:?}");
    pg.send(&fe::query("SELEC 1"));
    let answers = pg.until_ready(1);
    assert_eq!(answers[0].sqlstate.as_deref(), Some("42601"), "{answers:?}");
    assert!(answers[0].text.contains("syntax error"), "{answers:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "nothing was held for review"
    );
    assert!(!cluster.log().contains("SELEC 1"), "never forwarded");
    let denied = gw.events_of("command.denied");
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["payload"]["decision"], "invalid");
}

/// Item 4: a client that connects and sends Terminate before any startup
/// packet is closed without an error message, as PostgreSQL does.
#[test]
fn terminate_before_startup_closes_quietly() {
    let cluster = TestCluster::start();
    let gw = gateway(&cluster);
    let mut stream = std::net::TcpStream::connect(gw.postgres).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"X\0\0\0\x04").unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    assert!(got.is_empty(), "the gateway answered {got:?}");
}

/// Item 6: the session keeps the task's name in the database's logs.
#[test]
fn the_application_name_keeps_naming_the_task() {
    let cluster = TestCluster::start();
    let gw = gateway(&cluster);
    let task = gw.active_task("shop", "write", "10m");
    let mut pg = RawPg::connect(gw.postgres, &task.0, &task.1, "shop");
    for sql in [
        "SET application_name = 'innocent'",
        "SELECT set_config('application_name', 'innocent', false)",
    ] {
        pg.send(&fe::query(sql));
        let answers = pg.until_ready(1);
        assert_eq!(
            answers[0].sqlstate.as_deref(),
            Some("42501"),
            "{sql}: {answers:?}"
        );
    }
    // An admin grant may run it, but then the session ends.
    let admin = gw.active_task("shop", "admin", "10m");
    let mut pg = RawPg::connect(gw.postgres, &admin.0, &admin.1, "shop");
    pg.send(&fe::query("SET application_name = 'innocent'"));
    let answers = pg.until_ready_or_closed();
    let more = pg.until_ready_or_closed();
    assert!(
        answers
            .iter()
            .chain(&more)
            .any(|a| a.text.contains("must name the task")),
        "{answers:?} {more:?}"
    );
}

fn psql_with_options(
    gw: &TestGateway,
    task: &(String, String),
    options: &str,
    sql: &str,
) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &gw.postgres.port().to_string(),
            "-U",
            &task.0,
            "-d",
            "shop",
            "-c",
            sql,
        ])
        .env("PGPASSWORD", &task.1)
        .env("PGOPTIONS", options)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Item 5: a client's stricter timeout wins over the gateway's looser
/// default, harmless settings in `options` pass, and one the gateway must
/// refuse refuses the login, naming it.
#[test]
fn startup_settings_pass_tighten_or_refuse_but_are_never_dropped() {
    let cluster = TestCluster::start();
    let gw = gateway(&cluster);
    let task = gw.active_task("shop", "read", "10m");
    let out = psql_with_options(
        &gw,
        &task,
        "-c statement_timeout=1s -c idle_in_transaction_session_timeout=5s -c search_path=public",
        "SHOW statement_timeout; SHOW idle_in_transaction_session_timeout; SHOW search_path",
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1s", "5s", "public"],
        "{out}"
    );
    // Looser than the gateway's 15 minutes: the gateway's stays.
    let out = psql_with_options(
        &gw,
        &task,
        "-c statement_timeout=2h",
        "SHOW statement_timeout",
    );
    assert_eq!(out.trim(), "15min", "{out}");
    for (options, named) in [
        ("-c role=shop_admin", "role"),
        ("-c default_transaction_read_only=off", "read-only"),
    ] {
        let out = psql_with_options(&gw, &task, options, "SELECT 1");
        assert!(
            out.contains("FATAL") && out.contains(named),
            "{options}: {out}"
        );
    }
}
