//! Invariant 1 under crashes: pgbench runs through the gateway (in each
//! protocol mode) against a cluster that logs every statement it receives,
//! the gateway is killed with SIGKILL at random moments and restarted, and
//! every statement the database saw must have its `command.started`
//! committed in the log. After each crash the log verifies, and a task
//! whose window passed while the gateway was down is expired when it comes
//! back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::cluster::{TestCluster, assert_recorded_first, pg_bindir, statements_via_gateway};
use common::{TestGateway, random_ms};

#[test]
fn killed_at_random_moments_the_gateway_forwards_nothing_unrecorded() {
    let cluster = TestCluster::start();
    let mut gw = TestGateway::start_with(&cluster.gateway_config());
    let pgbench = pg_bindir().join("pgbench");
    cluster.pgbench_init();
    let (task, token) = gw.active_task("shop", "write", "30m");
    let (short, _) = gw.active_task("shop", "read", "2s");

    // Every protocol mode: simple, and the extended protocol unnamed and
    // with prepared statements.
    let modes = ["simple", "extended", "prepared", "simple"];
    let rounds = modes.len();
    for (round, mode) in modes.into_iter().enumerate() {
        // pgbench for far longer than the gateway will live.
        let mut load = Command::new(&pgbench)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &gw.postgres.port().to_string(),
                "-U",
                &task,
            ])
            .args(["-n", "-M", mode, "-c", "4", "-j", "1", "-T", "60", "shop"])
            .env("PGPASSWORD", &token)
            .env("PGSSLMODE", "disable")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(random_ms(400, 1500));
        gw.kill();
        let _ = load.kill();
        let _ = load.wait();
        if round == 0 {
            // The short task's window passes while the gateway is down.
            std::thread::sleep(Duration::from_millis(2500));
        }
        let (code, report) = gw.verify_offline();
        assert_eq!(code, 0, "after crash {round}: {report}");
        gw.restart();
        if round == 0 {
            let expired = gw.events_of("task.expired");
            assert!(
                expired.iter().any(|e| e["task"] == short.as_str()),
                "the short task was not expired on restart"
            );
        }
    }

    // Every statement the database received has its command.started.
    let logged = statements_via_gateway(&cluster.log());
    assert!(
        logged.len() > 200,
        "the load barely ran: {} statements",
        logged.len()
    );
    let started: Vec<String> = gw
        .events_of("command.started")
        .iter()
        .map(|e| e["payload"]["sql"].as_str().unwrap().to_owned())
        .collect();
    assert_recorded_first(&logged, &started);
    let (code, report) = gw.verify_offline();
    assert_eq!(code, 0, "{report}");
    eprintln!(
        "{rounds} crashes; {} statements reached the database, every one recorded first",
        logged.len()
    );
}
