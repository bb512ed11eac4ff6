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
            let mut file = options
                .open(path)
                .map_err(|e| io_error("create", path, e))?;
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

#[cfg(test)]
mod tests {
    use taskgate_audit::{
        Checkpoint, EventDraft, EventType, ProblemKind, Timestamp, Verifier, VerifyReport,
    };

    use super::*;
    use crate::sqlite::{self, Durability};
    use crate::{StoreRead, Writer};

    fn draft(i: usize) -> EventDraft {
        EventDraft::new(EventType::TaskEnded, Timestamp::now()).task(format!("t{i}"))
    }

    fn verify(store: &Path, key: &CheckpointKey, dir: &Path) -> VerifyReport {
        let reader = sqlite::open_read_only(store).expect("reader");
        let external = CheckpointDir::read_all(dir).expect("external");
        reader
            .verify_chain(Some(key.public_key()), &external)
            .expect("verify")
    }

    fn types(store: &Path) -> Vec<EventType> {
        let reader = sqlite::open_read_only(store).expect("reader");
        let mut types = Vec::new();
        reader
            .scan_events(&mut |row| {
                types.push(row.event_type.parse().expect("type"));
                true
            })
            .expect("scan");
        types
    }

    /// Runs a writer with checkpoints every `every` events over `appends`,
    /// asking for one checkpoint after `ask_after` of them.
    async fn session(store: &Path, key: &CheckpointKey, dir: &Path, appends: usize, every: u64) {
        let (w, _r) = sqlite::open(store, Durability::Full).expect("open");
        let checkpointing = Checkpointing {
            key: CheckpointKey::from_pem(&key.to_pem()).expect("key"),
            every,
            dir: Some(CheckpointDir::create(dir).expect("dir")),
        };
        let (writer, thread) = Writer::start_with(w, Some(checkpointing)).expect("start");
        for i in 0..appends {
            writer.append(draft(i)).await.expect("append");
            // One store batch per event, so the cadence is exact.
            writer.flush().await.expect("flush");
        }
        drop(writer);
        thread.join();
    }

    #[tokio::test]
    async fn checkpoints_come_every_n_events_on_request_and_at_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("taskgate.db");
        let copies = dir.path().join("checkpoints");
        let key = CheckpointKey::generate().expect("key");
        session(&store, &key, &copies, 7, 3).await;
        use EventType::{Checkpoint as C, TaskEnded as E};
        // A checkpoint once at least 3 events have come since the last one
        // (at the first store batch past them), and one at the end covering
        // the last.
        let kinds = types(&store);
        assert_eq!(kinds.last(), Some(&C), "{kinds:?}");
        let mut since = 0;
        for kind in &kinds[..kinds.len() - 1] {
            if *kind == C {
                assert!(
                    since >= 3,
                    "a checkpoint after only {since} events: {kinds:?}"
                );
                since = 0;
            } else {
                since += 1;
            }
        }
        let signed = kinds.iter().filter(|k| **k == C).count();
        assert_eq!(kinds, [E, E, E, C, E, E, E, C, E, C]);
        assert_eq!(kinds.iter().filter(|k| **k == E).count(), 7);
        let report = verify(&store, &key, &copies);
        assert!(report.ok(), "{report:?}");
        assert!(report.signatures_checked);
        let n = signed as u64;
        assert_eq!((report.checkpoints, report.external_checkpoints), (n, n));
        assert_eq!(report.checkpoint_seq, Some(kinds.len() as u64 - 1));

        // A restart chains on to the last checkpoint.
        session(&store, &key, &copies, 2, 100).await;
        let report = verify(&store, &key, &copies);
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.checkpoints, n + 1);
        let all = CheckpointDir::read_all(&copies).expect("read");
        assert_eq!(
            all[signed].prev_signature.as_deref(),
            Some(all[signed - 1].signature.as_str())
        );
    }

    #[tokio::test]
    async fn a_checkpoint_is_signed_only_when_something_is_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("taskgate.db");
        let (w, _r) = sqlite::open(&store, Durability::Normal).expect("open");
        let key = CheckpointKey::generate().expect("key");
        let checkpointing = Checkpointing {
            key,
            every: 1_000,
            dir: None,
        };
        let (writer, thread) = Writer::start_with(w, Some(checkpointing)).expect("start");
        assert_eq!(writer.checkpoint().await.expect("checkpoint"), None);
        writer.append(draft(0)).await.expect("append");
        assert_eq!(writer.checkpoint().await.expect("checkpoint"), Some(2));
        assert_eq!(writer.checkpoint().await.expect("checkpoint"), None);
        drop(writer);
        thread.join();
        // Nothing new since the last one: no checkpoint at shutdown either.
        assert_eq!(types(&store).len(), 2);
    }

    #[tokio::test]
    async fn the_external_copies_reveal_a_cut_off_log_and_a_wrong_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("taskgate.db");
        let copies = dir.path().join("checkpoints");
        let key = CheckpointKey::generate().expect("key");
        session(&store, &key, &copies, 10, 4).await;
        let other = CheckpointKey::generate().expect("key");
        let reader = sqlite::open_read_only(&store).expect("reader");
        let mut verifier = Verifier::with_key(Some(other.public_key()));
        reader
            .scan_events(&mut |row| verifier.push(row))
            .expect("scan");
        assert!(
            !verifier.finish().ok(),
            "a checkpoint verified with another key"
        );

        // Cut the newest records off, as someone with the file could.
        let conn = rusqlite::Connection::open(&store).expect("open");
        conn.execute_batch("DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq > 9;")
            .expect("cut");
        drop(conn);
        let alone = {
            let mut verifier = Verifier::with_key(Some(key.public_key()));
            reader
                .scan_events(&mut |row| verifier.push(row))
                .expect("scan");
            verifier.finish()
        };
        assert!(alone.ok(), "a bare chain cannot see a cut: {alone:?}");
        let report = verify(&store, &key, &copies);
        let problem = report.problem.expect("truncation found");
        assert_eq!(problem.kind, ProblemKind::Truncated, "{problem}");
        let newest = CheckpointDir::read_all(&copies).expect("read");
        let newest: &Checkpoint = newest.last().expect("a copy");
        assert!(
            problem.detail.contains(&newest.seq.to_string()),
            "{problem}"
        );
    }

    #[test]
    fn the_key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/audit.key");
        let created = load_or_create_key(&path).expect("create");
        let again = load_or_create_key(&path).expect("read");
        assert_eq!(created.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key").expect("write");
        let error = load_or_create_key(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("is not an Ed25519 signing key"), "{error}");
    }
}
