//! The auditor's answers end to end: a scripted day on a real cluster
//! through the gateway, then `audit search` and `audit story` through the
//! API and offline from the store file, which must agree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestGateway;
use common::cluster::TestCluster;
use serde_json::{Value, json};
use tokio_postgres::NoTls;

/// Bob (a developer) may write to shop once a DBA approves.
const BOB_POLICY: &str = r#"
[[policies]]
name = "developers-on-shop"
who = ["group:dev"]
connections = ["shop"]
access = ["write"]
max_window = "30m"
approve = { when = ["write"], by = ["group:dba"] }
"#;

/// Runs each statement through the gateway as `task`; errors are expected
/// for denied statements and ignored here (the log says what happened).
fn run(gw: &TestGateway, task: &str, token: &str, statements: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(gw.postgres.port())
            .user(task)
            .password(token)
            .dbname("shop")
            .connect(NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        for sql in statements {
            let _ = client.simple_query(sql).await;
        }
        drop(client);
        let _ = driver.await;
    });
}

struct Day {
    _cluster: TestCluster,
    gw: TestGateway,
    agent_task: String,
    bob_task: String,
}

/// The agent reads orders and customers, updates orders and is refused a
/// DROP; Bob, approved by Alice, alters orders and fixes a customer.
fn scripted_day() -> Day {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&format!("{}{BOB_POLICY}", cluster.gateway_config()));
    let (agent_task, agent_token) = gw.active_task("shop", "write", "15m");
    run(
        &gw,
        &agent_task,
        &agent_token,
        &[
            "SELECT count(*) FROM orders",
            "SELECT name FROM customers WHERE id = 1",
            "UPDATE orders SET qty = qty WHERE id = 1",
            "DROP TABLE orders",
        ],
    );
    let http = gw.http();
    let (status, bob) = http.post(
        &gw.tokens.bob,
        "/v1/tasks",
        &json!({"name": "add-note", "connection": "shop", "access": "write", "window": "15m",
                "reason": "support needs notes", "ref": "acme/shop#42"}),
    );
    assert_eq!(status, 201, "{bob}");
    let review = bob["review"].as_str().unwrap();
    let (status, body) = http.post(
        &gw.tokens.alice,
        &format!("/v1/reviews/{review}/approve"),
        &json!({"comment": "ok for today"}),
    );
    assert_eq!(status, 200, "{body}");
    let bob_task = bob["id"].as_str().unwrap().to_owned();
    run(
        &gw,
        &bob_task,
        bob["token"].as_str().unwrap(),
        &[
            "ALTER TABLE orders ADD COLUMN note text",
            "UPDATE customers SET name = name WHERE id = 1",
        ],
    );
    let (status, body) = http.post(
        &gw.tokens.bob,
        &format!("/v1/tasks/{bob_task}/end"),
        &json!({}),
    );
    assert_eq!(status, 200, "{body}");
    common::settle(&gw);
    Day {
        _cluster: cluster,
        gw,
        agent_task,
        bob_task,
    }
}

/// `audit search ARGS --format json`, through the API and offline; both
/// must give the same hits.
fn search(gw: &TestGateway, args: &[&str]) -> Vec<Value> {
    let mut online: Vec<&str> = vec!["audit", "search", "--format", "json"];
    online.extend_from_slice(args);
    let out = gw.cli(&gw.tokens.auditor, &online);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let page: Value = serde_json::from_str(&out.stdout).unwrap();
    let store = gw.store_path();
    let mut offline = online.clone();
    offline.extend_from_slice(&["--store", store.to_str().unwrap()]);
    let out = gw.cli("", &offline);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let offline_page: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        page["hits"], offline_page["hits"],
        "API and offline disagree"
    );
    page["hits"].as_array().unwrap().clone()
}

fn sql(hit: &Value) -> &str {
    hit["event"]["payload"]["sql"].as_str().unwrap_or("")
}

fn who(hit: &Value) -> &str {
    hit["event"]["identity"]["subject"].as_str().unwrap_or("")
}

