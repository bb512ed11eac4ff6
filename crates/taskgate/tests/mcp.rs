//! The agent's MCP interface end to end: the official TypeScript SDK
//! (`tests/mcp/agent.mjs`, installed by `.ci/run`) plays an agent's whole
//! task over stdio (`taskgate mcp`) and over HTTP (`/mcp`) against a real
//! gateway and a throwaway cluster, people approving with the CLI; then the
//! audit log and the database's own log are checked against each other.
//! Refusals of the HTTP endpoint itself (tokens, Origin) are raw requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::cluster::TestCluster;
use common::{BIN, TestGateway};
use serde_json::Value;

fn mcp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp")
}

/// `shop` for agents: write needs a DBA, DDL is reviewed, DROP denied.
fn config(cluster: &TestCluster) -> String {
    cluster.reviewed_config()
        + r#"
[[policies.statements]]
match = { regex = "(?i)^\\s*drop\\b" }
action = "deny"
"#
}

/// Runs the agent's script over `mode` and returns its steps.
fn play(mode: &str) -> (TestCluster, TestGateway, Vec<Value>) {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&config(&cluster));
    let out = Command::new("node")
        .arg(mcp_dir().join("agent.mjs"))
        .arg(mode)
        .current_dir(mcp_dir())
        .env("TG_SERVER", &gw.base)
        .env("TG_BIN", BIN)
        .env("TG_STATE_DIR", gw.dir.path().join("cli-state"))
        .env("TG_AGENT", &gw.tokens.agent)
        .env("TG_ALICE", &gw.tokens.alice)
        .env("TG_BOB", &gw.tokens.bob)
        .env("TG_ADMIN", &gw.tokens.admin)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node: {e} (run .ci/run to install the MCP SDK)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "agent.mjs {mode} failed:\n{stdout}\n{}\n(missing SDK? run .ci/run)\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    let steps: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(steps.last().unwrap()["step"], "done", "{stdout}");
    (cluster, gw, steps)
}

/// The log holds every statement the agent ran, in order, each marked as
/// carried by MCP with its tool call's request id; nothing refused reached
/// the database; no token leaked.
fn check_record(cluster: &TestCluster, gw: &TestGateway, steps: &[Value]) {
    // Every statement's completion is committed a moment after its answer.
    common::settle(gw);
    let done = &steps.last().unwrap();
    let write_task = done["write_task"].as_str().unwrap();
    let events: Vec<Value> = gw
        .event_bodies()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let of = |kind: &str, task: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["type"] == kind && e["task"] == task)
            .collect()
    };
    let started = of("command.started", write_task);
    let sql: Vec<&str> = started
        .iter()
        .map(|e| e["payload"]["sql"].as_str().unwrap())
        .collect();
    assert_eq!(sql.len(), 10, "{sql:#?}");
    assert_eq!(sql[0], "SELECT id, item, qty FROM orders ORDER BY id");
    assert_eq!(sql[1], "SELECT item FROM orders WHERE qty > $1");
    assert_eq!(started[1]["payload"]["params"], serde_json::json!(["4"]));
    assert_eq!(sql[2], "ALTER TABLE orders ADD COLUMN note text");
    assert!(
        started[2]["payload"]["review"]
            .as_str()
            .unwrap()
            .starts_with("rev_")
    );
    assert_eq!(sql[3], "SELECT * FROM no_such_table");
    assert!(sql[4].contains("information_schema.columns"), "{}", sql[4]);
    assert!(sql[5].contains("information_schema.tables"), "{}", sql[5]);
    assert!(sql[6].contains("generate_series"), "{}", sql[6]);
    assert_eq!(sql[7], "SELECT id FROM orders");
    assert!(sql[8].contains("repeat('x', 20000)") && sql[9] == sql[8]);
    // The record holds what the database returned and what reached the
    // agent: one row past each cap is asked for, and never handed over.
    let completed = of("command.completed", write_task);
    let rows_of = |at: usize| {
        let e = started[at];
        let done = completed
            .iter()
            .find(|c| {
                c["session"] == e["session"] && c["payload"]["command"] == e["payload"]["command"]
            })
            .unwrap_or_else(|| panic!("no completion for {e}"));
        (
            done["payload"]["rows"].as_u64(),
            done["payload"]["rows_returned"].as_u64(),
        )
    };
    assert_eq!(rows_of(0), (Some(2), Some(2)));
    // What the database refused has its outcome, with the SQLSTATE.
    let failed = completed
        .iter()
        .find(|c| {
            c["session"] == started[3]["session"]
                && c["payload"]["command"] == started[3]["payload"]["command"]
        })
        .unwrap_or_else(|| {
            let session: Vec<&Value> = events
                .iter()
                .filter(|e| e["session"] == started[3]["session"])
                .collect();
            panic!(
                "no completion for the failed statement: {session:#?}\n{}",
                gw.log()
            )
        });
    assert_eq!(failed["payload"]["outcome"], "error");
    assert_eq!(failed["payload"]["sqlstate"], "42P01");
    assert_eq!(rows_of(6), (Some(6), Some(5)), "cut at max_rows 5");
    assert_eq!(rows_of(7), (Some(1), Some(0)), "max_rows 0");
    assert_eq!(rows_of(8), (Some(1), Some(0)), "past the byte budget");
    assert_eq!(rows_of(9), (Some(1), Some(1)), "within max_bytes");
    let mut request_ids = Vec::new();
    for event in of("session.opened", write_task)
        .into_iter()
        .chain(started.iter().copied())
        .chain(of("command.completed", write_task))
        .chain(of("command.denied", write_task))
    {
        assert_eq!(event["payload"]["via"], "mcp", "{event}");
        let id = &event["payload"]["mcp_request_id"];
        assert!(id.is_string(), "{event}");
        request_ids.push(id.clone());
    }
    // Each call is its own session.
    let sessions = of("session.opened", write_task).len();
    assert!(sessions >= 9, "{sessions} sessions");
    let denied: Vec<&str> = of("command.denied", write_task)
        .iter()
        .map(|e| e["payload"]["sql"].as_str().unwrap())
        .collect();
    assert_eq!(
        denied,
        [
            "SELECT 1; DROP TABLE customers",
            "COMMIT; DROP TABLE customers",
            "DROP TABLE orders",
            ";DROP TABLE orders",
            "SELECT * FROM other.public.orders",
            "DROP TABLE orders"
        ]
    );
    // The database ran what the record says, and none of what was refused.
    let db_log = cluster.log();
    assert!(db_log.contains("ALTER TABLE orders ADD COLUMN note text"));
    assert!(!db_log.contains("DROP TABLE"), "{db_log}");
    assert!(
        !db_log.contains("plum"),
        "a read task's INSERT reached the database"
    );
    let read_task = done["read_task"].as_str().unwrap();
    assert!(
        of("command.denied", read_task).len() == 1,
        "the INSERT is refused by the gateway"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "task.revoked" && e["task"] == read_task),
        "revoked"
    );
    let everything = gw.event_bodies().join("\n") + &gw.log();
    assert!(!everything.contains("tgt_"), "a task token leaked");
    assert!(
        !everything.contains(&gw.tokens.agent),
        "the agent's token leaked"
    );
    // The story names the tool call each statement came in.
    let story = gw.cli(&gw.tokens.agent, &["audit", "story", write_task]);
    assert_eq!(story.code, 0, "{}", story.stderr);
    assert!(story.stdout.contains("MCP tool call "), "{}", story.stdout);
    assert!(
        story
            .stdout
            .contains("ALTER TABLE orders ADD COLUMN note text"),
        "{}",
        story.stdout
    );
    let (code, report) = gw.verify_offline();
    assert_eq!(code, 0, "{report}");
}

