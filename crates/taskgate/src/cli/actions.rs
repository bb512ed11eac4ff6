//! Inside GitHub Actions the CLI proves who it is with the workflow's own
//! OIDC token, fetched from the Actions token endpoint for the gateway's
//! audience: no secret is stored anywhere. The job needs
//! `permissions: id-token: write` for the runner to offer the endpoint.

use anyhow::{Context, bail};
use serde::Deserialize;

/// Set by the runner when the job may request OIDC tokens.
const REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
const REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

#[derive(Deserialize)]
struct Answer {
    value: String,
}

/// The job's OIDC token for `audience`, or None outside Actions.
pub async fn token(audience: &str) -> anyhow::Result<Option<String>> {
    let (Ok(url), Ok(request_token)) = (std::env::var(REQUEST_URL), std::env::var(REQUEST_TOKEN))
    else {
        return Ok(None);
    };
    let response = reqwest::Client::new()
        .get(&url)
        .query(&[("audience", audience)])
        .bearer_auth(request_token)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .context("cannot reach the GitHub Actions token endpoint")?;
    if !response.status().is_success() {
        bail!(
            "the GitHub Actions token endpoint answered HTTP {} (does the job have `permissions: id-token: write`?)",
            response.status().as_u16()
        );
    }
    let answer: Answer = response
        .json()
        .await
        .context("the GitHub Actions token endpoint's answer has no token")?;
    Ok(Some(answer.value))
}
