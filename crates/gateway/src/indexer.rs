//! Keeps the audit search index close behind the chain, off the data
//! plane's path: a catch-up every interval, on a blocking thread.

use std::sync::Arc;
use std::time::Duration;

use taskgate_store::index::AuditIndex;
use tokio::sync::watch;

use crate::storage::SharedLogMirror;

/// How often the index catches up; a search catches up first anyway, so
/// this only bounds how much work a search may find waiting.
const INTERVAL: Duration = Duration::from_millis(500);

/// In a fleet, the node's mirror of the shared log is caught up first.
pub async fn run(
    index: Arc<AuditIndex>,
    mirror: Option<Arc<SharedLogMirror>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
        let index = Arc::clone(&index);
        let mirror = mirror.clone();
        let caught_up = tokio::task::spawn_blocking(move || {
            if let Some(mirror) = mirror {
                mirror.catch_up()?;
            }
            index.catch_up()
        });
        match caught_up.await {
            Ok(Ok(_)) => failing = false,
            Ok(Err(error)) if !failing => {
                // Once per failure streak: a broken index must not flood the log.
                failing = true;
                tracing::error!(%error, "the audit index cannot catch up; searches will report the same error");
            }
            Ok(Err(_)) => {}
            Err(error) => tracing::error!(%error, "the audit indexer stopped unexpectedly"),
        }
    }
}
