//! Fleet mode end to end: three gateway processes on one PostgreSQL store
//! (a throwaway cluster apart from the target's). pgbench through every
//! node while one is SIGKILLed and restarted; a revoke on one node cutting
//! a session on another; a statement held on one node approved on another;
//! a webhook sink taken over when its node dies; the store stopped under
//! load; and a node's SQLite store copied into PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{
    REVIEW_DDL, TestCluster, assert_recorded_first, free_port, pg_bindir, statements_via_gateway,
};
use common::webhook::{Receiver, distinct_seqs, sink_config};
use common::{BIN, STORE_PASSWORD, TestGateway, random_ms, rt};
use serde_json::{Value, json};

/// A cluster for the shared store, with a role that logs in by password.
fn store_cluster() -> (TestCluster, String) {
    let store = TestCluster::start();
    store.psql(
        "postgres",
        &format!("CREATE ROLE tg_store LOGIN PASSWORD '{STORE_PASSWORD}'"),
    );
    store.psql("postgres", "CREATE DATABASE taskgate OWNER tg_store");
    let url = format!("postgres://tg_store@127.0.0.1:{}/taskgate", store.port());
    (store, url)
}

/// Three nodes, gw-a first (whose tokens and key the others share).
fn three_nodes(url: &str, extra: &str) -> Vec<TestGateway> {
    three_nodes_with(url, "", extra)
}

/// [`three_nodes`] with `server` added to each node's `[server]`.
fn three_nodes_with(url: &str, server: &str, extra: &str) -> Vec<TestGateway> {
    let a = TestGateway::start_member(None, "gw-a", url, server, extra);
    let b = TestGateway::start_member(Some(&a), "gw-b", url, server, extra);
    let c = TestGateway::start_member(Some(&a), "gw-c", url, server, extra);
    vec![a, b, c]
}

/// Every event in the shared store, in sequence order.
fn shared_events(store: &TestCluster) -> Vec<Value> {
    store
        .psql(
            "taskgate",
            "SELECT convert_from(body, 'UTF8') FROM taskgate.events ORDER BY seq",
        )
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn started_sql(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "command.started")
        .map(|e| e["payload"]["sql"].as_str().unwrap().to_owned())
        .collect()
}

