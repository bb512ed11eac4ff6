//! Moves WAL checkpoints off the writer. SQLite would otherwise checkpoint
//! inside whichever commit crosses the WAL threshold, stalling every caller
//! in that batch; a passive checkpoint from another connection copies
//! committed frames without blocking the writer or the readers.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::open_reader;

/// How often committed WAL frames are copied into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(1000);

pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(path: PathBuf) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || run(&path, &flag))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

fn run(path: &std::path::Path, stop: &AtomicBool) {
    let conn = match open_reader(path, false) {
        Ok(conn) => conn,
        Err(error) => {
            tracing::error!(%error, "cannot open the store for checkpoints; the WAL will grow until restart");
            return;
        }
    };
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(CHECKPOINT_INTERVAL);
        let result: rusqlite::Result<(i64, i64, i64)> =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            });
        if let Err(error) = result {
            tracing::warn!(%error, "WAL checkpoint failed; will retry");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