#[test]
fn the_auditor_s_three_questions_have_straight_answers() {
    let day = scripted_day();
    let gw = &day.gw;

    // 1. Who changed orders today?
    let changed = search(
        gw,
        &["--table", "orders", "--class", "write,ddl", "--since", "1d"],
    );
    let answers: Vec<(&str, &str)> = changed.iter().map(|h| (who(h), sql(h))).collect();
    assert_eq!(
        answers,
        [
            ("copilot-agent", "UPDATE orders SET qty = qty WHERE id = 1"),
            ("copilot-agent", "DROP TABLE orders"),
            ("bob", "ALTER TABLE orders ADD COLUMN note text"),
        ]
    );
    assert_eq!(changed[0]["task"]["name"], "fix-orders");
    assert_eq!(changed[0]["task"]["ref"], "acme/shop#7");
    assert_eq!(changed[0]["outcome"]["outcome"], "ok");
    assert_eq!(changed[0]["outcome"]["tag"], "UPDATE 1");
    assert_eq!(changed[1]["event"]["type"], "command.denied");
    assert_eq!(changed[2]["outcome"]["tag"], "ALTER TABLE");

    // 2. Did any agent read customers in the last hour?
    let read = search(
        gw,
        &["--table", "customers", "--kind", "agent", "--since", "1h"],
    );
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(sql(&read[0]), "SELECT name FROM customers WHERE id = 1");
    assert_eq!(read[0]["event"]["task"], day.agent_task.as_str());
    assert_eq!(read[0]["outcome"]["rows"], 1);
    // Bob's write to customers is a human's, not an agent's.
    let humans = search(gw, &["--table", "customers", "--kind", "human"]);
    assert_eq!(humans.iter().map(who).collect::<Vec<_>>(), ["bob"]);

    // 3. Which task authorized the DDL on orders, and who approved it?
    let ddl = search(
        gw,
        &[
            "--table",
            "orders",
            "--class",
            "ddl",
            "--type",
            "command.started",
        ],
    );
    assert_eq!(ddl.len(), 1, "{ddl:?}");
    let task = &ddl[0]["task"];
    assert_eq!(task["id"], day.bob_task.as_str());
    assert_eq!(task["name"], "add-note");
    assert_eq!(task["ref"], "acme/shop#42");
    assert_eq!(task["decision"]["approved"], true);
    assert_eq!(task["decision"]["by"], "alice");
    assert_eq!(task["decision"]["comment"], "ok for today");

    // A window in the past holds none of it; an identity filter only its own.
    assert!(search(gw, &["--until", "2020-01-01"]).is_empty());
    let bob = search(gw, &["--identity", "bob", "--type", "command.started"]);
    assert_eq!(bob.len(), 2);
    let on_shop = search(gw, &["--connection", "shop", "--task", &day.bob_task]);
    assert!(
        on_shop
            .iter()
            .all(|h| h["event"]["task"] == day.bob_task.as_str())
    );
    assert!(
        on_shop
            .iter()
            .any(|h| h["event"]["type"] == "task.approved")
    );
}

#[test]
fn a_task_s_story_tells_its_record() {
    let day = scripted_day();
    let gw = &day.gw;
    let out = gw.cli(&gw.tokens.bob, &["audit", "story", &day.bob_task]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "identity=bob (human, dev) task=add-note ref=acme/shop#42 id={}",
            day.bob_task
        )),
        "{}",
        out.stdout
    );
    assert!(lines[1].contains("(approved by alice "), "{}", lines[1]);
    assert!(
        lines[1].ends_with("ended: ended by requester"),
        "{}",
        lines[1]
    );
    let body = lines[2..].join("\n");
    for expected in [
        "session opened from 127.0.0.1:",
        "ALTER TABLE orders ADD COLUMN note text",
        "ddl   ALTER TABLE",
        "UPDATE customers SET name = name WHERE id = 1",
        "write 1 row",
        // Bob's client leaves as he ends the task: either may close it.
        "session closed: ",
    ] {
        assert!(
            body.contains(expected),
            "{expected:?} missing from\n{}",
            out.stdout
        );
    }

    // The same story offline, from the store file alone.
    let store = gw.store_path();
    let offline = gw.cli(
        "",
        &[
            "audit",
            "story",
            &day.bob_task,
            "--store",
            store.to_str().unwrap(),
        ],
    );
    assert_eq!(offline.stdout, out.stdout);

    // As JSON: each outcome folded into its command.
    let (status, story) = gw.http().get(
        &gw.tokens.auditor,
        &format!("/v1/audit/tasks/{}/story", day.agent_task),
    );
    assert_eq!(status, 200, "{story}");
    assert_eq!(story["commands"], 3);
    assert_eq!(story["denied"], 1);
    let commands: Vec<&Value> = story["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"] == "command")
        .collect();
    assert_eq!(commands[0]["outcome"]["rows"], 1);
    assert!(story["text"].as_str().unwrap().contains("DENIED"));

    // Another requester may not read it; an unknown task is 404.
    let (status, _) = gw.http().get(
        &gw.tokens.bob,
        &format!("/v1/audit/tasks/{}/story", day.agent_task),
    );
    assert_eq!(status, 403);
    let (status, _) = gw
        .http()
        .get(&gw.tokens.auditor, "/v1/audit/tasks/tsk_nope/story");
    assert_eq!(status, 404);
}

