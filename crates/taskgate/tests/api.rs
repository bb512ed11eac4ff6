//! The HTTP API against a real gateway process: lifecycle, roles, and every
//! kind of bad input getting its own clear, JSON answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestGateway;
use serde_json::{Value, json};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn a_write_task_waits_for_a_dba_and_opens_on_approval() {
    let gw = TestGateway::start();
    let http = gw.http();
    let created = gw.request("write", "15m");
    assert_eq!(created["status"], "pending");
    assert!(created["token"].as_str().unwrap().starts_with("tgt_"));
    let id = created["id"].as_str().unwrap();
    let review = created["review"].as_str().unwrap();
    assert!(
        created["connection_string"]
            .as_str()
            .unwrap()
            .starts_with(&format!("postgres://{id}:tgt_"))
    );

    // Bob is not a DBA: he sees no review and may not decide it.
    let (status, reviews) = http.get(&gw.tokens.bob, "/v1/reviews");
    assert_eq!((status, reviews.as_array().unwrap().len()), (200, 0));
    let (status, body) = http.post(
        &gw.tokens.bob,
        &format!("/v1/reviews/{review}/approve"),
        &json!({}),
    );
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");

    // Alice is: she sees who asks, for what, and why.
    let (status, reviews) = http.get(&gw.tokens.alice, "/v1/reviews");
    assert_eq!(status, 200);
    let pending = &reviews[0];
    assert_eq!(pending["id"], review);
    assert_eq!(pending["task"]["requester"]["subject"], "copilot-agent");
    assert_eq!(pending["task"]["reason"], "add a note column");
    assert_eq!(pending["task"]["ref"], "acme/shop#1234");

    let (status, decided) = http.post(
        &gw.tokens.alice,
        &format!("/v1/reviews/{review}/approve"),
        &json!({"comment": "go ahead"}),
    );
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "approved");
    assert_eq!(decided["task"]["status"], "active");
    assert_eq!(decided["task"]["approval"]["by"]["subject"], "alice");
    assert_eq!(decided["task"]["approval"]["comment"], "go ahead");

    // Deciding twice is a conflict, not a second approval.
    let (status, body) = http.post(
        &gw.tokens.alice,
        &format!("/v1/reviews/{review}/deny"),
        &json!({}),
    );
    assert_eq!(status, 409, "{body}");

    let (status, task) = http.get(&gw.tokens.agent, &format!("/v1/tasks/{id}"));
    assert_eq!((status, task["status"].as_str()), (200, Some("active")));
    assert!(task.get("token").is_none(), "the token is shown once only");

    let (status, ended) = http.post(&gw.tokens.agent, &format!("/v1/tasks/{id}/end"), &json!({}));
    assert_eq!((status, ended["status"].as_str()), (200, Some("ended")));
    let (status, body) = http.post(&gw.tokens.agent, &format!("/v1/tasks/{id}/end"), &json!({}));
    assert_eq!((status, code(&body)), (409, "conflict"), "{body}");
}

/// A requester may withdraw its own request while it waits: the task ends,
/// its grant review lapses, and no one is asked to decide it any more.
#[test]
fn a_requester_withdraws_its_pending_request() {
    let gw = TestGateway::start();
    let http = gw.http();
    let requested = gw.request("write", "10m");
    assert_eq!(requested["status"], "pending");
    let id = requested["id"].as_str().unwrap();
    let review = requested["review"].as_str().unwrap();
    let (status, body) = http.post(&gw.tokens.bob, &format!("/v1/tasks/{id}/end"), &json!({}));
    assert_eq!(status, 403, "only the requester withdraws: {body}");
    let (status, ended) = http.post(&gw.tokens.agent, &format!("/v1/tasks/{id}/end"), &json!({}));
    assert_eq!(
        (status, ended["status"].as_str()),
        (200, Some("ended")),
        "{ended}"
    );
    let (_, reviews) = http.get(&gw.tokens.alice, "/v1/reviews");
    assert_eq!(reviews, json!([]), "the lapsed review is not offered");
    let (status, body) = http.post(
        &gw.tokens.alice,
        &format!("/v1/reviews/{review}/approve"),
        &json!({}),
    );
    assert_eq!(status, 409, "{body}");
    let events = gw.events_of("task.ended");
    assert_eq!(
        events[0]["payload"]["reason"],
        "withdrawn by requester before a decision"
    );
}

