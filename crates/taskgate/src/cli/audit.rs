//! `taskgate audit ...`: search the trail, tell a task's story, verify.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use taskgate_audit::{Story, Timestamp, Verifier};
use taskgate_gateway::audit_search::AuditSearchParams;
use taskgate_store::StoreRead;
use taskgate_store::index::AuditIndex;
use taskgate_store::sqlite;

use super::client::Client;
use super::{Format, Global, output};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Find events: who ran what, on which table, under which task, when.
    /// Every filter given must hold. Hits come in sequence order, a page at
    /// a time (`--after` continues where a page ended).
    Search {
        #[command(flatten)]
        filters: SearchArgs,
        /// Read the store file directly (offline) instead of asking the gateway.
        #[arg(long)]
        store: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// A task's whole record, told in order: who asked, who approved, every
    /// session and statement with its outcome, and how it ended.
    Story {
        /// The task id.
        task: String,
        /// Read the store file directly (offline) instead of asking the gateway.
        #[arg(long)]
        store: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Recompute the hash chain and name the first record that was changed,
    /// removed, inserted or reordered. Exits 1 if the log was tampered with.
    Verify {
        /// Read the store file directly (offline; the gateway may be stopped).
        /// Without it, ask the gateway.
        #[arg(long)]
        store: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Drop the search index of a store and build it again from the chain.
    Reindex {
        /// The store file.
        #[arg(long)]
        store: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// A table the statement read or wrote (`orders` matches it in any schema).
    #[arg(long)]
    table: Option<String>,
    /// Statement classes, comma-separated: read, write, ddl, dcl, tcl, utility, unknown.
    #[arg(long)]
    class: Option<String>,
    /// The acting identity's subject.
    #[arg(long)]
    identity: Option<String>,
    /// agent or human.
    #[arg(long)]
    kind: Option<String>,
    /// A task id.
    #[arg(long)]
    task: Option<String>,
    /// A connection name.
    #[arg(long)]
    connection: Option<String>,
    /// Event types, comma-separated (e.g. command.started,command.denied).
    #[arg(long = "type")]
    event_type: Option<String>,
    /// From this time: RFC 3339, a date (2026-11-25) or an age (7d, 2h).
    #[arg(long)]
    since: Option<String>,
    /// Before this time (same forms).
    #[arg(long)]
    until: Option<String>,
    /// Only events after this sequence number (a previous page's last).
    #[arg(long)]
    after: Option<u64>,
    /// Hits per page (1-1000, default 100).
    #[arg(long)]
    limit: Option<usize>,
}

impl From<SearchArgs> for AuditSearchParams {
    fn from(a: SearchArgs) -> Self {
        AuditSearchParams {
            table: a.table,
            class: a.class,
            identity: a.identity,
            kind: a.kind,
            task: a.task,
            connection: a.connection,
            event_type: a.event_type,
            since: a.since,
            until: a.until,
            after: a.after,
            limit: a.limit,
        }
    }
}

/// Runs index work on a blocking thread.
async fn with_index<T: Send + 'static>(
    store: &Path,
    work: impl FnOnce(&AuditIndex) -> taskgate_store::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    sqlite::open_read_only(store)?;
    let index = AuditIndex::open(store)?;
    Ok(tokio::task::spawn_blocking(move || work(&index)).await??)
}

pub async fn run(global: &Global, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Search {
            filters,
            store,
            format,
        } => search(global, filters.into(), store, format).await,
        AuditCommand::Story {
            task,
            store,
            format,
        } => story(global, task, store, format).await,
        AuditCommand::Verify { store, format } => verify(global, store, format).await,
        AuditCommand::Reindex { store } => {
            let state = with_index(&store, |index| index.rebuild()).await?;
            println!(
                "indexed {} events of {} into {}",
                state.indexed,
                store.display(),
                AuditIndex::path_for(&store).display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn search(
    global: &Global,
    params: AuditSearchParams,
    store: Option<PathBuf>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let page: Value = match store {
        Some(path) => {
            let query = params
                .to_query(Timestamp::now())
                .map_err(|e| anyhow::anyhow!("audit search: {e}"))?;
            let page = with_index(&path, move |index| index.search(&query)).await?;
            serde_json::to_value(page)?
        }
        None => {
            Client::new(global)?
                .get_query("/v1/audit/events", &params, "audit search")
                .await?
        }
    };
    if format == Format::Json {
        output::json(&page);
    } else {
        output::search_page(&page);
    }
    Ok(ExitCode::SUCCESS)
}

async fn story(
    global: &Global,
    task: String,
    store: Option<PathBuf>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let story: Value = match store {
        Some(path) => {
            let id = task.clone();
            let events = with_index(&path, move |index| index.task_events(&id)).await?;
            if events.is_empty() {
                anyhow::bail!("audit story: the log holds no events of task {task}");
            }
            let story = Story::from_events(&task, events);
            let mut value = serde_json::to_value(&story)?;
            value["text"] = json!(story.render());
            value
        }
        None => {
            let path = format!("/v1/audit/tasks/{task}/story");
            Client::new(global)?.get(&path, "audit story").await?
        }
    };
    if format == Format::Json {
        output::json(&story);
    } else {
        print!("{}", story["text"].as_str().unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(
    global: &Global,
    store: Option<PathBuf>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let report: Value = match store {
        Some(path) => {
            let reader = sqlite::open_read_only(&path)?;
            let report = tokio::task::spawn_blocking(move || {
                let mut verifier = Verifier::new();
                reader.scan_events(&mut |row| verifier.push(row))?;
                Ok::<_, taskgate_store::StoreError>(verifier.finish())
            })
            .await??;
            json!({
                "ok": report.ok(),
                "events": report.events,
                "chain": report.chain,
                "head_seq": report.head_seq,
                "head_hash": report.head_hash,
                "problem": report.problem.map(|p| p.to_string()),
            })
        }
        None => {
            Client::new(global)?
                .get("/v1/audit/verify", "audit verify")
                .await?
        }
    };
    let ok = report.get("ok").and_then(Value::as_bool).unwrap_or(false);
    if format == Format::Json {
        output::json(&report);
    } else if ok {
        println!(
            "ok: {} events, chain {}, head {} {}",
            report["events"],
            report["chain"].as_str().unwrap_or("-"),
            report["head_seq"],
            report["head_hash"].as_str().unwrap_or("-"),
        );
    } else {
        println!(
            "TAMPERED: {} (after {} intact events)",
            report["problem"].as_str().unwrap_or("unknown problem"),
            report["events"].as_u64().unwrap_or(1).saturating_sub(1),
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
