//! Command-line parsing and dispatch.

mod actions;
mod audit;
mod client;
mod config;
mod demo;
mod login;
mod output;
mod review;
mod serve;
mod sinks;
mod state;
mod task;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Per-task, time-boxed, recorded access for AI agents.
///
/// Agents ask for access for a named task and get a bounded window; every
/// statement they run is recorded, under their identity, in a tamper-evident
/// log.
#[derive(Debug, Parser)]
#[command(name = "taskgate", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Global {
    /// The gateway's API address.
    #[arg(
        long,
        env = "TASKGATE_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// Your identity token (a dev token or an OIDC JWT). Inside GitHub
    /// Actions, without one, the job's own OIDC token is fetched.
    #[arg(long, env = "TASKGATE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// The audience the gateway expects in OIDC tokens, for the token
    /// fetched inside GitHub Actions.
    #[arg(
        long,
        env = "TASKGATE_AUDIENCE",
        default_value = "taskgate",
        global = true
    )]
    pub audience: String,
    /// Log filter for the gateway's own log, e.g. `info` or `taskgate=debug`.
    #[arg(long, env = "TASKGATE_LOG", default_value = "info", global = true)]
    pub log: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: API, store and window expiry.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "taskgate.toml")]
        config: PathBuf,
    },
    /// The whole story on a throwaway database: an agent's task approved,
    /// a statement held and approved, a DROP denied, the window cut; then
    /// the story, the auditor's questions and the verified record.
    Demo(demo::DemoArgs),
    /// Sign in at your IdP (OAuth 2.0 device flow); later commands use the
    /// token kept for you, refreshing it when it expires.
    Login(login::LoginArgs),
    /// Request, inspect and end tasks.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// See and decide pending reviews.
    #[command(subcommand)]
    Review(review::ReviewCommand),
    /// Check the audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// See how the export sinks are doing.
    #[command(subcommand)]
    Sinks(sinks::SinksCommand),
    /// Validate configuration files.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

pub fn init_logging(cli: &Cli) {
    // Only the server logs; client commands print their results instead.
    if matches!(cli.command, Command::Serve { .. }) {
        let filter = EnvFilter::try_new(&cli.global.log).unwrap_or_else(|_| EnvFilter::new("info"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init();
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve::run(&config).await,
        Command::Config(command) => config::run(command),
        Command::Demo(args) => demo::run(args).await,
        Command::Login(args) => login::run(args).await,
        Command::Task(command) => task::run(&cli.global, command).await,
        Command::Review(command) => review::run(&cli.global, command).await,
        Command::Audit(command) => audit::run(&cli.global, command).await,
        Command::Sinks(command) => sinks::run(&cli.global, command).await,
    }
}
