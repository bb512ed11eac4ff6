//! Application drivers through the gateway: psycopg 3 (Python),
//! node-postgres and pgjdbc (Java), all installed by `.ci/run`. Each script runs simple,
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

/// Runs a driver script against a write task of `gw`; fails the test
/// unless it succeeds. Returns what it printed.
fn run_script(gw: &TestGateway, program: &str, script: &str) -> String {
    let (id, token) = gw.active_task("shop", "write", "10m");
    let out = Command::new(program)
        .arg(drivers_dir().join(script))
        .current_dir(drivers_dir())
        .env("TG_HOST", "127.0.0.1")
        .env("TG_PORT", gw.postgres.port().to_string())
        .env("TG_USER", &id)
        .env("TG_PASSWORD", &token)
        .env("TG_DB", "shop")
        // pgjdbc's jar, for `java Jdbc.java`.
        .env("CLASSPATH", "/usr/share/java/postgresql.jar")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e} (run .ci/run to install the drivers)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}\n(missing driver? run .ci/run)\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    stdout
}

fn run_driver(program: &str, script: &str, connection_app: &str) {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let stdout = run_script(&gw, program, script);
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

/// psycopg under the encodings and `standard_conforming_strings` settings
/// its own test suite sets (see `drivers/psycopg_encodings.py`): each works,
/// the record holds the text as the server read it (in UTF-8), and a write
/// hidden behind a backslash string with the setting off is refused by the
/// rule on the table it writes.
#[test]
fn psycopg_in_other_encodings_and_string_settings_works_and_is_read_as_the_server_reads_it() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let stdout = run_script(&gw, "python3", "psycopg_encodings.py");
    assert!(stdout.contains("hidden write refused 42501"), "{stdout}");
    assert!(stdout.contains("strings ok"), "{stdout}");
    assert_eq!(
        cluster.psql("shop", "SELECT name FROM customers WHERE id = 1"),
        "ada"
    );
    common::settle(&gw);
    let started: Vec<String> = gw
        .events_of("command.started")
        .iter()
        .map(|e| e["payload"]["sql"].as_str().unwrap_or_default().to_owned())
        .collect();
    for text in ["café crème", "€uro", "さくら", "naïve €", "Привет"] {
        assert!(
            started
                .iter()
                .any(|s| s.contains(&format!("SELECT '{text}'::text AS \"{text}\""))),
            "{text} is recorded as the server read it: {started:?}"
        );
    }
    let denied = gw.events_of("command.denied");
    assert!(
        denied.iter().any(|e| e["payload"]["tables_written"]
            .to_string()
            .contains("public.customers")),
        "{denied:?}"
    );
}

/// pgjdbc (Debian's package, defaults; `drivers/Jdbc.java`): it connects
/// (its `SET application_name` right after login is answered as the
/// server would, while the server's name keeps naming the task), reads
/// metadata, runs a prepared statement past `prepareThreshold`, a batch,
/// a portal in pages, changes its application name, and is refused.
#[test]
fn pgjdbc_works_and_is_recorded() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let stdout = run_script(&gw, "java", "Jdbc.java");
    let line = |key: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .to_owned()
    };
    assert_eq!(line("reported_application_name"), "PostgreSQL JDBC Driver");
    let server_name = line("server_application_name");
    assert!(
        server_name.starts_with("taskgate/") && server_name.ends_with(" PostgreSQL JDBC Driver"),
        "{server_name}"
    );
    assert_eq!(line("product"), "PostgreSQL");
    assert!(line("tables").contains("customers"), "{stdout}");
    assert_eq!(line("columns"), "id,item,qty");
    assert_eq!(line("prepared_runs"), "8");
    assert_eq!(line("batch"), "3");
    assert!(line("fetched").parse::<u32>().unwrap() >= 3, "{stdout}");
    assert_eq!(line("client_info"), "flyway-like");
    assert_eq!(line("reported_after"), "flyway-like");
    assert_eq!(line("refused"), "42501");
    assert_eq!(line("after_refusal"), "1");

    common::settle(&gw);
    let started = gw.events_of("command.started");
    let set = started
        .iter()
        .find(|e| e["payload"]["sql"] == "SET application_name = 'PostgreSQL JDBC Driver'")
        .unwrap_or_else(|| panic!("the driver's SET is recorded: {started:?}"));
    let task = set["task"].as_str().unwrap().to_owned();
    let sent = format!("SET application_name = E'taskgate/{task} PostgreSQL JDBC Driver'");
    assert_eq!(set["payload"]["sent_as"], sent.as_str());
    assert_eq!(set["payload"]["class"], "utility");
    assert!(
        cluster.log().contains(&sent),
        "the server ran the tagged SET"
    );
    let runs = started
        .iter()
        .filter(|e| e["payload"]["sql"] == "SELECT item FROM orders WHERE id = $1")
        .count();
    assert_eq!(runs, 8, "every run of the prepared statement is recorded");
    let completed = gw.events_of("command.completed");
    assert!(
        completed
            .iter()
            .all(|e| e["payload"]["outcome"] != "unknown")
    );
}
