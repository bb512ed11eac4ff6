//! Running a tool call's statements: each call gets a session of its own
//! through the gateway's data plane (`pg::in_process`), so the policy,
//! hold, cut-off and record are the wire's. A statement held for review
//! keeps its session waiting in the background while the call answers
//! `pending_review`; `wait_for_review` picks its result up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use taskgate_policy::{Identity, ReviewKind, ReviewState, Task, statement_sha256};
use taskgate_store::ReviewQuery;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::pipe::{Caps, Outcome, Pipe, PipeError, Refusal};
use crate::api::AppState;
use crate::pg::{Via, in_process};

/// How long a finished held statement's result waits to be picked up.
const KEEP_FINISHED: Duration = Duration::from_secs(15 * 60);

/// One statement a call asked to run.
pub struct Statement {
    pub sql: String,
    pub params: Vec<Option<String>>,
    pub caps: Caps,
}

/// What became of a statement: its answer, a refusal, or a hold.
pub enum Ran {
    Done(Result<Outcome, PipeError>),
    Held {
        review: String,
        approvers: Vec<String>,
    },
}

type Running = JoinHandle<Result<Outcome, PipeError>>;

struct HeldStatement {
    owner: Identity,
    since: Instant,
    running: Running,
}

/// Statements held for review, by review id, until their caller collects
/// them. Shared by every MCP request the gateway serves.
#[derive(Clone, Default)]
pub struct HeldStatements(Arc<Mutex<HashMap<String, HeldStatement>>>);

pub enum Collected {
    Done(Result<Outcome, PipeError>),
    StillWaiting,
    NotHere,
}

impl HeldStatements {
    fn park(&self, review: String, owner: Identity, running: Running) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Results nobody came back for go after a while.
        held.retain(|_, h| !(h.running.is_finished() && h.since.elapsed() > KEEP_FINISHED));
        held.insert(
            review,
            HeldStatement {
                owner,
                since: Instant::now(),
                running,
            },
        );
    }

    /// Waits up to `timeout` for the statement held under `review`, if
    /// `caller` started it.
    pub async fn collect(&self, review: &str, caller: &Identity, timeout: Duration) -> Collected {
        let taken = {
            let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match held.get(review) {
                Some(h) if h.owner.same_principal(caller) => held.remove(review),
                _ => None,
            }
        };
        let Some(mut held) = taken else {
            return Collected::NotHere;
        };
        tokio::select! {
            joined = &mut held.running => Collected::Done(joined.unwrap_or_else(|e| {
                Err(PipeError::Ended(format!("the statement's session failed: {e}")))
            })),
            () = tokio::time::sleep(timeout) => {
                let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
                map.insert(review.to_owned(), held);
                Collected::StillWaiting
            }
        }
    }
}

/// The pending review the gateway just opened for `sql` in `task`, if the
/// statement was held (a notice came; the store says which review).
async fn pending_review_for(
    state: &AppState,
    task: &str,
    sql: &str,
) -> Option<(String, Vec<String>)> {
    let query = ReviewQuery {
        state: Some(ReviewState::Pending),
        task: Some(task.to_owned()),
    };
    let wanted = statement_sha256(sql);
    let reviews = state.read(move |r| r.reviews(&query)).await.ok()?;
    reviews
        .into_iter()
        .filter(|r| matches!(&r.kind, ReviewKind::Statement { sha256, .. } if *sha256 == wanted))
        .max_by_key(|r| r.requested_at)
        .map(|r| (r.id, r.approvers))
}

/// Opens a session of `task` for one tool call and runs `statements` in
/// it, one after the other, stopping at the first refusal. A hold answers
/// at once; the session goes on waiting in the background.
pub async fn run(
    state: &AppState,
    held: &HeldStatements,
    task: Task,
    request_id: String,
    peer: SocketAddr,
    statements: Vec<Statement>,
) -> Ran {
    let owner = task.requester.clone();
    let task_id = task.id.clone();
    // The statements of one call share their caps.
    let caps = statements.first().map_or(
        Caps {
            max_rows: 0,
            max_bytes: 0,
        },
        |s| s.caps,
    );
    let via = Via::Mcp { request_id, caps };
    let stream = match in_process::open(&state.pg, task, via, peer) {
        Ok(stream) => stream,
        Err(e) => {
            return Ran::Done(Ok(Outcome::Refused(Refusal {
                sqlstate: "53300".into(),
                message: e.to_string(),
                hint: None,
                fatal: true,
                by_gateway: true,
            })));
        }
    };
    let (notices_tx, mut notices) = mpsc::unbounded_channel();
    let texts: Vec<String> = statements.iter().map(|s| s.sql.clone()).collect();
    let mut running: Running = tokio::spawn(async move {
        let mut pipe = Pipe::open(stream).await?;
        let mut last = None;
        for statement in &statements {
            let outcome = pipe
                .run(
                    &statement.sql,
                    &statement.params,
                    statement.caps,
                    &notices_tx,
                )
                .await?;
            let refused = matches!(outcome, Outcome::Refused(_));
            last = Some(outcome);
            if refused {
                break;
            }
        }
        pipe.close().await;
        last.ok_or_else(|| PipeError::Protocol("no statement to run".into()))
    });
    loop {
        tokio::select! {
            joined = &mut running => {
                return Ran::Done(joined.unwrap_or_else(|e| {
                    Err(PipeError::Ended(format!("the statement's session failed: {e}")))
                }));
            }
            Some(_notice) = notices.recv() => {
                for sql in &texts {
                    if let Some((review, approvers)) = pending_review_for(state, &task_id, sql).await {
                        held.park(review.clone(), owner, running);
                        return Ran::Held { review, approvers };
                    }
                }
            }
        }
    }
}

/// A tool's answer for a statement's outcome.
pub fn answer_of(outcome: Result<Outcome, PipeError>) -> (bool, Value) {
    match outcome {
        Ok(Outcome::Ran(answer)) => (true, json!({"status": "ok", "result": answer})),
        // A session that would not open (the task is not active) refused.
        Err(PipeError::NotOpened(refusal)) => {
            (false, json!({"status": "refused", "error": refusal}))
        }
        // The gateway's refusals apart from what the database raised.
        Ok(Outcome::Refused(refusal)) => {
            let status = if refusal.by_gateway {
                "refused"
            } else {
                "error"
            };
            (false, json!({"status": status, "error": refusal}))
        }
        Err(e) => (
            false,
            json!({"status": "failed", "error": {"message": e.to_string()}}),
        ),
    }
}
