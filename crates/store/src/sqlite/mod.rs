//! The embedded store: one SQLite file in WAL mode.

mod checkpoint;
pub mod mirror;
mod read;
mod schema;
mod verify;
mod write;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use read::SqliteReader;
pub use write::SqliteWriter;

use crate::{Result, StoreError};

/// How long a reader waits for a lock before giving up.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How hard the store works to keep a commit across power loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// The WAL is synced before any caller hears its event is committed: a
    /// committed event survives power loss (what `synchronous = FULL`
    /// gives). The default.
    #[default]
    Full,
    /// The WAL is synced only at checkpoints (`synchronous = NORMAL`): a
    /// committed event survives a crash of the gateway, not of the machine.
    Normal,
}

/// Opens (creating and migrating if needed) a store at `path`.
pub fn open(path: &Path, durability: Durability) -> Result<(SqliteWriter, SqliteReader)> {
    open_with(path, durability, checkpoint::RESTART_AT_FRAMES)
}

/// [`open`], with the WAL size (in pages) at which it is made to start over.
pub fn open_with(
    path: &Path,
    durability: Durability,
    wal_restart_frames: i64,
) -> Result<(SqliteWriter, SqliteReader)> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // SQLite itself never syncs at commit; for `Full` the writer syncs the
    // WAL on a thread of its own (see `SqliteWriter::commit_sync`), which
    // is what `synchronous = FULL` would do, minus the writer's wait.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Checkpoints run on their own thread (see checkpoint.rs).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    schema::migrate(&mut conn)?;
    let chain_id = schema::chain_id(&conn)?;
    let checkpointer = checkpoint::Checkpointer::start(path.to_path_buf(), wal_restart_frames)
        .map_err(|e| StoreError::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
    let reader = SqliteReader::new(path.to_path_buf(), false);
    let wal = (durability == Durability::Full).then(|| wal_path(path));
    Ok((
        SqliteWriter::new(conn, path.to_path_buf(), chain_id, checkpointer, wal),
        reader,
    ))
}

/// The writer's journal directory for the store at `db`.
pub fn journal_dir(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
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

pub(crate) fn open_reader(path: &Path, read_only: bool) -> Result<Connection> {
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
pub(crate) mod tests;
