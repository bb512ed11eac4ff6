//! The PostgreSQL data plane end to end: a throwaway cluster, the gateway
//! binary in front of it, and real clients. Each test checks what the audit
//! log holds (and, where it matters, what the database itself logged), not
//! just that a query worked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::{TestGateway, UPSTREAM_PASSWORD, connect, rt};
use serde_json::Value;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

struct Setup {
    cluster: TestCluster,
    gateway: TestGateway,
}

fn setup() -> Setup {
    let cluster = TestCluster::start();
    let gateway = TestGateway::start_with(&cluster.gateway_config());
    Setup { cluster, gateway }
}

fn task(gw: &TestGateway, connection: &str, access: &str, window: &str) -> (String, String) {
    gw.active_task(connection, access, window)
}

/// Every event as JSON, in log order, once every started command has its
/// completion (completions are committed just after the client hears).
fn events(gw: &TestGateway) -> Vec<Value> {
    let read = || -> Vec<Value> {
        gw.event_bodies()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    };
    let settled = |events: &[Value]| {
        of_type(events, "command.started").len() == of_type(events, "command.completed").len()
    };
    gw.eventually(Duration::from_secs(5), || settled(&read()));
    read()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

#[test]
fn simple_and_extended_statements_are_recorded_with_outcomes() {
    let s = setup();
    let (id, token) = task(&s.gateway, "shop", "write", "10m");
    rt().block_on(async {
        let c = connect(&s.gateway, &id, &token, "shop").await.unwrap();
        let rows = c
            .simple_query(
                "SELECT count(*) FROM orders; INSERT INTO orders (item, qty) VALUES ('fig', 2)",
            )
            .await
            .unwrap();
        let counts: Vec<_> = rows
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(counts, vec![1, 1]);
        let rows = c
            .query(
                "SELECT item FROM orders WHERE qty > $1 ORDER BY id",
                &[&2i32],
            )
            .await
            .unwrap();
        let items: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(items, vec!["apple", "pear"]);
        let err = c
            .simple_query("SELECT * FROM no_such_table")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err), "42P01");
    });
    let events = events(&s.gateway);
    let started = of_type(&events, "command.started");
    let sql: Vec<&str> = started
        .iter()
        .map(|e| e["payload"]["sql"].as_str().unwrap())
        .collect();
    assert_eq!(
        sql,
        vec![
            "SELECT count(*) FROM orders",
            "INSERT INTO orders (item, qty) VALUES ('fig', 2)",
            "SELECT item FROM orders WHERE qty > $1 ORDER BY id",
            "SELECT * FROM no_such_table",
        ]
    );
    let select = started[2];
    assert_eq!(
        select["payload"]["params"],
        serde_json::json!(["\\x00000002"]),
        "binary int4 parameter"
    );
    assert_eq!(select["payload"]["protocol"], "extended");
    assert_eq!(select["payload"]["class"], "read");
    assert_eq!(
        select["payload"]["tables_read"],
        serde_json::json!(["public.orders"])
    );
    assert_eq!(started[1]["payload"]["class"], "write");
    assert_eq!(
        started[1]["payload"]["tables_written"],
        serde_json::json!(["public.orders"])
    );
    for e in &started {
        assert_eq!(e["task"], id.as_str());
        assert_eq!(e["identity"]["subject"], "copilot-agent");
        assert_eq!(e["connection"], "shop");
        assert!(e["session"].as_str().unwrap().starts_with("ses_"));
    }
    let completed = of_type(&events, "command.completed");
    let outcomes: Vec<(u64, &str, Value)> = completed
        .iter()
        .map(|e| {
            (
                e["payload"]["command"].as_u64().unwrap(),
                e["payload"]["outcome"].as_str().unwrap(),
                e["payload"]["rows"].clone(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (1, "ok", serde_json::json!(1)),
            (2, "ok", serde_json::json!(1)),
            (3, "ok", serde_json::json!(2)),
            (4, "error", Value::Null),
        ]
    );
    assert_eq!(completed[3]["payload"]["sqlstate"], "42P01");
    // Each command's start is in the log before its completion.
    let position = |kind: &str, n: u64| {
        events
            .iter()
            .position(|e| e["type"] == kind && e["payload"]["command"] == n)
            .unwrap()
    };
    for n in 1..=4 {
        assert!(position("command.started", n) < position("command.completed", n));
    }
    let opened = of_type(&events, "session.opened");
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0]["payload"]["application_name"], "e2e-test");
    // The database's own log names the task, and saw every statement.
    let log = s.cluster.log();
    assert!(
        log.contains(&format!("app=taskgate/{id} e2e-test")),
        "{log}"
    );
    assert!(log.contains("INSERT INTO orders (item, qty) VALUES ('fig', 2)"));
}

