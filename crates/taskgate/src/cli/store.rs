//! `taskgate store copy`: moves a node's SQLite store into the PostgreSQL
//! store a fleet will share, with its chain intact.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Context;
use clap::Subcommand;

use super::{Format, output};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a SQLite store (events, tasks, reviews, chain id) into an empty
    /// PostgreSQL store; `audit verify` passes on the copy as on the source.
    /// Stop the gateway first.
    Copy {
        /// The SQLite store file.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL store: `postgres://user@host:port/database` (the
        /// password comes from --password-env). Or use --config.
        #[arg(long, conflicts_with = "config")]
        to: Option<String>,
        /// The environment variable holding the password for --to.
        #[arg(long, default_value = "PGPASSWORD", requires = "to")]
        password_env: String,
        /// A fleet node's config: its `[store]` url, password and TLS.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub async fn run(command: StoreCommand) -> anyhow::Result<ExitCode> {
    let StoreCommand::Copy {
        from,
        to,
        password_env,
        config,
        format,
    } = command;
    let options = match (to, config) {
        (Some(url), _) => {
            if url::Url::parse(&url).is_ok_and(|u| u.password().is_some()) {
                anyhow::bail!("--to must not hold a password: put it in ${password_env}");
            }
            let mut pg = tokio_postgres::Config::from_str(&url).context("--to")?;
            if let Ok(password) = std::env::var(&password_env) {
                pg.password(password);
            }
            taskgate_store::postgres::PgOptions::new(pg, None)
        }
        (None, Some(path)) => {
            let Some(config) = super::config::load(&path)? else {
                anyhow::bail!("store copy: {} has problems", path.display());
            };
            let Some(url) = config.store.url.clone() else {
                anyhow::bail!("store copy: {} sets no [store] url", path.display());
            };
            taskgate_gateway::storage::shared_options(&config, &url)
                .map_err(|e| anyhow::anyhow!("store copy: {e}"))?
        }
        (None, None) => anyhow::bail!("store copy: say where to with --to URL or --config FILE"),
    };
    // The blocking client runs a runtime of its own: off this one.
    let report = tokio::task::spawn_blocking(move || {
        taskgate_store::postgres::copy_from_sqlite(&from, &options)
    })
    .await??;
    match format {
        Format::Json => output::json(&serde_json::to_value(&report)?),
        Format::Text => println!(
            "copied {} events (through {}), {} tasks and {} reviews of chain {}",
            report.events, report.head_seq, report.tasks, report.reviews, report.chain
        ),
    }
    Ok(ExitCode::SUCCESS)
}
