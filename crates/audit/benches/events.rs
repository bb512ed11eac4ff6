//! What recording one statement costs the audit model: encoding and sealing
//! its `command.started` and `command.completed` events (on the session's
//! thread, before the statement is forwarded), and reading a body's facts
//! back (the search indexer, once per event).
//!
//! Run: `cargo bench -p taskgate-audit --bench events -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use taskgate_audit::{
    Chain, ChainHead, EventDraft, EventFacts, EventType, Identity, IdentityKind, Timestamp,
};

fn agent() -> Identity {
    Identity {
        claims: BTreeMap::from([
            ("repository".to_owned(), "acme/shop".to_owned()),
            ("run_id".to_owned(), "1234567890".to_owned()),
            ("workflow".to_owned(), "migrate".to_owned()),
        ]),
        groups: vec![],
        issuer: "https://token.actions.githubusercontent.com".into(),
        kind: IdentityKind::Agent,
        subject: "repo:acme/shop:ref:refs/heads/main".into(),
    }
}

/// A draft shaped like the gateway's (see `gateway::pg::record`).
fn draft(event_type: EventType, payload: serde_json::Value) -> EventDraft {
    EventDraft::new(event_type, Timestamp::from_micros(1_764_500_000_000_000))
        .identity(&agent())
        .task("tsk_01JD5Q8M3N4P5R6S7T8V9W0XYZ")
        .session("ses_01JD5Q8M3N4P5R6S7T8V9W0XYZ")
        .connection("orders-db")
        .payload(payload)
}

fn started() -> EventDraft {
    draft(
        EventType::CommandStarted,
        json!({
            "class": "read",
            "command": 48_213,
            "command_type": "SELECT",
            "protocol": "simple",
            "sql": "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
            "tables_read": ["pgbench_accounts"],
            "tables_written": [],
        }),
    )
}

fn completed() -> EventDraft {
    draft(
        EventType::CommandCompleted,
        json!({
            "command": 48_213,
            "duration_us": 212,
            "outcome": "ok",
            "rows": 1,
            "tag": "SELECT 1",
        }),
    )
}

fn bench(c: &mut Criterion) {
    c.bench_function("prepare/command.started", |b| {
        b.iter_batched(
            started,
            |d| d.prepare(black_box("chain")),
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("prepare/command.completed", |b| {
        b.iter_batched(
            completed,
            |d| d.prepare(black_box("chain")),
            criterion::BatchSize::SmallInput,
        )
    });
    let mut chain = Chain::new("chain", ChainHead::EMPTY);
    c.bench_function("seal_prepared/command.started", |b| {
        b.iter_batched(
            || started().prepare("chain").expect("prepare"),
            |p| chain.seal_prepared(p),
            criterion::BatchSize::SmallInput,
        )
    });
    let body = Chain::new("chain", ChainHead::EMPTY)
        .seal(started())
        .expect("seal")
        .body;
    c.bench_function("facts/command.started", |b| {
        b.iter(|| EventFacts::from_body(black_box(&body)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
