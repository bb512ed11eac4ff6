//! Verifying the whole stored chain on every core. Each record's link is
//! checked against the stored hash before it, so the log splits into
//! ranges verified side by side, each row borrowed straight from SQLite
//! (nothing copied), and the parts' verifiers are joined in order
//! ([`Verifier::join`] checks the seams). One core read, hashed and parsed
//! about 0.5 million records a second; the target is twice that.

use rusqlite::{Connection, OptionalExtension, params};
use taskgate_audit::{ChainHead, Checkpoint, EventRowRef, PublicKey, Verifier, VerifyReport};

use super::open_reader;
use super::read::{EVENT_COLUMNS, SqliteReader};
use crate::{Result, StoreError};

/// How much of the store file a verifying connection maps.
const MMAP_BYTES: i64 = 1 << 40;

/// Below this many records one thread does it all.
pub(super) const MIN_PART: i64 = 50_000;

impl SqliteReader {
    /// [`crate::StoreRead::verify_chain`], in parallel parts.
    pub(super) fn verify_in_parts(
        &self,
        key: Option<PublicKey>,
        external: &[Checkpoint],
        min_part: i64,
    ) -> Result<VerifyReport> {
        let last = i64::try_from(crate::StoreRead::head_seq(self)?).unwrap_or(i64::MAX);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let parts = i64::try_from(cores)
            .unwrap_or(1)
            .min(last / min_part.max(1))
            .max(1);
        let bounds: Vec<(i64, i64)> = (0..parts)
            .map(|i| (last * i / parts, last * (i + 1) / parts))
            .collect();
        let verifiers: Vec<Result<Verifier>> = std::thread::scope(|scope| {
            let handles: Vec<_> = bounds
                .iter()
                .map(|&(after, through)| scope.spawn(move || self.verify_part(key, after, through)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(StoreError::Corrupt("a verifying thread panicked".into()))
                    })
                })
                .collect()
        });
        let mut joined: Option<Verifier> = None;
        for verifier in verifiers {
            let verifier = verifier?;
            joined = Some(match joined {
                None => verifier,
                Some(before) => before.join(verifier),
            });
        }
        let verifier = joined.unwrap_or_else(|| Verifier::with_key(key));
        Ok(verifier.finish_with_external(external))
    }

    /// Verifies records `after + 1 ..= through` on a connection of its own.
    fn verify_part(&self, key: Option<PublicKey>, after: i64, through: i64) -> Result<Verifier> {
        let conn = open_reader(self.path(), self.is_read_only())?;
        // Read the file through a memory map: a whole-log scan otherwise
        // spends a read() and a 4 KiB copy per page.
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        conn.execute_batch("BEGIN")?;
        let result = verify_range(&conn, key, after, through);
        conn.execute_batch("COMMIT")?;
        result
    }
}

fn text(value: rusqlite::types::ValueRef<'_>) -> rusqlite::Result<Option<&str>> {
    value.as_str_or_null().map_err(rusqlite::Error::from)
}

fn verify_range(
    conn: &Connection,
    key: Option<PublicKey>,
    after: i64,
    through: i64,
) -> Result<Verifier> {
    let start = if after == 0 {
        ChainHead::EMPTY
    } else {
        // The stored hash the part before must end with; a missing or
        // malformed one is found by that part (or at the seam).
        let hash: Option<Vec<u8>> = conn
            .query_row("SELECT hash FROM events WHERE seq = ?1", [after], |r| {
                r.get(0)
            })
            .optional()?;
        ChainHead {
            seq: u64::try_from(after).unwrap_or(0),
            hash: hash.and_then(|h| h.try_into().ok()).unwrap_or([0; 32]),
        }
    };
    let mut verifier = Verifier::resume_after(key, start);
    let mut stmt = conn.prepare(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq"
    ))?;
    let mut rows = stmt.query(params![after, through])?;
    while let Some(row) = rows.next()? {
        let borrowed = EventRowRef {
            seq: row.get(0)?,
            time_micros: row.get(1)?,
            event_type: row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?,
            task: text(row.get_ref(3)?)?,
            session: text(row.get_ref(4)?)?,
            connection: text(row.get_ref(5)?)?,
            subject: text(row.get_ref(6)?)?,
            body: row.get_ref(7)?.as_blob().map_err(rusqlite::Error::from)?,
            hash: row.get_ref(8)?.as_blob().map_err(rusqlite::Error::from)?,
        };
        if !verifier.push_ref(&borrowed) {
            break;
        }
    }
    Ok(verifier)
}

#[cfg(test)]
mod tests {
    use taskgate_audit::{EventDraft, EventType, Timestamp, Verifier};

    use super::*;
    use crate::sqlite::{self, Durability};
    use crate::{StoreRead, Writer};

    fn single_pass(reader: &SqliteReader) -> VerifyReport {
        let mut verifier = Verifier::new();
        reader
            .scan_events(&mut |row| verifier.push(row))
            .expect("scan");
        verifier.finish()
    }

    fn answer(report: &VerifyReport) -> (Option<(String, u64)>, u64) {
        let problem = report
            .problem
            .as_ref()
            .map(|p| (format!("{:?}", p.kind), p.seq));
        (problem, report.head_seq)
    }

    #[tokio::test]
    async fn parts_on_threads_answer_as_one_pass_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("taskgate.db");
        let (w, _r) = sqlite::open(&path, Durability::Normal).expect("open");
        let (writer, thread) = Writer::start(w).expect("start");
        let drafts = (0..60)
            .map(|i| EventDraft::new(EventType::TaskEnded, Timestamp::now()).task(format!("t{i}")))
            .collect();
        writer.append_all(drafts).await.expect("append");
        drop(writer);
        thread.join();
        let reader = sqlite::open_read_only(&path).expect("reader");
        let parts = |reader: &SqliteReader| reader.verify_in_parts(None, &[], 7).expect("verify");
        let intact = parts(&reader);
        assert!(intact.ok(), "{intact:?}");
        assert_eq!(answer(&intact), answer(&single_pass(&reader)));

        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;")
            .expect("triggers");
        // A change late in the log, then a gap on a part's seam (30 of 60,
        // split in two parts), then a change before both.
        for tamper in [
            "UPDATE events SET task = 'x' WHERE seq = 50",
            "DELETE FROM events WHERE seq = 31",
            "UPDATE events SET body = CAST(replace(CAST(body AS TEXT), 't9', 't8') AS BLOB) WHERE seq = 10",
        ] {
            conn.execute_batch(tamper).expect("tamper");
            let report = parts(&reader);
            assert!(!report.ok(), "{tamper}");
            assert_eq!(answer(&report), answer(&single_pass(&reader)), "{tamper}");
        }
    }
}
