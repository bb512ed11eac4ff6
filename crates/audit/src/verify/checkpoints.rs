//! The checkpoint part of verification: every `checkpoint` event must sign
//! the head just before it and follow the previous checkpoint; external
//! checkpoint files must be found in the log, or show that it was cut short.

use super::{Problem, ProblemKind};
use crate::{ChainHead, Checkpoint, Event, PublicKey};

/// The checkpoints seen so far in one chain.
#[derive(Debug)]
pub(super) struct Checkpoints {
    key: Option<PublicKey>,
    /// In chain order, so by `seq`.
    seen: Vec<Checkpoint>,
    /// For a part that starts mid-chain: the checkpoint before is in the
    /// part before, so the first one here is linked to it at the join.
    resumed: bool,
    /// The first checkpoint's position, `prev_signature` and the head
    /// before it, while resumed.
    first_link: Option<(u64, Option<String>, ChainHead)>,
}

/// Two parts' checkpoints joined, or, if the second part's first checkpoint
/// does not follow the first part's last, the first part's alone with the
/// problem and the head before that checkpoint.
pub(super) struct Joined {
    pub checkpoints: Checkpoints,
    pub problem: Option<(Problem, ChainHead)>,
}

impl Checkpoints {
    pub fn new(key: Option<PublicKey>, resumed: bool) -> Self {
        Self {
            key,
            seen: Vec::new(),
            resumed,
            first_link: None,
        }
    }

    /// Links `next`'s first checkpoint to this part's last one.
    pub fn join(mut self, next: Checkpoints) -> Joined {
        let problem = next.first_link.and_then(|(position, prev, before)| {
            let previous = self.seen.last();
            (prev.as_ref() != previous.map(|c| &c.signature))
                .then(|| (unlinked(position, &prev, previous), before))
        });
        if problem.is_none() {
            self.seen.extend(next.seen);
        }
        Joined {
            checkpoints: self,
            problem,
        }
    }

    pub fn signatures_checked(&self) -> bool {
        self.key.is_some()
    }

    pub fn count(&self) -> u64 {
        self.seen.len() as u64
    }

    /// The last record a checkpoint in the chain covers.
    pub fn last_covered(&self) -> Option<u64> {
        self.seen.last().map(|c| c.seq)
    }

    /// Checks the checkpoint event at `position`, whose hash-checked body is
    /// `body`; `head` is the record before it.
    pub fn check(&mut self, position: u64, head: ChainHead, body: &[u8]) -> Result<(), Problem> {
        let problem = |kind, detail: String| Problem {
            kind,
            seq: position,
            detail,
        };
        let changed = |detail| problem(ProblemKind::Changed, detail);
        let event: Event = serde_json::from_slice(body)
            .map_err(|e| changed(format!("body is not a valid event: {e}")))?;
        let checkpoint = match Checkpoint::from_event(&event) {
            Some(Ok(checkpoint)) => checkpoint,
            Some(Err(e)) => return Err(changed(format!("its checkpoint is malformed: {e}"))),
            None => return Err(changed("it is not a checkpoint event".to_owned())),
        };
        if checkpoint.chain != event.chain {
            let detail = format!(
                "its checkpoint names chain {:?}, not {:?}",
                checkpoint.chain, event.chain
            );
            return Err(changed(detail));
        }
        // Authenticity first: the checks below then tell what was done to a
        // genuine checkpoint's surroundings.
        if let Some(key) = &self.key {
            checkpoint
                .verify(key)
                .map_err(|e| changed(format!("its checkpoint is not genuine: {e}")))?;
        }
        let previous = self.seen.last();
        if self.resumed && previous.is_none() {
            self.first_link = Some((position, checkpoint.prev_signature.clone(), head));
        } else if checkpoint.prev_signature.as_ref() != previous.map(|c| &c.signature) {
            return Err(unlinked(position, &checkpoint.prev_signature, previous));
        }
        if checkpoint.seq.saturating_add(1) != position {
            return Err(changed(format!(
                "its checkpoint covers records through {}, but it is record {position}",
                checkpoint.seq
            )));
        }
        if checkpoint.hash != hex::encode(head.hash) {
            return Err(changed(format!(
                "its checkpoint signed a different hash for record {}: \
                 records up to it were changed",
                checkpoint.seq
            )));
        }
        self.seen.push(checkpoint);
        Ok(())
    }

