//! Command-line parsing and dispatch.

mod actions;
mod audit;
mod client;
mod config;
mod connection;
mod demo;
mod login;
mod mcp;
mod output;
mod review;
mod serve;
mod sinks;
mod state;
mod store;
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

#[derive(Debug, Clone, clap::Args)]
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
    /// A PEM CA certificate to trust for the gateway's HTTPS, besides the
    /// system's roots (a gateway with its own CA).
    #[arg(long, env = "TASKGATE_CA_FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Send your token over plain http to a host that is not this machine.
    /// Without it the CLI refuses: anyone on the path could read the token.
    #[arg(long, env = "TASKGATE_ALLOW_PLAINTEXT", global = true)]
    pub allow_plaintext: bool,
}

/// Refuses an `http://` URL to a host other than this machine unless
/// plain text was allowed: what is sent there (a bearer token, a password)
/// can be read by anyone on the path.
pub fn check_plaintext(url: &str, allowed: bool, what: &str) -> anyhow::Result<()> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Ok(());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback || allowed {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to send {what} in clear text to {url}: use https://, or pass --allow-plaintext (TASKGATE_ALLOW_PLAINTEXT=1) if the path is trusted"
    )
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
    /// Serve the gateway's MCP tools on stdio, for an agent that starts
    /// its tools as local processes. Every call goes to the gateway's
    /// `/mcp` as you (your token); no task token reaches this process.
    Mcp,
    /// Validate configuration files.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Prepare a target for the gateway.
    #[command(subcommand)]
    Connection(connection::ConnectionCommand),
    /// Move a node's store into the PostgreSQL store a fleet shares.
    #[command(subcommand)]
    Store(store::StoreCommand),
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
        Command::Login(args) => login::run(&cli.global, args).await,
        Command::Task(command) => task::run(&cli.global, command).await,
        Command::Review(command) => review::run(&cli.global, command).await,
        Command::Audit(command) => audit::run(&cli.global, command).await,
        Command::Sinks(command) => sinks::run(&cli.global, command).await,
        Command::Mcp => mcp::run(&cli.global).await,
        Command::Store(command) => store::run(command).await,
        Command::Connection(command) => connection::run(command).await,
    }
}

#[cfg(test)]
mod tests {
    use super::check_plaintext;

    #[test]
    fn plain_http_goes_only_to_this_machine_unless_allowed() {
        for local in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/v1",
            "http://[::1]:8080",
            "https://gateway.example",
        ] {
            assert!(check_plaintext(local, false, "a token").is_ok(), "{local}");
        }
        for remote in [
            "http://gateway.example:8080",
            "http://10.0.0.5/",
            "http://[2001:db8::1]:80",
        ] {
            assert!(
                check_plaintext(remote, false, "a token").is_err(),
                "{remote}"
            );
            assert!(check_plaintext(remote, true, "a token").is_ok(), "{remote}");
        }
    }
}
