//! `taskgate sinks status`: where each export sink stands.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::client::Client;
use super::{Format, Global, output};

#[derive(Debug, Subcommand)]
pub enum SinksCommand {
    /// Each sink's cursor, how far behind the log it is, what it delivered
    /// and parked, and its last error.
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub async fn run(global: &Global, command: SinksCommand) -> anyhow::Result<ExitCode> {
    let SinksCommand::Status { format } = command;
    let sinks: Value = Client::new(global)
        .await?
        .get("/v1/sinks", "sinks status")
        .await?;
    if format == Format::Json {
        output::json(&sinks);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = sinks.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        println!("no export sinks are configured");
    }
    for sink in rows {
        let text = |key: &str| sink[key].as_str().unwrap_or("-").to_owned();
        println!(
            "{} ({}): cursor {} of {}, lag {}, delivered {}, parked {}, last delivery {}",
            text("name"),
            text("kind"),
            sink["cursor"],
            sink["head"],
            sink["lag"],
            sink["delivered"],
            sink["parked"],
            text("last_delivery"),
        );
        if let Some(error) = sink["last_error"].as_str() {
            println!("  last error ({}): {error}", text("last_error_at"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
