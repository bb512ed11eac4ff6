//! `taskgate connection prepare`: the catalog trigger on a target.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use taskgate_gateway::pg::catalog_watch;
use taskgate_policy::Access;

#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// Install on a target the event trigger that tells the gateway of
    /// DDL made around it (a migration tool, a DBA's console) as it
    /// commits, so sessions never judge a statement by a catalog read from
    /// before it. Without it, such DDL is seen within 30 s. Creating an
    /// event trigger takes a superuser: by default this logs in with the
    /// connection's admin credential; `--print` prints the SQL for a DBA
    /// to run instead.
    Prepare {
        /// The connection's name in the config.
        name: String,
        #[arg(long, short, default_value = "taskgate.toml")]
        config: PathBuf,
        /// Which of the connection's credentials to log in with.
        #[arg(long = "as", value_enum, default_value_t = Credential::Admin)]
        credential: Credential,
        /// Print the SQL instead of running it.
        #[arg(long)]
        print: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Credential {
    Read,
    Write,
    Admin,
}

impl From<Credential> for Access {
    fn from(c: Credential) -> Access {
        match c {
            Credential::Read => Access::Read,
            Credential::Write => Access::Write,
            Credential::Admin => Access::Admin,
        }
    }
}

pub async fn run(command: ConnectionCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConnectionCommand::Prepare {
            name,
            config,
            credential,
            print,
        } => {
            if print {
                println!("{}", catalog_watch::PREPARE_SQL.replace("; ", ";\n"));
                return Ok(ExitCode::SUCCESS);
            }
            let Some(config) = super::config::load(&config)? else {
                return Ok(ExitCode::FAILURE);
            };
            match catalog_watch::prepare(&config, &name, credential.into()).await {
                Ok(()) => {
                    println!(
                        "connection {name}: the catalog trigger {} is installed; gateways watching it report it as watched in /healthz",
                        catalog_watch::TRIGGER
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
