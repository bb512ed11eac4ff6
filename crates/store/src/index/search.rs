//! Answering searches and stories from the index, with each hit told in full:
//! who, which task (name and ref), when, the statement, its outcome, and any
//! approval.

use std::collections::HashMap;

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde::Serialize;
use serde_json::Value;
use taskgate_audit::{Decision, Event, EventType, IdentityKind, Timestamp, Verdict};

use super::{AuditIndex, corrupt, read_meta, schema, type_code};
use crate::Result;

/// Events a search indexes before answering, at most (about a second's
/// work); the indexer thread does the rest, and `indexed_through` says
/// how far the answer reaches.
const SEARCH_CATCH_UP: u64 = 40_000;

/// Most hits one page may ask for.
pub const MAX_PAGE: usize = 1_000;

/// A search: every filter given must hold. Without `types`, a command's
/// `command.completed` is not a hit of its own but its start's outcome.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// A table the statement read or wrote; a bare name matches any schema.
    pub table: Option<String>,
    pub classes: Vec<String>,
    pub subject: Option<String>,
    pub kind: Option<IdentityKind>,
    pub task: Option<String>,
    pub connection: Option<String>,
    pub types: Vec<EventType>,
    /// From this time on (inclusive).
    pub since: Option<Timestamp>,
    /// Before this time (exclusive).
    pub until: Option<Timestamp>,
    /// Only events after this sequence number: the page cursor.
    pub after: u64,
    pub limit: usize,
}

/// One page of hits, in sequence order.
#[derive(Debug, Serialize)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
    /// The last event the index held when it answered.
    pub indexed_through: u64,
}

#[derive(Debug, Serialize)]
pub struct SearchHit {
    /// `<chain>:<seq>`, as sinks export it.
    pub id: String,
    /// The record's hash (hex), with which anyone can check it against the
    /// chain.
    pub hash: String,
    pub event: Event,
    pub task: Option<TaskSummary>,
    /// For a `command.started`, its `command.completed` payload once recorded.
    pub outcome: Option<Value>,
    /// For a statement held for review, the decision on it (which let it
    /// run only when `approved`).
    pub approval: Option<Decision>,
    /// For a statement, what became of it: what every rendering shows.
    pub verdict: Option<Verdict>,
}

/// A task as its own events describe it.
#[derive(Clone, Debug, Serialize)]
pub struct TaskSummary {
    pub id: String,
    pub name: Option<String>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub reason: Option<String>,
    pub requester: Option<String>,
    /// The grant's approval or denial, when it needed one.
    pub decision: Option<Decision>,
}

fn text(payload: &Value, key: &str) -> Option<String> {
    payload.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl AuditIndex {
    /// Catches the index up, then answers one page of `query`.
    pub fn search(&self, query: &EventQuery) -> Result<SearchPage> {
        self.catch_up_at_most(SEARCH_CATCH_UP)?;
        self.read(|conn| {
            let (_, meta) = read_meta(conn)?;
            let limit = query.limit.clamp(1, MAX_PAGE);
            let mut seqs = matching(conn, query, limit + 1, meta.max_lag_us)?;
            let more = seqs.len() > limit;
            seqs.truncate(limit);
            let mut tasks: HashMap<String, Option<TaskSummary>> = HashMap::new();
            let mut hits = Vec::with_capacity(seqs.len());
            for seq in &seqs {
                hits.push(hit(conn, *seq, &mut tasks)?);
            }
            Ok(SearchPage {
                next_after: if more {
                    seqs.last().and_then(|s| u64::try_from(*s).ok())
                } else {
                    None
                },
                hits,
                indexed_through: u64::try_from(meta.through_seq).unwrap_or(0),
            })
        })
    }

    /// Every event of one task, in sequence order (for its story).
    pub fn task_events(&self, task: &str) -> Result<Vec<Event>> {
        self.catch_up_at_most(SEARCH_CATCH_UP)?;
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT s.body FROM ev e JOIN store.events s ON s.seq = e.seq
                 WHERE e.task = ?1 ORDER BY e.seq",
            )?;
            let bodies: Vec<Vec<u8>> = stmt
                .query_map([task], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            parse_all(&bodies)
        })
    }
}