#[test]
fn logins_are_refused_with_the_reason() {
    let s = setup();
    let gw = &s.gateway;
    let (id, token) = task(gw, "shop", "read", "10m");
    let (status, pending) = gw.http().post(
        &gw.tokens.agent,
        "/v1/tasks",
        &serde_json::json!({"name": "needs-ok", "connection": "orders-db", "access": "write", "window": "10m"}),
    );
    assert_eq!(status, 201);
    let pending_id = pending["id"].as_str().unwrap().to_owned();
    let pending_token = pending["token"].as_str().unwrap().to_owned();
    rt().block_on(async {
        let cases = [
            (
                id.as_str(),
                "wrong-token",
                "shop",
                "28P01",
                "password authentication failed for task",
            ),
            (
                "tsk_0000000000000000",
                token.as_str(),
                "shop",
                "28000",
                "unknown task",
            ),
            (
                id.as_str(),
                token.as_str(),
                "shop-md5",
                "28000",
                "is for connection \"shop\"",
            ),
            (
                pending_id.as_str(),
                pending_token.as_str(),
                "orders-db",
                "28000",
                "waiting for approval",
            ),
        ];
        for (user, password, db, code, text) in cases {
            let err = connect(gw, user, password, db).await.err().unwrap();
            assert_eq!(sqlstate(&err), code, "{user}/{db}: {err}");
            assert!(
                message(&err).contains(text),
                "{user}/{db}: {}",
                message(&err)
            );
        }
        // The right token still works after the failures.
        let c = connect(gw, &id, &token, "shop").await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
    });
    let events = events(gw);
    let failed = of_type(&events, "auth.failed");
    assert_eq!(failed.len(), 4);
    assert_eq!(failed[0]["task"], id.as_str());
    assert!(
        failed[1]["task"].is_null(),
        "an unknown task is only claimed"
    );
    assert_eq!(failed[1]["payload"]["claimed_task"], "tsk_0000000000000000");
    let everything = format!("{}\n{}", gw.event_bodies().join("\n"), gw.log());
    assert!(!everything.contains(&token), "the token leaked");
    assert!(
        !everything.contains(UPSTREAM_PASSWORD),
        "the upstream password leaked"
    );
}

#[test]
fn every_upstream_login_method_works() {
    let s = setup();
    for connection in ["shop", "shop-md5", "shop-trust"] {
        let (id, token) = task(&s.gateway, connection, "read", "10m");
        let user: String = rt().block_on(async {
            let c = connect(&s.gateway, &id, &token, connection).await.unwrap();
            c.query_one("SELECT current_user::text", &[])
                .await
                .unwrap()
                .get(0)
        });
        let want = match connection {
            "shop" => common::cluster::RO_USER,
            "shop-md5" => common::cluster::MD5_USER,
            _ => common::cluster::TRUST_USER,
        };
        assert_eq!(user, want);
    }
    // A cleartext password is never sent over an unencrypted connection.
    let (id, token) = task(&s.gateway, "shop-clear", "read", "10m");
    let err = rt()
        .block_on(connect(&s.gateway, &id, &token, "shop-clear"))
        .err()
        .unwrap();
    assert_eq!(sqlstate(&err), "08006", "{err}");
    assert!(
        s.gateway.eventually(Duration::from_secs(5), || s
            .gateway
            .log()
            .contains("clear text over an unencrypted connection")),
        "{}",
        s.gateway.log()
    );
    assert!(!s.cluster.log().contains("password authentication failed"));
}

