//! `taskgate review ...`

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use super::client::Client;
use super::{Format, Global, output};

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Pending reviews you may decide, with who asks, what and why.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Approve a review. You can never approve your own request.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Deny a review.
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub async fn run(global: &Global, command: ReviewCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(global).await?;
    let (id, comment, format, verb) = match command {
        ReviewCommand::List { format } => {
            let reviews: Value = client.get("/v1/reviews", "review list").await?;
            output::review_list(&reviews, format);
            return Ok(ExitCode::SUCCESS);
        }
        ReviewCommand::Approve {
            id,
            comment,
            format,
        } => (id, comment, format, "approve"),
        ReviewCommand::Deny {
            id,
            comment,
            format,
        } => (id, comment, format, "deny"),
    };
    let review: Value = client
        .post(
            &format!("/v1/reviews/{id}/{verb}"),
            &json!({"comment": comment}),
            &format!("review {verb}"),
        )
        .await?;
    if format == Format::Json {
        output::json(&review);
    } else {
        let status = review.get("status").and_then(Value::as_str).unwrap_or("-");
        println!("review {id}: {status}");
        if let Some(task) = review.get("task") {
            output::task(task, Format::Text);
        }
    }
    Ok(ExitCode::SUCCESS)
}