/// Parses bodies on every core: a long task's story is mostly parsing.
fn parse_all(bodies: &[Vec<u8>]) -> Result<Vec<Event>> {
    const MIN_PER_THREAD: usize = 2_000;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(bodies.len() / MIN_PER_THREAD)
        .max(1);
    if threads == 1 {
        return bodies.iter().map(|b| parse(b)).collect();
    }
    let chunk = bodies.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = bodies
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|b| parse(b)).collect::<Result<Vec<_>>>())
            })
            .collect();
        let mut events = Vec::with_capacity(bodies.len());
        for part in parts {
            let parsed = part
                .join()
                .map_err(|_| corrupt("a parsing thread panicked".into()))??;
            events.extend(parsed);
        }
        Ok(events)
    })
}

fn parse(body: &[u8]) -> Result<Event> {
    serde_json::from_slice(body).map_err(|e| {
        corrupt(format!(
            "a record cannot be read ({e}); run `taskgate audit verify`"
        ))
    })
}

/// The sequence numbers of the first `limit` matches.
fn matching(
    conn: &Connection,
    query: &EventQuery,
    limit: usize,
    max_lag_us: i64,
) -> Result<Vec<i64>> {
    let (lo, hi) = seq_bounds(conn, query, max_lag_us)?;
    if lo > hi {
        return Ok(Vec::new());
    }
    let (sql, args) = matching_sql(query, limit, (lo, hi));
    let mut stmt = conn.prepare(&sql)?;
    let seqs = stmt.query_map(params_from_iter(args), |r| r.get(0))?;
    Ok(seqs.collect::<rusqlite::Result<_>>()?)
}

/// The query for [`matching`] within the seq range `(lo, hi)`, and its
/// arguments.
pub(super) fn matching_sql(
    query: &EventQuery,
    limit: usize,
    (lo, hi): (i64, i64),
) -> (String, Vec<Sql>) {
    let mut args: Vec<Sql> = Vec::new();
    let mut arg = |value: Sql| {
        args.push(value);
        format!("?{}", args.len())
    };
    let mut sql = String::from("SELECT DISTINCT e.seq FROM ");
    let mut conditions = Vec::new();
    // With a table, the table index drives the search (its class is kept
    // beside each table use); without one, the events themselves. A table
    // is looked up under every name a statement touching it is indexed by.
    let (seq_column, class_column) = if let Some(table) = &query.table {
        sql.push_str("ev_table t JOIN ev e ON e.seq = t.seq");
        let names: Vec<String> = taskgate_audit::table_query_names(table)
            .into_iter()
            .map(|n| arg(Sql::Text(n)))
            .collect();
        conditions.push(format!("t.name IN ({})", names.join(", ")));
        ("t.seq", "t.class")
    } else {
        sql.push_str("ev e");
        ("e.seq", "e.class")
    };
    if !query.classes.is_empty() {
        let list: Vec<String> = query
            .classes
            .iter()
            .map(|c| arg(Sql::Text(c.clone())))
            .collect();
        conditions.push(format!("{class_column} IN ({})", list.join(", ")));
    }
    conditions.push(format!("{seq_column} >= {}", arg(Sql::Integer(lo))));
    conditions.push(format!("{seq_column} <= {}", arg(Sql::Integer(hi))));
    if let Some(since) = query.since {
        conditions.push(format!(
            "e.time_us >= {}",
            arg(Sql::Integer(since.as_micros()))
        ));
    }
    if let Some(until) = query.until {
        conditions.push(format!(
            "e.time_us < {}",
            arg(Sql::Integer(until.as_micros()))
        ));
    }
    for (column, value) in [
        ("subject", &query.subject),
        ("task", &query.task),
        ("connection", &query.connection),
    ] {
        if let Some(value) = value {
            conditions.push(format!("e.{column} = {}", arg(Sql::Text(value.clone()))));
        }
    }
    if let Some(kind) = query.kind {
        // `+` keeps SQLite from driving a search by a two-valued column.
        conditions.push(format!(
            "+e.kind = {}",
            arg(Sql::Text(kind.as_str().into()))
        ));
    }
    if !query.types.contains(&EventType::CommandCompleted) {
        // Written as the partial indexes say it (a literal), so the
        // planner may use them.
        conditions.push(format!("e.type != {}", schema::completed()));
    }
    if !query.types.is_empty() {
        let list: Vec<String> = query
            .types
            .iter()
            .map(|t| arg(Sql::Integer(type_code(*t))))
            .collect();
        conditions.push(format!("e.type IN ({})", list.join(", ")));
    }
    sql.push_str(" WHERE ");
    sql.push_str(&conditions.join(" AND "));
    sql.push_str(&format!(
        " ORDER BY {seq_column} LIMIT {}",
        arg(Sql::Integer(i64::try_from(limit).unwrap_or(i64::MAX)))
    ));
    (sql, args)
}

