//! Time-based signed checkpoints: the writer signs one every N events by
//! itself and one when it stops; this adds one every interval, so a quiet
//! gateway's newest events are covered too.

use std::time::Duration;

use taskgate_store::Writer;
use tokio::sync::watch;

pub async fn run(writer: Writer, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = writer.checkpoint().await {
            tracing::error!(%error, "cannot sign an audit checkpoint");
        }
    }
}
