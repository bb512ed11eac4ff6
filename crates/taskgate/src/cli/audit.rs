//! `taskgate audit ...`: search the trail, tell a task's story, verify.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use taskgate_audit::{CheckpointKey, PublicKey, Story, Timestamp};
use taskgate_gateway::api::VerifyView;
use taskgate_gateway::audit_search::AuditSearchParams;
use taskgate_store::StoreRead;
use taskgate_store::checkpoints::CheckpointDir;
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
    /// Recompute the hash chain, check every signed checkpoint, and name the
    /// first record that was changed, removed, inserted or reordered, or the
    /// newest records being cut off. Exits 1 if the log was tampered with.
    ///
    /// Offline with --store or --config (the gateway may be stopped);
    /// otherwise the gateway verifies.
    Verify {
        /// The store file to read directly.
        #[arg(long)]
        store: Option<PathBuf>,
        /// The gateway's config: its store, signing key and checkpoint
        /// directory, unless given separately.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The directory of checkpoint copies kept outside the store.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// The trusted public key (`ed25519:...`, as `audit pubkey` prints
        /// it) or a file holding it or its PEM form.
        #[arg(long)]
        pubkey: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print the public key that verifies this gateway's checkpoints, to keep
    /// somewhere the gateway cannot change it.
    Pubkey {
        #[arg(long, short, default_value = "taskgate.toml")]
        config: PathBuf,
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

/// Says so when the gateway's journal holds events the store may not have
/// yet: offline answers miss them.
fn note_journal(store: &Path) {
    let dir = sqlite::journal_dir(store);
    if taskgate_store::journal::has_pending(&dir) {
        eprintln!(
            "note: {} holds audit events that may not be in the store yet (a running gateway moves them in within milliseconds, a stopped one when it next starts); this answer does not include those",
            dir.display()
        );
    }
}

/// Runs index work on a blocking thread.
async fn with_index<T: Send + 'static>(
    store: &Path,
    work: impl FnOnce(&AuditIndex) -> taskgate_store::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    sqlite::open_read_only(store)?;
    note_journal(store);
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
        AuditCommand::Verify {
            store,
            config,
            checkpoints,
            pubkey,
            format,
        } => {
            let offline = Offline::resolve(store, config, checkpoints, pubkey)?;
            verify(global, offline, format).await
        }
        AuditCommand::Pubkey { config } => {
            let Some(config) = super::config::load(&config)? else {
                return Ok(ExitCode::from(2));
            };
            let key = signing_public_key(&config.audit.signing_key)?;
            println!("{key}");
            eprintln!("key id {}", key.key_id());
            Ok(ExitCode::SUCCESS)
        }
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
            Client::new(global)
                .await?
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
            Client::new(global).await?.get(&path, "audit story").await?
        }
    };
    if format == Format::Json {
        output::json(&story);
    } else {
        print!("{}", story["text"].as_str().unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

/// What an offline `audit verify` reads.
struct Offline {
    store: PathBuf,
    /// The fleet's shared store, when the config names one (and no
    /// --store was given): verified there instead of a file.
    shared: Option<taskgate_store::postgres::PgOptions>,
    checkpoints: Option<PathBuf>,
    key: Option<PublicKey>,
}

fn signing_public_key(path: &Path) -> anyhow::Result<PublicKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the signing key {}", path.display()))?;
    let key = CheckpointKey::from_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{} is not a signing key: {e}", path.display()))?;
    Ok(key.public_key())
}

fn parse_public_key(text: &str) -> anyhow::Result<PublicKey> {
    let from_file = std::fs::read_to_string(text).ok();
    let text = from_file.as_deref().unwrap_or(text).trim();
    PublicKey::parse(text).map_err(|e| anyhow::anyhow!("--pubkey: {e}"))
}

impl Offline {
    fn resolve(
        store: Option<PathBuf>,
        config: Option<PathBuf>,
        checkpoints: Option<PathBuf>,
        pubkey: Option<String>,
    ) -> anyhow::Result<Option<Offline>> {
        let config = match config {
            Some(path) => match super::config::load(&path)? {
                Some(config) => Some(config),
                None => anyhow::bail!("audit verify: {} has problems", path.display()),
            },
            None => None,
        };
        let explicit_store = store.is_some();
        let Some(store) = store.or_else(|| config.as_ref().map(|c| c.store.path.clone())) else {
            if checkpoints.is_some() || pubkey.is_some() {
                anyhow::bail!("audit verify: --checkpoints and --pubkey need --store or --config");
            }
            return Ok(None);
        };
        let key = match (&pubkey, &config) {
            (Some(text), _) => Some(parse_public_key(text)?),
            (None, Some(c)) => Some(signing_public_key(&c.audit.signing_key)?),
            (None, None) => None,
        };
        let checkpoints = checkpoints.or_else(|| {
            config
                .as_ref()
                .map(|c| c.audit.checkpoint_dir.clone())
                .filter(|dir| dir.exists())
        });
        let shared = match (
            &explicit_store,
            config
                .as_ref()
                .and_then(|c| c.store.url.as_ref().map(|u| (c, u))),
        ) {
            (false, Some((config, url))) => Some(
                taskgate_gateway::storage::shared_options(config, url)
                    .map_err(|e| anyhow::anyhow!("audit verify: {e}"))?,
            ),
            _ => None,
        };
        Ok(Some(Offline {
            store,
            shared,
            checkpoints,
            key,
        }))
    }
}

async fn verify(
    global: &Global,
    offline: Option<Offline>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let report: Value = match offline {
        Some(Offline {
            shared: Some(options),
            checkpoints,
            key,
            ..
        }) => {
            let external = match &checkpoints {
                Some(dir) => CheckpointDir::read_all(dir)?,
                None => Vec::new(),
            };
            // The blocking client runs a runtime of its own: off this one.
            let report = tokio::task::spawn_blocking(move || {
                taskgate_store::postgres::open_read_only(options)?.verify_chain(key, &external)
            })
            .await??;
            serde_json::to_value(VerifyView::from(report))?
        }
        Some(offline) => {
            let reader = sqlite::open_read_only(&offline.store)?;
            note_journal(&offline.store);
            let external = match &offline.checkpoints {
                Some(dir) => CheckpointDir::read_all(dir)?,
                None => Vec::new(),
            };
            let key = offline.key;
            let report =
                tokio::task::spawn_blocking(move || reader.verify_chain(key, &external)).await??;
            let store = offline.store.clone();
            let index = tokio::task::spawn_blocking(move || {
                let index = AuditIndex::open(&store)?;
                index.catch_up()?;
                index.check()
            })
            .await??;
            let same_disk = offline
                .checkpoints
                .as_deref()
                .and_then(|dir| taskgate_gateway::checkpoints::on_store_disk(dir, &offline.store));
            // The same shape the gateway's API answers with.
            serde_json::to_value(
                VerifyView::from(report)
                    .with_index(index)
                    .with_checkpoint_disk(same_disk),
            )?
        }
        None => {
            Client::new(global)
                .await?
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
        let signed = if report["signatures_checked"] == true {
            "signatures checked"
        } else {
            "signatures NOT checked: give --pubkey or --config"
        };
        println!(
            "checkpoints: {} in the log ({signed}), newest covers record {}; {} external copies checked",
            report["checkpoints"],
            report["checkpoint_seq"]
                .as_u64()
                .map_or("-".into(), |s| s.to_string()),
            report["external_checkpoints"],
        );
        if let Some(through) = report["index"]["through_seq"].as_u64() {
            println!("search index: matches the chain through record {through}");
        }
    } else if let Some(problem) = report["index"]["problem"].as_str()
        && report["problem"].is_null()
    {
        println!(
            "SEARCH INDEX WRONG: {problem}; the chain itself verifies. Run `taskgate audit reindex` to build the index again"
        );
    } else {
        println!(
            "TAMPERED: {} (after {} intact events)",
            report["problem"].as_str().unwrap_or("unknown problem"),
            report["events"].as_u64().unwrap_or(1).saturating_sub(1),
        );
    }
    if format != Format::Json && report["checkpoint_dir_on_store_disk"] == true {
        println!(
            "warning: the checkpoint copies are on the same disk as the store, so they do not protect the log against someone who holds that disk; point audit.checkpoint_dir at another disk"
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