#[test]
fn a_read_grant_refuses_writes_and_the_session_goes_on() {
    let s = setup();
    let (id, token) = task(&s.gateway, "shop", "read", "10m");
    rt().block_on(async {
        let c = connect(&s.gateway, &id, &token, "shop").await.unwrap();
        for sql in [
            "INSERT INTO orders (item) VALUES ('read-grant-insert')",
            "CREATE TABLE read_grant_table (x int)",
            "SET default_transaction_read_only = off",
            "BEGIN READ WRITE",
        ] {
            let err = c.simple_query(sql).await.unwrap_err();
            assert_eq!(sqlstate(&err), "42501", "{sql}");
            assert!(message(&err).starts_with("taskgate: "), "{}", message(&err));
        }
        // Extended protocol: refused at Parse, and the next query works.
        let err = c
            .query("UPDATE orders SET qty = $1", &[&1i32])
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err), "42501");
        let n: i64 = c
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
        // RESET ALL is allowed: it returns to the session's start, read-only.
        c.simple_query("RESET ALL").await.unwrap();
        let ro: String = c
            .query_one("SHOW default_transaction_read_only", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(ro, "on", "the upstream session is read-only too");
        // A driver's own name is taken; the server's keeps the task's tag.
        c.simple_query("SET application_name = 'someone else'")
            .await
            .unwrap();
        let name: String = c
            .query_one("SHOW application_name", &[])
            .await
            .unwrap()
            .get(0);
        assert!(
            name.starts_with("taskgate/") && name.ends_with(" someone else"),
            "{name}"
        );
    });
    let events = events(&s.gateway);
    let denied = of_type(&events, "command.denied");
    assert_eq!(denied.len(), 5);
    assert!(
        denied[0]["payload"]["reason"]
            .as_str()
            .unwrap()
            .contains("read grant does not allow write")
    );
    assert_eq!(denied[1]["payload"]["class"], "ddl");
    assert_eq!(denied[4]["payload"]["protocol"], "extended");
    let log = s.cluster.log();
    for marker in [
        "read-grant-insert",
        "read_grant_table",
        "UPDATE orders",
        "READ WRITE",
    ] {
        assert!(!log.contains(marker), "{marker} reached the database");
    }
}

