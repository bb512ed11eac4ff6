//! A quick throughput measurement of verification, without criterion:
//! `cargo test -p taskgate-audit --release -- --ignored --nocapture`.
//! Only the verifier is timed, not making the events.

use std::error::Error;
use std::time::{Duration, Instant};

use super::Verifier;
use super::tests::row;
use crate::{
    Chain, ChainHead, Checkpoint, CheckpointKey, EventDraft, EventRow, EventType, Identity,
    IdentityKind, Timestamp,
};

const EVENTS: u64 = 1_000_000;
/// Rows are made in batches small enough to stay in cache, as a row a store
/// has just read is.
const BATCH: u64 = 1_000;
const CHECKPOINT_EVERY: u64 = 10_000;

/// A `command.started` as the gateway records it: identity claims, SQL
/// text, parameters and tables, about 750 bytes.
fn command(identity: &Identity, i: u64, time: Timestamp) -> EventDraft {
    let payload = serde_json::json!({
        "sql": "UPDATE orders SET status = $1, updated_at = now() \
                WHERE customer_id = $2 AND status IN ('pending', 'processing') \
                AND created_at < $3 RETURNING id, status",
        "params": ["shipped", (1_000 + i % 977).to_string(), "2025-11-25T10:00:00Z"],
        "tables": [{"name": "public.orders", "access": "write"}],
        "class": "write",
        "statement": i,
        "portal": "",
    });
    EventDraft::new(EventType::CommandStarted, time)
        .identity(identity)
        .task(format!("tsk_01JD{:016}", i / 1_000))
        .session(format!("ses_01JD{:016}", i / 100))
        .connection("orders-db")
        .payload(payload)
}

fn identity() -> Identity {
    let claims = [
        ("repository", "acme/shop"),
        ("workflow", "deploy-migrations"),
        ("run_id", "9876543210"),
        ("ref", "refs/heads/main"),
        ("actor", "alice"),
    ];
    Identity {
        claims: claims
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        groups: vec!["deployers".into(), "dba".into()],
        issuer: "https://token.actions.githubusercontent.com".into(),
        kind: IdentityKind::Agent,
        subject: "repo:acme/shop:ref:refs/heads/main".into(),
    }
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn verifies_a_million_events() -> Result<(), Box<dyn Error>> {
    let key = CheckpointKey::generate()?;
    let identity = identity();
    let mut chain = Chain::new("node-a", ChainHead::EMPTY);
    let mut verifier = Verifier::with_key(Some(key.public_key()));
    let mut prev_signature = None;
    let (mut timed, mut bytes, mut events) = (Duration::ZERO, 0usize, 0u64);
    let mut time = Timestamp::from_micros(1_764_066_689_000_000);
    while events < EVENTS {
        let mut rows: Vec<EventRow> = Vec::with_capacity(BATCH as usize + 8);
        for _ in 0..BATCH {
            events += 1;
            time = time.plus(Duration::from_micros(137));
            rows.push(row(&chain.seal(command(&identity, events, time))?));
            if events % CHECKPOINT_EVERY == 0 {
                let checkpoint =
                    Checkpoint::sign(&key, "node-a", chain.head(), time, prev_signature)?;
                prev_signature = Some(checkpoint.signature.clone());
                rows.push(row(&chain.seal(checkpoint.draft())?));
            }
        }
        bytes += rows.iter().map(|r| r.body.len()).sum::<usize>();
        let start = Instant::now();
        for r in &rows {
            if !verifier.push(r) {
                break;
            }
        }
        timed += start.elapsed();
    }
    let report = verifier.finish();
    assert!(report.ok(), "{report:?}");
    let records = report.head_seq;
    let seconds = timed.as_secs_f64();
    println!(
        "verified {records} records ({} checkpoints, {} bytes a body on average) in {seconds:.3} s: \
         {:.0} records/s, {:.0} MB/s",
        report.checkpoints,
        bytes as u64 / records,
        records as f64 / seconds,
        bytes as f64 / seconds / 1e6,
    );
    Ok(())
}
