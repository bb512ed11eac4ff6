//! `taskgate config check`, and loading a config for `serve`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use taskgate_policy::config::{self, Config};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and its policies; print every problem with
    /// its line and field, and exit non-zero if there is any.
    /// Relative paths in it are taken relative to the file.
    Check {
        #[arg(long, short, default_value = "taskgate.toml")]
        config: PathBuf,
    },
}

/// Loads a config; on problems, prints each and returns `None`. Relative
/// paths are taken relative to the config file.
pub fn load(path: &Path) -> anyhow::Result<Option<Config>> {
    let source = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    match config::parse(&source) {
        Ok(mut config) => {
            if let Some(dir) = path.parent() {
                config.resolve_paths(dir);
            }
            for warning in config::warnings(&config) {
                eprintln!("{}: warning: {warning}", path.display());
            }
            Ok(Some(config))
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("{}: {problem}", path.display());
            }
            eprintln!(
                "{}: {} problem{} found",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            Ok(None)
        }
    }
}

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { config } = command;
    match load(&config)? {
        Some(loaded) => {
            // Resolved as `serve` will resolve them; a value is never shown.
            let missing: Vec<String> = loaded
                .secret_refs()
                .into_iter()
                .filter_map(|(place, reference)| {
                    taskgate_gateway::secrets::resolve(&reference)
                        .err()
                        .map(|e| format!("{place}: {e}"))
                })
                .collect();
            if !missing.is_empty() {
                for line in &missing {
                    eprintln!("{}: {line}", config.display());
                }
                eprintln!(
                    "{}: {} secret{} missing (serve would stop on {})",
                    config.display(),
                    missing.len(),
                    if missing.len() == 1 { "" } else { "s" },
                    if missing.len() == 1 { "it" } else { "them" }
                );
                return Ok(ExitCode::from(2));
            }
            println!(
                "{}: ok ({} connection{}, {} polic{}, {} dev identit{})",
                config.display(),
                loaded.connections.len(),
                if loaded.connections.len() == 1 {
                    ""
                } else {
                    "s"
                },
                loaded.policies.len(),
                if loaded.policies.len() == 1 {
                    "y"
                } else {
                    "ies"
                },
                loaded.identity.dev.len(),
                if loaded.identity.dev.len() == 1 {
                    "y"
                } else {
                    "ies"
                },
            );
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::from(2)),
    }
}
