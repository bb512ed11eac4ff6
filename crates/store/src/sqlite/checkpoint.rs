//! Moves WAL checkpoints off the writer. SQLite would otherwise checkpoint
//! inside whichever commit crosses the WAL threshold, stalling every caller
//! in that batch; a passive checkpoint from another connection copies
//! committed frames without blocking the writer or the readers.
//!
//! Passive checkpoints alone never let the WAL start over under steady load
//! (the writer keeps adding frames, so the log is never wholly copied at the
//! moment a write begins), and it grows without bound. So once the log is
//! large and nearly all copied, this thread pauses and asks the writer to
//! run a RESTART checkpoint between two batches: it copies the last few
//! frames, and the next commit rewinds the WAL and overwrites it in place,
//! which also keeps each sync from growing the file. The writer does it
//! itself so that it never sleeps in SQLite's busy handler waiting for us.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::open_reader;

/// How often committed WAL frames are copied into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);
/// WAL size (in frames, i.e. pages) from which the log is made to start over:
/// 32 MiB at SQLite's 4 KiB pages. A restart stalls the writer for one database
/// sync (~25 ms measured under load), so not too often; the WAL file keeps
/// its size between restarts.
pub(super) const RESTART_AT_FRAMES: i64 = 8192;
/// Frames not yet copied below which a RESTART holds writers off only briefly.
const RESTART_MAX_BEHIND_FRAMES: i64 = 64;

pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
    /// Set by this thread, cleared by the writer once it has restarted the WAL.
    restart_wanted: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `path`, restarting the WAL from `restart_at_frames`.
    pub(super) fn start(path: PathBuf, restart_at_frames: i64) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let restart_wanted = Arc::new(AtomicBool::new(false));
        let (stop_flag, restart_flag) = (Arc::clone(&stop), Arc::clone(&restart_wanted));
        let thread = std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || run(&path, restart_at_frames, &stop_flag, &restart_flag))?;
        Ok(Self {
            stop,
            restart_wanted,
            thread: Some(thread),
        })
    }

    /// Called by the writer between batches: restarts the WAL if asked to.
    /// Never waits: if a reader still uses the WAL (a long verification,
    /// say), it gives up at once and the next checkpoint cycle asks again.
    pub(super) fn restart_if_wanted(&self, writer: &rusqlite::Connection) {
        if !self.restart_wanted.load(Ordering::Acquire) {
            return;
        }
        let restart = || -> rusqlite::Result<bool> {
            writer.busy_timeout(Duration::ZERO)?;
            let busy: rusqlite::Result<i64> =
                writer.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get(0));
            writer.busy_timeout(super::BUSY_TIMEOUT)?;
            busy.map(|b| b == 0)
        };
        match restart() {
            Ok(true) => {}
            Ok(false) => tracing::debug!("WAL restart deferred: a reader is still using it"),
            Err(error) => tracing::warn!(%error, "WAL restart failed; will retry"),
        }
        self.restart_wanted.store(false, Ordering::Release);
    }
}

fn run(path: &std::path::Path, restart_at: i64, stop: &AtomicBool, restart_wanted: &AtomicBool) {
    let conn = match open_reader(path, false) {
        Ok(conn) => conn,
        Err(error) => {
            tracing::error!(%error, "cannot open the store for checkpoints; the WAL will grow until restart");
            return;
        }
    };
    let checkpoint = |mode: &str| -> rusqlite::Result<(i64, i64)> {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(1)?, r.get(2)?))
        })
    };
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(CHECKPOINT_INTERVAL);
        if restart_wanted.load(Ordering::Acquire) {
            // The writer has not got to it yet; checkpointing now would
            // only contend with its RESTART.
            continue;
        }
        match checkpoint("PASSIVE") {
            Ok((log, copied)) => {
                // Restart cheaply once nearly all is copied; under load too
                // heavy for that to happen, restart anyway at twice the size
                // so the WAL stays bounded, paying a longer stall.
                let nearly_copied = log - copied <= RESTART_MAX_BEHIND_FRAMES;
                if (log >= restart_at && nearly_copied) || log >= restart_at.saturating_mul(2) {
                    restart_wanted.store(true, Ordering::Release);
                }
            }
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed; will retry"),
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
