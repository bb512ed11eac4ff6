//! Time-based signed checkpoints: the writer signs one every N events by
//! itself and one when it stops; this adds one every interval, so a quiet
//! gateway's newest events are covered too.

use std::path::Path;
use std::time::Duration;

use taskgate_store::Writer;
use tokio::sync::watch;

/// In a fleet, only the node holding `lease` signs them.
pub async fn run(
    writer: Writer,
    interval: Duration,
    lease: Option<crate::fleet::Lease>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if lease.as_ref().is_some_and(|lease| !lease.held()) {
            continue;
        }
        if let Err(error) = writer.checkpoint().await {
            tracing::error!(%error, "cannot sign an audit checkpoint");
        }
    }
}

/// Whether the checkpoint copies in `dir` would sit on the same filesystem
/// as the store at `store`: then they protect nothing against someone who
/// holds that disk (cutting the newest records and the newest copy
/// verifies). A folder not made yet is judged by the nearest one above it.
/// None when neither can be looked at.
pub fn on_store_disk(dir: &Path, store: &Path) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let device = |path: &Path| {
        path.ancestors()
            .filter(|p| !p.as_os_str().is_empty())
            .find_map(|p| std::fs::metadata(p).ok())
            .or_else(|| std::fs::metadata(".").ok())
            .map(|m| m.dev())
    };
    let store_dir = store.parent().unwrap_or(Path::new("."));
    Some(device(dir)? == device(store_dir)?)
}

/// What the gateway says, at start and in `/healthz`, when the checkpoint
/// copies share the store's disk.
pub fn same_disk_warning(dir: &Path, store: &Path) -> Option<String> {
    on_store_disk(dir, store)?.then(|| {
        format!(
            "audit.checkpoint_dir ({}) is on the same disk as the store ({}): its checkpoint copies do not protect the log against someone who holds that disk; point checkpoint_dir at another disk or a mounted evidence store",
            dir.display(),
            store.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_beside_the_store_is_on_its_disk() {
        let dir = std::env::temp_dir();
        let store = dir.join("taskgate.db");
        assert_eq!(
            on_store_disk(&dir.join("checkpoints/not-yet"), &store),
            Some(true)
        );
        assert!(same_disk_warning(&dir.join("checkpoints"), &store).is_some());
        // /proc is always another filesystem.
        assert_eq!(on_store_disk(Path::new("/proc"), &store), Some(false));
    }
}
