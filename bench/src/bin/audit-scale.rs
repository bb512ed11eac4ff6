//! The auditor's questions at scale: fills a store with millions of
//! realistic events through the real writer, builds the search index, and
//! times each `docs/auditing.md` recipe, a 10,000-command task's story and
//! `audit verify`, and reports the store's size per event.
//!
//!   cargo run --release -p taskgate-bench --bin audit-scale -- [--events 10000000] [--store PATH] [--keep] [--reuse-index]
//!
//! With `--store PATH` of an existing store, filling is skipped and only the
//! measurements run (`--reuse-index` skips rebuilding its index too).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use taskgate_audit::{EventDraft, EventType, Identity, IdentityKind, Story, Timestamp};
use taskgate_policy::{Access, Task, TaskState};
use taskgate_store::index::{AuditIndex, EventQuery};
use taskgate_store::sqlite::{self, Durability};
use taskgate_store::{StoreRead, TaskSecrets, Writer};

/// The generated history starts here and spans 30 days.
const START_MICROS: i64 = 1_793_000_000_000_000;
const DAY_MICROS: i64 = 86_400_000_000;
const SPAN_DAYS: i64 = 30;
/// Commands in the one task whose story is timed.
const BIG_TASK_COMMANDS: u64 = 10_000;

struct Options {
    events: u64,
    store: Option<PathBuf>,
    keep: bool,
    /// Catch the existing index up instead of rebuilding it.
    reuse_index: bool,
    /// Also give every generated task its row in the task table (ended),
    /// so a gateway serving the store lists and shows them (the console's
    /// figures, bench/console-scale.sh).
    task_rows: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        events: 10_000_000,
        store: None,
        keep: false,
        reuse_index: false,
        task_rows: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--events" => options.events = args.next().context("--events N")?.parse()?,
            "--store" => options.store = Some(args.next().context("--store PATH")?.into()),
            "--keep" => options.keep = true,
            "--reuse-index" => options.reuse_index = true,
            "--task-rows" => options.task_rows = true,
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(options)
}

/// A small deterministic generator (xorshift64*): the same history every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

struct World {
    agents: Vec<Identity>,
    humans: Vec<Identity>,
    connections: Vec<String>,
    /// Table names, the first few much more used than the rest.
    tables: Vec<String>,
}

fn world() -> World {
    let agent = |i: usize| Identity {
        claims: [
            ("repository".to_owned(), format!("acme/service-{}", i % 12)),
            ("workflow".to_owned(), "agent.yml".to_owned()),
            ("run_id".to_owned(), format!("{}", 9_000_000 + i * 7)),
            ("actor".to_owned(), format!("dev{}", i % 9)),
        ]
        .into(),
        groups: vec![],
        issuer: "https://token.actions.githubusercontent.com".into(),
        kind: IdentityKind::Agent,
        subject: format!("repo:acme/service-{}:ref:refs/heads/main#{i}", i % 12),
    };
    let human = |i: usize| Identity {
        claims: Default::default(),
        groups: vec![if i.is_multiple_of(5) { "dba" } else { "dev" }.into()],
        issuer: "https://idp.acme.example".into(),
        kind: IdentityKind::Human,
        subject: format!("person{i}@acme.example"),
    };
    let mut tables: Vec<String> = ["orders", "customers", "payments", "shipments", "invoices"]
        .iter()
        .map(|t| t.to_string())
        .collect();
    for schema in ["shop", "billing", "crm", "ops"] {
        for i in 0..30 {
            tables.push(format!("{schema}.t{i}"));
        }
    }
    World {
        agents: (0..60).map(agent).collect(),
        humans: (0..40).map(human).collect(),
        connections: (0..8).map(|i| format!("db-{i}")).collect(),
        tables,
    }
}

