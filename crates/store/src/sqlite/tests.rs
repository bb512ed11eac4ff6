use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use taskgate_audit::{
    EventDraft, EventType, Identity, IdentityKind, ProblemKind, Timestamp, Verifier, VerifyReport,
};
use taskgate_policy::{Access, Actor, Review, Task, TaskState};

use super::*;
use crate::{StoreRead, TaskSecrets, Writer};

pub(crate) fn identity(subject: &str, kind: IdentityKind, groups: &[&str]) -> Identity {
    Identity {
        claims: Default::default(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        issuer: "dev".into(),
        kind,
        subject: subject.into(),
    }
}

pub(crate) fn task(id: &str, state: TaskState, window: Duration) -> Task {
    let now = Timestamp::now();
    Task {
        id: id.into(),
        name: "migrate-orders".into(),
        reason: Some("add a column".into()),
        reference: None,
        connection: "orders-db".into(),
        access: Access::Write,
        window_secs: window.as_secs(),
        requester: identity("copilot", IdentityKind::Agent, &[]),
        state,
        requested_at: now,
        decide_by: (state == TaskState::Pending).then(|| now.plus(window)),
        starts_at: (state == TaskState::Active).then_some(now),
        ends_at: (state == TaskState::Active).then(|| now.plus(window)),
        approvers: vec!["group:dba".into()],
        approval: None,
        closing: None,
    }
}

pub(crate) fn alice() -> Actor {
    Actor {
        identity: identity("alice", IdentityKind::Human, &["dba"]),
        admin: false,
    }
}

pub(crate) fn copilot() -> Actor {
    Actor {
        identity: identity("copilot", IdentityKind::Agent, &[]),
        admin: false,
    }
}

pub(crate) fn secrets() -> TaskSecrets {
    TaskSecrets {
        token_sha256: [7; 32],
        scram_verifier: "SCRAM-SHA-256$4096:c2FsdA==$a:b".into(),
    }
}

fn verify(path: &Path) -> VerifyReport {
    let reader = open_read_only(path).expect("open read-only");
    let mut verifier = Verifier::new();
    reader
        .scan_events(&mut |row| verifier.push(row))
        .expect("scan");
    verifier.finish()
}

/// A store with `n` appended events, closed so the file can be edited.
pub(crate) async fn store_with_events(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let (w, _r) = open(&path, Durability::Full).expect("open");
    let (writer, thread) = Writer::start(w).expect("start");
    for i in 0..n {
        let draft = EventDraft::new(EventType::CommandStarted, Timestamp::now())
            .task("tsk_1")
            .payload(serde_json::json!({"sql": format!("SELECT {i} -- marker{i:03}")}));
        writer.append(draft).await.expect("append");
    }
    drop(writer);
    thread.join();
    (dir, path)
}

/// Opens the file as an attacker with write access would: no triggers.
fn tamper(path: &Path, sql: &str) {
    let conn = Connection::open(path).expect("open raw");
    conn.execute_batch(
        "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;
         DROP TRIGGER events_append_only;",
    )
    .expect("drop triggers");
    conn.execute_batch(sql).expect("tamper");
}

fn problem(report: &VerifyReport) -> Option<(ProblemKind, u64)> {
    report.problem.as_ref().map(|p| (p.kind, p.seq))
}

#[tokio::test]
async fn concurrent_appends_get_distinct_seqs_and_a_valid_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let (w, _r) = open(&path, Durability::Normal).expect("open");
    let (writer, thread) = Writer::start(w).expect("start");
    let mut handles = Vec::new();
    for caller in 0..64 {
        let writer = writer.clone();
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..20 {
                let draft = EventDraft::new(EventType::CommandStarted, Timestamp::now())
                    .payload(serde_json::json!({"caller": caller, "i": i}));
                seqs.push(writer.append(draft).await.expect("append"));
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("join"));
    }
    all.sort_unstable();
    assert_eq!(all, (1..=1280).collect::<Vec<u64>>());
    let stats = writer.stats();
    drop(writer);
    thread.join();
    // Stored in batches once the writer thread stopped at the latest.
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    assert!((1..=1280).contains(&batches));
    let report = verify(&path);
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.head_seq, 1280);
}

