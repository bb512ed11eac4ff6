//! `taskgate audit ...`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};
use taskgate_audit::Verifier;
use taskgate_store::StoreRead;
use taskgate_store::sqlite;

use super::client::Client;
use super::{Format, Global, output};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain and name the first record that was changed,
    /// removed, inserted or reordered. Exits 1 if the log was tampered with.
    Verify {
        /// Read the store file directly (offline; the gateway may be stopped).
        /// Without it, ask the gateway.
        #[arg(long)]
        store: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub async fn run(global: &Global, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let AuditCommand::Verify { store, format } = command;
    let report: Value = match store {
        Some(path) => {
            let reader = sqlite::open_read_only(&path)?;
            let report = tokio::task::spawn_blocking(move || {
                let mut verifier = Verifier::new();
                reader.scan_events(&mut |row| verifier.push(row))?;
                Ok::<_, taskgate_store::StoreError>(verifier.finish())
            })
            .await??;
            json!({
                "ok": report.ok(),
                "events": report.events,
                "chain": report.chain,
                "head_seq": report.head_seq,
                "head_hash": report.head_hash,
                "problem": report.problem.map(|p| p.to_string()),
            })
        }
        None => {
            Client::new(global)?
                .get("/v1/audit/verify", "audit verify")
                .await?
        }
    };
    let ok = report.get("ok").and_then(Value::as_bool).unwrap_or(false);
    if format == Format::Json {
        output::json(&report);
    } else if ok {
        println!(
            "ok: {} events, chain {}, head {} {}",
            report["events"],
            report["chain"].as_str().unwrap_or("-"),
            report["head_seq"],
            report["head_hash"].as_str().unwrap_or("-"),
        );
    } else {
        println!(
            "TAMPERED: {} (after {} intact events)",
            report["problem"].as_str().unwrap_or("unknown problem"),
            report["events"].as_u64().unwrap_or(1).saturating_sub(1),
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