    /// Checks external checkpoints against a chain verified up to `head`;
    /// `chain` is None for an empty log. Returns how many were checked.
    pub fn check_external(
        &self,
        chain: Option<&str>,
        head: ChainHead,
        external: &[Checkpoint],
    ) -> (u64, Option<Problem>) {
        let mut sorted: Vec<&Checkpoint> = external.iter().collect();
        sorted.sort_by_key(|c| c.seq);
        let mut checked = 0;
        for checkpoint in &sorted {
            checked += 1;
            if let Err(problem) = self.check_one(chain, head, checkpoint, &sorted) {
                return (checked, Some(problem));
            }
        }
        (checked, None)
    }

    fn check_one(
        &self,
        chain: Option<&str>,
        head: ChainHead,
        checkpoint: &Checkpoint,
        sorted: &[&Checkpoint],
    ) -> Result<(), Problem> {
        let problem = |kind, seq, detail: String| Problem { kind, seq, detail };
        // Its own event comes right after the records it covers.
        let own = checkpoint.seq.saturating_add(1);
        if let Some(key) = &self.key {
            checkpoint.verify(key).map_err(|e| {
                let detail = format!(
                    "the external checkpoint {} is not genuine: {e}",
                    checkpoint.file_name()
                );
                problem(ProblemKind::Changed, own, detail)
            })?;
        }
        if chain.is_some_and(|c| c != checkpoint.chain) {
            let detail = format!(
                "the log holds no record of chain {:?}, but the external checkpoint \
                 signed at {} covers its records through {}: that chain was removed",
                checkpoint.chain, checkpoint.time, checkpoint.seq
            );
            return Err(problem(ProblemKind::Truncated, 1, detail));
        }
        if own > head.seq {
            // Report the newest: it shows how much was cut.
            let newest = sorted
                .iter()
                .rev()
                .find(|c| c.chain == checkpoint.chain)
                .map_or(checkpoint, |c| *c);
            let covers = if newest.seq > head.seq {
                format!("covers records through {}", newest.seq)
            } else {
                format!("is itself record {}", newest.seq + 1)
            };
            let detail = format!(
                "the log ends at record {} but the external checkpoint signed at {} {covers}: \
                 the newest records were cut off",
                head.seq, newest.time
            );
            return Err(problem(ProblemKind::Truncated, head.seq + 1, detail));
        }
        match self.seen.binary_search_by_key(&checkpoint.seq, |c| c.seq) {
            Ok(index) if self.seen[index] == *checkpoint => Ok(()),
            Ok(_) => Err(problem(
                ProblemKind::Changed,
                own,
                format!(
                    "the log's checkpoint at record {own} differs from the external one signed at {}",
                    checkpoint.time
                ),
            )),
            Err(_) => Err(problem(
                ProblemKind::Removed,
                own,
                format!(
                    "external checkpoint at seq {} (signed at {}) is not in the log",
                    checkpoint.seq, checkpoint.time
                ),
            )),
        }
    }
}

/// The problem of a checkpoint at `position` whose `prev_signature` is not
/// the signature of `previous`, the checkpoint before it in the log.
fn unlinked(position: u64, prev: &Option<String>, previous: Option<&Checkpoint>) -> Problem {
    let (kind, detail) = match (prev, previous) {
        (None, Some(previous)) => (
            ProblemKind::Changed,
            format!(
                "its checkpoint claims to be the chain's first, but record {} holds one",
                previous.seq + 1
            ),
        ),
        (_, previous) => {
            let since = previous.map_or_else(
                || "the chain's start".to_owned(),
                |p| format!("record {}", p.seq + 1),
            );
            (
                ProblemKind::Removed,
                format!(
                    "its checkpoint follows a checkpoint that is not in the log: \
                     one between {since} and this record was removed"
                ),
            )
        }
    };
    Problem {
        kind,
        seq: position,
        detail,
    }
}
