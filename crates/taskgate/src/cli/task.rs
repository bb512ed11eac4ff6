//! `taskgate task ...`

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::Client;
use super::{Format, Global, output, state};

/// How often `task request --wait` asks whether the task was decided.
const WAIT_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Ask for access for a named task. Prints the task's token once, and a
    /// ready connection string.
    Request {
        /// A short name for the work, e.g. migrate-orders.
        #[arg(long)]
        name: String,
        /// The connection to reach, e.g. orders-db.
        #[arg(long)]
        connection: String,
        /// read, write or admin.
        #[arg(long)]
        access: String,
        /// How long the window stays open once active, e.g. 15m or 2h.
        #[arg(long)]
        window: String,
        /// Why the access is needed.
        #[arg(long)]
        reason: Option<String>,
        /// An issue or pull request URL.
        #[arg(long = "ref")]
        reference: Option<String>,
        /// Block until the task is approved, denied or its request expires.
        #[arg(long)]
        wait: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List tasks you may see, newest first.
    List {
        /// pending, active, ended, expired, revoked or denied.
        #[arg(long)]
        status: Option<String>,
        /// Only tasks requested by this subject.
        #[arg(long)]
        identity: Option<String>,
        #[arg(long)]
        connection: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show one task.
    Show {
        id: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print a task's connection string again (on the machine that requested it).
    Url { id: String },
    /// End your own task now, or withdraw your request while it waits.
    End {
        id: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Cut a task now (its approvers and admins).
    Revoke {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub async fn run(global: &Global, command: TaskCommand) -> anyhow::Result<ExitCode> {
    if let TaskCommand::Url { id } = &command {
        println!("{}", state::load_connection_string(id)?);
        return Ok(ExitCode::SUCCESS);
    }
    let client = Client::new(global).await?;
    match command {
        TaskCommand::Request {
            name,
            connection,
            access,
            window,
            reason,
            reference,
            wait,
            format,
        } => {
            let body = json!({
                "name": name, "connection": connection, "access": access,
                "window": window, "reason": reason, "ref": reference,
            });
            let created: Value = client.post("/v1/tasks", &body, "task request").await?;
            request_done(&client, created, wait, format).await
        }
        TaskCommand::List {
            status,
            identity,
            connection,
            format,
        } => {
            let mut query = Vec::new();
            for (key, value) in [
                ("status", status),
                ("identity", identity),
                ("connection", connection),
            ] {
                if let Some(value) = value {
                    query.push((key, value));
                }
            }
            let tasks: Value = client.get_query("/v1/tasks", &query, "task list").await?;
            output::task_list(&tasks, format);
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Show { id, format } => {
            let task: Value = client.get(&format!("/v1/tasks/{id}"), "task show").await?;
            output::task(&task, format);
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::End { id, format } => {
            let task: Value = client
                .post(&format!("/v1/tasks/{id}/end"), &json!({}), "task end")
                .await?;
            output::task(&task, format);
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Revoke {
            id,
            comment,
            format,
        } => {
            let task: Value = client
                .post(
                    &format!("/v1/tasks/{id}/revoke"),
                    &json!({"comment": comment}),
                    "task revoke",
                )
                .await?;
            output::task(&task, format);
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Url { .. } => Ok(ExitCode::SUCCESS),
    }
}

async fn request_done(
    client: &Client,
    created: Value,
    wait: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let id = created
        .get("id")
        .and_then(Value::as_str)
        .context("the gateway's answer has no task id")?
        .to_owned();
    let url = created
        .get("connection_string")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let saved = state::save_connection_string(&id, &url);
    let mut status = created
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if format == Format::Json && !wait {
        output::json(&created);
    } else if format == Format::Text {
        output::task(&created, Format::Text);
        println!(
            "token      {} (shown once)",
            created.get("token").and_then(Value::as_str).unwrap_or("-")
        );
        match &saved {
            Ok(path) => println!("saved      {} (task url {id})", path.display()),
            Err(error) => eprintln!("warning: could not save the connection string: {error:#}"),
        }
    }
    if wait && status == "pending" {
        if format == Format::Text {
            eprintln!("waiting for a decision on {id}...");
        }
        while status == "pending" {
            tokio::time::sleep(WAIT_POLL).await;
            let task: Value = client.get(&format!("/v1/tasks/{id}"), "task show").await?;
            status = task
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
        }
    }
    if format == Format::Json && wait {
        let mut answer = created;
        answer["status"] = json!(status);
        output::json(&answer);
    }
    match status.as_str() {
        "active" => {
            if format == Format::Text {
                println!("connect    {url}");
            }
            Ok(ExitCode::SUCCESS)
        }
        "pending" => {
            if format == Format::Text {
                println!("connect    {url} (once approved)");
            }
            Ok(ExitCode::SUCCESS)
        }
        other => {
            eprintln!("task {id} was not granted: it is {other}");
            Ok(ExitCode::from(1))
        }
    }
}
