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

#[test]
fn a_mirror_copies_the_shared_log_and_is_rebuilt_when_it_stops_matching() {
    use crate::sqlite::mirror::Mirror;
    let (_dir, cluster) = cluster();
    let (a, thread, reader) = node(&cluster, "gw-a");
    let rt = runtime();
    rt.block_on(async {
        for i in 0..30 {
            a.append(draft(i)).await.expect("append");
        }
    });
    let chain = reader.chain_id().expect("chain");
    let files = tempfile::tempdir().expect("tempdir");
    let path = Mirror::path_for(&files.path().join("taskgate.db"));
    let mirror = Mirror::new(&path);
    assert_eq!(mirror.catch_up(&reader, &chain).expect("catch up"), 30);
    rt.block_on(async {
        for i in 30..35 {
            a.append(draft(i)).await.expect("append");
        }
    });
    assert_eq!(mirror.catch_up(&reader, &chain).expect("more"), 5);
    assert_eq!(mirror.catch_up(&reader, &chain).expect("nothing new"), 0);
    // The mirror reads as a store of the same chain, and verifies.
    let copy = crate::sqlite::open_read_only(&path).expect("open the mirror");
    assert_eq!(copy.chain_id().expect("chain"), chain);
    let report = copy.verify_chain(None, &[]).expect("verify");
    assert!(report.ok() && report.head_seq == 35, "{report:?}");
    // Opened again against another chain's store, it starts over.
    drop((a, copy));
    thread.join();
    let (_other_dir, other) = self::cluster();
    let (b, b_thread, other_reader) = node(&other, "gw-b");
    rt.block_on(async { b.append(draft(0)).await.expect("append") });
    let other_chain = other_reader.chain_id().expect("chain");
    let again = Mirror::new(&path);
    assert_eq!(
        again
            .catch_up(&other_reader, &other_chain)
            .expect("rebuilt"),
        1
    );
    let copy = crate::sqlite::open_read_only(&path).expect("open");
    assert_eq!(copy.chain_id().expect("chain"), other_chain);
    assert_eq!(copy.head_seq().expect("head"), 1);
    drop(b);
    b_thread.join();
}

#[test]
fn sink_progress_in_the_shared_store_moves_like_a_nodes_own() {
    use crate::sinks::SinkLedger;
    let (_dir, cluster) = cluster();
    drop(open(options(&cluster), "gw-a").expect("create the schema"));
    let ledger = PgSinks::new(options(&cluster));
    assert_eq!(ledger.cursor("siem").expect("cursor"), 0);
    ledger.advance("siem", 10, 8).expect("advance");
    // A cursor never goes back (a late write from an old holder).
    ledger.advance("siem", 7, 0).expect("advance");
    assert_eq!(ledger.cursor("siem").expect("cursor"), 10);
    ledger
        .park("siem", &[11, 13], 15, "400 Bad Request")
        .expect("park");
    ledger.failed("siem", "timed out").expect("failed");
    let progress = ledger.progress("siem").expect("progress");
    assert_eq!(
        (progress.cursor, progress.delivered, progress.parked),
        (15, 8, 2)
    );
    assert_eq!(progress.last_error.as_deref(), Some("timed out"));
    assert_eq!(ledger.requeue("siem", 0, 12).expect("requeue"), 1);
    let parked = ledger.parked("siem").expect("parked");
    assert_eq!(
        parked.iter().map(|p| (p.seq, p.queued)).collect::<Vec<_>>(),
        [(11, true), (13, false)]
    );
    assert_eq!(ledger.queued("siem", 10).expect("queued"), [11]);
    ledger.redelivered("siem", &[11]).expect("redelivered");
    ledger.requeue("siem", 13, 13).expect("requeue");
    ledger
        .parked_again("siem", &[13], "still 400")
        .expect("again");
    let progress = ledger.progress("siem").expect("progress");
    assert_eq!((progress.delivered, progress.parked), (9, 1));
    assert!(ledger.queued("siem", 10).expect("queued").is_empty());
    assert_eq!(
        ledger.parked("siem").expect("parked")[0].reason,
        "still 400"
    );
    assert_eq!(ledger.progress("other").expect("new sink").cursor, 0);
}

#[test]
fn leases_and_session_places_hold_across_links() {
    use super::fleet::{Announcement, FleetLink};
    let (_dir, cluster) = cluster();
    // The writer's blocking client is opened outside the runtime.
    let (w, thread, _) = node(&cluster, "gw-w");
    runtime().block_on(async {
        let (a, _a_notes) = FleetLink::connect(&options(&cluster), "gw-a")
            .await
            .expect("a");
        let (b, _) = FleetLink::connect(&options(&cluster), "gw-b")
            .await
            .expect("b");
        assert!(a.try_lease("sink siem").await.expect("lease"));
        assert!(!b.try_lease("sink siem").await.expect("lease"));
        assert!(b.try_lease("expiry").await.expect("lease"));
        // Places: two for the task across both nodes.
        assert_eq!(
            a.open_session("ses_1", "tsk_1", 2).await.expect("seat"),
            None
        );
        assert_eq!(
            b.open_session("ses_2", "tsk_1", 2).await.expect("seat"),
            None
        );
        assert_eq!(
            b.open_session("ses_3", "tsk_1", 2).await.expect("seat"),
            Some(2)
        );
        assert_eq!(
            a.open_session("ses_4", "tsk_2", 2).await.expect("seat"),
            None
        );
        a.close_session("ses_1").await.expect("close");
        assert_eq!(
            b.open_session("ses_3", "tsk_1", 2).await.expect("seat"),
            None
        );
        // A link gone releases its leases.
        drop(a);
        let start = std::time::Instant::now();
        while !b.try_lease("sink siem").await.expect("lease") {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the lease was never freed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // What a writer commits is announced to every link, and parses.
        let (d, mut d_notes) = FleetLink::connect(&options(&cluster), "gw-d")
            .await
            .expect("d");
        let pending = task("tsk_n", TaskState::Active, Duration::from_secs(600));
        w.create_task(pending, secrets(), None)
            .await
            .expect("create");
        w.revoke_task("tsk_n", alice(), None).await.expect("revoke");
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let note = tokio::time::timeout(Duration::from_secs(5), d_notes.recv())
                .await
                .expect("an announcement")
                .expect("the link is up");
            seen.push(Announcement::parse(&note).expect("parses"));
        }
        assert_eq!(
            seen,
            [
                Announcement::Task {
                    id: "tsk_n".into(),
                    state: "active".into()
                },
                Announcement::Task {
                    id: "tsk_n".into(),
                    state: "revoked".into()
                },
            ]
        );
        drop((w, d));
    });
    thread.join();
}

#[test]
fn rounds_on_a_head_another_node_moved_are_sealed_again_on_the_new_one() {
    let (_dir, cluster) = cluster();
    let (a, a_thread, reader) = node(&cluster, "gw-a");
    let (b, b_thread, _) = node(&cluster, "gw-b");
    runtime().block_on(async {
        // Alone, a's rounds take the one-statement path on its own head;
        // then each node's head goes stale as the other appends.
        for i in 0..20 {
            assert_eq!(a.append(draft(i)).await.expect("a alone"), i as u64 + 1);
        }
        for i in 0..40 {
            let writer = if i % 3 == 0 { &b } else { &a };
            assert_eq!(
                writer.append(draft(100 + i)).await.expect("interleaved"),
                21 + i as u64
            );
        }
    });
    drop((a, b));
    a_thread.join();
    b_thread.join();
    let report = reader.verify_chain(None, &[]).expect("verify");
    assert!(report.ok() && report.head_seq == 60, "{report:?}");
}
