//! `taskgate store copy`: moves a node's SQLite store into an empty shared
//! store with its chain intact: the same chain id, every event's bytes and
//! hash as they were, and the tasks and reviews beside them, in one
//! transaction (all or nothing).

use std::path::Path;

use serde::Serialize;
use taskgate_audit::SealedEvent;

use super::write::PgTx;
use super::{PgOptions, hash_of, schema};
use crate::{Result, ReviewQuery, StoreError, StoreRead, TaskQuery, WriteTx, journal, sqlite};

/// Events inserted per statement.
const BATCH: usize = 5_000;

#[derive(Clone, Debug, Serialize)]
pub struct CopyReport {
    pub chain: String,
    pub events: u64,
    pub head_seq: u64,
    pub tasks: u64,
    pub reviews: u64,
}

/// Copies the store at `from` into the (empty) shared store at `to`.
pub fn copy_from_sqlite(from: &Path, to: &PgOptions) -> Result<CopyReport> {
    if journal::has_pending(&sqlite::journal_dir(from)) {
        return Err(StoreError::Incompatible(format!(
            "{} has audit events in its journal that are not in the store yet; start the gateway on it once (it moves them in) and stop it, then copy",
            from.display()
        )));
    }
    let source = sqlite::open_read_only(from)?;
    let chain = source.chain_id()?;
    let mut client = to.connect()?;
    schema::migrate(&mut client)?;
    let mut tx = client.transaction()?;
    let row = tx.query_one(
        "SELECT seq, (SELECT count(*) FROM taskgate.tasks) FROM taskgate.chain WHERE id = 1 FOR UPDATE",
        &[],
    )?;
    let (seq, tasks): (i64, i64) = (row.get(0), row.get(1));
    if seq != 0 || tasks != 0 {
        return Err(StoreError::Incompatible(format!(
            "the PostgreSQL store is not empty ({seq} events, {tasks} tasks); copy into a new database"
        )));
    }
    let mut report = CopyReport {
        chain: chain.clone(),
        events: 0,
        head_seq: 0,
        tasks: 0,
        reviews: 0,
    };
    let mut head: Option<(i64, Vec<u8>)> = None;
    {
        let mut pg = PgTx::new(&mut tx);
        let mut pending = 0usize;
        let mut failed: Option<StoreError> = None;
        let mut prev = taskgate_audit::GENESIS_HASH;
        source.scan_events(&mut |row| {
            // Each event is rebuilt from its bytes and linked to the one
            // before: the copy refuses a store whose chain is broken.
            let step = SealedEvent::from_stored(&prev, row.seq as u64, row.body.clone())
                .map_err(|e| StoreError::Corrupt(format!("event {}: {e}", row.seq)))
                .and_then(|sealed| {
                    if sealed.hash.as_slice() != row.hash.as_slice() {
                        return Err(StoreError::Corrupt(format!(
                            "event {} does not link to the one before it; run `taskgate audit verify` on the source",
                            row.seq
                        )));
                    }
                    prev = sealed.hash;
                    pg.append(&sealed)?;
                    pending += 1;
                    if pending == BATCH {
                        pending = 0;
                        pg.flush(None)?;
                    }
                    Ok(())
                });
            match step {
                Ok(()) => {
                    report.events += 1;
                    head = Some((row.seq, row.hash.clone()));
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        pg.flush(None)?;
        for task in source.tasks(&TaskQuery::default())? {
            let secrets = source.task_secrets(&task.id)?.ok_or_else(|| {
                StoreError::Corrupt(format!("task {} has no stored secrets", task.id))
            })?;
            pg.insert_task(&task, &secrets)?;
            report.tasks += 1;
        }
        for review in source.reviews(&ReviewQuery::default())? {
            pg.insert_review(&review)?;
            report.reviews += 1;
        }
    }
    if let Some((seq, hash)) = head {
        let hash = hash_of(seq, hash)?;
        tx.execute(
            "UPDATE taskgate.chain SET chain_id = $1, seq = $2, hash = $3 WHERE id = 1",
            &[&chain, &seq, &hash.as_slice()],
        )?;
        report.head_seq = u64::try_from(seq).unwrap_or(0);
    } else {
        tx.execute(
            "UPDATE taskgate.chain SET chain_id = $1 WHERE id = 1",
            &[&chain],
        )?;
    }
    tx.commit()?;
    Ok(report)
}
