//! Audit writer benchmark: events/s and commit latency (p50/p99) with 1, 16
//! and 256 concurrent callers, each appending realistic `command.started`
//! events and awaiting their commit, on the embedded store with its default
//! durability (WAL, `synchronous = FULL`).
//!
//!   cargo run --release -p taskgate-bench -- [--seconds N] [--callers 1,16,256] [--durability full|normal]
//!   PGPASSWORD=... cargo run --release -p taskgate-bench -- --store-url postgres://user@host:port/db
//!
//! With `--store-url`, the writer is a fleet node's: each round of waiting
//! events is one transaction on that PostgreSQL store (its chain grows).
//!
//! Figures go in docs/performance.md. This is a measurement, not a test: it
//! asserts nothing about time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use taskgate_audit::{EventDraft, EventType, Identity, IdentityKind, Timestamp};
use taskgate_store::Writer;
use taskgate_store::postgres::PgOptions;
use taskgate_store::sqlite::{self, Durability};

struct Options {
    seconds: u64,
    callers: Vec<usize>,
    durability: Durability,
    /// A shared PostgreSQL store instead of a fresh SQLite file.
    store_url: Option<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        seconds: 5,
        callers: vec![1, 16, 256],
        durability: Durability::Full,
        store_url: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--seconds" => options.seconds = value.parse()?,
            "--callers" => {
                options.callers = value.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--durability" => {
                options.durability = match value.as_str() {
                    "full" => Durability::Full,
                    "normal" => Durability::Normal,
                    other => bail!("unknown durability {other:?}"),
                }
            }
            "--store-url" => options.store_url = Some(value),
            other => bail!("unknown option {other:?}"),
        }
    }
    Ok(options)
}

/// A statement event as the data plane will write it.
fn draft(identity: &Identity, caller: usize, i: u64) -> EventDraft {
    EventDraft::new(EventType::CommandStarted, Timestamp::now())
        .identity(identity)
        .task(format!("tsk_{caller:016x}"))
        .session(format!("ses_{caller:016x}"))
        .connection("orders-db")
        .payload(json!({
            "sql": "SELECT id, status, total FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 20",
            "params": [i.to_string()],
            "class": "read",
            "tables_read": ["orders"],
            "tables_written": [],
            "statement": i,
        }))
}

struct Run {
    events: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    batches: u64,
    /// Time the writer thread spent applying and committing batches.
    busy_micros: u64,
    /// Size of the WAL file at the end: stays bounded under steady load.
    wal_bytes: u64,
}

/// A writer on the store the options name: a fresh SQLite file in `dir`,
/// or the shared store (opened off the runtime: its client blocks).
async fn writer(
    options: &Options,
    dir: &std::path::Path,
) -> anyhow::Result<(Writer, taskgate_store::WriterThread)> {
    match &options.store_url {
        None => {
            let (store, _reader) = sqlite::open(&dir.join("bench.db"), options.durability)?;
            Ok(Writer::start(store)?)
        }
        Some(url) => {
            let mut config: tokio_postgres::Config = url.parse()?;
            if let Ok(password) = std::env::var("PGPASSWORD") {
                config.password(password);
            }
            let options = PgOptions::new(config, None);
            Ok(tokio::task::spawn_blocking(move || {
                let (store, _reader) = taskgate_store::postgres::open(options, "bench")?;
                Writer::start_shared(store, None)
            })
            .await??)
        }
    }
}

async fn run(callers: usize, options: &Options) -> anyhow::Result<Run> {
    let seconds = options.seconds;
    let dir = tempfile::tempdir()?;
    let (writer, thread) = writer(options, dir.path()).await?;
    let identity = Arc::new(Identity {
        claims: [("repository".to_owned(), "acme/shop".to_owned())].into(),
        groups: vec!["agents".into()],
        issuer: "https://token.actions.githubusercontent.com".into(),
        kind: IdentityKind::Agent,
        subject: "repo:acme/shop:ref:refs/heads/main".into(),
    });
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(callers);
    for caller in 0..callers {
        let writer = writer.clone();
        let identity = Arc::clone(&identity);
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                writer.append(draft(&identity, caller, i)).await?;
                latencies.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                i += 1;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies_us = Vec::new();
    for handle in handles {
        latencies_us.extend(handle.await??);
    }
    let elapsed = started.elapsed();
    let batches = writer
        .stats()
        .batches
        .load(std::sync::atomic::Ordering::Relaxed);
    let busy_micros = writer
        .stats()
        .commit_micros
        .load(std::sync::atomic::Ordering::Relaxed);
    let wal_bytes = std::fs::metadata(dir.path().join("bench.db-wal")).map_or(0, |m| m.len());
    drop(writer);
    tokio::task::spawn_blocking(move || thread.join()).await?;
    latencies_us.sort_unstable();
    Ok(Run {
        events: latencies_us.len() as u64,
        elapsed,
        latencies_us,
        batches,
        busy_micros,
        wal_bytes,
    })
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store = match &options.store_url {
        Some(_) => "a shared PostgreSQL store".to_owned(),
        None => format!("SQLite, durability {:?}", options.durability),
    };
    println!(
        "audit writer, {}s per case, {store}, {} cores",
        options.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| callers | events/s | p50 commit ms | p99 commit ms | events per batch | writer busy | WAL MiB |"
    );
    println!(
        "|--------:|---------:|--------------:|--------------:|-----------------:|------------:|--------:|"
    );
    for callers in options.callers.iter().copied() {
        let result = runtime.block_on(run(callers, &options))?;
        let rate = result.events as f64 / result.elapsed.as_secs_f64();
        println!(
            "| {callers} | {rate:.0} | {:.3} | {:.3} | {:.1} | {:.0}% | {} |",
            percentile(&result.latencies_us, 0.50),
            percentile(&result.latencies_us, 0.99),
            result.events as f64 / result.batches.max(1) as f64,
            result.busy_micros as f64 / result.elapsed.as_micros() as f64 * 100.0,
            result.wal_bytes >> 20,
        );
    }
    Ok(())
}
