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

/// Item 6: the session keeps the task's name in the database's logs. A
/// client's `SET application_name` (every driver's, pgjdbc's right after
/// login) is answered as the server would answer it, while the server's
/// name keeps the task's tag before the client's; `set_config` of it is
/// refused, and under an admin grant, which may run it, ends the session.
#[test]
fn the_application_name_keeps_naming_the_task() {
    let cluster = TestCluster::start();
    let gw = gateway(&cluster);
    let task = gw.active_task("shop", "read", "10m");
    let mut pg = RawPg::connect(gw.postgres, &task.0, &task.1, "shop");
    let tag = format!("taskgate/{}", task.0);
    for (sql, shown, server) in [
        (
            "SET application_name = 'innocent'",
            "innocent",
            format!("{tag} innocent"),
        ),
        ("SET application_name = ''", "", tag.clone()),
        (
            "SET application_name TO again",
            "again",
            format!("{tag} again"),
        ),
        ("RESET application_name", "", tag.clone()),
    ] {
        pg.send(&fe::query(sql));
        let answers = pg.until_ready(1);
        // The server reports the change as it ends the query.
        assert_eq!(tags(&answers), "CSZ", "{sql}: {answers:?}");
        assert_eq!(
            answers[1].text,
            format!("application_name={shown}"),
            "{sql}"
        );
        pg.send(&fe::query("SHOW application_name"));
        let answers = pg.until_ready(1);
        assert_eq!(answers[1].text, server, "{sql}");
    }
    // In the extended protocol too, and a local one ends with its
    // transaction.
    pg.send(&fe::query("BEGIN"));
    pg.until_ready(1);
    pg.send(&common::raw::extended(
        "SET LOCAL application_name TO 'for a while'",
    ));
    let answers = pg.until_ready(1);
    assert!(
        answers
            .iter()
            .any(|a| a.text == "application_name=for a while"),
        "{answers:?}"
    );
    pg.send(&fe::query("COMMIT"));
    let answers = pg.until_ready(1);
    assert!(
        answers.iter().any(|a| a.text == "application_name="),
        "{answers:?}"
    );
    assert!(cluster.log().contains(&format!(
        "SET LOCAL application_name = E'{tag} for a while'"
    )));
    let started = gw.events_of("command.started");
    let set = started
        .iter()
        .find(|e| e["payload"]["sql"] == "SET application_name = 'innocent'")
        .unwrap();
    assert_eq!(
        set["payload"]["sent_as"],
        format!("SET application_name = E'{tag} innocent'").as_str()
    );
    // Routes the gateway does not rewrite stay refused.
    for sql in [
        "SELECT set_config('application_name', 'innocent', false)",
        "SET application_name = 'innocent'; SELECT 1",
    ] {
        pg.send(&fe::query(sql));
        let answers = pg.until_ready(1);
        assert_eq!(
            answers[0].sqlstate.as_deref(),
            Some("42501"),
            "{sql}: {answers:?}"
        );
    }
    // An admin grant may run set_config, but then the session ends.
    let admin = gw.active_task("shop", "admin", "10m");
    let mut pg = RawPg::connect(gw.postgres, &admin.0, &admin.1, "shop");
    pg.send(&fe::query(
        "SELECT set_config('application_name', 'innocent', false)",
    ));
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

/// Ordinary client behaviours, each sent once straight to the database and
/// once through the gateway: what the client sees (message types, command
/// tags, transaction status, error codes) must be the same, so a future
/// difference shows as a diff here rather than to a user.
#[test]
fn ordinary_behaviours_look_the_same_direct_and_through_the_gateway() {
    use common::cluster::RW_USER;
    let cluster = TestCluster::start();
    let gw = gateway(&cluster);
    let task = gw.active_task("shop", "write", "10m");
    let direct_addr: std::net::SocketAddr = ([127, 0, 0, 1], cluster.port()).into();
    let behaviours: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "simple select",
            vec![fe::query("SELECT id, item FROM orders ORDER BY id")],
        ),
        (
            "several statements",
            vec![fe::query("SELECT 1; SELECT 2, 3; VALUES (4)")],
        ),
        ("empty query", vec![fe::query("")]),
        ("comment only", vec![fe::query("-- nothing")]),
        ("syntax error", vec![fe::query("SELEC 1")]),
        ("runtime error", vec![fe::query("SELECT 1/0")]),
        (
            "missing table",
            vec![fe::query("SELECT * FROM no_such_table")],
        ),
        (
            "transaction",
            vec![fe::query(
                "BEGIN; INSERT INTO orders (item) VALUES ('cmp'); DELETE FROM orders WHERE item = 'cmp'; COMMIT",
            )],
        ),
        (
            "error inside a transaction",
            vec![
                fe::query("BEGIN"),
                fe::query("SELECT 1/0"),
                fe::query("SELECT 1"),
                fe::query("COMMIT"),
            ],
        ),
        (
            "savepoint",
            vec![
                fe::query("BEGIN; SAVEPOINT a; SELECT 1/0"),
                fe::query("ROLLBACK TO SAVEPOINT a; SELECT 1; COMMIT"),
            ],
        ),
        (
            "extended with parameters",
            vec![
                [
                    fe::parse("", "SELECT $1::int + 1", &[]),
                    fe::bind("", "", &[Some(b"41")]),
                    fe::describe(b'P', ""),
                    fe::execute("", 0),
                    fe::sync(),
                ]
                .concat(),
            ],
        ),
        (
            "a portal in pieces",
            vec![
                fe::query("BEGIN"),
                [
                    fe::parse("", "SELECT generate_series(1, 5)", &[]),
                    fe::bind("p", "", &[]),
                    fe::execute("p", 2),
                    fe::execute("p", 2),
                    fe::execute("p", 2),
                    fe::sync(),
                ]
                .concat(),
                fe::query("COMMIT"),
            ],
        ),
        (
            "a reused statement name",
            vec![
                [fe::parse("s", "SELECT 1", &[]), fe::sync()].concat(),
                [fe::parse("s", "SELECT 2", &[]), fe::sync()].concat(),
                [fe::bind("", "s", &[]), fe::execute("", 0), fe::sync()].concat(),
                [fe::close(b'S', "s"), fe::sync()].concat(),
            ],
        ),
        (
            "an unknown statement and portal",
            vec![
                [fe::bind("", "nope", &[]), fe::execute("", 0), fe::sync()].concat(),
                [fe::describe(b'P', "nope"), fe::sync()].concat(),
            ],
        ),
        (
            "an error mid-batch skips to Sync",
            vec![
                [
                    fe::parse("", "SELECT 1/0", &[]),
                    fe::bind("", "", &[]),
                    fe::execute("", 0),
                    fe::parse("", "SELECT 1", &[]),
                    fe::bind("", "", &[]),
                    fe::execute("", 0),
                    fe::sync(),
                    fe::query("SELECT 2"),
                ]
                .concat(),
            ],
        ),
        (
            "cursor",
            vec![fe::query(
                "BEGIN; DECLARE c CURSOR FOR SELECT id FROM orders ORDER BY id; FETCH 1 FROM c; CLOSE c; COMMIT",
            )],
        ),
        (
            "settings",
            vec![fe::query(
                "SET TimeZone = 'UTC'; SHOW TimeZone; RESET TimeZone",
            )],
        ),
    ];
    let seen = |addr, user: &str, password: &str| -> Vec<String> {
        let mut out = Vec::new();
        for (name, steps) in &behaviours {
            let mut pg = RawPg::connect(addr, user, password, "shop");
            for step in steps {
                pg.send(step);
                let ready = ready_for_queries(step);
                let (answers, cut) = pg.answers(ready);
                assert_eq!(cut, None, "{name}: {answers:?}");
                let shown: Vec<String> = answers
                    .iter()
                    .filter(|a| !matches!(a.tag, 'S' | 'N'))
                    .map(|a| match (a.tag, &a.sqlstate) {
                        (_, Some(code)) => format!("{}{code}", a.tag),
                        ('C' | 'Z', _) => format!("{}({})", a.tag, a.text),
                        _ => a.tag.to_string(),
                    })
                    .collect();
                out.push(format!("{name}: {}", shown.join(" ")));
            }
        }
        out
    };
    let direct = seen(direct_addr, RW_USER, common::UPSTREAM_PASSWORD);
    let through = seen(gw.postgres, &task.0, &task.1);
    for (d, t) in direct.iter().zip(&through) {
        assert_eq!(d, t, "direct and through the gateway differ");
    }
    assert_eq!(direct.len(), through.len());
    // The comparison sees transaction states and outcomes, not just tags.
    assert!(
        through
            .iter()
            .any(|l| l.starts_with("error inside a transaction") && l.contains("Z(E)")),
        "{through:#?}"
    );
    assert!(
        through.iter().any(|l| l.contains("C(ROLLBACK)")),
        "{through:#?}"
    );
}

