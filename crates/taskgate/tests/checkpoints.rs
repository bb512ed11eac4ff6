//! Signed checkpoints against someone who can rewrite the store file: a
//! forged signature, a checkpoint removed (and the chain re-hashed around
//! the gap), and the newest records cut off. `audit verify` must name each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestGateway;
use rusqlite::Connection;
use serde_json::Value;
use sha2::{Digest, Sha256};

const EVERY_4: &str = "[audit]\ncheckpoint_every = 4\n";

/// A stopped gateway whose log holds several checkpoints, with copies.
fn logged() -> TestGateway {
    let mut gw = TestGateway::start_with(EVERY_4);
    for _ in 0..5 {
        gw.request("read", "5m");
    }
    gw.stop();
    gw
}

fn verify(gw: &TestGateway, extra: &[&str]) -> (i32, Value) {
    let config = gw.config_path();
    let mut args = vec![
        "audit",
        "verify",
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = gw.cli("", &args);
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|_| panic!("{}{}", out.stdout, out.stderr));
    (out.code, report)
}

fn problem(report: &Value) -> String {
    report["problem"].as_str().unwrap_or_default().to_owned()
}

/// The store with its append-only triggers dropped: what an attacker with
/// the file can do.
fn tamper(gw: &TestGateway) -> Connection {
    let conn = Connection::open(gw.store_path()).unwrap();
    conn.execute_batch(
        "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete; DROP TRIGGER events_append_only;",
    )
    .unwrap();
    conn
}

