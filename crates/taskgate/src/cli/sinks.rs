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

/// Fetches a list; prints it whole with `--format json` (and answers
/// None), else says `empty` when there is nothing and answers the rows.
async fn list(
    global: &Global,
    path: &str,
    what: &str,
    format: Format,
    empty: &str,
) -> anyhow::Result<Option<Vec<Value>>> {
    let answer: Value = Client::new(global).await?.get(path, what).await?;
    if format == Format::Json {
        output::json(&answer);
        return Ok(None);
    }
    let rows = match answer {
        Value::Array(rows) => rows,
        _ => Vec::new(),
    };
    if rows.is_empty() {
        println!("{empty}");
    }
    Ok(Some(rows))
}

async fn parked(global: &Global, sink: &str, format: Format) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/sinks/{sink}/parked");
    let empty = format!("{sink} has no parked events");
    let Some(rows) = list(global, &path, "sinks parked", format, &empty).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    for event in &rows {
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
    let empty = "no export sinks are configured";
    let Some(rows) = list(global, "/v1/sinks", "sinks status", format, empty).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    for sink in &rows {
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
