//! The `file` sink: JSON Lines, one event per line, in files named by their
//! first event (`events-<seq>.jsonl`), a new one past `rotate_bytes` or
//! `rotate_every`; each batch is synced to disk before the cursor moves.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use taskgate_policy::config::Sink;

use super::{Deliver, Delivery, Failure, Outgoing};

pub struct FileSink {
    dir: PathBuf,
    rotate_bytes: u64,
    rotate_every: Duration,
    current: Option<Current>,
}

struct Current {
    file: File,
    bytes: u64,
    opened: Instant,
}

impl FileSink {
    pub fn new(config: &Sink) -> Result<Self, String> {
        let dir = config.path.clone().ok_or("no path")?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self {
            dir,
            rotate_bytes: config.rotate_bytes.max(1),
            rotate_every: config.rotate_every.0,
            current: None,
        })
    }

    /// Appends the batch and syncs it. A batch may overrun the size limit;
    /// the next one goes to a new file.
    fn write(&mut self, events: &[Outgoing]) -> Result<(), String> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let due = self.current.as_ref().is_none_or(|c| {
            c.bytes >= self.rotate_bytes || c.opened.elapsed() >= self.rotate_every
        });
        if due {
            let path = self.dir.join(format!("events-{:020}.jsonl", first.seq));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
            if let Ok(dir) = File::open(&self.dir) {
                let _ = dir.sync_all();
            }
            self.current = Some(Current {
                file,
                bytes,
                opened: Instant::now(),
            });
        }
        let Some(current) = self.current.as_mut() else {
            return Err("no file open".into());
        };
        let mut lines = Vec::new();
        for event in events {
            serde_json::to_writer(&mut lines, &event.json).map_err(|e| e.to_string())?;
            lines.push(b'\n');
        }
        current
            .file
            .write_all(&lines)
            .and_then(|()| current.file.sync_data())
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        current.bytes += lines.len() as u64;
        Ok(())
    }
}

impl Deliver for FileSink {
    fn deliver<'a>(&'a mut self, events: &'a [Outgoing]) -> Delivery<'a> {
        let result = tokio::task::block_in_place(|| self.write(events));
        Box::pin(async move {
            result.map_err(|e| {
                // A write that failed part-way is written again whole: the
                // file may hold a partial batch, never a lost one.
                self.current = None;
                Failure::Retry(e)
            })
        })
    }
}