fn bodies(conn: &Connection) -> Vec<(i64, Value)> {
    let mut stmt = conn
        .prepare("SELECT seq, body FROM events ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| {
        let body: Vec<u8> = r.get(1)?;
        Ok((r.get(0)?, serde_json::from_slice(&body).unwrap()))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Rewrites the whole log from `events`: numbered 1.., every hash
/// recomputed, so the bare hash chain is whole again.
fn rechain(conn: &Connection, events: Vec<Value>) {
    conn.execute("DELETE FROM events", []).unwrap();
    let mut prev = [0u8; 32];
    for (i, mut event) in events.into_iter().enumerate() {
        let seq = i as i64 + 1;
        event["seq"] = seq.into();
        let body = taskgate_audit::canonical_json(&event).unwrap();
        let mut hasher = Sha256::new();
        hasher.update(prev);
        hasher.update(&body);
        prev = hasher.finalize().into();
        conn.execute(
            "INSERT INTO events (seq, time_us, type, task, session, connection, subject, body, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                seq,
                taskgate_audit::Timestamp::parse(event["time"].as_str().unwrap()).unwrap().as_micros(),
                event["type"].as_str(),
                event["task"].as_str(),
                event["session"].as_str(),
                event["connection"].as_str(),
                event["identity"]["subject"].as_str(),
                body,
                prev.to_vec(),
            ],
        )
        .unwrap();
    }
}

fn checkpoint_positions(events: &[(i64, Value)]) -> Vec<usize> {
    events
        .iter()
        .enumerate()
        .filter(|(_, (_, e))| e["type"] == "checkpoint")
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn an_intact_log_verifies_with_its_checkpoints_and_the_public_key_is_printable() {
    let gw = logged();
    let (code, report) = verify(&gw, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["signatures_checked"], true);
    // 5 requests × (requested, activated) = 10 events: checkpoints after 4
    // and 8 of them... and one at shutdown.
    assert_eq!(report["checkpoints"], 3, "{report}");
    assert_eq!(report["external_checkpoints"], 3, "{report}");

    let out = gw.cli(
        "",
        &[
            "audit",
            "pubkey",
            "--config",
            gw.config_path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let key = out.stdout.trim();
    assert!(key.starts_with("ed25519:"), "{key}");
    // The key printed is the one that verifies; another one does not.
    let store = gw.store_path();
    let ok = gw.cli(
        "",
        &[
            "audit",
            "verify",
            "--store",
            store.to_str().unwrap(),
            "--pubkey",
            key,
        ],
    );
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    let other = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let wrong = gw.cli(
        "",
        &[
            "audit",
            "verify",
            "--store",
            store.to_str().unwrap(),
            "--pubkey",
            other,
        ],
    );
    assert_eq!(wrong.code, 1, "{}", wrong.stdout);
    assert!(wrong.stdout.contains("TAMPERED"), "{}", wrong.stdout);
}

#[test]
fn a_forged_checkpoint_signature_is_named() {
    let gw = logged();
    let conn = tamper(&gw);
    let events = bodies(&conn);
    let first = checkpoint_positions(&events)[0];
    let mut rewritten: Vec<Value> = events.into_iter().map(|(_, e)| e).collect();
    let signature = rewritten[first]["payload"]["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = format!(
        "{}{}",
        if signature.starts_with('A') { "B" } else { "A" },
        &signature[1..]
    );
    rewritten[first]["payload"]["signature"] = forged.into();
    rechain(&conn, rewritten);
    drop(conn);
    let (code, report) = verify(&gw, &[]);
    assert_eq!(code, 1, "{report}");
    let problem = problem(&report);
    assert!(
        problem.starts_with(&format!("record {} changed", first + 1)),
        "{problem}"
    );
}

#[test]
fn a_removed_checkpoint_is_named_even_when_the_chain_is_rehashed() {
    let gw = logged();
    let conn = tamper(&gw);
    let events = bodies(&conn);
    let first = checkpoint_positions(&events)[0];
    let mut rewritten: Vec<Value> = events.into_iter().map(|(_, e)| e).collect();
    rewritten.remove(first);
    rechain(&conn, rewritten);
    drop(conn);
    let (code, report) = verify(&gw, &[]);
    assert_eq!(code, 1, "{report}");
    let problem = problem(&report);
    assert!(problem.contains("removed"), "{problem}");
}

#[test]
fn a_log_cut_off_after_the_last_external_checkpoint_is_named() {
    let gw = logged();
    let conn = tamper(&gw);
    // Drop the last checkpoint and the events it covered: what remains is
    // a whole chain, and without the copies nothing would show.
    let events = bodies(&conn);
    let second = checkpoint_positions(&events)[1];
    conn.execute("DELETE FROM events WHERE seq > ?1", [second as i64 + 1])
        .unwrap();
    drop(conn);
    let store = gw.store_path();
    let bare = gw.cli("", &["audit", "verify", "--store", store.to_str().unwrap()]);
    assert_eq!(bare.code, 0, "a bare chain sees no cut: {}", bare.stdout);
    let (code, report) = verify(&gw, &[]);
    assert_eq!(code, 1, "{report}");
    let problem = problem(&report);
    assert!(
        problem.contains("truncated") || problem.contains("cut off"),
        "{problem}"
    );
}

/// The search index is derived data nothing signs: a row deleted from it
/// would make a search leave an event out while the chain verifies.
/// `audit verify` checks it against the chain, and says plainly when the
/// checkpoint copies share the store's disk (the default).
#[test]
fn a_row_deleted_from_the_search_index_is_named_and_copies_beside_the_store_are_reported() {
    let mut gw = TestGateway::start();
    for _ in 0..3 {
        gw.request("read", "5m");
    }
    let (status, health) = gw.http().get(&gw.tokens.auditor, "/healthz");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    let warning = health["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("same disk as the store"), "{health}");
    let (status, online) = gw.http().get(&gw.tokens.auditor, "/v1/audit/verify");
    assert_eq!(status, 200, "{online}");
    assert_eq!(online["ok"], true, "{online}");
    assert_eq!(online["index"]["problem"], Value::Null, "{online}");
    assert_eq!(online["checkpoint_dir_on_store_disk"], true, "{online}");
    gw.stop();

    let index = gw.store_path().with_extension("index.db");
    let deleted = Connection::open(&index)
        .unwrap()
        .execute(
            "DELETE FROM task_event WHERE type = (SELECT min(type) FROM task_event)",
            [],
        )
        .unwrap();
    assert!(deleted > 0);
    let (code, report) = verify(&gw, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        report["problem"],
        Value::Null,
        "the chain itself is intact: {report}"
    );
    let named = report["index"]["problem"].as_str().unwrap_or_default();
    assert!(named.contains("task_event"), "{report}");
    let config = gw.config_path();
    let text = gw.cli(
        "",
        &["audit", "verify", "--config", config.to_str().unwrap()],
    );
    assert!(
        text.stdout.contains("SEARCH INDEX WRONG"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("same disk as the store"),
        "{}",
        text.stdout
    );
}
