//! Checking the search index against the chain it was derived from.
//!
//! The index is derived data, so nothing signs it: someone who can write
//! its file could delete a row and make a search leave out a statement
//! while the chain still verifies. The check builds a fresh index from the
//! chain, in a scratch file beside the live one, up to the record the live
//! index covers, and compares the two table by table in key order. It is
//! as costly as a rebuild (see docs/performance.md), which is why it runs
//! with `audit verify` and not with every search.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use rusqlite::types::Value;
use serde::Serialize;

use super::{AuditIndex, catch_up, read_meta, schema};
use crate::Result;

/// How the search index compares with the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IndexCheck {
    /// The last record the index covers, and so the check.
    pub through_seq: u64,
    /// The first difference, if any. The index is derived data: `taskgate
    /// audit reindex` builds it again from the chain.
    pub problem: Option<String>,
}

/// The index's tables, each read in its key order.
const TABLES: [(&str, &str, &str); 3] = [
    (
        "ev",
        "seq, time_us, tmax_us, type, subject, kind, task, session, connection, command, class",
        "seq",
    ),
    ("ev_table", "name, seq, written, class", "name, seq"),
    ("task_event", "task, type, seq", "task, type, seq"),
];

/// Removes the scratch index and its WAL files, whatever happens.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

impl AuditIndex {
    /// Compares the index with a fresh one built from the chain (see the
    /// module docs). An index built from another history, or with a row
    /// added, removed or changed, is reported with the first difference.
    pub fn check(&self) -> Result<IndexCheck> {
        let scratch = Scratch(scratch_path(&self.path));
        let mut fresh = Connection::open(&scratch.0)?;
        schema::prepare(&fresh)?;
        self.read(|live| {
            let (_, meta) = read_meta(live)?;
            let through_seq = u64::try_from(meta.through_seq).unwrap_or(0);
            let stored_hash: Option<Vec<u8>> = live
                .query_row(
                    "SELECT hash FROM store.events WHERE seq = ?1",
                    [meta.through_seq],
                    |r| r.get(0),
                )
                .ok();
            if through_seq > 0 && stored_hash != meta.through_hash {
                return Ok(IndexCheck {
                    through_seq,
                    problem: Some(format!(
                        "the index was built from another history: its record {through_seq} is not the chain's"
                    )),
                });
            }
            let store = super::super::sqlite::open_reader(&self.store, true)?;
            catch_up(&mut fresh, &store, through_seq)?;
            for (table, columns, key) in TABLES {
                if let Some(problem) = compare(live, &fresh, table, columns, key, meta.through_seq)? {
                    return Ok(IndexCheck {
                        through_seq,
                        problem: Some(problem),
                    });
                }
            }
            Ok(IndexCheck {
                through_seq,
                problem: None,
            })
        })
    }
}

fn scratch_path(index: &Path) -> PathBuf {
    let name = index
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    index.with_file_name(format!("{name}.check-{}", std::process::id()))
}

/// The first row where `table` differs between the live index and the
/// fresh one, up to `through` (both read in key order), described.
fn compare(
    live: &Connection,
    fresh: &Connection,
    table: &str,
    columns: &str,
    key: &str,
    through: i64,
) -> Result<Option<String>> {
    let sql = format!("SELECT {columns} FROM {table} WHERE seq <= ?1 ORDER BY {key}");
    let width = columns.split(',').count();
    let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Vec<Value>> {
        (0..width).map(|i| r.get::<_, Value>(i)).collect()
    };
    let mut live_stmt = live.prepare(&sql)?;
    let mut fresh_stmt = fresh.prepare(&sql)?;
    let mut have = live_stmt.query_map([through], row)?;
    let mut want = fresh_stmt.query_map([through], row)?;
    loop {
        match (have.next().transpose()?, want.next().transpose()?) {
            (None, None) => return Ok(None),
            (Some(h), Some(w)) if h == w => {}
            (h, w) => {
                let show = |r: Option<Vec<Value>>| match r {
                    Some(values) => format!("({})", render(&values)),
                    None => "nothing".to_owned(),
                };
                return Ok(Some(format!(
                    "the index's {table} differs from the chain ({columns}): the chain gives {}, the index holds {}",
                    show(w),
                    show(h)
                )));
            }
        }
    }
}

fn render(values: &[Value]) -> String {
    values
        .iter()
        .map(|v| match v {
            Value::Null => "null".to_owned(),
            Value::Integer(i) => i.to_string(),
            Value::Real(f) => f.to_string(),
            Value::Text(t) => format!("{t:?}"),
            Value::Blob(b) => format!("x'{}'", hex::encode(b)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
