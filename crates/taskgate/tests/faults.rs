//! Upstream faults: the database restarted mid-session, refusing
//! connections, or accepting and then saying nothing. Clients get a clear
//! error naming the connection, and the gateway goes on serving; once the
//! database is back, new sessions work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::{TestGateway, connect, rt};

fn failure(e: &tokio_postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
        None => (String::new(), e.to_string()),
    }
}

#[test]
fn a_database_restart_or_outage_gives_clear_errors_and_recovery() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let (task, token) = gw.active_task("shop", "read", "10m");
    rt().block_on(async {
        let client = connect(&gw, &task, &token, "shop").await.unwrap();
        client.simple_query("SELECT 1").await.unwrap();

        // Restarted under a live session: that session ends with an error.
        cluster.restart();
        let err = client.simple_query("SELECT 1").await.unwrap_err();
        assert!(err.is_closed() || err.as_db_error().is_some(), "{err}");
        // New sessions work once it is back.
        let again = connect(&gw, &task, &token, "shop").await.unwrap();
        again.simple_query("SELECT 1").await.unwrap();
    });

    // Down: a login through the gateway is refused with the reason.
    cluster.stop();
    let err = rt()
        .block_on(connect(&gw, &task, &token, "shop"))
        .err()
        .unwrap();
    let (code, message) = failure(&err);
    assert_eq!(code, "08006", "{message}");
    assert!(
        message.contains("connection shop: the database is unreachable"),
        "{message}"
    );
    // The gateway itself is fine.
    assert_eq!(gw.http().get_anonymous("/healthz").0, 200);
    cluster.restart();
    rt().block_on(async {
        let back = connect(&gw, &task, &token, "shop").await.unwrap();
        back.simple_query("SELECT 1").await.unwrap();
    });
    assert!(gw.log().contains("upstream login failed"), "{}", gw.log());
}

#[test]
fn a_database_that_accepts_and_stalls_times_out() {
    // A "database" that accepts connections and never says a word.
    let stall = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = stall.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in stall.incoming().flatten() {
            held.push(stream);
        }
    });
    let gw = TestGateway::start_with(&format!(
        r#"
[[connections]]
name = "stall"
kind = "postgres"
address = "{address}"
database = "nothing"
connect_timeout = "1s"
read = {{ user = "nobody", password_env = "TG_TEST_UPSTREAM_PW" }}

[[policies]]
name = "agents-on-stall"
who = ["kind:agent"]
connections = ["stall"]
access = ["read"]
max_window = "30m"
"#
    ));
    let (task, token) = gw.active_task("stall", "read", "10m");
    rt().block_on(async {
        let started = Instant::now();
        let err = connect(&gw, &task, &token, "stall").await.err().unwrap();
        let (code, message) = failure(&err);
        assert_eq!(code, "08006", "{message}");
        assert!(message.contains("did not answer in time"), "{message}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    });
    assert_eq!(gw.http().get_anonymous("/healthz").0, 200);
}

/// Sets or clears the immutable flag on `files`: writes to them then fail
/// with EPERM even for root and for files already open, as on a disk gone
/// read-only.
fn immutable(files: &[std::path::PathBuf], on: bool) {
    for path in files {
        let status = std::process::Command::new("chattr")
            .arg(if on { "+i" } else { "-i" })
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "chattr on {}", path.display());
    }
}

/// Every file in `dir`.
fn files_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn a_read_only_audit_journal_refuses_statements_until_it_is_writable() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let (task, token) = gw.active_task("shop", "write", "10m");
    let journal = taskgate_store::sqlite::journal_dir(&gw.store_path());
    rt().block_on(async {
        let client = connect(&gw, &task, &token, "shop").await.unwrap();
        client
            .simple_query("SELECT 'ro-before' AS m")
            .await
            .unwrap();

        let files = files_in(&journal);
        immutable(&files, true);
        let refused = client.simple_query("SELECT 'ro-refused' AS m").await;
        immutable(&files, false);
        let err = refused.unwrap_err();
        let (code, _) = failure(&err);
        assert!(code == "58000" || err.is_closed(), "{err}");

        // Writable again: new sessions work and are recorded, no restart.
        let again = connect(&gw, &task, &token, "shop").await.unwrap();
        again.simple_query("SELECT 'ro-after' AS m").await.unwrap();
    });
    let log = cluster.log();
    assert!(log.contains("ro-before") && log.contains("ro-after"));
    assert!(
        !log.contains("ro-refused"),
        "a statement the journal could not take reached the database"
    );
    let started: Vec<String> = gw
        .events_of("command.started")
        .iter()
        .map(|e| e["payload"]["sql"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        started.iter().any(|s| s.contains("ro-before")),
        "{started:?}"
    );
    assert!(
        started.iter().any(|s| s.contains("ro-after")),
        "{started:?}"
    );
    assert!(
        !started.iter().any(|s| s.contains("ro-refused")),
        "{started:?}"
    );
    assert!(
        gw.log().contains("cannot commit command events"),
        "{}",
        gw.log()
    );
    let (code, report) = gw.verify_offline();
    assert_eq!(code, 0, "{report}");
}

#[test]
fn a_read_only_audit_store_refuses_statements_until_it_is_writable() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_with(&cluster.gateway_config());
    let (task, token) = gw.active_task("shop", "write", "10m");
    let store = gw.store_path();
    let files = [
        store.clone(),
        std::path::PathBuf::from(format!("{}-wal", store.display())),
    ];
    let ran = rt().block_on(async {
        let client = connect(&gw, &task, &token, "shop").await.unwrap();
        immutable(&files, true);
        // Statements are journaled and run until the writer finds that the
        // store refuses them (within milliseconds); then they are refused.
        let mut ran = 0;
        let refused = loop {
            let sql = format!("SELECT 'store-ro-{ran}' AS m");
            match client.simple_query(&sql).await {
                Ok(_) => ran += 1,
                Err(e) => break e,
            }
            assert!(ran < 100_000, "the read-only store was never noticed");
        };
        immutable(&files, false);
        let (code, _) = failure(&refused);
        assert!(code == "58000" || refused.is_closed(), "{refused}");

        // Writable again: new sessions work and are recorded, no restart.
        let again = connect(&gw, &task, &token, "shop").await.unwrap();
        again
            .simple_query("SELECT 'store-ro-after' AS m")
            .await
            .unwrap();
        ran
    });
    let log = cluster.log();
    assert!(
        !log.contains(&format!("store-ro-{ran}'")),
        "the refused statement reached the database"
    );
    // Every statement that ran is in the store: journaled before it ran,
    // moved in once the store took writes again.
    let started: std::collections::HashSet<String> = gw
        .events_of("command.started")
        .iter()
        .map(|e| e["payload"]["sql"].as_str().unwrap().to_owned())
        .collect();
    for i in 0..ran {
        let sql = format!("SELECT 'store-ro-{i}' AS m");
        assert!(log.contains(&sql), "{sql} did not run");
        assert!(started.contains(&sql), "{sql} ran without its event");
    }
    assert!(started.contains("SELECT 'store-ro-after' AS m"));
    let (code, report) = gw.verify_offline();
    assert_eq!(code, 0, "{report}");
    eprintln!("{ran} statements ran (all recorded) before the read-only store was noticed");
}
