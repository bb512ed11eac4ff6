//! Offline verification of a stored chain: recompute every link, check that
//! the columns a store indexes agree with the hashed body, and check the
//! signed checkpoints in the chain and those kept outside it.

mod checkpoints;
mod lean;
mod scan;
#[cfg(test)]
mod throughput;

use std::fmt;

use serde::Serialize;

use self::checkpoints::Checkpoints;
use self::lean::Fields;
use crate::chain::link;
use crate::{ChainHead, Checkpoint, EventType, GENESIS_HASH, Hash, PublicKey};

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

/// [`EventRow`] borrowed from wherever the store keeps it, so a scan of
/// millions of rows copies nothing.
#[derive(Clone, Copy, Debug)]
pub struct EventRowRef<'a> {
    pub seq: i64,
    pub time_micros: i64,
    pub event_type: &'a str,
    pub task: Option<&'a str>,
    pub session: Option<&'a str>,
    pub connection: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub body: &'a [u8],
    pub hash: &'a [u8],
}

impl EventRow {
    pub fn as_ref(&self) -> EventRowRef<'_> {
        EventRowRef {
            seq: self.seq,
            time_micros: self.time_micros,
            event_type: &self.event_type,
            task: self.task.as_deref(),
            session: self.session.as_deref(),
            connection: self.connection.as_deref(),
            subject: self.subject.as_deref(),
            body: &self.body,
            hash: &self.hash,
        }
    }
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
    /// The newest records are gone: an external checkpoint covers more.
    Truncated,
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
            ProblemKind::Truncated => "truncated",
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
    /// Checkpoint events checked in the chain.
    pub checkpoints: u64,
    /// The last record a checkpoint in the chain covers: records after it
    /// rest on the hash chain alone.
    pub checkpoint_seq: Option<u64>,
    /// Whether checkpoint signatures were checked against a trusted key.
    pub signatures_checked: bool,
    /// External checkpoints checked against the chain.
    pub external_checkpoints: u64,
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
    /// Where this verifier started: the empty chain, or (for a later part
    /// of a parallel verification) the stored head of the part before.
    start: ChainHead,
    head: ChainHead,
    checkpoints: Checkpoints,
    problem: Option<Problem>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// Checks the chain's checkpoints without checking their signatures.
    pub fn new() -> Self {
        Self::with_key(None)
    }

    /// Checks checkpoint signatures against `key`, the trusted public key.
    pub fn with_key(key: Option<PublicKey>) -> Self {
        Self::resume_after(key, ChainHead::EMPTY)
    }

    /// A verifier of the records after `start`, the *stored* sequence and
    /// hash of the record before them: one part of a verification split
    /// across threads. Each record's link is checked against the stored
    /// hash before it, which holds for every record exactly when the
    /// recomputed chain does; [`Verifier::join`] then checks that the part
    /// before really ends at `start`, and links the first checkpoint here to
    /// the last one there.
    pub fn resume_after(key: Option<PublicKey>, start: ChainHead) -> Self {
        Self {
            events: 0,
            chain: None,
            start,
            head: start,
            checkpoints: Checkpoints::new(key, start.seq > 0),
            problem: None,
        }
    }

    /// Joins this verifier (of the records before) with `next` (resumed
    /// where this part was to end). The earliest problem of either, or of
    /// the seam between them, is the one reported.
    pub fn join(self, next: Verifier) -> Verifier {
        if self.problem.is_some() {
            return self;
        }
        let seam = next.start.seq + 1;
        let seam_problem = if self.head.seq < next.start.seq {
            Some(Problem {
                kind: ProblemKind::Removed,
                seq: self.head.seq + 1,
                detail: format!(
                    "records {} to {} are missing",
                    self.head.seq + 1,
                    next.start.seq
                ),
            })
        } else if self.head != next.start {
            Some(Problem {
                kind: ProblemKind::Changed,
                seq: seam,
                detail: "its hash does not match its body and the previous record".into(),
            })
        } else {
            match (&self.chain, &next.chain) {
                (Some(a), Some(b)) if a != b => Some(Problem {
                    kind: ProblemKind::Changed,
                    seq: seam,
                    detail: format!("names chain {b:?}, not {a:?}"),
                }),
                _ => None,
            }
        };
        if let Some(problem) = seam_problem {
            return Verifier {
                events: self.events + 1,
                problem: Some(problem),
                ..self
            };
        }
        let Verifier {
            events,
            chain,
            start,
            head,
            checkpoints,
            ..
        } = self;
        let joined = checkpoints.join(next.checkpoints);
        // The first checkpoint of `next` not following the last one here:
        // a single pass would have stopped there, before `next`'s own
        // problem if that comes later.
        if let Some((problem, before)) = joined.problem
            && next.problem.as_ref().is_none_or(|p| problem.seq <= p.seq)
        {
            return Verifier {
                events: problem.seq - start.seq,
                chain,
                start,
                head: before,
                checkpoints: joined.checkpoints,
                problem: Some(problem),
            };
        }
        Verifier {
            events: events + next.events,
            chain: chain.or(next.chain),
            start,
            head: if next.events > 0 { next.head } else { head },
            checkpoints: joined.checkpoints,
            problem: next.problem,
        }
    }

    /// Checks the next row. Returns false once a problem has been found:
    /// the caller may stop reading.
    pub fn push(&mut self, row: &EventRow) -> bool {
        self.push_ref(&row.as_ref())
    }

    /// [`Verifier::push`] for a borrowed row.
    pub fn push_ref(&mut self, row: &EventRowRef<'_>) -> bool {
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
        self.finish_with_external(&[])
    }

    /// Finishes, then checks checkpoints kept outside the log: each must be
    /// genuine and in the log, and none may cover records the log lacks.
    /// Skipped when the chain itself has a problem.
    pub fn finish_with_external(self, external: &[Checkpoint]) -> VerifyReport {
        let (external_checkpoints, problem) = match self.problem {
            Some(problem) => (0, Some(problem)),
            None => self
                .checkpoints
                .check_external(self.chain.as_deref(), self.head, external),
        };
        VerifyReport {
            events: self.events,
            chain: self.chain,
            head_seq: self.head.seq,
            head_hash: hex::encode(self.head.hash),
            checkpoints: self.checkpoints.count(),
            checkpoint_seq: self.checkpoints.last_covered(),
            signatures_checked: self.checkpoints.signatures_checked(),
            external_checkpoints,
            problem,
        }
    }

    fn check(&mut self, row: &EventRowRef<'_>) -> Result<ChainHead, Problem> {
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
        let event = lean::parse(row.body).map_err(|e| {
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
            None => self.chain = Some(event.chain.as_str().to_owned()),
            Some(chain) if chain != event.chain.as_str() => {
                let detail = format!("names chain {:?}, not {chain:?}", event.chain.as_str());
                return Err(problem(ProblemKind::Changed, position, detail));
            }
            Some(_) => {}
        }
        let prev = if self.head.seq == 0 {
            GENESIS_HASH
        } else {
            self.head.hash
        };
        let computed: Hash = link(&prev, row.body);
        if row.hash != computed.as_slice() {
            let detail = "its hash does not match its body and the previous record".to_owned();
            return Err(problem(ProblemKind::Changed, position, detail));
        }
        if let Some(column) = mismatched_column(row, &event) {
            let detail = format!("its indexed column `{column}` disagrees with the hashed body");
            return Err(problem(ProblemKind::Changed, position, detail));
        }
        if event.event_type == EventType::Checkpoint {
            self.checkpoints.check(position, self.head, row.body)?;
        }
        Ok(ChainHead {
            seq: position,
            hash: computed,
        })
    }
}

