//! Closes windows on time: sleeps until the next task deadline (or until a
//! new deadline appears), then expires whatever is due, each with its event.

use std::sync::Arc;
use std::time::Duration;

use taskgate_audit::Timestamp;
use taskgate_store::{StoreRead, Writer};
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;
use crate::pg::sessions::{CloseReason, Sessions};

/// Longest sleep without re-reading deadlines: a backstop, not the schedule.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// Slack after a deadline, so the writer's clock is surely past it.
const DEADLINE_SLACK: Duration = Duration::from_millis(2);
/// Wait after a failed attempt before trying again.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// Expires everything already due; returns how many tasks it expired.
pub async fn expire_due(
    writer: &Writer,
    metrics: Option<&Metrics>,
    sessions: Option<&Sessions>,
) -> Result<usize, taskgate_store::OpError> {
    let expired = writer.expire_due().await?;
    for task in &expired {
        if let Some(sessions) = sessions {
            sessions.close_task(&task.id, CloseReason::WindowEnded);
        }
        tracing::info!(task = %task.id, name = ?task.name, "task expired");
        if let Some(metrics) = metrics {
            metrics.task_entered(task.state.as_str());
        }
    }
    Ok(expired.len())
}

pub async fn run(
    reader: Arc<dyn StoreRead>,
    writer: Writer,
    metrics: Arc<Metrics>,
    sessions: Arc<Sessions>,
    deadlines: Arc<Notify>,
    mut lease: Option<crate::fleet::Lease>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if let Some(lease) = lease.as_mut()
            && !lease.held()
        {
            // Another node of the fleet expires tasks; the announcement of
            // each expiry closes this node's sessions.
            tokio::select! {
                _ = lease.acquired() => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let pause = match expire_due(&writer, Some(&metrics), Some(&sessions)).await {
            Err(error) => {
                tracing::error!(%error, "could not expire due tasks; retrying");
                RETRY_AFTER_ERROR
            }
            Ok(_) => {
                let reader = Arc::clone(&reader);
                match tokio::task::spawn_blocking(move || reader.next_deadline()).await {
                    Ok(Ok(Some(deadline))) => Timestamp::now()
                        .until(deadline)
                        .saturating_add(DEADLINE_SLACK)
                        .min(MAX_IDLE),
                    Ok(Ok(None)) => MAX_IDLE,
                    Ok(Err(error)) => {
                        tracing::error!(%error, "could not read the next deadline");
                        RETRY_AFTER_ERROR
                    }
                    Err(error) => {
                        tracing::error!(%error, "deadline lookup failed");
                        RETRY_AFTER_ERROR
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = deadlines.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
