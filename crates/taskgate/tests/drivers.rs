//! Application drivers through the gateway: psycopg 3 (Python) and
//! node-postgres, both installed by `.ci/run`. Each script runs simple,
//! parameterized, prepared and refused statements; the test then checks the
//! audit log holds each of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::TestGateway;
use common::cluster::TestCluster;
use serde_json::Value;

fn drivers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

fn run_driver(program: &str, script: &str, connection_app: &str) {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let (id, token) = gw.active_task("shop", "write", "10m");
    let out = Command::new(program)
        .arg(drivers_dir().join(script))
        .current_dir(drivers_dir())
        .env("TG_HOST", "127.0.0.1")
        .env("TG_PORT", gw.postgres.port().to_string())
        .env("TG_USER", &id)
        .env("TG_PASSWORD", &token)
        .env("TG_DB", "shop")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e} (run .ci/run to install the drivers)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}\n(missing driver? run .ci/run)\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    assert!(stdout.contains("refused 42501"), "{stdout}");
    assert!(stdout.contains("after refusal 1"), "{stdout}");
    common::settle(&gw);
    let events: Vec<Value> = gw
        .event_bodies()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let sql_of = |kind: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["payload"]["sql"].as_str().unwrap().to_owned())
            .collect()
    };
    let started = sql_of("command.started");
    let by_qty = started
        .iter()
        .filter(|s| s.contains("FROM orders WHERE qty > $1"))
        .count();
    assert!(
        by_qty >= 2,
        "each execution of the prepared statement is recorded: {started:?}"
    );
    assert!(
        started
            .iter()
            .any(|s| s.contains("INSERT INTO orders (item, qty) VALUES ($1, $2)"))
    );
    let insert = events
        .iter()
        .find(|e| {
            e["type"] == "command.started"
                && e["payload"]["sql"].as_str().unwrap().starts_with("INSERT")
        })
        .unwrap();
    assert!(
        insert["payload"]["params"].to_string().contains("-row"),
        "parameters are recorded: {insert}"
    );
    assert_eq!(sql_of("command.denied"), vec!["DROP TABLE orders"]);
    let opened = events
        .iter()
        .find(|e| e["type"] == "session.opened")
        .unwrap();
    assert_eq!(opened["payload"]["application_name"], connection_app);
}

#[test]
fn psycopg3_works_and_is_recorded() {
    run_driver("python3", "psycopg_check.py", "psycopg-check");
}

#[test]
fn node_postgres_works_and_is_recorded() {
    run_driver("node", "pg_check.js", "node-pg-check");
}
