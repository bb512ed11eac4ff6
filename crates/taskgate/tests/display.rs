//! What a person reads is what is there: a held statement that tries to
//! redraw an approver's terminal (`\r`, `ESC [2K`, hidden text) is shown
//! with its control characters as visible escapes, in a real terminal
//! (tmux), and free text with control characters is refused at the API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::TestGateway;
use common::cluster::{REVIEW_DDL, TestCluster};
use common::raw::{RawPg, frontend as fe};
use serde_json::json;

/// Runs a command in a fresh tmux terminal and returns the screen it left.
fn screen_of(command: &str, env: &[(&str, &str)]) -> String {
    let session = format!("tg-display-{}", std::process::id());
    let mut tmux = Command::new("tmux");
    tmux.args(["new-session", "-d", "-s", &session, "-x", "220", "-y", "50"]);
    for (k, v) in env {
        tmux.args(["-e", &format!("{k}={v}")]);
    }
    // Keep the pane after the command ends, to read it.
    tmux.arg(format!("{command}; sleep 30"));
    assert!(tmux.status().unwrap().success(), "tmux did not start");
    std::thread::sleep(Duration::from_secs(3));
    let out = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", &session])
        .output()
        .unwrap();
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_approver_s_terminal_shows_the_statement_that_was_held() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_full(
        "review_hold = \"60s\"",
        &format!("{}{REVIEW_DDL}", cluster.gateway_config()),
    );
    let (task, token) = gw.active_task("shop", "write", "10m");
    let attack = "ALTER TABLE customers DROP COLUMN name /*\r\x1b[2K  statement  ALTER TABLE orders ADD COLUMN note text\x1b[8m*/";
    let addr = gw.postgres;
    let held = std::thread::spawn(move || {
        let mut pg = RawPg::connect(addr, &task, &token, "shop");
        pg.send(&fe::query(attack));
        pg.until_ready_or_closed()
    });
    assert!(gw.eventually(Duration::from_secs(10), || {
        gw.cli(&gw.tokens.alice, &["review", "list"])
            .stdout
            .contains("statement")
    }));
    let screen = screen_of(
        &format!("{} review list", common::BIN),
        &[
            ("TASKGATE_SERVER", gw.base.as_str()),
            ("TASKGATE_TOKEN", gw.tokens.alice.as_str()),
        ],
    );
    let line = screen
        .lines()
        .find(|l| l.trim_start().starts_with("statement"))
        .unwrap_or_else(|| panic!("no statement line on the screen:\n{screen}"));
    assert!(
        line.contains("ALTER TABLE customers DROP COLUMN name"),
        "the approver does not see what runs:\n{screen}"
    );
    assert!(line.contains("\\r\\x1b[2K"), "{screen}");
    // Deny it; the session goes on.
    let reviews = gw.cli(&gw.tokens.alice, &["review", "list", "--format", "json"]);
    let reviews: serde_json::Value = serde_json::from_str(&reviews.stdout).unwrap();
    let id = reviews[0]["id"].as_str().unwrap();
    assert_eq!(gw.cli(&gw.tokens.alice, &["review", "deny", id]).code, 0);
    let answers = held.join().unwrap();
    assert!(
        answers
            .iter()
            .any(|a| a.sqlstate.as_deref() == Some("42501"))
    );
    assert_eq!(
        cluster.psql("shop", "SELECT count(*) FROM customers"),
        "2",
        "the column is still there"
    );
}

#[test]
fn free_text_with_control_characters_is_refused() {
    let gw = TestGateway::start();
    for (field, value) in [
        ("reason", "read for 5m\r\x1b[2K\x1b[1A"),
        ("ref", "acme/shop#1\napproved by alice 14:02"),
        ("reason", "quiet \u{202e}txet desrever"),
    ] {
        let mut body = json!({
            "name": "migrate-orders", "connection": "orders-db", "access": "read",
            "window": "5m", "reason": "ok", "ref": "acme/shop#1"
        });
        body[field] = json!(value);
        let (status, answer) = gw.http().post(&gw.tokens.agent, "/v1/tasks", &body);
        assert_eq!(status, 400, "{field}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field) && message.contains("control characters"),
            "{message}"
        );
    }
}
