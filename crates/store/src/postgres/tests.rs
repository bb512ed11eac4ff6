//! The shared store against a throwaway PostgreSQL: two nodes on one
//! chain, domain steps across nodes, a store that goes away and comes
//! back, tampering, and the copy from SQLite.
//!
//! The store's clients block (they run on the writer thread and in
//! blocking tasks), so these tests open and read it outside the runtime
//! that drives the writer's async API.

use std::time::Duration;

use taskgate_audit::{EventDraft, EventType, Timestamp};
use taskgate_pgcluster::Cluster;
use taskgate_policy::TaskState;

use super::*;
use crate::sqlite::tests::{alice, copilot, secrets, store_with_events, task};
use crate::{ReviewQuery, StoreRead, Writer};

fn cluster() -> (tempfile::TempDir, Cluster) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(
        dir.path(),
        "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        &[],
    )
    .expect("start a throwaway PostgreSQL");
    (dir, cluster)
}

fn options(cluster: &Cluster) -> PgOptions {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(cluster.port())
        .user("postgres")
        .dbname("postgres");
    PgOptions::new(config, None)
}

fn node(cluster: &Cluster, name: &str) -> (Writer, crate::WriterThread, PgReader) {
    let (w, r) = open(options(cluster), name).expect("open the shared store");
    let (writer, thread) = Writer::start_shared(w, None).expect("start");
    (writer, thread, r)
}

fn draft(i: usize) -> EventDraft {
    EventDraft::new(EventType::CommandStarted, Timestamp::now())
        .task("tsk_1")
        .payload(serde_json::json!({ "sql": format!("SELECT {i}") }))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

fn node_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<taskgate_audit::Event>(body)
        .expect("an event")
        .node
}

#[test]
fn two_nodes_append_to_one_chain_that_verifies() {
    let (_dir, cluster) = cluster();
    let (a, a_thread, reader) = node(&cluster, "gw-a");
    let (b, b_thread, _) = node(&cluster, "gw-b");
    let all = runtime().block_on(async {
        let mut handles = Vec::new();
        for writer in [a.clone(), b.clone()] {
            for caller in 0..8 {
                let writer = writer.clone();
                handles.push(tokio::spawn(async move {
                    let mut seqs = Vec::new();
                    for i in 0..25 {
                        seqs.push(
                            writer
                                .append(draft(caller * 100 + i))
                                .await
                                .expect("append"),
                        );
                    }
                    seqs
                }));
            }
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.expect("join"));
        }
        all
    });
    let mut all = all;
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<u64>>());
    drop((a, b));
    a_thread.join();
    b_thread.join();
    let report = reader.verify_chain(None, &[]).expect("verify");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.head_seq, 400);
    let events = reader.events_after(0, 1000).expect("read");
    let nodes: std::collections::BTreeSet<_> =
        events.iter().filter_map(|e| node_of(&e.body)).collect();
    assert_eq!(nodes, ["gw-a".to_owned(), "gw-b".to_owned()].into());
}

#[test]
fn a_step_on_one_node_sees_what_another_committed() {
    let (_dir, cluster) = cluster();
    let (a, _a_thread, reader) = node(&cluster, "gw-a");
    let (b, _b_thread, _) = node(&cluster, "gw-b");
    runtime().block_on(async {
        let pending = task("tsk_x", TaskState::Pending, Duration::from_secs(600));
        let review = taskgate_policy::Review::for_grant("rev_x".into(), &pending);
        a.create_task(pending, secrets(), Some(review.clone()))
            .await
            .expect("create on a");
        // The same id again on b is refused: b's step read a's row.
        let again = task("tsk_x", TaskState::Pending, Duration::from_secs(600));
        assert!(b.create_task(again, secrets(), None).await.is_err());
        let (decided, active) = b
            .decide_review(&review.id, alice(), true, None)
            .await
            .expect("approve on b");
        assert_eq!(active.state, TaskState::Active);
        assert!(
            a.decide_review(&decided.id, alice(), false, None)
                .await
                .is_err()
        );
        a.end_task("tsk_x", copilot()).await.expect("end on a");
    });
    let stored = reader.task("tsk_x").expect("read").expect("task");
    assert_eq!(stored.state, TaskState::Ended);
    assert!(
        reader
            .reviews(&ReviewQuery::default())
            .expect("reviews")
            .len()
            == 1
    );
    let report = reader.verify_chain(None, &[]).expect("verify");
    assert!(report.ok(), "{report:?}");
}

#[test]
fn a_store_that_goes_away_refuses_events_then_takes_them_again() {
    let (_dir, cluster) = cluster();
    let (a, _thread, reader) = node(&cluster, "gw-a");
    runtime().block_on(async {
        a.append(draft(1)).await.expect("append");
        a.append_queued(draft(2)).await.expect("queue");
        a.flush().await.expect("flush");
        cluster.stop();
        let refused = a.append(draft(3)).await.expect_err("the store is down");
        assert!(
            refused
                .to_string()
                .contains("audit store cannot be written"),
            "{refused}"
        );
        a.append_queued(draft(4)).await.expect("queued while down");
        cluster.resume().expect("start again");
        let seq = a
            .append(draft(5))
            .await
            .expect("append after the store is back");
        // The outcome queued while the store was down went in first.
        assert_eq!(seq, 4);
    });
    let report = reader.verify_chain(None, &[]).expect("verify");
    assert!(report.ok(), "{report:?}");
}

#[test]
fn the_store_refuses_changes_to_events_and_verify_names_tampering() {
    let (_dir, cluster) = cluster();
    let (a, _thread, reader) = node(&cluster, "gw-a");
    runtime().block_on(async {
        for i in 0..5 {
            a.append(draft(i)).await.expect("append");
        }
    });
    for refused in [
        "UPDATE taskgate.events SET task = 'x' WHERE seq = 2",
        "DELETE FROM taskgate.events WHERE seq = 2",
        "TRUNCATE taskgate.events",
    ] {
        let out = cluster.psql("postgres", refused);
        assert!(out.is_err(), "{refused} was allowed: {out:?}");
    }
    cluster
        .psql(
            "postgres",
            "ALTER TABLE taskgate.events DISABLE TRIGGER USER;
             UPDATE taskgate.events SET body = convert_to(replace(convert_from(body, 'UTF8'), 'SELECT 3', 'SELECT 9'), 'UTF8') WHERE seq = 4;",
        )
        .expect("tamper as the table's owner");
    let report = reader.verify_chain(None, &[]).expect("verify");
    assert_eq!(report.problem.map(|p| p.seq), Some(4));
}

#[test]
fn a_sqlite_store_copied_over_keeps_its_chain() {
    let (_dir, cluster) = cluster();
    let (_sdir, path) = runtime().block_on(store_with_events(30));
    let source = crate::sqlite::open_read_only(&path).expect("source");
    let report = copy_from_sqlite(&path, &options(&cluster)).expect("copy");
    assert_eq!((report.events, report.head_seq), (30, 30));
    assert_eq!(report.chain, source.chain_id().expect("chain"));
    let again = copy_from_sqlite(&path, &options(&cluster)).expect_err("not empty");
    assert!(again.to_string().contains("not empty"), "{again}");
    let (a, _thread, reader) = node(&cluster, "gw-a");
    // The chain goes on where the copy ended.
    let seq = runtime().block_on(a.append(draft(31))).expect("append");
    assert_eq!(seq, 31);
    let verified = reader.verify_chain(None, &[]).expect("verify");
    assert!(verified.ok(), "{verified:?}");
    assert_eq!(verified.head_seq, 31);
}