#[test]
fn an_agent_works_a_task_over_stdio() {
    let (cluster, gw, steps) = play("stdio");
    check_record(&cluster, &gw, &steps);
}

#[test]
fn an_agent_works_a_task_over_http() {
    let (cluster, gw, steps) = play("http");
    check_record(&cluster, &gw, &steps);
}

fn post_mcp(gw: &TestGateway, headers: &[(&str, &str)]) -> reqwest::blocking::Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}}
    });
    let mut request = reqwest::blocking::Client::new()
        .post(format!("{}/mcp", gw.base))
        .header("Accept", "application/json, text/event-stream")
        .json(&body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().unwrap()
}

#[test]
fn the_endpoint_refuses_missing_and_bad_tokens_and_foreign_origins() {
    let gw = TestGateway::start();
    // No token: 401, pointing at the protected-resource metadata.
    let response = post_mcp(&gw, &[]);
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            gw.base
        )),
        "{challenge}"
    );
    let bad = post_mcp(&gw, &[("Authorization", "Bearer not-a-real-token-at-all")]);
    assert_eq!(bad.status(), 401);
    // The metadata names this resource.
    let (status, metadata) = gw
        .http()
        .get_anonymous("/.well-known/oauth-protected-resource/mcp");
    assert_eq!(status, 200);
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["resource"], format!("{}/mcp", gw.base));
    assert_eq!(
        metadata["bearer_methods_supported"],
        serde_json::json!(["header"])
    );
    // A good token from a web page of another origin: refused (DNS rebinding).
    let bearer = format!("Bearer {}", gw.tokens.agent);
    let foreign = post_mcp(
        &gw,
        &[
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
        ],
    );
    assert_eq!(foreign.status(), 403);
    let rebound = post_mcp(&gw, &[("Authorization", &bearer), ("Host", "evil.example")]);
    assert_eq!(rebound.status(), 403);
    // The same token, from no browser: in.
    let ok = post_mcp(&gw, &[("Authorization", &bearer)]);
    assert_eq!(ok.status(), 200, "{}", ok.text().unwrap());
    assert!(!gw.log().contains(&gw.tokens.agent));
}
