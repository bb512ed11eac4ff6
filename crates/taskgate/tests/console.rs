//! The web console in a real browser (Debian's chromium through
//! playwright-core, `tests/console/console.mjs`, both installed by
//! `.ci/run`), against a real gateway, OpenID Provider and cluster: sign-in
//! through the IdP, a review appearing live and approved in the page, a held
//! statement approved in the page, the story, search and export, an auditor
//! who cannot approve, a POST without its CSRF token, an agent who sees only
//! its own tasks. Screenshots land in `target/console-shots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::cluster::TestCluster;
use common::idp::start_idp;
use common::{BIN, TestGateway};

fn console_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

/// The IdP as an issuer people sign in at, and `shop` needing DBAs.
fn config(cluster: &TestCluster, issuer: &str) -> String {
    format!(
        r#"
[[identity.oidc]]
issuer = "{issuer}"
name = "corp-idp"
audience = "taskgate"
kind = "human"
groups_claim = "groups"

[console]
issuer = "corp-idp"
client_id = "taskgate-console"
{}"#,
        cluster.reviewed_config()
    )
}

#[test]
fn approvers_and_auditors_work_in_a_real_browser() {
    assert!(
        PathBuf::from("/usr/bin/chromium").exists(),
        "Debian's chromium is missing (run .ci/run)"
    );
    let idp = start_idp();
    let cluster = TestCluster::start();
    let gw = TestGateway::start_full("review_hold = \"60s\"", &config(&cluster, &idp.url));
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-shots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(console_dir().join("console.mjs"))
        .current_dir(console_dir())
        .env("TG_UI", &gw.base)
        .env("TG_BIN", BIN)
        .env("TG_STATE_DIR", gw.dir.path().join("cli-state"))
        .env("TG_SHOTS", &shots)
        .env("TG_AGENT", &gw.tokens.agent)
        .env("TG_ALICE", &gw.tokens.alice)
        .env("TG_AUDITOR", &gw.tokens.auditor)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node: {e} (run .ci/run)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "console.mjs failed:\n{stdout}\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap_or_default()
            .contains("\"done\""),
        "{stdout}"
    );
    // Nothing secret reached the log or the record through the console.
    let everything = gw.event_bodies().join("\n") + &gw.log();
    for secret in [&gw.tokens.agent, &gw.tokens.auditor] {
        assert!(!everything.contains(secret.as_str()), "a token leaked");
    }
    let (code, report) = gw.verify_offline();
    assert_eq!(code, 0, "{report}");
}
