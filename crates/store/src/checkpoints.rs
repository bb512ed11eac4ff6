//! Signed audit checkpoints on disk (not SQLite's WAL checkpoints): the
//! signing key's file, and the directory outside the store where a copy of
//! every checkpoint is kept.

use std::io::Write;
use std::path::{Path, PathBuf};

use taskgate_audit::{Checkpoint, CheckpointKey};

use crate::{Result, StoreError};

/// What the writer needs to sign checkpoints.
pub struct Checkpointing {
    pub key: CheckpointKey,
    /// A checkpoint once this many events were appended since the last.
    pub every: u64,
    /// Where each checkpoint is copied once it is durable in the store.
    pub dir: Option<CheckpointDir>,
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Corrupt(format!("cannot {what} {}: {error}", path.display()))
}

/// Reads the signing key at `path`, or creates one there (readable by its
/// owner only) if there is no file yet.
pub fn load_or_create_key(path: &Path) -> Result<CheckpointKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => CheckpointKey::from_pem(&text).map_err(|e| {
            StoreError::Corrupt(format!(
                "{} is not an Ed25519 signing key: {e}",
                path.display()
            ))
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = CheckpointKey::generate()
                .map_err(|e| StoreError::Corrupt(format!("cannot generate a signing key: {e}")))?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(|e| io_error("create", path, e))?;
            file.write_all(key.to_pem().as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error("write", path, e))?;
            tracing::info!(path = %path.display(), public_key = %key.public_key(), "generated the audit checkpoint signing key");
            Ok(key)
        }
        Err(error) => Err(io_error("read", path, error)),
    }
}

/// A directory of checkpoint files, one per checkpoint.
#[derive(Clone, Debug)]
pub struct CheckpointDir {
    path: PathBuf,
}

impl CheckpointDir {
    /// Creates the directory if needed.
    pub fn create(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| io_error("create", path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one checkpoint durably: to a temporary name, synced, renamed,
    /// and the directory synced, so a crash leaves no half-written file.
    pub fn write(&self, checkpoint: &Checkpoint) -> Result<PathBuf> {
        let target = self.path.join(checkpoint.file_name());
        let temporary = self.path.join(format!(".{}.tmp", checkpoint.file_name()));
        let mut file =
            std::fs::File::create(&temporary).map_err(|e| io_error("create", &temporary, e))?;
        file.write_all(&checkpoint.to_file_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error("write", &temporary, e))?;
        std::fs::rename(&temporary, &target).map_err(|e| io_error("rename", &temporary, e))?;
        if let Ok(dir) = std::fs::File::open(&self.path) {
            let _ = dir.sync_all();
        }
        Ok(target)
    }

    /// Every checkpoint in the directory, in sequence order. A file that is
    /// not a checkpoint is an error naming it: the directory is evidence.
    pub fn read_all(path: &Path) -> Result<Vec<Checkpoint>> {
        let entries = std::fs::read_dir(path).map_err(|e| io_error("read", path, e))?;
        let mut checkpoints = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("read", path, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            let file = entry.path();
            let bytes = std::fs::read(&file).map_err(|e| io_error("read", &file, e))?;
            let checkpoint = Checkpoint::from_file_bytes(&bytes).map_err(|e| {
                StoreError::Corrupt(format!("{} is not a checkpoint: {e}", file.display()))
            })?;
            checkpoints.push(checkpoint);
        }
        checkpoints.sort_by(|a, b| (&a.chain, a.seq).cmp(&(&b.chain, b.seq)));
        Ok(checkpoints)
    }
}
