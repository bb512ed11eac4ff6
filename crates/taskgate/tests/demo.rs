//! `taskgate demo` runs in CI, so it cannot silently rot: it must exit 0
//! and print the story and the answers it promises.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::cluster::{RW_USER, TestCluster};
use common::{BIN, UPSTREAM_PASSWORD};

fn demo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).arg("demo").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_story(stdout: &str) {
    for expected in [
        "-> pending: write access needs a DBA's approval",
        "2. alice (human, dba) approves",
        "SELECT count(*) FROM orders -> ",
        "-> held: review rev_",
        "alice approves it -> ALTER TABLE ran",
        "-> ERROR 42501: taskgate: denied by rule",
        "the gateway cuts the session: FATAL 57P01: task window ended; the task is expired",
        "identity=copilot-agent (agent, dev) task=migrate-orders ref=acme/shop#1234",
        "ended: window passed",
        "ddl   ALTER TABLE (approved by alice",
        "DENIED: denied by rule",
        "session closed: task window ended",
        "Did any agent read customers?",
        "no events match",
        "the grant approved by alice, the statement approved by alice",
        "audit verify: ok:",
        "the demo behaved as described",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
}

#[test]
fn the_demo_tells_the_whole_story_on_a_throwaway_cluster() {
    let (code, stdout, stderr) = demo(&[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_story(&stdout);
    // It cleaned up after itself.
    let dir = stdout
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .to_owned();
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
}

#[test]
fn the_demo_runs_against_a_given_database_and_fails_loudly_without_one() {
    let cluster = TestCluster::start();
    let url = format!(
        "postgres://{RW_USER}:{UPSTREAM_PASSWORD}@127.0.0.1:{}/shop",
        cluster.port()
    );
    let (code, stdout, stderr) = demo(&["--target-url", &url]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_story(&stdout);
    assert!(
        cluster
            .log()
            .contains("ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text")
    );

    let (code, _, stderr) = demo(&["--target-url", "postgres://nobody:x@127.0.0.1:1/nothing"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("connecting to --target-url"), "{stderr}");
}