/// The range of sequence numbers that can hold a match: after the cursor,
/// and within the time window through the never-decreasing `tmax_us`.
fn seq_bounds(conn: &Connection, query: &EventQuery, max_lag_us: i64) -> Result<(i64, i64)> {
    let mut lo = to_i64(query.after).saturating_add(1);
    let mut hi = i64::MAX;
    if let Some(since) = query.since {
        let since = since.as_micros();
        let first = first_seq_where(conn, |tmax| tmax >= since)?;
        lo = lo.max(first.unwrap_or(i64::MAX));
    }
    if let Some(until) = query.until {
        // An event before `until` has a running maximum of at most
        // `until + max_lag`, so nothing from the first seq past that matches.
        let bound = until.as_micros().saturating_add(max_lag_us);
        hi = match first_seq_where(conn, |tmax| tmax > bound)? {
            Some(past) => past - 1,
            None => i64::MAX,
        };
    }
    Ok((lo, hi))
}

/// The first indexed seq whose `tmax_us` satisfies `reached`, which must
/// stay true once true (as `tmax_us` never decreases): a bisection over
/// `seq`, each step one rowid lookup.
fn first_seq_where(conn: &Connection, reached: impl Fn(i64) -> bool) -> Result<Option<i64>> {
    let mut at =
        conn.prepare_cached("SELECT seq, tmax_us FROM ev WHERE seq >= ?1 ORDER BY seq LIMIT 1")?;
    let mut row_at = |seq: i64| -> Result<Option<(i64, i64)>> {
        Ok(at
            .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    };
    // Apart: SQLite reads min() or max() of a rowid straight off the
    // B-tree only when it is the query's one aggregate.
    let end = |sql: &str| -> Result<Option<i64>> {
        Ok(conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?)
    };
    let (lo, hi) = (
        end("SELECT min(seq) FROM ev")?,
        end("SELECT max(seq) FROM ev")?,
    );
    let (Some(mut lo), Some(mut hi)) = (lo, hi) else {
        return Ok(None);
    };
    match row_at(hi)? {
        Some((_, tmax)) if reached(tmax) => {}
        _ => return Ok(None),
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match row_at(mid)? {
            Some((_, tmax)) if reached(tmax) => hi = mid,
            _ => lo = mid + 1,
        }
    }
    Ok(row_at(lo)?.map(|(seq, _)| seq))
}

fn body_of(conn: &Connection, seq: i64) -> Result<Event> {
    let body: Vec<u8> = conn
        .prepare_cached("SELECT body FROM store.events WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))?;
    parse(&body)
}

/// The first event of `task` of any of `types`.
fn first_of(conn: &Connection, task: &str, types: &[EventType]) -> Result<Option<Event>> {
    let codes: Vec<String> = types.iter().map(|t| type_code(*t).to_string()).collect();
    let seq: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT seq FROM task_event WHERE task = ?1 AND type IN ({}) ORDER BY seq LIMIT 1",
            codes.join(", ")
        ))?
        .query_row([task], |r| r.get(0))
        .optional()?;
    seq.map(|s| body_of(conn, s)).transpose()
}

