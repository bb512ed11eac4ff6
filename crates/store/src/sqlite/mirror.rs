//! A node's read mirror of a shared log: a SQLite store holding the shared
//! chain's events (same chain id, same bytes, same hashes), so the search
//! index, stories and the console read it exactly as they read a node's
//! own store. Derived data: the shared store is the record, and a mirror
//! that no longer matches it (another chain, a different event at its
//! head) is emptied and caught up again.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension};
use taskgate_audit::{GENESIS_HASH, Hash, SealedEvent};

use super::write::insert_event;
use super::{BUSY_TIMEOUT, schema};
use crate::{Result, StoreError, StoreRead};

/// Events copied per transaction.
const BATCH: usize = 5_000;

pub struct Mirror {
    path: PathBuf,
    /// The mirror's connection and its head (sequence, hash); one catch-up
    /// at a time.
    state: Mutex<Option<(Connection, u64, Hash)>>,
}

impl Mirror {
    /// Where the mirror of a fleet node lives, beside `store.path`: never
    /// the path itself, which may hold a node's own store from before.
    pub fn path_for(store: &Path) -> PathBuf {
        store.with_extension("mirror.db")
    }

    pub fn new(path: &Path) -> Mirror {
        Mirror {
            path: path.to_path_buf(),
            state: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies every event `source` has past the mirror's head, each linked
    /// to the one before it; returns how many. A mirror of another chain,
    /// or one whose head is not the source's event at that sequence, is
    /// rebuilt from the start.
    pub fn catch_up(&self, source: &dyn StoreRead, chain: &str) -> Result<u64> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| StoreError::Corrupt("the mirror's lock is poisoned".into()))?;
        if guard.is_none() {
            *guard = Some(self.open(source, chain)?);
        }
        let result = match guard.as_mut() {
            Some((conn, seq, hash)) => copy_new(conn, source, seq, hash),
            None => Ok(0),
        };
        if result.is_err() {
            // Opened and checked again next time.
            *guard = None;
        }
        result
    }

    fn open(&self, source: &dyn StoreRead, chain: &str) -> Result<(Connection, u64, Hash)> {
        let mut conn = Connection::open(&self.path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        schema::migrate(&mut conn)?;
        let head = head(&conn)?;
        let matches = schema::chain_id(&conn)? == chain
            && match &head {
                None => true,
                Some((seq, hash)) => source
                    .events_after(seq - 1, 1)?
                    .first()
                    .is_some_and(|row| row.seq as u64 == *seq && row.hash == hash.as_slice()),
            };
        if !matches {
            if head.is_some() {
                tracing::warn!(path = %self.path.display(), "the mirror does not match the shared store; rebuilding it");
            }
            // A new file, or one of another chain: emptied (derived data,
            // so the delete trigger is set aside for it) and named for this
            // chain.
            conn.execute_batch(
                "DROP TRIGGER IF EXISTS events_no_delete; DELETE FROM events;
                 CREATE TRIGGER events_no_delete BEFORE DELETE ON events
                 BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END;",
            )?;
            conn.execute("UPDATE meta SET value = ?1 WHERE key = 'chain_id'", [chain])?;
            return Ok((conn, 0, GENESIS_HASH));
        }
        let (seq, hash) = head.unwrap_or((0, GENESIS_HASH));
        Ok((conn, seq, hash))
    }
}

fn head(conn: &Connection) -> Result<Option<(u64, Hash)>> {
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(seq, hash)| {
        let hash: Hash = hash
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("mirror event {seq} has a bad hash")))?;
        Ok((seq as u64, hash))
    })
    .transpose()
}

fn copy_new(
    conn: &mut Connection,
    source: &dyn StoreRead,
    seq: &mut u64,
    hash: &mut Hash,
) -> Result<u64> {
    let mut copied = 0u64;
    loop {
        let rows = source.events_after(*seq, BATCH)?;
        if rows.is_empty() {
            return Ok(copied);
        }
        let tx = conn.transaction()?;
        let (mut next_seq, mut next_hash) = (*seq, *hash);
        for row in &rows {
            let seq = row.seq as u64;
            if seq != next_seq + 1 {
                return Err(StoreError::Corrupt(format!(
                    "the shared store skips from event {next_seq} to {seq}"
                )));
            }
            let sealed = SealedEvent::from_stored(&next_hash, seq, row.body.clone())
                .map_err(|e| StoreError::Corrupt(format!("shared event {seq}: {e}")))?;
            if sealed.hash.as_slice() != row.hash.as_slice() {
                return Err(StoreError::Corrupt(format!(
                    "shared event {seq} does not link to the one before it; run `taskgate audit verify`"
                )));
            }
            insert_event(&tx, &sealed)?;
            (next_seq, next_hash) = (seq, sealed.hash);
        }
        tx.commit()?;
        copied += rows.len() as u64;
        (*seq, *hash) = (next_seq, next_hash);
    }
}
