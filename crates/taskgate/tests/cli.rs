//! The CLI as a person uses it: real binary, real gateway, real output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{BIN, TestGateway};
use serde_json::Value;

#[test]
fn request_review_approve_show_url_end() {
    let gw = TestGateway::start();
    let agent = &gw.tokens.agent;
    let out = gw.cli(
        agent,
        &[
            "task",
            "request",
            "--name",
            "migrate-orders",
            "--connection",
            "orders-db",
            "--access",
            "write",
            "--window",
            "15m",
            "--reason",
            "add a note column",
            "--ref",
            "acme/shop#1234",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let created: Value = serde_json::from_str(&out.stdout).unwrap();
    let id = created["id"].as_str().unwrap();
    let review = created["review"].as_str().unwrap();
    assert_eq!(created["status"], "pending");

    let listed = gw.cli(&gw.tokens.alice, &["review", "list"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    for needle in [
        review,
        id,
        "copilot-agent (agent)",
        "write on orders-db for 15m",
        "add a note column",
        "acme/shop#1234",
    ] {
        assert!(
            listed.stdout.contains(needle),
            "{needle:?} missing from:\n{}",
            listed.stdout
        );
    }

    let own = gw.cli(agent, &["review", "approve", review]);
    assert_eq!(own.code, 1);
    assert!(
        own.stderr.contains("cannot approve its own"),
        "{}",
        own.stderr
    );

    let approved = gw.cli(
        &gw.tokens.alice,
        &["review", "approve", review, "--comment", "go"],
    );
    assert_eq!(approved.code, 0, "{}", approved.stderr);
    assert!(approved.stdout.contains("approved"), "{}", approved.stdout);

    let shown = gw.cli(agent, &["task", "show", id]);
    assert!(
        shown.stdout.contains("status     active"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("approved   by alice (human)"),
        "{}",
        shown.stdout
    );

    let url = gw.cli(agent, &["task", "url", id]);
    assert_eq!(url.code, 0, "{}", url.stderr);
    assert_eq!(
        url.stdout.trim(),
        created["connection_string"].as_str().unwrap()
    );
    let saved = gw.dir.path().join("cli-state/tasks").join(id);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&saved).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let list = gw.cli(agent, &["task", "list", "--status", "active"]);
    assert!(list.stdout.contains(id), "{}", list.stdout);

    let ended = gw.cli(agent, &["task", "end", id]);
    assert_eq!(ended.code, 0, "{}", ended.stderr);
    assert!(
        ended.stdout.contains("status     ended"),
        "{}",
        ended.stdout
    );
}

#[test]
fn request_wait_blocks_until_decided() {
    let gw = TestGateway::start();
    let mut waiting = Command::new(BIN)
        .args([
            "task",
            "request",
            "--name",
            "w",
            "--connection",
            "orders-db",
            "--access",
            "write",
            "--window",
            "5m",
            "--wait",
        ])
        .env("TASKGATE_SERVER", &gw.base)
        .env("TASKGATE_TOKEN", &gw.tokens.agent)
        .env("TASKGATE_STATE_DIR", gw.dir.path().join("cli-state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let http = gw.http();
    let mut review = None;
    assert!(gw.eventually(std::time::Duration::from_secs(10), || {
        let (_, reviews) = http.get(&gw.tokens.alice, "/v1/reviews");
        review = reviews[0]["id"].as_str().map(str::to_owned);
        review.is_some()
    }));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "--wait returned before a decision"
    );
    let denied = gw.cli(
        &gw.tokens.alice,
        &["review", "deny", review.as_deref().unwrap()],
    );
    assert_eq!(denied.code, 0, "{}", denied.stderr);
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("it is denied"));
}

#[test]
fn config_check_reports_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"[[identity.dev]]
subject = "a"
kind = "human"
token = "inline"

[[connections]]
name = "db"
kind = "postgres"
address = "db"
database = "x"
read = { user = "r", password = "hunter2" }

[[policies]]
who = ["kind:robot"]
connections = ["nope"]
access = ["read"]
max_window = "30m"
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "line 1: identity.dev[0].token: inline tokens are not allowed",
        "line 6: connections[0].address: \"db\" must be host:port",
        "line 6: connections[0].read.password: inline passwords are not allowed",
        "line 14, column 7: policies[0]: \"kind:robot\" is not a valid identity matcher",
        "5 problems found",
    ] {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing from:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("\"inline\""),
        "{stderr}"
    );

    let good = Command::new(BIN)
        .args([
            "config",
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/taskgate.toml"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
}

/// Issue 28: `config check` resolves every secret the config names, as
/// `serve` will, and names each one missing (never a value) instead of
/// saying ok.
#[test]
fn config_check_names_missing_secrets_without_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taskgate.toml");
    std::fs::write(dir.path().join("token"), "a-token-value-never-shown\n").unwrap();
    std::fs::write(
        &path,
        r#"[[identity.dev]]
subject = "a"
kind = "human"
token_file = "token"

[[identity.dev]]
subject = "b"
kind = "agent"
token_file = "no-such-token-file"

[[connections]]
name = "db"
kind = "postgres"
address = "127.0.0.1:5432"
database = "x"
read = { user = "r", password_env = "TG_CHECK_UNSET_PASSWORD" }
write = { user = "w", password_env = "TG_CHECK_SET_PASSWORD" }
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&path)
        .env_remove("TG_CHECK_UNSET_PASSWORD")
        .env("TG_CHECK_SET_PASSWORD", "a-password-never-shown")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "dev identity b: token: cannot read file",
        "connection db: read password: environment variable TG_CHECK_UNSET_PASSWORD is not set",
        "2 secrets missing",
    ] {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing from:\n{stderr}"
        );
    }
    assert!(!stderr.contains("dev identity a") && !stderr.contains("write password"));
    assert!(
        !stderr.contains("never-shown")
            && !String::from_utf8_lossy(&out.stdout).contains("never-shown")
    );
}

#[test]
fn audit_verify_offline_names_the_tampered_record() {
    let mut gw = TestGateway::start();
    for _ in 0..3 {
        gw.request("read", "5m");
    }
    let online = gw.cli(&gw.tokens.auditor, &["audit", "verify"]);
    assert_eq!(online.code, 0, "{}", online.stderr);
    assert!(
        online.stdout.starts_with("ok: 6 events"),
        "{}",
        online.stdout
    );
    gw.stop();

    let store = gw.store_path();
    let store_arg = store.to_str().unwrap();
    let offline = gw.cli("", &["audit", "verify", "--store", store_arg]);
    assert_eq!(offline.code, 0, "{}", offline.stderr);

    let conn = rusqlite_free_edit(&store);
    assert!(conn.is_ok(), "{conn:?}");
    let tampered = gw.cli("", &["audit", "verify", "--store", store_arg]);
    assert_eq!(tampered.code, 1, "{}", tampered.stdout);
    assert!(
        tampered.stdout.contains("TAMPERED: record 3 changed"),
        "{}",
        tampered.stdout
    );
}

/// Changes one byte of event 3's body (a character of its task id) in the
/// SQLite file, as an attacker with the file (and no SQL) would.
fn rusqlite_free_edit(store: &std::path::Path) -> Result<(), String> {
    let mut bytes = std::fs::read(store).map_err(|e| e.to_string())?;
    let needle = br#""seq":3,"session":null,"task":"tsk_"#;
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .ok_or("event 3 not found in the file")?;
    let target = at + needle.len();
    bytes[target] = if bytes[target] == b'a' { b'b' } else { b'a' };
    std::fs::write(store, bytes).map_err(|e| e.to_string())
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["task", "--help"],
        vec!["task", "request", "--help"],
        vec!["task", "list", "--help"],
        vec!["task", "show", "--help"],
        vec!["task", "url", "--help"],
        vec!["task", "end", "--help"],
        vec!["task", "revoke", "--help"],
        vec!["review", "--help"],
        vec!["review", "list", "--help"],
        vec!["review", "approve", "--help"],
        vec!["review", "deny", "--help"],
        vec!["audit", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["audit", "search", "--help"],
        vec!["audit", "story", "--help"],
        vec!["audit", "pubkey", "--help"],
        vec!["audit", "reindex", "--help"],
        vec!["config", "--help"],
        vec!["config", "check", "--help"],
        vec!["sinks", "--help"],
        vec!["sinks", "status", "--help"],
        vec!["sinks", "parked", "--help"],
        vec!["sinks", "redeliver", "--help"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
}

#[test]
fn client_commands_without_a_token_say_so() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["task", "list"])
        .env_remove("TASKGATE_TOKEN")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env("TASKGATE_CONFIG_DIR", empty.path())
        .env("TASKGATE_SERVER", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no identity token"));
}