/// A plausible statement: (sql, class, read, written).
fn statement(rng: &mut Rng, world: &World) -> (String, &'static str, Vec<String>, Vec<String>) {
    // Half of all statements touch one of the five hot tables.
    let table = if rng.below(2) == 0 {
        world.tables[rng.below(5) as usize].clone()
    } else {
        rng.pick(&world.tables).clone()
    };
    let other = rng.pick(&world.tables).clone();
    let id = rng.below(1_000_000);
    match rng.below(100) {
        0..=69 => (
            format!(
                "SELECT a.*, b.status FROM {table} a JOIN {other} b ON b.id = a.ref_id WHERE a.id = {id} ORDER BY a.created_at DESC LIMIT 50"
            ),
            "read",
            vec![table, other],
            vec![],
        ),
        70..=84 => (
            format!("UPDATE {table} SET status = 'done', updated_at = now() WHERE id = {id}"),
            "write",
            vec![table.clone()],
            vec![table],
        ),
        85..=96 => (
            format!(
                "INSERT INTO {table} (id, status, payload) VALUES ({id}, 'new', '{{\"k\": {id}}}')"
            ),
            "write",
            vec![],
            vec![table],
        ),
        97 => (
            format!("ALTER TABLE {table} ADD COLUMN note_{id} text"),
            "ddl",
            vec![],
            vec![table],
        ),
        _ => ("BEGIN".into(), "tcl", vec![], vec![]),
    }
}

/// Queues one task's whole life: request, maybe approval, sessions of
/// commands with outcomes, end. Returns the events queued.
async fn task_life(
    writer: &Writer,
    rng: &mut Rng,
    world: &World,
    id: &str,
    start: Timestamp,
    commands: u64,
) -> anyhow::Result<u64> {
    let human_task = rng.below(4) == 0;
    let requester = if human_task {
        rng.pick(&world.humans).clone()
    } else {
        rng.pick(&world.agents).clone()
    };
    let connection = rng.pick(&world.connections).clone();
    let needs_approval = rng.below(3) == 0;
    let mut t = start.as_micros();
    let mut count = 0u64;
    let mut queue = |draft: EventDraft| {
        count += 1;
        writer.append_queued(draft)
    };
    let task_event = |kind, t: i64| {
        EventDraft::new(kind, Timestamp::from_micros(t))
            .task(id)
            .connection(connection.clone())
    };
    queue(
        task_event(EventType::TaskRequested, t)
            .identity(&requester)
            .payload(json!({
                "name": format!("task-{}", rng.below(500)),
                "reason": "generated history",
                "ref": format!("acme/service#{}", rng.below(10_000)),
                "access": "write",
                "window_secs": 1800,
                "needs_approval": needs_approval,
            })),
    )
    .await?;
    if needs_approval {
        t += 30_000_000;
        let approver = rng.pick(&world.humans).clone();
        queue(
            task_event(EventType::TaskApproved, t)
                .identity(&approver)
                .payload(json!({"comment": "looks fine", "review": format!("rev_{id}")})),
        )
        .await?;
    }
    queue(task_event(EventType::TaskActivated, t)).await?;
    let sessions = 1 + commands / 2_000;
    let mut done = 0;
    for s in 0..sessions {
        let session = format!("ses_{id}_{s}");
        let base = |kind, t: i64| {
            task_event(kind, t)
                .identity(&requester)
                .session(session.clone())
        };
        queue(base(EventType::SessionOpened, t).payload(json!({
            "access": "write", "application_name": "psql", "client_addr": "10.0.3.7:51234", "tls": true
        })))
        .await?;
        let in_session = (commands - done).min(commands / sessions + 1);
        for n in 1..=in_session {
            t += 1_000 + rng.below(400_000) as i64;
            let (sql, class, read, written) = statement(rng, world);
            if rng.below(50) == 0 {
                queue(base(EventType::CommandDenied, t).payload(json!({
                    "class": class, "command_type": "X", "protocol": "simple", "sql": sql,
                    "tables_read": read, "tables_written": written,
                    "decision": "deny", "reason": "statement rule 1 denies it",
                })))
                .await?;
                continue;
            }
            queue(base(EventType::CommandStarted, t).payload(json!({
                "class": class, "command": n, "command_type": "X", "protocol": "extended",
                "sql": sql, "tables_read": read, "tables_written": written,
                "params": [format!("{}", rng.below(1000))],
            })))
            .await?;
            queue(base(EventType::CommandCompleted, t + 300).payload(json!({
                "command": n, "duration_us": 300, "outcome": "ok", "rows": rng.below(50), "tag": "SELECT 1",
            })))
            .await?;
        }
        done += in_session;
        queue(base(EventType::SessionClosed, t).payload(json!({
            "commands": in_session, "duration_us": 1_000_000, "reason": "client disconnected"
        })))
        .await?;
    }
    queue(
        task_event(EventType::TaskEnded, t)
            .identity(&requester)
            .payload(json!({"reason": "ended by requester"})),
    )
    .await?;
    Ok(count)
}