#[tokio::test]
async fn the_store_refuses_update_and_delete_of_events() {
    let (_dir, path) = store_with_events(3).await;
    let conn = Connection::open(&path).expect("open raw");
    let update = conn.execute("UPDATE events SET type = 'x' WHERE seq = 2", []);
    assert!(format!("{update:?}").contains("append-only"), "{update:?}");
    let delete = conn.execute("DELETE FROM events WHERE seq = 2", []);
    assert!(format!("{delete:?}").contains("append-only"), "{delete:?}");
    assert!(verify(&path).ok());
    // REPLACE would overwrite without a delete trigger firing.
    let replace = conn.execute(
        "INSERT OR REPLACE INTO events SELECT * FROM events WHERE seq = 1",
        [],
    );
    assert!(
        format!("{replace:?}").contains("append-only"),
        "{replace:?}"
    );
    assert!(verify(&path).ok());
    // An insert out of place gets in, and verify names it.
    conn.execute(
        "INSERT INTO events (seq, time_us, type, body, hash)
         SELECT 0, time_us, type, body, hash FROM events WHERE seq = 1",
        [],
    )
    .expect("insert at 0");
    drop(conn);
    assert_eq!(problem(&verify(&path)), Some((ProblemKind::Inserted, 0)));
}

#[tokio::test]
async fn verify_names_a_byte_flipped_in_the_file() {
    let (_dir, path) = store_with_events(10).await;
    // Everything is in the main file after the writer closed (WAL checkpointed).
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes
        .windows(9)
        .position(|w| w == b"marker006")
        .expect("payload of record 7 in the file");
    bytes[at + 8] = b'9';
    std::fs::write(&path, bytes).expect("write");
    let report = verify(&path);
    assert_eq!(
        problem(&report),
        Some((ProblemKind::Changed, 7)),
        "{report:?}"
    );
}

/// Edits through SQL, with the triggers dropped as an attacker holding the
/// file would: each is named as the first bad record.
#[tokio::test]
async fn verify_names_each_kind_of_sql_tampering() {
    let cases = [
        (
            "a deleted row",
            "DELETE FROM events WHERE seq = 4",
            ProblemKind::Removed,
            4,
        ),
        (
            "two swapped rows",
            "UPDATE events SET seq = -5 WHERE seq = 5;
             UPDATE events SET seq = 5 WHERE seq = 6;
             UPDATE events SET seq = 6 WHERE seq = -5;",
            ProblemKind::Reordered,
            5,
        ),
        (
            // Shift records 6.. up by one and put a forged record at 6.
            "an inserted row",
            "UPDATE events SET seq = seq + 100 WHERE seq >= 6;
             UPDATE events SET seq = seq - 99 WHERE seq >= 106;
             INSERT INTO events (seq, time_us, type, body, hash)
               SELECT 6, time_us, type, body, hash FROM events WHERE seq = 5;",
            ProblemKind::Inserted,
            6,
        ),
        (
            "an edited index column",
            "UPDATE events SET task = 'tsk_other' WHERE seq = 2",
            ProblemKind::Changed,
            2,
        ),
    ];
    for (what, sql, kind, seq) in cases {
        let (_dir, path) = store_with_events(10).await;
        tamper(&path, sql);
        let report = verify(&path);
        assert_eq!(problem(&report), Some((kind, seq)), "{what}: {report:?}");
    }
}

#[tokio::test]
async fn task_lifecycle_commits_state_and_events_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let (w, reader) = open(&path, Durability::Full).expect("open");
    let (writer, thread) = Writer::start(w).expect("start");
    let pending = task("tsk_a", TaskState::Pending, Duration::from_secs(600));
    let review = Review::for_grant("rev_a".into(), &pending);
    writer
        .create_task(pending, secrets(), Some(review))
        .await
        .expect("create");
    let (alice, copilot) = (alice(), copilot());
    // A session holding a statement waits on this instead of polling.
    let mut decided = Box::pin(writer.review_decided());
    decided.as_mut().enable();
    // The requester cannot approve itself, even through the store.
    let own = writer
        .decide_review("rev_a", copilot.clone(), true, None)
        .await;
    assert!(format!("{own:?}").contains("SelfApproval"), "{own:?}");
    assert!(
        futures_now(decided.as_mut()).is_none(),
        "a refused decision wakes nobody"
    );
    let (review, task) = writer
        .decide_review("rev_a", alice, true, Some("ok".into()))
        .await
        .expect("approve");
    assert!(
        futures_now(decided.as_mut()).is_some(),
        "the decision wakes"
    );
    drop(decided);
    assert_eq!(task.state, TaskState::Active);
    assert_eq!(review.state, taskgate_policy::ReviewState::Approved);
    let ended = writer.end_task("tsk_a", copilot).await.expect("end");
    assert_eq!(ended.state, TaskState::Ended);
    assert_eq!(
        reader.task("tsk_a").expect("read").map(|t| t.state),
        Some(TaskState::Ended)
    );
    assert_eq!(reader.task_secrets("tsk_a").expect("read"), Some(secrets()));
    let types: Vec<String> = reader
        .task_events("tsk_a")
        .expect("events")
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "task.requested",
            "task.approved",
            "task.activated",
            "task.ended"
        ]
    );
    drop(writer);
    thread.join();
    assert!(verify(&path).ok());
}

