//! The agent's own interface: an MCP server at `/mcp` on the API listener
//! (streamable HTTP; `taskgate mcp` bridges stdio to it).
//!
//! Every call is authenticated like any API call (a bearer token; the
//! caller goes on the request for the tools to read). Tasks are asked for
//! and ended through the API's handlers; statements run through the data
//! plane's own sessions (`pg::in_process`), so the statement policy, holds,
//! cut-off and record-before-forward are the wire's, and events carry
//! `via: "mcp"` with the tool call's request id.
//!
//! The OAuth side follows the MCP authorization spec: a 401 names the
//! protected-resource metadata (RFC 9728), which names the configured
//! issuers; a token whose audience is this resource is accepted (RFC 8707).
//! `Host` and `Origin` are checked against DNS rebinding.

mod pipe;
mod run;
mod tools;

use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;

pub use run::HeldStatements;

use crate::api::AppState;
use crate::api::extract::Caller;

/// Largest JSON-RPC request accepted (a statement's text and parameters).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Where the protected-resource metadata is served.
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The `Host` values `/mcp` accepts: loopback names, the resource's host,
/// and what the config adds.
fn allowed_hosts(state: &AppState) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Ok(url) = url::Url::parse(&state.mcp_resource)
        && let Some(host) = url.host_str()
    {
        hosts.push(host.trim_matches(['[', ']']).to_owned());
    }
    hosts.extend(state.config.mcp.allowed_hosts.iter().cloned());
    hosts
}

/// `/mcp` and its protected-resource metadata, on the API's router.
pub fn routes(state: AppState) -> Router<AppState> {
    let held = HeldStatements::default();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(Some(Duration::from_secs(15)))
        .with_allowed_hosts(allowed_hosts(&state))
        .with_allowed_origins(state.config.mcp.allowed_origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(MAX_REQUEST_BYTES);
    let tools_state = state.clone();
    let service: StreamableHttpService<tools::Tools, NeverSessionManager> =
        StreamableHttpService::new(
            move || Ok(tools::Tools::new(tools_state.clone(), held.clone())),
            Default::default(),
            config,
        );
    let mcp = Router::new()
        .fallback_service(service)
        .layer(middleware::from_fn_with_state(state, authenticate));
    Router::new()
        .nest("/mcp", mcp)
        .route(METADATA_PATH, get(protected_resource))
        .route(&format!("{METADATA_PATH}/mcp"), get(protected_resource))
}

/// Puts the authenticated caller on the request, or answers 401 with the
/// metadata's address (RFC 9728 §5.1), as MCP clients expect.
async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(error) => {
            let mut response = error.into_response();
            let challenge = format!(
                "Bearer error=\"invalid_token\", resource_metadata=\"{}\"",
                metadata_url(&state)
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
    }
}

fn metadata_url(state: &AppState) -> String {
    match url::Url::parse(&state.mcp_resource) {
        Ok(url) => format!(
            "{}{METADATA_PATH}{}",
            url.origin().ascii_serialization(),
            url.path().trim_end_matches('/')
        ),
        Err(_) => METADATA_PATH.to_owned(),
    }
}

/// OAuth 2.0 Protected Resource Metadata (RFC 9728): this resource, and
/// the issuers whose tokens it takes.
async fn protected_resource(State(state): State<AppState>) -> Response {
    let issuers: Vec<&str> = state
        .config
        .identity
        .oidc
        .iter()
        .map(|i| i.value.issuer.as_str())
        .collect();
    axum::Json(json!({
        "resource": state.mcp_resource,
        "authorization_servers": issuers,
        "bearer_methods_supported": ["header"],
        "resource_name": "Taskgate",
    }))
    .into_response()
}
