//! Sustained throughput of each export sink: a store filled with realistic
//! events, then one sink at a time delivering all of them from a fresh
//! cursor, timed until its cursor reaches the head.
//!
//!   cargo run --release -p taskgate-bench --bin sink-throughput -- [--events 200000]
//!
//! The webhook receiver is a loopback HTTP server in this process that
//! answers 204; the file sink writes to a temporary directory; the nats sink
//! publishes to the NATS JetStream server on 127.0.0.1:4222 (skipped if
//! none is running).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use taskgate_audit::{EventDraft, EventType, Identity, IdentityKind, Timestamp};
use taskgate_gateway::metrics::Metrics;
use taskgate_policy::HumanDuration;
use taskgate_policy::config::{Sink, SinkKind};
use taskgate_store::sinks::{SinkLedger, SinkState};
use taskgate_store::sqlite::{self, Durability};
use taskgate_store::{StoreRead, Writer};

async fn fill(path: &std::path::Path, events: u64) -> anyhow::Result<Arc<Metrics>> {
    let (store, _reader) = sqlite::open(path, Durability::Normal)?;
    let (writer, thread) = Writer::start(store)?;
    let metrics = Arc::new(Metrics::new(writer.stats()));
    let agent = Identity {
        claims: [("repository".to_owned(), "acme/shop".to_owned())].into(),
        groups: vec![],
        issuer: "https://token.actions.githubusercontent.com".into(),
        kind: IdentityKind::Agent,
        subject: "repo:acme/shop:ref:refs/heads/main".into(),
    };
    for i in 0..events {
        let draft = EventDraft::new(EventType::CommandStarted, Timestamp::now())
            .identity(&agent)
            .task("tsk_bench")
            .session("ses_bench")
            .connection("orders-db")
            .payload(json!({
                "class": "read", "command": i, "protocol": "extended",
                "sql": "SELECT o.id, o.total FROM orders o WHERE o.customer_id = $1 ORDER BY o.created_at DESC LIMIT 20",
                "params": [format!("{}", i % 1000)], "tables_read": ["orders"], "tables_written": [],
            }));
        writer.append_queued(draft).await?;
    }
    writer
        .append(EventDraft::new(EventType::TaskEnded, Timestamp::now()))
        .await?;
    drop(writer);
    thread.join();
    Ok(metrics)
}

fn sink(name: &str, kind: SinkKind) -> Sink {
    Sink {
        name: name.into(),
        kind,
        url: None,
        path: None,
        subject: None,
        stream: None,
        secret_env: None,
        secret_file: None,
        types: vec![],
        batch: None,
        timeout: HumanDuration(Duration::from_secs(10)),
        park_rejected: true,
        rotate_bytes: 64 * 1024 * 1024,
        rotate_every: HumanDuration(Duration::from_secs(3600)),
    }
}

/// Runs one sink until its cursor reaches the head; returns events/s.
async fn measure(
    store: &std::path::Path,
    config: Sink,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(u64, f64)> {
    let reader: Arc<dyn StoreRead> = Arc::new(sqlite::open_read_only(store)?);
    let head = reader.head_seq()?;
    let state: Arc<dyn SinkLedger> = Arc::new(SinkState::open(store)?);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let tasks = taskgate_gateway::sinks::start(
        std::slice::from_ref(&config),
        Arc::clone(&state),
        reader,
        Arc::clone(metrics),
        |_| None,
        stopped,
    )?;
    while state.cursor(&config.name)? < head {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("sink {} did not finish in 10 minutes", config.name);
        }
    }
    let took = started.elapsed();
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    Ok((head, head as f64 / took.as_secs_f64()))
}

async fn receiver() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|_body: axum::body::Bytes| async {
            axum::http::StatusCode::NO_CONTENT
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut events = 200_000u64;
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--events" => events = args.next().context("--events N")?.parse()?,
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("bench.db");
    let metrics = fill(&store, events).await?;
    println!("| sink | batch | events | events/s |");
    println!("|---|---:|---:|---:|");

    let addr = receiver().await?;
    let secret = dir.path().join("whsec");
    std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
    for batch in [1usize, 100] {
        let mut config = sink(&format!("webhook-{batch}"), SinkKind::Webhook);
        config.url = Some(format!("http://{addr}/hook"));
        config.secret_file = Some(secret.clone());
        config.batch = Some(batch);
        let (n, rate) = measure(&store, config, &metrics).await?;
        println!("| webhook (loopback receiver) | {batch} | {n} | {rate:.0} |");
    }

    let mut config = sink("file", SinkKind::File);
    config.path = Some(dir.path().join("out"));
    let (n, rate) = measure(&store, config, &metrics).await?;
    println!("| file (synced per batch) | 500 | {n} | {rate:.0} |");

    if tokio::net::TcpStream::connect("127.0.0.1:4222")
        .await
        .is_ok()
    {
        let mut config = sink("nats", SinkKind::Nats);
        let mut suffix = [0u8; 4];
        getrandom::fill(&mut suffix).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let suffix = hex::encode(suffix);
        config.url = Some("nats://127.0.0.1:4222".into());
        config.subject = Some(format!("taskgate.bench.{suffix}"));
        config.stream = Some(format!("TASKGATE_BENCH_{suffix}"));
        let (n, rate) = measure(&store, config, &metrics).await?;
        println!("| nats (JetStream, acks awaited) | 100 | {n} | {rate:.0} |");
        let client = async_nats::connect("nats://127.0.0.1:4222").await?;
        let _ = async_nats::jetstream::new(client)
            .delete_stream(format!("TASKGATE_BENCH_{suffix}"))
            .await;
    } else {
        println!("| nats | - | - | skipped: no server on 127.0.0.1:4222 |");
    }
    Ok(())
}
