//! Export: every event reaches each configured sink in order, at least once,
//! across restarts and outages. One task per sink reads events after its
//! durable cursor, delivers a batch, and moves the cursor only once the
//! sink acknowledged it. A failure is retried on a growing schedule with
//! jitter (seconds, then minutes, then hours, in the spirit of Svix's);
//! an event the sink refuses for good is parked, logged, and passed. Parked
//! events an operator queues again (`taskgate sinks redeliver`) are sent
//! before the next page, out of order; receivers deduplicate by event id.

mod file;
mod nats;
mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use taskgate_audit::exported;
use taskgate_policy::config::{Sink as SinkConfig, SinkKind};
use taskgate_store::StoreRead;
use taskgate_store::sinks::SinkLedger;
use tokio::sync::watch;
use wildmatch::WildMatch;

use crate::metrics::Metrics;

/// Delays between attempts at the same events; the last repeats.
const RETRY_SCHEDULE: &[u64] = &[1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
/// Events read from the store at a time.
const PAGE_EVENTS: usize = 1_000;
/// How long a sink with nothing to send waits before looking again.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// A sink behind by more than this logs its lag (at most once a minute).
const LAG_LOG_EVENTS: u64 = 10_000;

/// One event ready to send.
pub struct Outgoing {
    pub seq: u64,
    /// `<chain>:<seq>`: the same on every attempt.
    pub id: String,
    pub json: Value,
}

/// Why a delivery did not go through.
pub enum Failure {
    /// Try the same events again later.
    Retry(String),
    /// The sink refuses these events for good: park them and go on.
    Park(String),
}

pub type Delivery<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// A destination for events.
pub trait Deliver: Send + Sync {
    fn deliver<'a>(&'a mut self, events: &'a [Outgoing]) -> Delivery<'a>;
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink {name}: {error}")]
    Setup { name: String, error: String },
}

struct Runner {
    name: String,
    types: Vec<WildMatch>,
    batch: usize,
    deliver: Box<dyn Deliver>,
    state: Arc<dyn SinkLedger>,
    reader: Arc<dyn StoreRead>,
    metrics: Arc<Metrics>,
    /// In a fleet, the lease this node must hold to deliver the sink.
    lease: Option<crate::fleet::Lease>,
}

/// Starts one delivery task per configured sink.
pub fn start(
    sinks: &[SinkConfig],
    state: Arc<dyn SinkLedger>,
    reader: Arc<dyn StoreRead>,
    metrics: Arc<Metrics>,
    lease: impl Fn(&str) -> Option<crate::fleet::Lease>,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, SinkError> {
    let mut tasks = Vec::new();
    for config in sinks {
        let setup = |error: String| SinkError::Setup {
            name: config.name.clone(),
            error,
        };
        let (deliver, default_batch): (Box<dyn Deliver>, usize) = match config.kind {
            SinkKind::Webhook => (Box::new(webhook::Webhook::new(config).map_err(setup)?), 1),
            SinkKind::File => (Box::new(file::FileSink::new(config).map_err(setup)?), 500),
            SinkKind::Nats => (Box::new(nats::NatsSink::new(config).map_err(setup)?), 100),
        };
        let runner = Runner {
            name: config.name.clone(),
            types: config.types.iter().map(|t| WildMatch::new(t)).collect(),
            batch: config.batch.unwrap_or(default_batch).max(1),
            deliver,
            state: Arc::clone(&state),
            reader: Arc::clone(&reader),
            metrics: Arc::clone(&metrics),
            lease: lease(&config.name),
        };
        tracing::info!(sink = %config.name, kind = config.kind.as_str(), "export sink started");
        tasks.push(tokio::spawn(runner.run(shutdown.clone())));
    }
    Ok(tasks)
}

/// A delay from the schedule, give or take a fifth, so sinks that failed
/// together do not retry together.
fn backoff(attempt: usize) -> Duration {
    let base = RETRY_SCHEDULE[attempt.min(RETRY_SCHEDULE.len() - 1)] as f64;
    let mut bytes = [0u8; 2];
    let unit = match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX),
        Err(_) => 0.5,
    };
    Duration::from_secs_f64(base * (0.8 + 0.4 * unit))
}

