//! Windows closing on time, across restarts, and secrets staying secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestGateway, UPSTREAM_PASSWORD};
use serde_json::{Value, json};

/// Bob may ask for write access that must be approved within a second.
const IMPATIENT_POLICY: &str = r#"
[[policies]]
who = ["subject:bob"]
connections = ["orders-db"]
access = ["write"]
max_window = "5m"
approve = { when = ["write"], by = ["group:dba"], timeout = "1s" }
"#;

fn status(gw: &TestGateway, token: &str, id: &str) -> String {
    let (_, task) = gw.http().get(token, &format!("/v1/tasks/{id}"));
    task["status"].as_str().unwrap_or("?").to_owned()
}

fn event_types(gw: &TestGateway, id: &str) -> Vec<String> {
    gw.event_bodies()
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap())
        .filter(|e| e["task"] == id)
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_scheduler_closes_windows_and_stale_requests_on_time() {
    let gw = TestGateway::start_with(IMPATIENT_POLICY);
    let active = gw.request("read", "1s");
    let id = active["id"].as_str().unwrap();
    let (code, pending) = gw.http().post(
        &gw.tokens.bob,
        "/v1/tasks",
        &json!({"name": "hotfix", "connection": "orders-db", "access": "write", "window": "5m"}),
    );
    assert_eq!(code, 201, "{pending}");
    let pending_id = pending["id"].as_str().unwrap();
    assert_eq!(status(&gw, &gw.tokens.agent, id), "active");

    assert!(
        gw.eventually(Duration::from_secs(5), || status(&gw, &gw.tokens.agent, id)
            == "expired")
    );
    assert!(gw.eventually(Duration::from_secs(5), || status(
        &gw,
        &gw.tokens.bob,
        pending_id
    ) == "expired"));
    let (_, reviews) = gw.http().get(&gw.tokens.alice, "/v1/reviews");
    assert!(
        reviews.as_array().unwrap().is_empty(),
        "an expired request leaves no review open: {reviews}"
    );
    assert_eq!(
        event_types(&gw, id),
        ["task.requested", "task.activated", "task.expired"]
    );
    let expired = gw
        .event_bodies()
        .into_iter()
        .map(|b| serde_json::from_str::<Value>(&b).unwrap())
        .find(|e| e["task"] == pending_id && e["type"] == "task.expired")
        .unwrap();
    assert_eq!(expired["payload"]["reason"], "nobody decided in time");
}

#[test]
fn windows_that_passed_while_the_gateway_was_down_expire_at_start() {
    let mut gw = TestGateway::start();
    let short = gw.request("read", "2s");
    let long = gw.request("read", "10m");
    let (short, long) = (short["id"].as_str().unwrap(), long["id"].as_str().unwrap());
    gw.kill();
    assert_eq!(
        event_types(&gw, short),
        ["task.requested", "task.activated"],
        "expired before the crash"
    );
    std::thread::sleep(Duration::from_millis(2500));
    gw.restart();
    // The very first answer after the restart already shows it expired.
    assert_eq!(status(&gw, &gw.tokens.agent, short), "expired");
    assert_eq!(status(&gw, &gw.tokens.agent, long), "active");
    assert_eq!(
        event_types(&gw, short),
        ["task.requested", "task.activated", "task.expired"]
    );
    assert!(
        gw.log()
            .contains("expired tasks whose window passed while the gateway was down")
    );
    let (code, report) = gw.http().get(&gw.tokens.auditor, "/v1/audit/verify");
    assert_eq!(
        (code, report["ok"].as_bool()),
        (200, Some(true)),
        "{report}"
    );
}