#[test]
fn a_read_task_is_active_at_once() {
    let gw = TestGateway::start();
    let created = gw.request("read", "5m");
    assert_eq!(created["status"], "active");
    assert!(created["review"].is_null());
    assert!(created["ends_at"].is_string());
}

#[test]
fn a_requester_can_never_approve_itself() {
    // Alice, a DBA, asks for write access that DBAs approve.
    let gw = TestGateway::start();
    let http = gw.http();
    let (status, created) = http.post(
        &gw.tokens.alice,
        "/v1/tasks",
        &json!({"name": "fix-index", "connection": "orders-db", "access": "write", "window": "10m"}),
    );
    assert_eq!(status, 201, "{created}");
    let review = created["review"].as_str().unwrap();
    let (_, listed) = http.get(&gw.tokens.alice, "/v1/reviews");
    assert!(
        listed.as_array().unwrap().is_empty(),
        "her own request is not hers to review"
    );
    for verb in ["approve", "deny"] {
        let (status, body) = http.post(
            &gw.tokens.alice,
            &format!("/v1/reviews/{review}/{verb}"),
            &json!({}),
        );
        assert_eq!((status, code(&body)), (403, "self_approval"), "{body}");
    }
    let (_, task) = http.get(
        &gw.tokens.alice,
        &format!("/v1/tasks/{}", created["id"].as_str().unwrap()),
    );
    assert_eq!(task["status"], "pending");
}