fn pgbench(gw: &TestGateway, task: &str, token: &str, seconds: u32) -> Child {
    Command::new(pg_bindir().join("pgbench"))
        .args(["-h", "127.0.0.1", "-p", &gw.postgres.port().to_string()])
        .args(["-U", task, "-n", "-c", "2", "-j", "1"])
        .args(["-T", &seconds.to_string(), "shop"])
        .env("PGPASSWORD", token)
        .env("PGSSLMODE", "disable")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `audit verify` offline, against the shared store gw's config names.
fn verify_shared(gw: &TestGateway) -> (i32, String) {
    let config = gw.config_path();
    let out = Command::new(BIN)
        .args(["audit", "verify", "--format", "json", "--config"])
        .arg(&config)
        .env("TG_TEST_STORE_PW", STORE_PASSWORD)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// What the server said, not only "db error".
fn error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

#[test]
fn three_nodes_keep_one_record_while_one_is_killed_again_and_again() {
    let (store, url) = store_cluster();
    let target = TestCluster::start();
    target.pgbench_init();
    target.prepare_catalog_watch();
    let mut nodes = three_nodes(&url, &target.gateway_config());
    for (gw, name) in nodes.iter().zip(["gw-a", "gw-b", "gw-c"]) {
        let (status, health) = gw.http().get("", "/healthz");
        assert_eq!(status, 200);
        assert_eq!(health["node"], name, "{health}");
        assert_eq!(health["warnings"], json!([]), "{health}");
    }
    // A task asked for on gw-a is used on gw-b and gw-c.
    let (task, token) = nodes[0].active_task("shop", "write", "30m");

    for round in 0..3 {
        let steady = [
            pgbench(&nodes[0], &task, &token, 3),
            pgbench(&nodes[2], &task, &token, 3),
        ];
        let doomed = pgbench(&nodes[1], &task, &token, 60);
        std::thread::sleep(random_ms(400, 1500));
        nodes[1].kill();
        let _ = doomed.wait_with_output();
        for (load, name) in steady.into_iter().zip(["gw-a", "gw-c"]) {
            let out = load.wait_with_output().unwrap();
            // The other nodes' sessions never noticed.
            assert!(
                out.status.success(),
                "round {round}: pgbench on {name} failed while gw-b died: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        nodes[1].restart();
    }

    let events = shared_events(&store);
    let logged = statements_via_gateway(&target.log());
    assert!(logged.len() > 200, "the load barely ran: {}", logged.len());
    assert_recorded_first(&logged, &started_sql(&events));
    let recorders: BTreeSet<&str> = events.iter().filter_map(|e| e["node"].as_str()).collect();
    for name in ["gw-a", "gw-b", "gw-c"] {
        assert!(
            recorders.contains(name),
            "no event from {name}: {recorders:?}"
        );
    }
    let (code, report) = verify_shared(&nodes[0]);
    assert_eq!(code, 0, "{report}");
    // Each node answers the auditor over the whole fleet's record: search
    // on gw-c finds what gw-b recorded.
    let (status, page) = nodes[2].http().get(
        &nodes[2].tokens.auditor,
        &format!("/v1/audit/events?task={task}&type=command.started&limit=1000"),
    );
    assert_eq!(status, 200, "{page}");
    let hits = page["hits"].as_array().unwrap();
    assert!(
        hits.iter().any(|h| h["event"]["node"] == "gw-b"),
        "search on gw-c misses gw-b's statements"
    );
    let (status, verified) = nodes[1]
        .http()
        .get(&nodes[1].tokens.auditor, "/v1/audit/verify");
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["ok"], true, "{verified}");
    eprintln!(
        "3 kills of gw-b; {} statements reached the database, every one recorded first; {} events from {:?}",
        logged.len(),
        events.len(),
        recorders
    );
}

#[test]
fn a_revoke_on_one_node_cuts_a_session_on_another_and_a_review_on_a_third_releases_a_hold() {
    let (_store, url) = store_cluster();
    let target = TestCluster::start();
    let extra = format!("{}{REVIEW_DDL}", target.gateway_config());
    let nodes = three_nodes(&url, &extra);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let runtime = rt();

    // A session on gw-c, its task revoked on gw-a.
    let (task, token) = a.active_task("shop", "read", "30m");
    let client = runtime
        .block_on(common::connect(c, &task, &token, "shop"))
        .unwrap();
    runtime.block_on(client.simple_query("SELECT 1")).unwrap();
    let revoked_at = Instant::now();
    let (status, body) = a.http().post(
        &a.tokens.admin,
        &format!("/v1/tasks/{task}/revoke"),
        &json!({}),
    );
    assert_eq!(status, 200, "{body}");
    let cut = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if client.is_closed() || client.simple_query("SELECT 1").await.is_err() {
                return Some(revoked_at.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    });
    let cut = cut.expect("the session on gw-c outlived its task's revoke on gw-a");
    assert!(cut < Duration::from_secs(1), "cut after {cut:?}");
    eprintln!("revoke on gw-a cut the session on gw-c after {cut:?}");

    // A statement held on gw-c, approved on gw-b.
    let (task, token) = a.active_task("shop", "write", "30m");
    let sql = "CREATE TABLE fleet_held (id int)";
    let held = {
        let (gw_task, gw_token) = (task.clone(), token.clone());
        let port = c.postgres.port();
        std::thread::spawn(move || {
            let runtime = rt();
            runtime.block_on(async move {
                let client = common::connect_port(port, &gw_task, &gw_token, "shop")
                    .await
                    .unwrap();
                client.simple_query(sql).await.map(|_| ())
            })
        })
    };
    let review = common::pending_review(b, &task);
    assert_eq!(review["statement"], sql);
    assert!(!target.log().contains("fleet_held"), "ran before approval");
    let (status, body) = b.http().post(
        &b.tokens.alice,
        &format!("/v1/reviews/{}/approve", review["id"].as_str().unwrap()),
        &json!({"comment": "fine"}),
    );
    assert_eq!(status, 200, "{body}");
    held.join()
        .unwrap()
        .expect("the held statement on gw-c did not run after approval on gw-b");
    assert!(target.log().contains("CREATE TABLE fleet_held"));
}

#[test]
fn a_task_connection_limit_counts_its_sessions_on_every_node() {
    let (_store, url) = store_cluster();
    let target = TestCluster::start();
    let nodes = three_nodes_with(
        &url,
        "max_connections_per_task = 2",
        &target.gateway_config(),
    );
    let (task, token) = nodes[0].active_task("shop", "read", "30m");
    let runtime = rt();
    runtime.block_on(async {
        let on_a = common::connect(&nodes[0], &task, &token, "shop")
            .await
            .unwrap();
        let on_b = common::connect(&nodes[1], &task, &token, "shop")
            .await
            .unwrap();
        on_a.simple_query("SELECT 1").await.unwrap();
        on_b.simple_query("SELECT 1").await.unwrap();
        // A third, on the node where the task has no session yet.
        let refused = common::connect(&nodes[2], &task, &token, "shop")
            .await
            .err()
            .map(|e| error_text(&e))
            .expect("a third session opened past the task's fleet-wide limit");
        assert!(refused.contains("across the fleet"), "{refused}");
        // One closes on gw-a: gw-c may open one.
        drop(on_a);
        let start = Instant::now();
        loop {
            if let Ok(client) = common::connect(&nodes[2], &task, &token, "shop").await {
                client.simple_query("SELECT 2").await.unwrap();
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the freed place never came back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(on_b);
    });
}

#[test]
fn a_sink_is_taken_over_when_the_node_delivering_it_dies() {
    let (store, url) = store_cluster();
    let target = TestCluster::start();
    let port = free_port();
    let receiver = Receiver::start(port, None, Duration::ZERO);
    let secrets = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}{}",
        target.gateway_config(),
        sink_config(port, secrets.path())
    );
    let mut nodes = three_nodes(&url, &extra);
    let holder = |nodes: &[TestGateway]| {
        nodes
            .iter()
            .position(|n| n.pid().is_some() && n.log().contains("lease=sink siem"))
    };
    let start = Instant::now();
    let first = loop {
        if let Some(i) = holder(&nodes) {
            break i;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no node took the sink"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Events while the holder delivers, then it dies mid-stream.
    let other = (first + 1) % 3;
    for _ in 0..5 {
        nodes[other].active_task("shop", "read", "10m");
    }
    nodes[first].kill();
    for _ in 0..5 {
        nodes[other].active_task("shop", "read", "10m");
    }
    let taken = Instant::now();
    let head = || shared_events(&store).len() as u64;
    let all = loop {
        let delivered = distinct_seqs(&receiver.events());
        let head = head();
        if delivered == (1..=head).collect::<Vec<_>>() {
            break head;
        }
        assert!(
            taken.elapsed() < Duration::from_secs(20),
            "the receiver has {} of {head} events",
            delivered.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let second = holder(&nodes).expect("no node took the sink over");
    assert_ne!(second, first);
    eprintln!(
        "gw-{} took the sink over from gw-{}; the receiver has all {all} events after {:?}",
        ["a", "b", "c"][second],
        ["a", "b", "c"][first],
        taken.elapsed()
    );
}

#[test]
fn with_the_store_down_statements_are_refused_and_service_resumes_when_it_returns() {
    let (store, url) = store_cluster();
    let target = TestCluster::start();
    target.pgbench_init();
    let nodes = three_nodes(&url, &target.gateway_config());
    let (task, token) = nodes[0].active_task("shop", "write", "30m");
    let load = pgbench(&nodes[1], &task, &token, 4);
    let runtime = rt();
    let open = runtime
        .block_on(common::connect(&nodes[2], &task, &token, "shop"))
        .unwrap();
    runtime.block_on(open.simple_query("SELECT 41")).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    store.stop();
    // A statement on an open session is refused, saying why; so is a new
    // session, whose task cannot be read.
    let refused = match runtime.block_on(open.simple_query("SELECT 42")) {
        Err(e) => error_text(&e),
        Ok(_) => String::new(),
    };
    assert!(
        refused.contains("could not commit the statement to its audit log"),
        "a statement ran with the store down: {refused:?}"
    );
    let login = match runtime.block_on(common::connect(&nodes[0], &task, &token, "shop")) {
        Err(e) => error_text(&e),
        Ok(_) => String::new(),
    };
    assert!(
        login.contains("task store"),
        "a session opened with the store down: {login:?}"
    );
    let _ = load.wait_with_output();
    store.resume();
    // Back without restarting any gateway.
    let start = Instant::now();
    loop {
        let ok = runtime.block_on(async {
            let client = common::connect(&nodes[2], &task, &token, "shop")
                .await
                .ok()?;
            client.simple_query("SELECT 43").await.ok()
        });
        if ok.is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no statement ran after the store came back: {}",
            nodes[2].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = shared_events(&store);
    assert_recorded_first(
        &statements_via_gateway(&target.log()),
        &started_sql(&events),
    );
    assert!(
        !target.log().contains("SELECT 42"),
        "the refused statement ran"
    );
    let (code, report) = verify_shared(&nodes[0]);
    assert_eq!(code, 0, "{report}");
    eprintln!(
        "store outage: refused with {refused:?}; resumed after {:?}",
        start.elapsed()
    );
}

#[test]
fn a_nodes_sqlite_store_copied_into_postgres_verifies_there() {
    let target = TestCluster::start();
    let mut single = TestGateway::start_with(&target.gateway_config());
    let (task, token) = single.active_task("shop", "write", "30m");
    let runtime = rt();
    runtime.block_on(async {
        let client = common::connect(&single, &task, &token, "shop")
            .await
            .unwrap();
        for i in 0..20 {
            client.simple_query(&format!("SELECT {i}")).await.unwrap();
        }
    });
    single.stop();
    let before = common::event_bodies(&single.store_path());
    let (store, url) = store_cluster();
    let out = Command::new(BIN)
        .args(["store", "copy", "--format", "json", "--from"])
        .arg(single.store_path())
        .args(["--to", &url])
        .env("PGPASSWORD", STORE_PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], before.len() as u64, "{report}");
    // The same bytes, in the same order.
    let copied: Vec<String> = shared_events(&store).iter().map(Value::to_string).collect();
    let original: Vec<String> = before
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap().to_string())
        .collect();
    assert_eq!(copied, original);
    // A second copy into the same store is refused.
    let again = Command::new(BIN)
        .args(["store", "copy", "--from"])
        .arg(single.store_path())
        .args(["--to", &url])
        .env("PGPASSWORD", STORE_PASSWORD)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    // A fleet node on the copy: the chain verifies with the old key, and
    // the node appends to it.
    let node = TestGateway::start_member(Some(&single), "gw-a", &url, "", &target.gateway_config());
    node.active_task("shop", "read", "5m");
    let (code, report) = verify_shared(&node);
    assert_eq!(code, 0, "{report}");
    let (status, story) = node.http().get(
        &node.tokens.auditor,
        &format!("/v1/audit/tasks/{task}/story"),
    );
    assert_eq!(status, 200, "{story}");
}

/// HAProxy (Debian's) in TCP mode in front of the three PostgreSQL
/// listeners, checking them every 200 ms, as docs/fleet.md configures it.
fn haproxy(nodes: &[TestGateway], dir: &std::path::Path) -> (Child, u16) {
    let port = free_port();
    let servers: String = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "    server gw{i} 127.0.0.1:{} check inter 200ms fall 1 rise 2\n",
                n.postgres.port()
            )
        })
        .collect();
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n    maxconn 200\ndefaults\n    mode tcp\n    timeout connect 2s\n    timeout client 1m\n    timeout server 1m\n    retries 3\n    option redispatch\n\
             frontend pg\n    bind 127.0.0.1:{port}\n    default_backend gateways\n\
             backend gateways\n    balance roundrobin\n{servers}"
        ),
    )
    .unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (apt-get install haproxy)");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "haproxy did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

#[test]
fn clients_behind_haproxy_land_on_live_nodes_when_one_dies() {
    let (store, url) = store_cluster();
    let target = TestCluster::start();
    let mut nodes = three_nodes(&url, &target.gateway_config());
    let dir = tempfile::tempdir().unwrap();
    let (mut balancer, port) = haproxy(&nodes, dir.path());
    let (task, token) = nodes[0].active_task("shop", "read", "30m");
    let runtime = rt();
    let query_through_balancer = |sql: String| {
        runtime.block_on(async {
            let client = common::connect_port(port, &task, &token, "shop")
                .await
                .map_err(|e| error_text(&e))?;
            client
                .simple_query(&sql)
                .await
                .map(|_| ())
                .map_err(|e| error_text(&e))
        })
    };
    for i in 0..6 {
        query_through_balancer(format!("SELECT {i} AS before_the_kill")).unwrap();
    }
    nodes[1].kill();
    // Sessions that land while gw-b is dead go to gw-a and gw-c.
    for i in 0..12 {
        query_through_balancer(format!("SELECT {i} AS after_the_kill"))
            .unwrap_or_else(|e| panic!("connection {i} through haproxy failed: {e}"));
    }
    let _ = balancer.kill();
    let _ = balancer.wait();
    let events = shared_events(&store);
    let ran_on = |marker: &str| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| {
                e["type"] == "command.started"
                    && e["payload"]["sql"].as_str().unwrap_or("").contains(marker)
            })
            .map(|e| e["node"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ran_on("before_the_kill").len(),
        3,
        "round robin over three nodes"
    );
    let after = ran_on("after_the_kill");
    assert!(
        !after.contains("gw-b"),
        "a statement ran on the dead node: {after:?}"
    );
    assert_recorded_first(
        &statements_via_gateway(&target.log()),
        &started_sql(&events),
    );
}

#[test]
fn a_console_sign_in_on_one_node_holds_on_every_node() {
    let (store, url) = store_cluster();
    let target = TestCluster::start();
    let nodes = three_nodes(&url, &target.gateway_config());
    let (http, cookie) = common::console_sign_in(&nodes[0].base, &nodes[0].tokens.alice);
    let page = |gw: &TestGateway, cookie: &str| {
        http.get(format!("{}/ui/reviews", gw.base))
            .header("cookie", format!("tg_console={cookie}"))
            .send()
            .unwrap()
    };
    for gw in &nodes {
        let answer = page(gw, &cookie);
        assert_eq!(answer.status(), 200, "not signed in on {}", gw.base);
        assert!(answer.text().unwrap().contains("alice"));
    }
    assert_eq!(page(&nodes[1], "forged").status(), 303);
    // The store keeps the cookie's hash, never the cookie.
    let stored = store.psql(
        "taskgate",
        "SELECT encode(key, 'hex') FROM taskgate.console_sessions",
    );
    assert_eq!(stored.lines().count(), 1, "{stored}");
    assert!(!stored.contains(&cookie));
}
