//! `taskgate mcp`: the gateway's MCP server on stdio, for agents that start
//! their tools as local processes (Copilot's coding agent, Claude Code, VS
//! Code).
//!
//! A bridge, not a second server: every tool list and call is sent to the
//! gateway's `/mcp` with the caller's identity token, so the tools, their
//! checks and their records are the gateway's alone, and no task token
//! ever reaches this process (the gateway runs statements in sessions of
//! its own). The identity token is found as for every other command, and
//! fetched again when the gateway refuses it (a GitHub Actions token
//! expires within the job).

use std::sync::Arc;

use anyhow::Context;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleClient, RoleServer, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ErrorData, ServerHandler, ServiceExt};
use tokio::sync::Mutex;

use super::Global;
use super::client::identity_token;

type Remote = RunningService<RoleClient, ()>;

struct Bridge {
    global: Global,
    remote: Mutex<Remote>,
    info: ServerConfig,
}

fn http_client(global: &Global) -> anyhow::Result<reqwest013::Client> {
    // reqwest 0.13 is built without a default crypto provider: use ring,
    // as the rest of Taskgate does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest013::Client::builder();
    if let Some(path) = &global.ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
        let ca = reqwest013::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        builder = builder.tls_certs_merge([ca]);
    }
    Ok(builder.build()?)
}

/// Connects to the gateway's `/mcp` as the caller.
async fn connect(global: &Global) -> anyhow::Result<Remote> {
    let token = identity_token(global).await?;
    let url = format!("{}/mcp", global.server.trim_end_matches('/'));
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.clone());
    config.auth_header = Some(token);
    let transport = StreamableHttpClientTransport::with_client(http_client(global)?, config);
    ().serve(transport)
        .await
        .with_context(|| format!("cannot open an MCP session with the gateway at {url}"))
}

/// The gateway's error as the agent's client gets it.
fn forwarded(error: ServiceError) -> ErrorData {
    match error {
        ServiceError::McpError(e) => e,
        other => {
            ErrorData::internal_error(format!("the gateway could not be reached: {other}"), None)
        }
    }
}

impl Bridge {
    /// Sends `call` to the gateway; once more on a fresh connection (and a
    /// fresh token) if the gateway refused the token or the connection
    /// broke.
    async fn forward<T, F, Fut>(&self, call: F) -> Result<T, ErrorData>
    where
        F: Fn(Arc<rmcp::Peer<RoleClient>>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ServiceError>>,
    {
        let peer = Arc::new(self.remote.lock().await.peer().clone());
        match call(peer).await {
            Err(e @ ServiceError::McpError(_)) => Err(forwarded(e)),
            Err(first) => {
                let fresh = connect(&self.global).await.map_err(|e| {
                    ErrorData::internal_error(format!("{first}; reconnecting failed: {e:#}"), None)
                })?;
                let peer = Arc::new(fresh.peer().clone());
                *self.remote.lock().await = fresh;
                call(peer).await.map_err(forwarded)
            }
            Ok(answer) => Ok(answer),
        }
    }
}

impl ServerHandler for Bridge {
    fn get_info(&self) -> ServerConfig {
        self.info.clone()
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.forward(|peer| {
            let request = request.clone();
            async move { peer.list_tools(request).await }
        })
        .await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.forward(|peer| {
            let request = request.clone();
            async move { peer.call_tool_once(request).await }
        })
        .await
    }
}

pub async fn run(global: &Global) -> anyhow::Result<std::process::ExitCode> {
    let remote = connect(global).await?;
    // The gateway's name, capabilities and instructions, as its own.
    let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
    if let Some(peer) = remote.peer_info() {
        info = ServerConfig::new(peer.capabilities.clone());
        if let Some(server) = &peer.server_info {
            info = info.with_server_info(server.clone());
        }
        if let Some(instructions) = &peer.instructions {
            info = info.with_instructions(instructions.clone());
        }
    }
    let bridge = Bridge {
        global: global.clone(),
        remote: Mutex::new(remote),
        info,
    };
    let server = bridge
        .serve(rmcp::transport::io::stdio())
        .await
        .context("cannot start the MCP server on stdio")?;
    server.waiting().await.context("the MCP session failed")?;
    Ok(std::process::ExitCode::SUCCESS)
}