#[tokio::test]
async fn tasks_past_their_window_expire_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    {
        let (w, _reader) = open(&path, Durability::Full).expect("open");
        let (writer, thread) = Writer::start(w).expect("start");
        let short = task("tsk_short", TaskState::Active, Duration::from_secs(1));
        let long = task("tsk_long", TaskState::Active, Duration::from_secs(3600));
        writer
            .create_task(short, secrets(), None)
            .await
            .expect("create");
        writer
            .create_task(long, secrets(), None)
            .await
            .expect("create");
        drop(writer);
        thread.join();
    }
    // The gateway is "down" while the short window passes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (w, reader) = open(&path, Durability::Full).expect("reopen");
    let (writer, thread) = Writer::start(w).expect("restart");
    let expired = writer.expire_due().await.expect("expire");
    assert_eq!(
        expired.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["tsk_short"]
    );
    assert_eq!(
        reader.task("tsk_short").expect("read").map(|t| t.state),
        Some(TaskState::Expired)
    );
    assert_eq!(
        reader.task("tsk_long").expect("read").map(|t| t.state),
        Some(TaskState::Active)
    );
    let last = reader.task_events("tsk_short").expect("events");
    assert_eq!(
        last.last().map(|e| e.event_type.as_str()),
        Some("task.expired")
    );
    assert!(writer.expire_due().await.expect("again").is_empty());
    drop(writer);
    thread.join();
    assert!(verify(&path).ok());
}

/// Runs a steady load and returns the WAL file's size at its end.
async fn wal_size_after_load(restart_frames: i64) -> u64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let (w, _r) = open_with(&path, Durability::Full, restart_frames).expect("open");
    let (writer, thread) = Writer::start(w).expect("start");
    let padding = "x".repeat(2_000);
    let mut handles = Vec::new();
    for caller in 0..16 {
        let (writer, padding) = (writer.clone(), padding.clone());
        handles.push(tokio::spawn(async move {
            for i in 0..600 {
                let draft = EventDraft::new(EventType::CommandStarted, Timestamp::now())
                    .payload(serde_json::json!({"caller": caller, "i": i, "sql": padding}));
                writer.append(draft).await.expect("append");
            }
        }));
    }
    for h in handles {
        h.await.expect("join");
    }
    let wal = std::fs::metadata(dir.path().join("t.db-wal"))
        .expect("wal")
        .len();
    drop(writer);
    thread.join();
    assert!(verify(&path).ok());
    wal
}

/// Under steady load the WAL must start over now and then, or it grows
/// without bound: passive checkpoints alone never let it.
#[tokio::test]
async fn the_wal_starts_over_under_steady_load() {
    let never = wal_size_after_load(i64::MAX).await;
    let bounded = wal_size_after_load(64).await;
    assert!(
        bounded < never / 2,
        "WAL with restarts {bounded} bytes, without {never} bytes"
    );
}

/// A step that arrives after the deadline (before the scheduler noticed)
/// expires the task instead: no late approval opens a window, no late end
/// or revoke is recorded in place of the expiry.
#[tokio::test]
async fn late_steps_find_the_task_expired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let (w, reader) = open(&path, Durability::Full).expect("open");
    let (writer, thread) = Writer::start(w).expect("start");
    let pending = task("tsk_p", TaskState::Pending, Duration::from_millis(1500));
    let review = Review::for_grant("rev_p".into(), &pending);
    writer
        .create_task(pending, secrets(), Some(review))
        .await
        .expect("create");
    let active = task("tsk_a", TaskState::Active, Duration::from_millis(1500));
    writer
        .create_task(active, secrets(), None)
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(1600)).await;

    let (alice, copilot) = (alice(), copilot());
    let approve = writer.decide_review("rev_p", alice, true, None).await;
    assert!(format!("{approve:?}").contains("expired"), "{approve:?}");
    let end = writer.end_task("tsk_a", copilot).await;
    assert!(format!("{end:?}").contains("expired"), "{end:?}");
    for id in ["tsk_p", "tsk_a"] {
        assert_eq!(
            reader.task(id).expect("read").map(|t| t.state),
            Some(TaskState::Expired)
        );
        let types: Vec<String> = reader
            .task_events(id)
            .expect("events")
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(
            types.last().map(String::as_str),
            Some("task.expired"),
            "{id}: {types:?}"
        );
    }
    assert_eq!(
        reader.review("rev_p").expect("read").map(|r| r.state),
        Some(taskgate_policy::ReviewState::Expired)
    );
    drop(writer);
    thread.join();
    assert!(verify(&path).ok());
}

/// Polls a future once: `Some` if it is ready now.
fn futures_now<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match future.poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}
