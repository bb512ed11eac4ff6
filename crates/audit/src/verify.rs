//! Offline verification of a stored chain: recompute every link, and check
//! that the columns a store indexes agree with the hashed body.

use std::fmt;

use serde::Serialize;

use crate::chain::link;
use crate::{ChainHead, Event, GENESIS_HASH, Hash};

/// One stored event as a store hands it over: its position, the columns it
/// indexes for search, and the hashed body with its hash.
#[derive(Clone, Debug)]
pub struct EventRow {
    pub seq: i64,
    pub time_micros: i64,
    pub event_type: String,
    pub task: Option<String>,
    pub session: Option<String>,
    pub connection: Option<String>,
    pub subject: Option<String>,
    pub body: Vec<u8>,
    pub hash: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemKind {
    /// The record's content no longer matches its hash or its columns.
    Changed,
    /// One or more records before this position are gone.
    Removed,
    /// A record was added that the chain never had.
    Inserted,
    /// Records were moved out of their order.
    Reordered,
}

/// The first bad record found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The sequence number of the first bad record.
    pub seq: u64,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ProblemKind::Changed => "changed",
            ProblemKind::Removed => "removed",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Reordered => "reordered",
        };
        write!(f, "record {} {}: {}", self.seq, kind, self.detail)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records checked, up to and including the first bad one.
    pub events: u64,
    pub chain: Option<String>,
    pub head_seq: u64,
    pub head_hash: String,
    pub problem: Option<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// Walks a chain in sequence order; feed it every row, then [`Verifier::finish`].
#[derive(Debug)]
pub struct Verifier {
    events: u64,
    chain: Option<String>,
    head: ChainHead,
    problem: Option<Problem>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    pub fn new() -> Self {
        Self {
            events: 0,
            chain: None,
            head: ChainHead::EMPTY,
            problem: None,
        }
    }

    /// Checks the next row. Returns false once a problem has been found:
    /// the caller may stop reading.
    pub fn push(&mut self, row: &EventRow) -> bool {
        if self.problem.is_some() {
            return false;
        }
        self.events += 1;
        match self.check(row) {
            Ok(head) => {
                self.head = head;
                true
            }
            Err(problem) => {
                self.problem = Some(problem);
                false
            }
        }
    }

    pub fn finish(self) -> VerifyReport {
        VerifyReport {
            events: self.events,
            chain: self.chain,
            head_seq: self.head.seq,
            head_hash: hex::encode(self.head.hash),
            problem: self.problem,
        }
    }

    fn check(&mut self, row: &EventRow) -> Result<ChainHead, Problem> {
        let expected = self.head.seq + 1;
        let position = u64::try_from(row.seq).unwrap_or(0);
        let problem = |kind, seq, detail: String| Problem { kind, seq, detail };
        if position != expected {
            return Err(if position > expected {
                let detail = if position == expected + 1 {
                    format!("the next stored record is {position}")
                } else {
                    format!(
                        "records {expected} to {} are missing",
                        position.saturating_sub(1)
                    )
                };
                problem(ProblemKind::Removed, expected, detail)
            } else {
                let detail = format!("found at position {position} after {}", self.head.seq);
                problem(ProblemKind::Inserted, position, detail)
            });
        }
        let event: Event = serde_json::from_slice(&row.body).map_err(|e| {
            problem(
                ProblemKind::Changed,
                position,
                format!("body is not a valid event: {e}"),
            )
        })?;
        if event.seq != position {
            return Err(if event.seq < position {
                let detail = format!(
                    "holds the body of record {}: a record was inserted before it",
                    event.seq
                );
                problem(ProblemKind::Inserted, position, detail)
            } else {
                let detail = format!("holds the body of record {}", event.seq);
                problem(ProblemKind::Reordered, position, detail)
            });
        }
        match &self.chain {
            None => self.chain = Some(event.chain.clone()),
            Some(chain) if *chain != event.chain => {
                let detail = format!("names chain {:?}, not {chain:?}", event.chain);
                return Err(problem(ProblemKind::Changed, position, detail));
            }
            Some(_) => {}
        }
        let prev = if self.head.seq == 0 {
            GENESIS_HASH
        } else {
            self.head.hash
        };
        let computed: Hash = link(&prev, &row.body);
        if row.hash.as_slice() != computed.as_slice() {
            let detail = "its hash does not match its body and the previous record".to_owned();
            return Err(problem(ProblemKind::Changed, position, detail));
        }
        if let Some(column) = mismatched_column(row, &event) {
            let detail = format!("its indexed column `{column}` disagrees with the hashed body");
            return Err(problem(ProblemKind::Changed, position, detail));
        }
        Ok(ChainHead {
            seq: position,
            hash: computed,
        })
    }
}

fn mismatched_column(row: &EventRow, event: &Event) -> Option<&'static str> {
    if row.time_micros != event.time.as_micros() {
        return Some("time");
    }
    if row.event_type != event.event_type.as_str() {
        return Some("type");
    }
    if row.task != event.task {
        return Some("task");
    }
    if row.session != event.session {
        return Some("session");
    }
    if row.connection != event.connection {
        return Some("connection");
    }
    if row.subject.as_deref() != event.identity.as_ref().map(|i| i.subject.as_str()) {
        return Some("subject");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, EventDraft, EventType, SealedEvent, Timestamp};

    fn row(s: &SealedEvent) -> EventRow {
        EventRow {
            seq: i64::try_from(s.seq).unwrap_or(-1),
            time_micros: s.columns.time.as_micros(),
            event_type: s.columns.event_type.as_str().to_owned(),
            task: s.columns.task.clone(),
            session: None,
            connection: None,
            subject: None,
            body: s.body.clone(),
            hash: s.hash.to_vec(),
        }
    }

    fn rows(n: u64) -> Vec<EventRow> {
        let mut chain = Chain::new("c", ChainHead::EMPTY);
        (0..n)
            .filter_map(|i| {
                let draft = EventDraft::new(EventType::TaskRequested, Timestamp::from_micros(0))
                    .task(format!("t{i}"));
                chain.seal(draft).ok().map(|s| row(&s))
            })
            .collect()
    }

    fn verify(rows: &[EventRow]) -> VerifyReport {
        let mut v = Verifier::new();
        for r in rows {
            if !v.push(r) {
                break;
            }
        }
        v.finish()
    }

    #[test]
    fn intact_chain_verifies() {
        let report = verify(&rows(5));
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.head_seq, 5);
    }

    #[test]
    fn names_the_first_bad_record() {
        let mut changed = rows(5);
        changed[2].body[10] ^= 1;
        let p = verify(&changed).problem;
        assert_eq!(p.map(|p| (p.kind, p.seq)), Some((ProblemKind::Changed, 3)));

        let mut removed = rows(5);
        removed.remove(1);
        let p = verify(&removed).problem;
        assert_eq!(p.map(|p| (p.kind, p.seq)), Some((ProblemKind::Removed, 2)));

        let mut swapped = rows(5);
        let (a, b) = (swapped[1].clone(), swapped[2].clone());
        swapped[1] = EventRow { seq: 2, ..b };
        swapped[2] = EventRow { seq: 3, ..a };
        let p = verify(&swapped).problem;
        assert_eq!(
            p.map(|p| (p.kind, p.seq)),
            Some((ProblemKind::Reordered, 2))
        );

        let mut column = rows(5);
        column[3].task = Some("other".into());
        let p = verify(&column).problem;
        assert_eq!(p.map(|p| (p.kind, p.seq)), Some((ProblemKind::Changed, 4)));
    }
}