/// How many ReadyForQuery a run of frontend messages asks for: one per
/// Query and per Sync.
fn ready_for_queries(mut bytes: &[u8]) -> usize {
    let mut n = 0;
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        n += usize::from(matches!(bytes[0], b'Q' | b'S'));
        bytes = &bytes[(1 + len).min(bytes.len())..];
    }
    n
}

fn drivers_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

/// The drivers the issue names, doing what tripped them: node-postgres'
/// empty-text query (its "no data" path, a Parse of ''), and psycopg with
/// prepare=True inside a transaction that meets a refusal.
#[test]
fn drivers_see_empty_queries_and_refusals_as_the_server_gives_them() {
    let cluster = TestCluster::start();
    let gw = gateway(&cluster);
    let task = gw.active_task("shop", "write", "10m");
    let port = gw.postgres.port().to_string();
    let node = r#"
const { Client } = require('pg');
(async () => {
  const c = new Client({ host: '127.0.0.1', port: +process.env.TG_PORT, user: process.env.TG_USER,
                         password: process.env.TG_PASSWORD, database: 'shop' });
  await c.connect();
  const started = Date.now();
  const r = await c.query({ text: '', values: [] });
  console.log('empty', r.rows.length, Date.now() - started < 1000);
  await c.end();
})().catch((e) => { console.log('error', e.code, e.message); process.exit(1); });
"#;
    let out = Command::new("node")
        .args(["-e", node])
        .current_dir(drivers_dir())
        .env("TG_PORT", &port)
        .env("TG_USER", &task.0)
        .env("TG_PASSWORD", &task.1)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "empty 0 true\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = format!(
        r#"
import psycopg
conn = psycopg.connect("host=127.0.0.1 port={port} dbname=shop user={user} password={password}")
with conn.cursor() as cur:
    cur.execute("INSERT INTO orders (item) VALUES ('py1')", prepare=True)
    try:
        cur.execute("SELECT pg_cancel_backend(0)", prepare=True)
    except psycopg.errors.InsufficientPrivilege:
        print("refused")
    print(conn.info.transaction_status.name)
    try:
        cur.execute("INSERT INTO orders (item) VALUES ('py2')", prepare=True)
    except psycopg.errors.InFailedSqlTransaction:
        print("aborted")
conn.commit()
"#,
        user = task.0,
        password = task.1
    );
    let out = Command::new("python3")
        .args(["-c", &python])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "refused\nINERROR\naborted\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&cluster, "py1"), "0");
    assert_eq!(count(&cluster, "py2"), "0");
}