#[test]
fn tokens_and_credentials_never_appear_in_logs_events_or_answers() {
    let mut gw = TestGateway::start();
    let http = gw.http();
    let mut answers: Vec<String> = Vec::new();
    let mut task_tokens: Vec<String> = Vec::new();

    let write = gw.request("write", "10m");
    let read = gw.request("read", "10m");
    for created in [&write, &read] {
        task_tokens.push(created["token"].as_str().unwrap().to_owned());
        // The one answer meant to carry the token: check everything else in it.
        let mut rest = created.clone();
        rest.as_object_mut().unwrap().remove("token");
        rest.as_object_mut().unwrap().remove("connection_string");
        answers.push(rest.to_string());
    }
    let (write_id, read_id) = (write["id"].as_str().unwrap(), read["id"].as_str().unwrap());
    let review = write["review"].as_str().unwrap();
    let calls: Vec<(u16, Value)> = vec![
        http.get(&gw.tokens.alice, "/v1/reviews"),
        http.post(
            &gw.tokens.agent,
            &format!("/v1/reviews/{review}/approve"),
            &json!({}),
        ),
        http.post(
            &gw.tokens.alice,
            &format!("/v1/reviews/{review}/approve"),
            &json!({}),
        ),
        http.get(&gw.tokens.agent, &format!("/v1/tasks/{write_id}")),
        http.get(&gw.tokens.agent, "/v1/tasks"),
        http.post(
            &gw.tokens.agent,
            &format!("/v1/tasks/{write_id}/end"),
            &json!({}),
        ),
        http.post(
            &gw.tokens.admin,
            &format!("/v1/tasks/{read_id}/revoke"),
            &json!({}),
        ),
        http.get(&gw.tokens.auditor, "/v1/audit/verify"),
        http.get("wrong-token", "/v1/tasks"),
    ];
    answers.extend(calls.iter().map(|(_, body)| body.to_string()));
    answers.push(http.get_anonymous("/metrics").1);
    answers.push(http.get_anonymous("/v1/openapi.json").1);
    // The CLI's output too, failures included.
    for args in [
        vec!["task", "list"],
        vec!["task", "show", write_id],
        vec!["review", "approve", "rev_nope"],
    ] {
        let out = gw.cli(&gw.tokens.agent, &args);
        answers.push(out.stdout);
        answers.push(out.stderr);
    }

    use taskgate_store::StoreRead;
    let reader = taskgate_store::sqlite::open_read_only(&gw.store_path()).unwrap();
    let verifier = reader
        .task_secrets(write_id)
        .unwrap()
        .unwrap()
        .scram_verifier;
    let scram_keys: Vec<String> = verifier
        .split(['$', ':'])
        .skip(2)
        .map(str::to_owned)
        .collect();
    assert_eq!(scram_keys.len(), 3, "{verifier:?}");

    gw.stop();
    let log = gw.log();
    assert!(
        log.contains("task requested") && log.contains("review decided"),
        "the log is being captured"
    );
    let events = gw.event_bodies().join("\n");
    assert!(events.contains("task.revoked"));

    let mut secrets: Vec<(&str, String)> =
        vec![("upstream password", UPSTREAM_PASSWORD.to_owned())];
    for (who, token) in [
        ("agent", &gw.tokens.agent),
        ("alice", &gw.tokens.alice),
        ("bob", &gw.tokens.bob),
        ("auditor", &gw.tokens.auditor),
        ("admin", &gw.tokens.admin),
    ] {
        secrets.push((who, token.clone()));
    }
    for token in &task_tokens {
        secrets.push(("task token", token.clone()));
        // Not even a recognizable half of one.
        secrets.push(("task token prefix", token[..24].to_owned()));
    }
    for key in &scram_keys {
        secrets.push(("scram verifier part", key.clone()));
    }
    for (what, secret) in &secrets {
        assert!(!log.contains(secret.as_str()), "{what} in the gateway log");
        assert!(
            !events.contains(secret.as_str()),
            "{what} in the audit events"
        );
        for answer in &answers {
            assert!(
                !answer.contains(secret.as_str()),
                "{what} in an answer: {answer}"
            );
        }
    }
}
