//! Export that loses nothing: a real HTTP receiver the test runs (verifying
//! every signature with the `standardwebhooks` crate, an independent
//! implementation), taken down and brought back, a gateway killed with
//! SIGKILL mid-delivery, a receiver that refuses some events; and the JSON
//! Lines file sink with rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::TestGateway;
use common::cluster::free_port;
use common::webhook::{Receiver, distinct_seqs, sink_config};
use serde_json::Value;

fn webhook_gateway(port: u16, secret_dir: &Path, extra: &str) -> TestGateway {
    TestGateway::start_with(&format!("{}{extra}", sink_config(port, secret_dir)))
}

/// Waits until `check` holds, for up to `limit`.
fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

fn store_events(gw: &TestGateway) -> Vec<u64> {
    gw.event_bodies()
        .iter()
        .map(|b| {
            serde_json::from_str::<Value>(b).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_receiver_down_for_a_while_gets_every_event_in_order_once_up() {
    let port = free_port();
    let secrets = tempfile::tempdir().unwrap();
    let gw = webhook_gateway(port, secrets.path(), "");
    for _ in 0..5 {
        gw.request("read", "5m");
    }
    // Nothing listens yet: deliveries fail and are retried.
    std::thread::sleep(Duration::from_secs(2));
    let (status, sinks) = gw.http().get(&gw.tokens.auditor, "/v1/sinks");
    assert_eq!(status, 200);
    assert_eq!(sinks[0]["cursor"], 0, "{sinks}");
    assert!(sinks[0]["last_error"].as_str().is_some(), "{sinks}");

    let receiver = Receiver::start(port, None, Duration::ZERO);
    let expected = store_events(&gw);
    assert!(
        wait_for(Duration::from_secs(20), || receiver.events().len()
            >= expected.len()),
        "got {} of {}",
        receiver.events().len(),
        expected.len()
    );
    let arrived: Vec<u64> = receiver
        .events()
        .iter()
        .map(|(_, e)| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(arrived, expected, "in order, none missing, none twice");
    // Each carries the event as recorded, with its hash.
    let (_, first) = &receiver.events()[0];
    assert_eq!(first["type"], "task.requested");
    assert_eq!(first["hash"].as_str().unwrap().len(), 64);

    // Every one matches the documented schema.
    let schema: Value =
        serde_json::from_str(include_str!("../../../docs/schema/event.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (_, event) in receiver.events() {
        let errors: Vec<String> = validator
            .iter_errors(&event)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{event}: {errors:?}");
    }

    let out = gw.cli(&gw.tokens.auditor, &["sinks", "status"]);
    assert!(
        out.stdout
            .contains(&format!("siem (webhook): cursor {}", expected.len())),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("lag 0"), "{}", out.stdout);
}

#[test]
fn a_gateway_killed_mid_delivery_resends_from_its_cursor() {
    let port = free_port();
    let receiver = Receiver::start(port, None, Duration::from_millis(60));
    let secrets = tempfile::tempdir().unwrap();
    let mut gw = webhook_gateway(port, secrets.path(), "");
    for _ in 0..20 {
        gw.request("read", "5m");
    }
    assert!(wait_for(Duration::from_secs(10), || receiver
        .events()
        .len()
        >= 5));
    gw.kill();
    let before = receiver.events().len();
    gw.restart();
    let expected = store_events(&gw);
    assert!(
        wait_for(Duration::from_secs(30), || distinct_seqs(
            &receiver.events()
        )
        .len()
            >= expected.len()),
        "got {:?}",
        distinct_seqs(&receiver.events())
    );
    assert!(
        before < expected.len(),
        "the kill came after everything was delivered"
    );
    assert_eq!(distinct_seqs(&receiver.events()), expected);
}

#[test]
fn events_the_receiver_refuses_are_parked_and_the_rest_go_on() {
    let port = free_port();
    let receiver = Receiver::start(port, Some("task.activated"), Duration::ZERO);
    let secrets = tempfile::tempdir().unwrap();
    let gw = webhook_gateway(port, secrets.path(), "");
    for _ in 0..3 {
        gw.request("read", "5m");
    }
    let expected = store_events(&gw);
    assert!(wait_for(Duration::from_secs(10), || {
        let (_, sinks) = gw.http().get(&gw.tokens.auditor, "/v1/sinks");
        sinks[0]["cursor"].as_u64() == expected.last().copied()
    }));
    let types: Vec<String> = receiver
        .events()
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["task.requested"; 3]);
    let (_, sinks) = gw.http().get(&gw.tokens.auditor, "/v1/sinks");
    assert_eq!(sinks[0]["parked"], 3, "{sinks}");
    assert!(gw.log().contains("parked, going on"), "{}", gw.log());

    // The parked events are listed with why; once the receiver is fixed, an
    // admin sends them again and they leave the list.
    let http = gw.http();
    let (status, parked) = http.get(&gw.tokens.auditor, "/v1/sinks/siem/parked");
    assert_eq!(status, 200, "{parked}");
    let parked_seqs: Vec<u64> = parked
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(parked_seqs.len(), 3, "{parked}");
    assert_eq!(parked[0]["reason"], "the receiver answered 400");
    let (status, refused) = http.post(
        &gw.tokens.auditor,
        "/v1/sinks/siem/redeliver",
        &serde_json::json!({}),
    );
    assert_eq!(status, 403, "{refused}");
    let (status, _) = http.post(
        &gw.tokens.admin,
        "/v1/sinks/nope/redeliver",
        &serde_json::json!({}),
    );
    assert_eq!(status, 404);
    let (status, _) = http.post(
        &gw.tokens.admin,
        "/v1/sinks/siem/redeliver",
        &serde_json::json!({"from": 9, "to": 2}),
    );
    assert_eq!(status, 400);

    let listed = gw.cli(&gw.tokens.auditor, &["sinks", "parked", "siem"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(
        listed.stdout.matches("the receiver answered 400").count(),
        3,
        "{}",
        listed.stdout
    );

    receiver.received.lock().unwrap().reject_type = None;
    let from = parked_seqs[1].to_string();
    let queued = gw.cli(
        &gw.tokens.admin,
        &["sinks", "redeliver", "siem", "--from", &from],
    );
    assert_eq!(queued.code, 0, "{}", queued.stderr);
    assert_eq!(
        queued.stdout.trim(),
        "siem: 2 parked events queued to be sent again"
    );
    assert!(wait_for(Duration::from_secs(10), || {
        let (_, parked) = http.get(&gw.tokens.auditor, "/v1/sinks/siem/parked");
        parked.as_array().unwrap().len() == 1
    }));
    let resent: Vec<u64> = receiver
        .events()
        .iter()
        .filter(|(_, e)| e["type"] == "task.activated")
        .map(|(id, e)| {
            assert!(id.ends_with(&format!(":{}", e["seq"])), "{id}");
            e["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(resent, parked_seqs[1..]);
    let (_, sinks) = http.get(&gw.tokens.auditor, "/v1/sinks");
    assert_eq!(sinks[0]["parked"], 1, "{sinks}");
    assert_eq!(sinks[0]["delivered"], 5, "{sinks}");
    assert!(
        gw.log().contains("parked events sent again"),
        "{}",
        gw.log()
    );
    let status = gw.cli(&gw.tokens.auditor, &["sinks", "status"]);
    assert!(
        status.stdout.contains("siem (webhook): cursor") && status.stdout.contains("parked 1,"),
        "{}",
        status.stdout
    );
}

#[test]
fn the_file_sink_writes_every_event_as_json_lines_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events");
    let gw = TestGateway::start_with(&format!(
        r#"
[[sinks]]
name = "archive"
kind = "file"
path = "{}"
batch = 3
rotate_bytes = 2000
types = ["task.*"]
"#,
        out.display()
    ));
    for _ in 0..6 {
        gw.request("read", "5m");
    }
    let lines = || -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(&out)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert!(wait_for(Duration::from_secs(10), || lines().len() >= 12));
    let seqs: Vec<u64> = lines().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    let files = std::fs::read_dir(&out).unwrap().count();
    assert!(files >= 2, "no rotation: {files} file(s)");
}
