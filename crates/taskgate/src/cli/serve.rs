//! `taskgate serve`: run until SIGINT or SIGTERM, then stop cleanly.

use std::path::Path;
use std::process::ExitCode;

use taskgate_gateway::Gateway;

pub async fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let Some(config) = super::config::load(config_path)? else {
        return Ok(ExitCode::from(2));
    };
    let gateway = Gateway::start(config).await?;
    // Tests and scripts started with port 0 read the real address here.
    println!("taskgate api listening on {}", gateway.api_url());
    println!("taskgate postgres listening on {}", gateway.postgres_addr());
    wait_for_signal().await;
    tracing::info!("shutting down");
    gateway.stop().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