fn mismatched_column(row: &EventRowRef<'_>, event: &Fields<'_>) -> Option<&'static str> {
    let same = |column: &Option<&str>, body: &Option<lean::Str<'_>>| {
        *column == body.as_ref().map(lean::Str::as_str)
    };
    if row.time_micros != event.time {
        return Some("time");
    }
    if row.event_type != event.event_type.as_str() {
        return Some("type");
    }
    if !same(&row.task, &event.task) {
        return Some("task");
    }
    if !same(&row.session, &event.session) {
        return Some("session");
    }
    if !same(&row.connection, &event.connection) {
        return Some("connection");
    }
    if !same(&row.subject, &event.subject) {
        return Some("subject");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CanonicalError, Chain, CheckpointKey, EventDraft, SealedEvent, Timestamp};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// The row a store would hand over for a sealed event.
    pub(super) fn row(s: &SealedEvent) -> EventRow {
        EventRow {
            seq: i64::try_from(s.seq).unwrap_or(-1),
            time_micros: s.columns.time.as_micros(),
            event_type: s.columns.event_type.as_str().to_owned(),
            task: s.columns.task.clone(),
            session: s.columns.session.clone(),
            connection: s.columns.connection.clone(),
            subject: s.columns.subject.clone(),
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
        verify_with(Verifier::new(), rows, &[])
    }

    fn verify_with(mut v: Verifier, rows: &[EventRow], external: &[Checkpoint]) -> VerifyReport {
        for r in rows {
            if !v.push(r) {
                break;
            }
        }
        v.finish_with_external(external)
    }

    /// A chain's drafts, with a signed checkpoint after every `every` events.
    struct Trail {
        drafts: Vec<EventDraft>,
        checkpoints: Vec<Checkpoint>,
    }

    const T: Timestamp = Timestamp::from_micros(1_764_066_689_000_000);

    fn trail(
        key: &CheckpointKey,
        events: u64,
        every: u64,
    ) -> Result<Trail, Box<dyn std::error::Error>> {
        let mut chain = Chain::new("c", ChainHead::EMPTY);
        let mut trail = Trail {
            drafts: Vec::new(),
            checkpoints: Vec::new(),
        };
        for i in 1..=events {
            let draft = EventDraft::new(EventType::TaskRequested, T).task(format!("t{i}"));
            chain.seal(draft.clone())?;
            trail.drafts.push(draft);
            if i % every == 0 {
                let prev = trail.checkpoints.last().map(|c| c.signature.clone());
                let checkpoint = Checkpoint::sign(key, "c", chain.head(), T, prev)?;
                chain.seal(checkpoint.draft())?;
                trail.drafts.push(checkpoint.draft());
                trail.checkpoints.push(checkpoint);
            }
        }
        Ok(trail)
    }

    /// Seals drafts from the start, as someone rewriting the log would.
    fn seal(drafts: &[EventDraft]) -> Result<Vec<EventRow>, CanonicalError> {
        let mut chain = Chain::new("c", ChainHead::EMPTY);
        drafts
            .iter()
            .map(|d| chain.seal(d.clone()).map(|s| row(&s)))
            .collect()
    }

    fn kind_and_seq(report: &VerifyReport) -> Option<(ProblemKind, u64)> {
        report.problem.as_ref().map(|p| (p.kind, p.seq))
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

    // Ten events, a checkpoint after every third: the checkpoints are
    // records 4, 8 and 12 and cover records 3, 7 and 11; record 13 is last.

    #[test]
    fn checkpoints_in_the_chain_verify() -> TestResult {
        let key = CheckpointKey::generate()?;
        let trail = trail(&key, 10, 3)?;
        let rows = seal(&trail.drafts)?;
        let report = verify_with(
            Verifier::with_key(Some(key.public_key())),
            &rows,
            &trail.checkpoints,
        );
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.head_seq, 13);
        assert_eq!(report.checkpoints, 3);
        assert_eq!(report.checkpoint_seq, Some(11));
        assert!(report.signatures_checked);
        assert_eq!(report.external_checkpoints, 3);

        let unsigned = verify(&rows);
        assert!(
            unsigned.ok() && !unsigned.signatures_checked,
            "{unsigned:?}"
        );
        assert_eq!(unsigned.checkpoints, 3);
        Ok(())
    }

    #[test]
    fn wrong_trusted_key_is_detected() -> TestResult {
        let trail = trail(&CheckpointKey::generate()?, 10, 3)?;
        let rows = seal(&trail.drafts)?;
        let other = CheckpointKey::generate()?.public_key();
        let report = verify_with(Verifier::with_key(Some(other)), &rows, &[]);
        assert_eq!(kind_and_seq(&report), Some((ProblemKind::Changed, 4)));
        let detail = report.problem.map(|p| p.detail).unwrap_or_default();
        assert!(detail.contains("not by the trusted key"), "{detail}");
        Ok(())
    }

    #[test]
    fn forged_checkpoint_in_the_chain_is_detected() -> TestResult {
        let key = CheckpointKey::generate()?;
        let mut trail = trail(&key, 10, 3)?;
        let mut forged = trail.checkpoints[1].clone();
        forged.signature.replace_range(0..4, "AAAA");
        trail.drafts[7] = forged.draft();
        let rows = seal(&trail.drafts)?;
        let report = verify_with(Verifier::with_key(Some(key.public_key())), &rows, &[]);
        assert_eq!(kind_and_seq(&report), Some((ProblemKind::Changed, 8)));
        Ok(())
    }

    #[test]
    fn checkpoint_with_a_wrong_prev_signature_is_refused() -> TestResult {
        let key = CheckpointKey::generate()?;
        let mut trail = trail(&key, 10, 3)?;
        let rows = seal(&trail.drafts)?;
        // Genuinely signed, but over a previous checkpoint the log never had.
        let head = ChainHead {
            seq: 7,
            hash: rows[6].hash.as_slice().try_into()?,
        };
        let stray = Checkpoint::sign(&key, "c", head, T, Some("c3RyYXk=".into()))?;
        trail.drafts[7] = stray.draft();
        let rows = seal(&trail.drafts)?;
        let report = verify_with(Verifier::with_key(Some(key.public_key())), &rows, &[]);
        assert_eq!(kind_and_seq(&report), Some((ProblemKind::Removed, 8)));

        // Claiming to be the first while an earlier one exists.
        let first = Checkpoint::sign(&key, "c", head, T, None)?;
        trail.drafts[7] = first.draft();
        let rows = seal(&trail.drafts)?;
        let report = verify_with(Verifier::with_key(Some(key.public_key())), &rows, &[]);
        assert_eq!(kind_and_seq(&report), Some((ProblemKind::Changed, 8)));
        Ok(())
    }

    #[test]
    fn removed_checkpoint_is_detected_after_rechaining() -> TestResult {
        let key = CheckpointKey::generate()?;
        let mut trail = trail(&key, 10, 3)?;
        trail.drafts.remove(3);
        let rows = seal(&trail.drafts)?;
        // The hashes are consistent again: the chain alone cannot tell...
        assert!(verify_with(Verifier::new(), &rows[..6], &[]).ok());
        // ...but the next checkpoint names the removed one.
        for key in [None, Some(key.public_key())] {
            let report = verify_with(Verifier::with_key(key), &rows, &[]);
            assert_eq!(
                kind_and_seq(&report),
                Some((ProblemKind::Removed, 7)),
                "{report:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn truncation_after_the_last_external_checkpoint_is_detected() -> TestResult {
        let key = CheckpointKey::generate()?;
        let trail = trail(&key, 10, 3)?;
        let rows = seal(&trail.drafts)?;
        let verifier = || Verifier::with_key(Some(key.public_key()));

        // Cut after record 10: the chain alone still verifies.
        assert!(verify(&rows[..10]).ok());
        let report = verify_with(verifier(), &rows[..10], &trail.checkpoints);
        assert_eq!(kind_and_seq(&report), Some((ProblemKind::Truncated, 11)));
        let text = report.problem.map(|p| p.to_string()).unwrap_or_default();
        assert!(
            text.contains("the log ends at record 10")
                && text.contains("covers records through 11")
                && text.contains("cut off"),
            "{text}"
        );

        // Cut just before the last checkpoint's own record.
        let report = verify_with(verifier(), &rows[..11], &trail.checkpoints);
        assert_eq!(kind_and_seq(&report), Some((ProblemKind::Truncated, 12)));

        // Without a trusted key too, and for an emptied log.
        let report = verify_with(Verifier::new(), &rows[..10], &trail.checkpoints);
        assert_eq!(kind_and_seq(&report), Some((ProblemKind::Truncated, 11)));
        let report = verify_with(Verifier::new(), &[], &trail.checkpoints);
        assert_eq!(kind_and_seq(&report), Some((ProblemKind::Truncated, 1)));
        Ok(())
    }

    #[test]
    fn external_checkpoint_not_in_the_log_is_detected() -> TestResult {
        let key = CheckpointKey::generate()?;
        let trail = trail(&key, 10, 3)?;
        let rows = seal(&trail.drafts)?;
        let verifier = || Verifier::with_key(Some(key.public_key()));
        let head = ChainHead {
            seq: 5,
            hash: rows[4].hash.as_slice().try_into()?,
        };
        let prev = Some(trail.checkpoints[0].signature.clone());
        let missing = Checkpoint::sign(&key, "c", head, T, prev)?;
        let report = verify_with(verifier(), &rows, &[missing]);
        assert_eq!(kind_and_seq(&report), Some((ProblemKind::Removed, 6)));
        let detail = report.problem.map(|p| p.detail).unwrap_or_default();
        assert!(detail.contains("external checkpoint at seq 5"), "{detail}");

        let mut other = trail.checkpoints[1].clone();
        other.time = T.plus(std::time::Duration::from_secs(1));
        let report = verify_with(Verifier::new(), &rows, &[other.clone()]);
        assert_eq!(kind_and_seq(&report), Some((ProblemKind::Changed, 8)));
        let report = verify_with(verifier(), &rows, &[other]);
        assert_eq!(kind_and_seq(&report), Some((ProblemKind::Changed, 8)));

        let foreign = Checkpoint::sign(&key, "elsewhere", head, T, None)?;
        let report = verify_with(verifier(), &rows, &[foreign]);
        assert_eq!(kind_and_seq(&report), Some((ProblemKind::Truncated, 1)));
        Ok(())
    }

    /// Verifies `rows` in two parts split after each record in turn (the
    /// second resumed from the stored head before it), and checks that the
    /// joined answer is the single pass's.
    fn split_everywhere(key: Option<PublicKey>, rows: &[EventRow], external: &[Checkpoint]) {
        let whole = verify_with(Verifier::with_key(key), rows, external);
        for split in 0..=rows.len() {
            let start = match split.checked_sub(1).map(|i| &rows[i]) {
                None => ChainHead::EMPTY,
                Some(r) => ChainHead {
                    seq: u64::try_from(r.seq).unwrap_or(0),
                    hash: r.hash.clone().try_into().unwrap_or([0; 32]),
                },
            };
            let mut first = Verifier::with_key(key);
            rows[..split].iter().all(|r| first.push(r));
            let mut second = Verifier::resume_after(key, start);
            rows[split..].iter().all(|r| second.push(r));
            let joined = first.join(second).finish_with_external(external);
            assert_eq!(
                (kind_and_seq(&joined), joined.head_seq, joined.checkpoints),
                (kind_and_seq(&whole), whole.head_seq, whole.checkpoints),
                "split after {split}: {joined:?} vs {whole:?}"
            );
        }
    }

    #[test]
    fn a_chain_verified_in_parts_gives_the_single_pass_answer() -> TestResult {
        let key = CheckpointKey::generate()?;
        let trusted = Some(key.public_key());
        let trail = trail(&key, 10, 3)?;
        let intact = seal(&trail.drafts)?;
        split_everywhere(trusted, &intact, &trail.checkpoints);
        assert!(verify_with(Verifier::with_key(trusted), &intact, &[]).ok());

        let mut changed = intact.clone();
        changed[4].body[12] ^= 1;
        split_everywhere(trusted, &changed, &[]);

        let mut removed = intact.clone();
        removed.remove(6);
        split_everywhere(trusted, &removed, &[]);

        // A checkpoint removed and the chain re-hashed: only the link from
        // the next checkpoint to the one before tells, across any split.
        let mut drafts = trail.drafts.clone();
        drafts.remove(3);
        let rechained = seal(&drafts)?;
        split_everywhere(trusted, &rechained, &[]);
        split_everywhere(None, &rechained, &[]);

        // Cut off after the last external checkpoint.
        split_everywhere(trusted, &intact[..9], &trail.checkpoints);
        Ok(())
    }

    #[test]
    fn report_serializes_the_new_kind() -> TestResult {
        let key = CheckpointKey::generate()?;
        let trail = trail(&key, 4, 3)?;
        let rows = seal(&trail.drafts)?;
        let report = verify_with(Verifier::new(), &rows[..3], &trail.checkpoints);
        let json = serde_json::to_value(&report)?;
        assert_eq!(json["problem"]["kind"], "truncated");
        assert_eq!(json["external_checkpoints"], 1);
        assert_eq!(json["signatures_checked"], false);
        Ok(())
    }
}
