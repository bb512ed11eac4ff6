//! The embedded store: one SQLite file in WAL mode.

mod read;
mod schema;
mod write;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use read::SqliteReader;
pub use write::SqliteWriter;

use crate::{Result, StoreError};

/// How long a reader waits for a lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How hard the store works to keep a commit across power loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// fsync the WAL at every commit (`synchronous = FULL`): a committed
    /// event survives power loss. The default: group commit makes it cheap.
    #[default]
    Full,
    /// fsync only at checkpoints (`synchronous = NORMAL`): survives a crash
    /// of the process, not of the machine.
    Normal,
}

/// Opens (creating and migrating if needed) a store at `path`.
pub fn open(path: &Path, durability: Durability) -> Result<(SqliteWriter, SqliteReader)> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    schema::migrate(&mut conn)?;
    let chain_id = schema::chain_id(&conn)?;
    let reader = SqliteReader::new(path.to_path_buf(), false);
    Ok((SqliteWriter::new(conn, chain_id), reader))
}

/// Opens an existing store read-only, for offline tools like `audit verify`.
/// Creates nothing and migrates nothing.
pub fn open_read_only(path: &Path) -> Result<SqliteReader> {
    if !path.exists() {
        return Err(StoreError::Incompatible(format!(
            "{} does not exist",
            path.display()
        )));
    }
    let reader = SqliteReader::new(PathBuf::from(path), true);
    reader.check_schema()?;
    Ok(reader)
}

fn open_reader(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

#[cfg(test)]
mod tests;