/// A row in the task table for a generated task, as the gateway keeps one
/// (its token's secrets are placeholders: nobody logs in); its window
/// passed long ago, so `fill` expires it with the rest.
async fn task_row(writer: &Writer, world: &World, id: &str, n: u64, at: i64) -> anyhow::Result<()> {
    let requester = world.agents[n as usize % world.agents.len()].clone();
    let task = Task {
        id: id.to_owned(),
        name: format!("task-{}", n % 500),
        reason: Some("generated history".into()),
        reference: Some(format!("acme/service#{}", n % 10_000)),
        connection: world.connections[n as usize % world.connections.len()].clone(),
        access: Access::Write,
        window_secs: 1800,
        requester,
        state: TaskState::Active,
        requested_at: Timestamp::from_micros(at),
        decide_by: None,
        starts_at: Some(Timestamp::from_micros(at)),
        ends_at: Some(Timestamp::from_micros(at + 1_800_000_000)),
        approvers: vec![],
        approval: None,
        closing: None,
    };
    let secrets = TaskSecrets {
        token_sha256: [0; 32],
        scram_verifier: "SCRAM-SHA-256$4096:AAAA$AAAA:AAAA".into(),
    };
    writer.create_task(task, secrets, None).await?;
    Ok(())
}

async fn fill(path: &Path, events: u64, task_rows: bool) -> anyhow::Result<String> {
    let (store, _reader) = sqlite::open(path, Durability::Normal)?;
    let (writer, thread) = Writer::start(store)?;
    let world = world();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let mut written = 0u64;
    let mut n = 0u64;
    let big_task = "tsk_big".to_owned();
    while written < events {
        // Tasks start in time order across the span.
        let span = (SPAN_DAYS * DAY_MICROS) as f64;
        let at = START_MICROS + (span * written as f64 / events as f64) as i64;
        let (id, commands) = if n == 100 {
            (big_task.clone(), BIG_TASK_COMMANDS)
        } else {
            (format!("tsk_{n:08}"), 5 + rng.below(150))
        };
        written += task_life(
            &writer,
            &mut rng,
            &world,
            &id,
            Timestamp::from_micros(at),
            commands,
        )
        .await?;
        if task_rows {
            task_row(&writer, &world, &id, n, at).await?;
        }
        n += 1;
        if n.is_multiple_of(10_000) {
            eprintln!(
                "  {written} events queued, {:.0}/s",
                written as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    if task_rows {
        let expired = writer.expire_due().await?;
        eprintln!("  {} task rows, expired", expired.len());
    }
    writer
        .append(EventDraft::new(
            EventType::TaskEnded,
            Timestamp::from_micros(START_MICROS + SPAN_DAYS * DAY_MICROS),
        ))
        .await?;
    drop(writer);
    thread.join();
    println!(
        "filled {written} events ({n} tasks) in {:.1}s: {:.0} events/s",
        started.elapsed().as_secs_f64(),
        written as f64 / started.elapsed().as_secs_f64()
    );
    Ok(big_task)
}

fn file_size(path: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(PathBuf::from(name)).map_or(0, |m| m.len())
        })
        .sum()
}

/// Median time of `runs` runs of `work`, and the first run's (cold) time.
fn time<T>(
    runs: usize,
    mut work: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Duration, Duration, T)> {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        last = Some(work()?);
        times.push(started.elapsed());
    }
    let first = times[0];
    times.sort();
    Ok((first, times[times.len() / 2], last.context("no runs")?))
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn at_day(day: i64, hour: i64) -> Timestamp {
    Timestamp::from_micros(START_MICROS + day * DAY_MICROS + hour * 3_600_000_000)
}

fn measure(path: &Path, big_task: &str, reuse_index: bool) -> anyhow::Result<()> {
    let index = AuditIndex::open(path)?;
    let started = Instant::now();
    let state = if reuse_index {
        index.catch_up()?
    } else {
        index.rebuild()?
    };
    let build = started.elapsed();
    println!(
        "index built from the chain: {} events in {:.1}s ({:.0} events/s)",
        state.indexed,
        build.as_secs_f64(),
        state.indexed as f64 / build.as_secs_f64()
    );
    let events = state.through_seq.max(1);
    let store_bytes = file_size(path);
    let index_bytes = file_size(index.path());
    println!(
        "size: store {:.2} GiB ({} bytes/event), index {:.2} GiB ({} bytes/event)",
        store_bytes as f64 / (1u64 << 30) as f64,
        store_bytes / events,
        index_bytes as f64 / (1u64 << 30) as f64,
        index_bytes / events
    );

    let recipes: Vec<(&str, EventQuery)> = vec![
        (
            "who changed orders on day 15 (write, ddl; first page of 100)",
            EventQuery {
                table: Some("orders".into()),
                classes: vec!["write".into(), "ddl".into()],
                since: Some(at_day(15, 0)),
                until: Some(at_day(16, 0)),
                limit: 100,
                ..EventQuery::default()
            },
        ),
        (
            "did any agent read customers in a 2-hour incident window",
            EventQuery {
                table: Some("customers".into()),
                kind: Some(IdentityKind::Agent),
                since: Some(at_day(20, 14)),
                until: Some(at_day(20, 16)),
                limit: 100,
                ..EventQuery::default()
            },
        ),
        (
            "which task authorized DDL on orders (all 30 days, first page)",
            EventQuery {
                table: Some("orders".into()),
                classes: vec!["ddl".into()],
                limit: 100,
                ..EventQuery::default()
            },
        ),
        (
            "everything one agent did in a day",
            EventQuery {
                subject: Some("repo:acme/service-3:ref:refs/heads/main#3".into()),
                since: Some(at_day(10, 0)),
                until: Some(at_day(11, 0)),
                limit: 100,
                ..EventQuery::default()
            },
        ),
    ];
    println!("| query | hits | first run ms | median of 5 ms |");
    println!("|---|---:|---:|---:|");
    for (name, query) in &recipes {
        let (cold, median, page) = time(5, || Ok(index.search(query)?))?;
        println!(
            "| {name} | {}{} | {} | {} |",
            page.hits.len(),
            if page.next_after.is_some() { "+" } else { "" },
            ms(cold),
            ms(median)
        );
    }

    let (cold, median, (run, denied, lines)) = time(5, || {
        let events = index.task_events(big_task)?;
        let story = Story::from_events(big_task, events);
        let text = story.render();
        Ok((story.commands, story.denied, text.lines().count()))
    })?;
    println!(
        "story of a task with {} statements ({run} run, {denied} denied; {lines} lines): first {} ms, median {} ms",
        run + denied,
        ms(cold),
        ms(median)
    );

    let (_, fetch, events) = time(5, || Ok(index.task_events(big_task)?))?;
    let story = Story::from_events(big_task, events.clone());
    let (_, render, _) = time(5, || Ok(story.render()))?;
    println!(
        "  of which: reading and parsing its {} events {} ms, rendering the text {} ms",
        events.len(),
        ms(fetch),
        ms(render)
    );

    let reader = sqlite::open_read_only(path)?;
    let started = Instant::now();
    let report = reader.verify_chain(None, &[])?;
    let took = started.elapsed();
    println!(
        "audit verify: {} events in {:.1}s: {:.0} events/s, ok = {}",
        report.events,
        took.as_secs_f64(),
        report.events as f64 / took.as_secs_f64(),
        report.ok()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let dir = tempfile::Builder::new()
        .prefix("taskgate-scale")
        .tempdir_in(".")?;
    let (path, big_task) = match &options.store {
        Some(path) if path.exists() => (path.clone(), "tsk_big".to_owned()),
        other => {
            let path = other.clone().unwrap_or_else(|| dir.path().join("scale.db"));
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let big = runtime.block_on(fill(&path, options.events, options.task_rows))?;
            (path, big)
        }
    };
    measure(&path, &big_task, options.reuse_index)?;
    if options.keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    Ok(())
}
