//! `taskgate sinks status|parked|redeliver`: where each export sink stands,
//! what it parked, and sending parked events again.

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
    /// The events a sink refused for good, with why.
    Parked {
        /// The sink's name in the config.
        sink: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Queues a sink's parked events to be sent again (admins only), once
    /// the receiver is fixed: all of them, or those from..=to.
    Redeliver {
        /// The sink's name in the config.
        sink: String,
        /// The first sequence number to send again.
        #[arg(long)]
        from: Option<u64>,
        /// The last sequence number to send again.
        #[arg(long)]
        to: Option<u64>,
    },
}

pub async fn run(global: &Global, command: SinksCommand) -> anyhow::Result<ExitCode> {
    match command {
        SinksCommand::Status { format } => status(global, format).await,
        SinksCommand::Parked { sink, format } => parked(global, &sink, format).await,
        SinksCommand::Redeliver { sink, from, to } => {
            let body = serde_json::json!({ "from": from, "to": to });
            let answer: Value = Client::new(global)
                .await?
                .post(
                    &format!("/v1/sinks/{sink}/redeliver"),
                    &body,
                    "sinks redeliver",
                )
                .await?;
            println!(
                "{}: {} parked events queued to be sent again",
                sink, answer["queued"]
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn parked(global: &Global, sink: &str, format: Format) -> anyhow::Result<ExitCode> {
    let parked: Value = Client::new(global)
        .await?
        .get(&format!("/v1/sinks/{sink}/parked"), "sinks parked")
        .await?;
    if format == Format::Json {
        output::json(&parked);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = parked.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        println!("{sink} has no parked events");
    }
    for event in rows {
        println!(
            "{} parked {}{}: {}",
            event["seq"],
            event["at"].as_str().unwrap_or("-"),
            if event["queued"] == true {
                " (queued to be sent again)"
            } else {
                ""
            },
            event["reason"].as_str().unwrap_or("-"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(global: &Global, format: Format) -> anyhow::Result<ExitCode> {
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