#[test]
fn requests_policy_does_not_allow_are_refused_with_a_reason() {
    let gw = TestGateway::start();
    let http = gw.http();
    let ask = |token: &str, access: &str, window: &str, connection: &str| {
        http.post(
            token,
            "/v1/tasks",
            &json!({"name": "x", "connection": connection, "access": access, "window": window}),
        )
    };
    let (status, body) = ask(&gw.tokens.bob, "read", "5m", "orders-db");
    assert_eq!((status, code(&body)), (403, "policy_refused"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no policy lets bob (human"),
        "{body}"
    );
    let (status, body) = ask(&gw.tokens.agent, "read", "2h", "orders-db");
    assert_eq!((status, code(&body)), (403, "policy_refused"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 30m"),
        "{body}"
    );
    let (status, body) = ask(&gw.tokens.agent, "admin", "5m", "orders-db");
    assert_eq!((status, code(&body)), (403, "policy_refused"));
    let (status, body) = ask(&gw.tokens.agent, "read", "5m", "billing-db");
    assert_eq!((status, code(&body)), (403, "policy_refused"), "{body}");
}

#[test]
fn missing_or_invalid_tokens_are_401_and_lack_of_rights_is_403() {
    let gw = TestGateway::start();
    let http = gw.http();
    let (status, body) = http.get_anonymous("/v1/tasks");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"unauthenticated\""), "{body}");
    let (status, body) = http.get("not-a-real-token", "/v1/tasks");
    assert_eq!((status, code(&body)), (401, "unauthenticated"));
    let (status, body) = http.post_raw(
        "/v1/tasks",
        &[
            ("authorization", "Basic dXNlcjpwdw=="),
            ("content-type", "application/json"),
        ],
        b"{}".to_vec(),
    );
    assert_eq!((status, code(&body)), (401, "unauthenticated"), "{body}");

    // A valid identity without the role: 403.
    let (status, body) = http.get(&gw.tokens.bob, "/v1/audit/verify");
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let created = gw.request("read", "5m");
    let id = created["id"].as_str().unwrap();
    let (status, body) = http.get(&gw.tokens.bob, &format!("/v1/tasks/{id}"));
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let (status, body) = http.post(
        &gw.tokens.bob,
        &format!("/v1/tasks/{id}/revoke"),
        &json!({}),
    );
    assert_eq!((status, code(&body)), (403, "forbidden"));
    // The agent may not end somebody else's task, nor revoke its own.
    let (status, body) = http.post(
        &gw.tokens.agent,
        &format!("/v1/tasks/{id}/revoke"),
        &json!({}),
    );
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
    let (status, _) = http.get(&gw.tokens.agent, "/v1/tasks/tsk_0000000000000000");
    assert_eq!(status, 404);
}

#[test]
fn bad_bodies_get_clear_json_errors() {
    let gw = TestGateway::start();
    let http = gw.http();
    let auth = format!("Bearer {}", gw.tokens.agent);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];

    let (status, body) = http.post_raw("/v1/tasks", &headers, b"{\"name\": ".to_vec());
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("EOF"),
        "{body}"
    );

    let unknown =
        br#"{"name":"x","connection":"orders-db","access":"read","window":"5m","colour":"blue"}"#;
    let (status, body) = http.post_raw("/v1/tasks", &headers, unknown.to_vec());
    assert_eq!((status, code(&body)), (400, "invalid_request"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`"),
        "{body}"
    );

    let (status, body) = http.post_raw("/v1/tasks", &headers, vec![b' '; 80 * 1024]);
    assert_eq!((status, code(&body)), (413, "payload_too_large"), "{body}");

    let form = [
        ("authorization", auth.as_str()),
        ("content-type", "text/plain"),
    ];
    let (status, body) = http.post_raw("/v1/tasks", &form, b"{}".to_vec());
    assert_eq!((status, code(&body)), (415, "unsupported_media_type"));

    for (field, value, needle) in [
        ("access", "root", "unknown access level"),
        ("window", "forever", "not a duration"),
        ("name", "Drop Table", "task name"),
    ] {
        let mut request =
            json!({"name": "ok", "connection": "orders-db", "access": "read", "window": "5m"});
        request[field] = json!(value);
        let (status, body) = http.post(&gw.tokens.agent, "/v1/tasks", &request);
        assert_eq!(
            (status, code(&body)),
            (400, "invalid_request"),
            "{field}: {body}"
        );
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{body}"
        );
    }

    let (status, body) = http.get(&gw.tokens.agent, "/v1/tasks?colour=blue");
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    let (status, body) = http.get(&gw.tokens.agent, "/v1/tasks?status=sleeping");
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
    let (status, body) = http.get(&gw.tokens.agent, "/v1/nothing-here");
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) = http.get(&gw.tokens.agent, "/v1/reviews/rev_x/approve");
    assert_eq!((status, code(&body)), (405, "method_not_allowed"), "{body}");

    let long = "x".repeat(2_001);
    let (status, body) = http.post(
        &gw.tokens.agent,
        "/v1/tasks",
        &json!({"name": "ok", "connection": "orders-db", "access": "read", "window": "5m", "reason": long}),
    );
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");

    // After all that, the gateway still serves.
    assert_eq!(gw.request("read", "5m")["status"], "active");
}

#[test]
fn approvers_and_admins_revoke_and_everyone_sees_only_their_share() {
    let gw = TestGateway::start();
    let http = gw.http();
    let first = gw.request("read", "5m");
    let second = gw.request("read", "5m");
    let (status, revoked) = http.post(
        &gw.tokens.admin,
        &format!("/v1/tasks/{}/revoke", first["id"].as_str().unwrap()),
        &json!({"comment": "incident 42"}),
    );
    assert_eq!(
        (status, revoked["status"].as_str()),
        (200, Some("revoked")),
        "{revoked}"
    );
    assert_eq!(revoked["closing"]["by"]["subject"], "pat");

    let (_, agent_view) = http.get(&gw.tokens.agent, "/v1/tasks");
    assert_eq!(agent_view.as_array().unwrap().len(), 2);
    let (_, bob_view) = http.get(&gw.tokens.bob, "/v1/tasks");
    assert_eq!(bob_view.as_array().unwrap().len(), 0);
    let (_, auditor_view) = http.get(&gw.tokens.auditor, "/v1/tasks?status=active");
    let ids: Vec<&str> = auditor_view
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second["id"].as_str().unwrap()]);

    let (status, report) = http.get(&gw.tokens.auditor, "/v1/audit/verify");
    assert_eq!(status, 200);
    assert_eq!(report["ok"], true);
    assert_eq!(report["events"], 5, "{report}");
}

#[test]
fn openapi_health_and_metrics_are_served() {
    let gw = TestGateway::start();
    let http = gw.http();
    let (status, text) = http.get_anonymous("/v1/openapi.json");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/tasks",
        "/v1/tasks/{id}",
        "/v1/tasks/{id}/end",
        "/v1/tasks/{id}/revoke",
        "/v1/reviews",
        "/v1/reviews/{id}/approve",
        "/v1/reviews/{id}/deny",
        "/v1/audit/verify",
        "/healthz",
        "/metrics",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(
        doc["components"]["schemas"]
            .get("CreateTaskRequest")
            .is_some()
    );

    let (status, health) = http.get_anonymous("/healthz");
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    gw.request("read", "5m");
    let (status, metrics) = http.get_anonymous("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("taskgate_audit_events_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"taskgate_http_requests_total{method="POST",route="/v1/tasks",status="201"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"taskgate_task_transitions_total{to="active"} 1"#),
        "{metrics}"
    );
}