#[test]
fn statement_rules_deny_and_the_session_goes_on() {
    let s = setup();
    let (id, token) = task(&s.gateway, "shop", "write", "10m");
    rt().block_on(async {
        let c = connect(&s.gateway, &id, &token, "shop").await.unwrap();
        let err = c.simple_query("DROP TABLE orders").await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501");
        assert!(
            message(&err).contains("agents-on-shop.statements[0]"),
            "{}",
            message(&err)
        );
        let err = c
            .execute(
                "UPDATE customers SET name = $1 WHERE id = $2",
                &[&"x", &1i32],
            )
            .await
            .unwrap_err();
        assert!(
            message(&err).contains("agents-on-shop.statements[1]"),
            "{}",
            message(&err)
        );
        // Allowed writes and reads of the same tables go through.
        c.execute("UPDATE orders SET qty = qty + 1 WHERE id = $1", &[&1i32])
            .await
            .unwrap();
        let n: i64 = c
            .query_one("SELECT count(*) FROM customers", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
        // A grant of DCL needs admin access.
        let err = c
            .simple_query("GRANT SELECT ON orders TO PUBLIC")
            .await
            .unwrap_err();
        assert!(message(&err).contains("admin grant"), "{}", message(&err));
    });
    let log = s.cluster.log();
    assert!(!log.contains("DROP TABLE orders"));
    assert!(!log.contains("UPDATE customers"));
    assert!(!log.contains("TO PUBLIC"));
    assert!(log.contains("UPDATE orders SET qty = qty + 1"));
    assert_eq!(of_type(&events(&s.gateway), "command.denied").len(), 3);
}

/// Waits for the session to be cut: the next statement fails. Returns the
/// error the client saw and how long the cut took.
async fn wait_for_cut(c: &Client) -> (tokio_postgres::Error, Duration) {
    let start = Instant::now();
    loop {
        if let Err(e) = c.simple_query("SELECT 1").await {
            return (e, start.elapsed());
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the session was never cut"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn revoking_a_task_cuts_its_live_sessions() {
    let s = setup();
    let gw = &s.gateway;
    let (id, token) = task(gw, "shop", "write", "10m");
    rt().block_on(async {
        let a = connect(gw, &id, &token, "shop").await.unwrap();
        let b = connect(gw, &id, &token, "shop").await.unwrap();
        a.simple_query("SELECT 1").await.unwrap();
        let revoked_at = Instant::now();
        // The blocking HTTP client must not live on the async runtime.
        let (admin, url) = (
            gw.tokens.admin.clone(),
            format!("{}/v1/tasks/{id}/revoke", gw.base),
        );
        let (status, body) = std::thread::spawn(move || {
            let response = reqwest::blocking::Client::new()
                .post(url)
                .bearer_auth(admin)
                .json(&serde_json::json!({"comment": "incident"}))
                .send()
                .unwrap();
            (response.status().as_u16(), response.text().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(status, 200, "{body}");
        for c in [&a, &b] {
            let (err, _) = wait_for_cut(c).await;
            assert!(err.is_closed() || sqlstate(&err) == "57P01", "{err}");
        }
        // SPEC §10 invariant 3: no session of the task outlives it by a second.
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "cut took {:?}",
            revoked_at.elapsed()
        );
        let err = connect(gw, &id, &token, "shop").await.err().unwrap();
        assert!(message(&err).contains("revoked"), "{}", message(&err));
    });
    let events = events(gw);
    let closed = of_type(&events, "session.closed");
    assert_eq!(closed.len(), 2);
    for e in closed {
        assert_eq!(e["payload"]["reason"], "task revoked");
    }
}

#[test]
fn the_window_end_cuts_sessions_and_later_logins() {
    let s = setup();
    let gw = &s.gateway;
    let (id, token) = task(gw, "shop", "read", "2s");
    rt().block_on(async {
        let c = connect(gw, &id, &token, "shop").await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
        let (err, _) = wait_for_cut(&c).await;
        assert!(err.is_closed() || sqlstate(&err) == "57P01", "{err}");
        let err = connect(gw, &id, &token, "shop").await.err().unwrap();
        let text = message(&err);
        assert!(
            text.contains("expired") || text.contains("window ended"),
            "{text}"
        );
    });
    let events = events(gw);
    let closed = of_type(&events, "session.closed");
    assert_eq!(closed[0]["payload"]["reason"], "task window ended");
}

#[test]
fn a_running_statement_is_cancelled_through_the_gateway() {
    let s = setup();
    let (id, token) = task(&s.gateway, "shop", "read", "10m");
    rt().block_on(async {
        let c = connect(&s.gateway, &id, &token, "shop").await.unwrap();
        let cancel = c.cancel_token();
        let slow = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(30)").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel_query(NoTls).await.unwrap();
        let err = slow.await.unwrap().unwrap_err();
        assert_eq!(sqlstate(&err), "57014", "{err}");
    });
    let events = events(&s.gateway);
    let completed = of_type(&events, "command.completed");
    assert_eq!(completed[0]["payload"]["sqlstate"], "57014");
}

/// SPEC §10 invariant 1 under a real fault: the audit store's disk fills up
/// (a file-size limit on the gateway process). The statement whose event
/// cannot be committed is refused, and the database never sees it; every
/// statement the database did see has its committed `command.started`.
#[test]
fn a_full_audit_disk_refuses_statements_before_they_reach_the_database() {
    let cluster = TestCluster::start();
    // 4 MiB of file: enough to start and run a while, not forever.
    let gw = TestGateway::start_with_file_limit(8192, &cluster.gateway_config());
    let (id, token) = task(&gw, "shop", "read", "10m");
    let refused = rt().block_on(async {
        let c = connect(&gw, &id, &token, "shop").await.unwrap();
        for i in 0..100_000 {
            let marker = format!("SELECT 'full-disk-marker-{i}' AS m");
            if let Err(e) = c.simple_query(&marker).await {
                return (i, e);
            }
        }
        panic!("the store never filled up");
    });
    let (n, err) = refused;
    assert!(n > 10, "the store filled up at once ({n} statements ran)");
    assert!(
        sqlstate(&err) == "58000" || err.is_closed(),
        "statement {n} was refused with {err}"
    );
    let log = cluster.log();
    assert!(
        !log.contains(&format!("full-disk-marker-{n}'")),
        "the refused statement reached the database"
    );
    // Refused by whichever half of the session met the full store first:
    // the statement's own event, or the previous statement's outcome.
    // (The gateway's log is read on another thread: give it a moment.)
    assert!(
        gw.eventually(Duration::from_secs(5), || {
            let log = gw.log();
            log.contains("cannot commit command events") || log.contains("audit log unavailable")
        }),
        "{}",
        gw.log()
    );

    // The disk has room again (the file limit lifted on the running
    // gateway): new sessions work and are recorded, no restart needed.
    let pid = gw.pid().unwrap().to_string();
    let lifted = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--fsize=unlimited:"])
        .status()
        .unwrap();
    assert!(lifted.success());
    rt().block_on(async {
        let c = connect(&gw, &id, &token, "shop").await.unwrap();
        c.simple_query("SELECT 'after-the-disk-freed' AS m")
            .await
            .unwrap();
    });
    assert!(
        gw.events_of("command.started")
            .iter()
            .any(|e| e["payload"]["sql"] == "SELECT 'after-the-disk-freed' AS m"),
        "the statement after recovery was not recorded"
    );
    // Every statement that ran has its event in the store: committed to the
    // journal before it ran, and moved into the store once the disk had room.
    let recorded: std::collections::HashSet<String> = gw
        .event_bodies()
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap())
        .filter(|e| e["type"] == "command.started")
        .map(|e| e["payload"]["sql"].as_str().unwrap().to_owned())
        .collect();
    let ran: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("statement: ").nth(1))
        .filter(|s| s.contains("full-disk-marker-"))
        .collect();
    assert_eq!(
        ran.len(),
        n,
        "the database ran every statement before the refused one"
    );
    for statement in ran {
        assert!(
            recorded.contains(statement),
            "{statement} ran without its event"
        );
    }
}

#[test]
fn bad_wire_input_closes_only_that_connection() {
    use std::io::{Read, Write};
    let cluster = TestCluster::start();
    let gw = TestGateway::start_full(
        "max_message_bytes = 4096\nmax_connections_per_task = 2",
        &cluster.gateway_config(),
    );
    let (id, token) = task(&gw, "shop", "read", "10m");
    // Garbage instead of a startup packet: a FATAL 08P01, then closed.
    let mut raw = std::net::TcpStream::connect(gw.postgres).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(answer.first(), Some(&b'E'), "{text}");
    assert!(
        text.contains("08P01") && text.contains("startup packet length"),
        "{text}"
    );
    // GSSENCRequest and (without a certificate) SSLRequest are answered N.
    for code in [80_877_104u32, 80_877_103] {
        let mut raw = std::net::TcpStream::connect(gw.postgres).unwrap();
        let mut request = 8i32.to_be_bytes().to_vec();
        request.extend_from_slice(&code.to_be_bytes());
        raw.write_all(&request).unwrap();
        let mut answer = [0u8; 1];
        raw.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"N");
    }
    rt().block_on(async {
        let a = connect(&gw, &id, &token, "shop").await.unwrap();
        // A message over max_message_bytes ends that session with 08P01...
        let huge = format!("SELECT '{}'", "x".repeat(5000));
        let err = a.simple_query(&huge).await.unwrap_err();
        assert!(err.is_closed() || sqlstate(&err) == "08P01", "{err}");
        assert!(
            gw.eventually(Duration::from_secs(5), || gw
                .log()
                .contains("client protocol error")),
            "{}",
            gw.log()
        );
        // ...and the gateway goes on: new sessions work, up to the per-task limit.
        let b = connect(&gw, &id, &token, "shop").await.unwrap();
        let c = connect(&gw, &id, &token, "shop").await.unwrap();
        b.simple_query("SELECT 1").await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
        let err = connect(&gw, &id, &token, "shop").await.err().unwrap();
        assert_eq!(sqlstate(&err), "53300", "{err}");
        assert!(message(&err).contains("limit"), "{}", message(&err));
    });
    assert!(
        !cluster.log().contains(&"x".repeat(5000)),
        "the oversized message was not forwarded"
    );
}

#[test]
fn failed_logins_are_rate_limited_per_address_and_task() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let (id, token) = task(&gw, "shop", "read", "10m");
    let (other, other_token) = task(&gw, "shop", "read", "10m");
    rt().block_on(async {
        for _ in 0..10 {
            let err = connect(&gw, &id, "wrong", "shop").await.err().unwrap();
            assert_eq!(sqlstate(&err), "28P01");
        }
        // Even the right token is refused from this address for a while.
        for _ in 0..3 {
            let err = connect(&gw, &id, &token, "shop").await.err().unwrap();
            assert_eq!(sqlstate(&err), "28000");
            assert!(
                message(&err).contains("too many failed logins"),
                "{}",
                message(&err)
            );
        }
        // Another task's sessions from the same address are not locked out.
        let client = connect(&gw, &other, &other_token, "shop").await.unwrap();
        client.simple_query("SELECT 1").await.unwrap();
    });
    let failed = of_type(&events(&gw), "auth.failed").len();
    assert_eq!(
        failed, 11,
        "each failure, and only the first refusal of the flood, is recorded"
    );
}

#[test]
fn the_total_connection_limit_is_enforced() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_full("max_connections = 2", &cluster.gateway_config());
    let (id, token) = task(&gw, "shop", "read", "10m");
    // Two connections that have not logged in yet hold both places.
    let _held: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(gw.postgres).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let err = rt()
        .block_on(connect(&gw, &id, &token, "shop"))
        .err()
        .unwrap();
    assert_eq!(sqlstate(&err), "53300", "{err}");
    assert!(message(&err).contains("limit 2"), "{}", message(&err));
}