/// An event as the sink gets it.
fn outgoing(row: &taskgate_audit::EventRow) -> Result<Outgoing, String> {
    let seq = u64::try_from(row.seq).unwrap_or(0);
    let json =
        exported(&row.body, &row.hash).map_err(|e| format!("record {seq} cannot be read: {e}"))?;
    let id = json["id"].as_str().unwrap_or_default().to_owned();
    Ok(Outgoing { seq, id, json })
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> taskgate_store::Result<T> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

impl Runner {
    fn wanted(&self, event_type: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t.matches(event_type))
    }

    /// The next page after `cursor`: the events this sink wants, and the
    /// last sequence number looked at (events filtered out are passed over).
    async fn page(&self, cursor: u64) -> Result<(Vec<Outgoing>, u64), String> {
        let reader = Arc::clone(&self.reader);
        let rows = blocking(move || reader.events_after(cursor, PAGE_EVENTS)).await?;
        let mut wanted = Vec::new();
        let mut through = cursor;
        for row in rows {
            let seq = u64::try_from(row.seq).unwrap_or(0);
            if self.wanted(&row.event_type) {
                wanted.push(outgoing(&row)?);
            }
            through = seq;
        }
        Ok((wanted, through))
    }

    /// Sends parked events an operator queued again, in batches; returns
    /// how many went (delivered or parked again). A batch the sink should
    /// get later stays queued and ends the round with its error.
    async fn redeliver(&mut self) -> Result<usize, String> {
        let (state, name) = (Arc::clone(&self.state), self.name.clone());
        let seqs = blocking(move || state.queued(&name, PAGE_EVENTS)).await?;
        if seqs.is_empty() {
            return Ok(0);
        }
        let reader = Arc::clone(&self.reader);
        let events = blocking(move || {
            let mut rows = Vec::with_capacity(seqs.len());
            for seq in seqs {
                let row = reader
                    .events_after(seq.saturating_sub(1), 1)?
                    .into_iter()
                    .next();
                // Only that event: never a later one in its place.
                rows.extend(row.filter(|r| u64::try_from(r.seq).ok() == Some(seq)));
            }
            Ok(rows)
        })
        .await?
        .iter()
        .map(outgoing)
        .collect::<Result<Vec<_>, _>>()?;
        for chunk in events.chunks(self.batch) {
            let seqs: Vec<u64> = chunk.iter().map(|e| e.seq).collect();
            let (state, name) = (Arc::clone(&self.state), self.name.clone());
            match self.deliver.deliver(chunk).await {
                Ok(()) => {
                    tracing::info!(sink = %self.name, first = seqs.first(), last = seqs.last(), "parked events sent again");
                    blocking(move || state.redelivered(&name, &seqs)).await?;
                }
                Err(Failure::Park(reason)) => {
                    tracing::warn!(sink = %self.name, first = seqs.first(), last = seqs.last(), %reason, "the sink refused parked events again: they stay parked");
                    blocking(move || state.parked_again(&name, &seqs, &reason)).await?;
                }
                Err(Failure::Retry(reason)) => {
                    let error = format!("sending parked events again failed: {reason}");
                    let _ = blocking(move || state.failed(&name, &reason)).await;
                    return Err(error);
                }
            }
        }
        Ok(events.len())
    }

    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut attempt = 0usize;
        let mut last_lag_log: Option<tokio::time::Instant> = None;
        // Read once, then kept here: the store is written only as it moves.
        let mut cursor: Option<u64> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Some(lease) = self.lease.as_mut()
                && !lease.held()
            {
                // Another node delivers the sink; when this one takes it
                // over, it goes on from the cursor that node left.
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = lease.acquired() => {}
                }
                cursor = None;
                continue;
            }
            let at = match cursor {
                Some(at) => at,
                None => {
                    let state = Arc::clone(&self.state);
                    let name = self.name.clone();
                    match blocking(move || state.cursor(&name)).await {
                        Ok(at) => *cursor.insert(at),
                        Err(error) => {
                            tracing::error!(sink = %self.name, %error, "cannot read the sink's cursor");
                            self.pause(&mut shutdown, backoff(attempt)).await;
                            attempt += 1;
                            continue;
                        }
                    }
                }
            };
            match self.redeliver().await {
                Ok(0) => {}
                Ok(_) => {
                    attempt = 0;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(sink = %self.name, %error, "will retry");
                    self.pause(&mut shutdown, backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
            }
            let (events, through) = match self.page(at).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(sink = %self.name, %error, "cannot read events for the sink");
                    self.pause(&mut shutdown, backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
            };
            self.report_lag(at, &mut last_lag_log).await;
            if through == at {
                self.pause(&mut shutdown, IDLE_POLL).await;
                continue;
            }
            match self.send_page(&events, through, &mut shutdown).await {
                Ok(()) => {
                    attempt = 0;
                    cursor = Some(through);
                }
                Err(moved) => {
                    // Retry from where the sink got to.
                    cursor = moved;
                    attempt += 1;
                    self.pause(&mut shutdown, backoff(attempt - 1)).await;
                }
            }
        }
    }

    /// Delivers a page in batches, moving the cursor after each; on a
    /// failure, returns where the cursor stands (None: read it again).
    async fn send_page(
        &mut self,
        events: &[Outgoing],
        through: u64,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Option<u64>> {
        let mut done: Option<u64> = None;
        for chunk in events.chunks(self.batch) {
            if *shutdown.borrow() {
                return Err(done);
            }
            let last = chunk.last().map_or(0, |e| e.seq);
            let seqs: Vec<u64> = chunk.iter().map(|e| e.seq).collect();
            let state = Arc::clone(&self.state);
            let name = self.name.clone();
            let recorded = match self.deliver.deliver(chunk).await {
                Ok(()) => {
                    let delivered = seqs.len() as u64;
                    blocking(move || state.advance(&name, last, delivered)).await
                }
                Err(Failure::Park(reason)) => {
                    tracing::warn!(sink = %self.name, first = seqs.first(), last = seqs.last(), %reason, "the sink refused events for good: parked, going on");
                    blocking(move || state.park(&name, &seqs, last, &reason)).await
                }
                Err(Failure::Retry(reason)) => {
                    tracing::warn!(sink = %self.name, first = seqs.first(), %reason, "delivery failed; will retry");
                    let _ = blocking(move || state.failed(&name, &reason)).await;
                    return Err(done);
                }
            };
            if let Err(error) = recorded {
                tracing::error!(sink = %self.name, %error, "cannot record the sink's progress; it will resend");
                return Err(None);
            }
            done = Some(last);
        }
        // Events filtered out at the page's end are passed over too.
        if done != Some(through) {
            let state = Arc::clone(&self.state);
            let name = self.name.clone();
            if blocking(move || state.advance(&name, through, 0))
                .await
                .is_err()
            {
                return Err(None);
            }
        }
        Ok(())
    }

    async fn report_lag(&self, through: u64, last_log: &mut Option<tokio::time::Instant>) {
        let reader = Arc::clone(&self.reader);
        let Ok(head) = blocking(move || reader.head_seq()).await else {
            return;
        };
        let lag = head.saturating_sub(through);
        self.metrics.sink_lag(&self.name, lag);
        if lag > LAG_LOG_EVENTS && last_log.is_none_or(|at| at.elapsed() > Duration::from_secs(60))
        {
            tracing::warn!(sink = %self.name, lag, "export sink is behind");
            *last_log = Some(tokio::time::Instant::now());
        }
    }

    async fn pause(&self, shutdown: &mut watch::Receiver<bool>, wait: Duration) {
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