fn decision_of(event: &Event, approved: bool) -> Decision {
    Decision {
        approved,
        by: event.identity.as_ref().map(|i| i.subject.clone()),
        at: event.time,
        comment: text(&event.payload, "comment"),
        reason: text(&event.payload, "reason"),
    }
}

fn task_summary(conn: &Connection, task: &str) -> Result<Option<TaskSummary>> {
    let Some(requested) = first_of(conn, task, &[EventType::TaskRequested])? else {
        return Ok(None);
    };
    let decision = first_of(
        conn,
        task,
        &[EventType::TaskApproved, EventType::TaskDenied],
    )?
    .map(|e| {
        let approved = e.event_type == EventType::TaskApproved;
        decision_of(&e, approved)
    });
    let p = &requested.payload;
    Ok(Some(TaskSummary {
        id: task.to_owned(),
        name: text(p, "name"),
        reference: text(p, "ref"),
        reason: text(p, "reason"),
        requester: requested.identity.as_ref().map(|i| i.subject.clone()),
        decision,
    }))
}

fn hit(
    conn: &Connection,
    seq: i64,
    tasks: &mut HashMap<String, Option<TaskSummary>>,
) -> Result<SearchHit> {
    let (body, hash): (Vec<u8>, Vec<u8>) = conn
        .prepare_cached("SELECT body, hash FROM store.events WHERE seq = ?1")?
        .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let event = parse(&body)?;
    let task = match &event.task {
        Some(id) => match tasks.get(id) {
            Some(summary) => summary.clone(),
            None => {
                let summary = task_summary(conn, id)?;
                tasks.insert(id.clone(), summary.clone());
                summary
            }
        },
        None => None,
    };
    let outcome = match (&event.event_type, &event.session) {
        (EventType::CommandStarted, Some(session)) => {
            let command = event.payload.get("command").and_then(Value::as_i64);
            let done: Option<i64> = conn
                .prepare_cached(&format!(
                    "SELECT seq FROM ev WHERE session = ?1 AND command = ?2 AND type = {}",
                    schema::completed()
                ))?
                .query_row(rusqlite::params![session, command], |r| r.get(0))
                .optional()?;
            done.map(|s| body_of(conn, s))
                .transpose()?
                .map(|e| e.payload)
        }
        _ => None,
    };
    let approval = match (text(&event.payload, "review"), &event.task) {
        (Some(review), Some(task)) => review_decision(conn, task, &review)?,
        _ => None,
    };
    let verdict = Verdict::of(
        event.event_type,
        &event.payload,
        outcome.as_ref(),
        approval.as_ref(),
    );
    Ok(SearchHit {
        id: format!("{}:{}", event.chain, event.seq),
        hash: hex::encode(hash),
        event,
        task,
        outcome,
        approval,
        verdict,
    })
}

/// The decision on a statement review of `task`.
fn review_decision(conn: &Connection, task: &str, review: &str) -> Result<Option<Decision>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq FROM task_event WHERE task = ?1 AND type IN (?2, ?3) ORDER BY seq",
    )?;
    let seqs: Vec<i64> = stmt
        .query_map(
            rusqlite::params![
                task,
                type_code(EventType::ReviewApproved),
                type_code(EventType::ReviewDenied)
            ],
            |r| r.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    for seq in seqs {
        let event = body_of(conn, seq)?;
        if text(&event.payload, "review").as_deref() == Some(review) {
            let approved = event.event_type == EventType::ReviewApproved;
            return Ok(Some(decision_of(&event, approved)));
        }
    }
    Ok(None)
}