#[test]
fn search_refuses_bad_filters_and_callers_who_may_not_read_the_trail() {
    let gw = TestGateway::start();
    let http = gw.http();
    let (status, body) = http.get(&gw.tokens.agent, "/v1/audit/events");
    assert_eq!(status, 403, "{body}");
    for (query, named) in [
        ("class=reads", "unknown class"),
        ("kind=robot", "agent or human"),
        ("since=soon", "since:"),
        ("type=command.begun", "command.begun"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = http.get(&gw.tokens.auditor, &format!("/v1/audit/events?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{query}: {message}");
    }
    let out = gw.cli(&gw.tokens.auditor, &["audit", "search", "--class", "reads"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("unknown class"), "{}", out.stderr);
}

/// The recipes of docs/auditing.md, as written there, in text form: run
/// with `--nocapture` to see the output the doc shows.
#[test]
fn the_documented_recipes_answer_in_text() {
    let mut day = scripted_day();
    let gw = &day.gw;
    let run = |args: &[&str]| -> String {
        let out = gw.cli(&gw.tokens.auditor, args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        println!("$ taskgate {}\n{}", args.join(" "), out.stdout);
        out.stdout
    };
    let changed = run(&[
        "audit",
        "search",
        "--table",
        "orders",
        "--class",
        "write,ddl",
        "--since",
        "1d",
    ]);
    assert_eq!(changed.lines().count(), 3, "{changed}");
    assert!(
        changed.contains(
            "bob (human) command.started task=add-note ref=acme/shop#42 (grant approved by alice"
        ),
        "{changed}"
    );
    assert!(
        changed.contains("| ddl ALTER TABLE orders ADD COLUMN note text | ALTER TABLE"),
        "{changed}"
    );
    assert!(
        changed.contains("| write UPDATE orders SET qty = qty WHERE id = 1 | 1 row"),
        "{changed}"
    );
    let read = run(&[
        "audit",
        "search",
        "--table",
        "customers",
        "--kind",
        "agent",
        "--since",
        "2h",
    ]);
    assert!(
        read.contains("| read SELECT name FROM customers WHERE id = 1 | 1 row"),
        "{read}"
    );
    let ddl = run(&[
        "audit",
        "search",
        "--table",
        "orders",
        "--class",
        "ddl",
        "--type",
        "command.started",
    ]);
    assert!(
        ddl.contains("task=add-note ref=acme/shop#42 (grant approved by alice"),
        "{ddl}"
    );
    let story = run(&["audit", "story", &day.bob_task]);
    assert!(
        story.contains("ALTER TABLE orders ADD COLUMN note text"),
        "{story}"
    );
    // Stopped, the gateway has signed a last checkpoint covering it all.
    day.gw.stop();
    let gw = &day.gw;
    let config = gw.config_path();
    let verify = gw.cli(
        "",
        &["audit", "verify", "--config", config.to_str().unwrap()],
    );
    println!(
        "$ taskgate audit verify --config taskgate.toml\n{}",
        verify.stdout
    );
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    assert!(
        verify.stdout.contains("in the log (signatures checked)"),
        "{}",
        verify.stdout
    );
    assert!(
        verify.stdout.contains("1 external copies checked"),
        "{}",
        verify.stdout
    );
}
