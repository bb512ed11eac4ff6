//! `taskgate login`: a person signs in at the IdP with the OAuth 2.0 device
//! authorization grant (RFC 8628): the CLI shows a code and a URL, the
//! person approves in any browser, and the CLI keeps the token (and its
//! refresh token) in the config directory, readable by its owner only. Later
//! commands use it, refreshing it when it has expired.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::state;

/// RFC 8628's default polling interval, and what `slow_down` adds to it.
const DEFAULT_INTERVAL: u64 = 5;
/// A token this close to its expiry is refreshed first.
const EXPIRY_MARGIN_SECS: i64 = 30;
const FILE: &str = "login.json";

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The IdP's issuer URL (its discovery document must offer the device
    /// authorization endpoint).
    #[arg(long, env = "TASKGATE_ISSUER")]
    issuer: String,
    /// The OAuth client registered for the Taskgate CLI (a public client).
    #[arg(long, env = "TASKGATE_CLIENT_ID")]
    client_id: String,
    /// Scopes to ask for; `offline_access` lets the CLI refresh the token.
    #[arg(long, default_value = "openid offline_access")]
    scope: String,
}

/// What `login` keeps between commands.
#[derive(Serialize, Deserialize)]
struct Login {
    issuer: String,
    client_id: String,
    token_endpoint: String,
    access_token: String,
    refresh_token: Option<String>,
    /// Unix seconds.
    expires_at: Option<i64>,
}

#[derive(Deserialize)]
struct Discovery {
    device_authorization_endpoint: Option<String>,
    token_endpoint: String,
}

#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<i64>,
    error: Option<String>,
    error_description: Option<String>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?)
}

pub async fn run(global: &super::Global, args: LoginArgs) -> anyhow::Result<ExitCode> {
    super::check_plaintext(&args.issuer, global.allow_plaintext, "your sign-in")?;
    let http = http()?;
    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        args.issuer.trim_end_matches('/')
    );
    let discovery: Discovery = http
        .get(&discovery_url)
        .send()
        .await
        .with_context(|| format!("cannot reach {discovery_url}"))?
        .error_for_status()?
        .json()
        .await
        .context("the IdP's discovery document")?;
    let Some(device_endpoint) = discovery.device_authorization_endpoint else {
        bail!(
            "{} does not offer the device authorization grant",
            args.issuer
        );
    };
    let device: DeviceAuthorization = http
        .post(&device_endpoint)
        .form(&[
            ("client_id", args.client_id.as_str()),
            ("scope", args.scope.as_str()),
        ])
        .send()
        .await?
        .error_for_status()
        .context("the IdP refused the device authorization request")?
        .json()
        .await?;
    match &device.verification_uri_complete {
        Some(url) => eprintln!(
            "To sign in, open {url}\n(or open {} and enter the code {})",
            device.verification_uri, device.user_code
        ),
        None => eprintln!(
            "To sign in, open {} and enter the code {}",
            device.verification_uri, device.user_code
        ),
    }
    let mut interval = device.interval.unwrap_or(DEFAULT_INTERVAL).max(1);
    let deadline = now() + i64::try_from(device.expires_in).unwrap_or(600);
    let answer = loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if now() > deadline {
            bail!("the sign-in code expired before it was used; run taskgate login again");
        }
        let answer: TokenAnswer = http
            .post(&discovery.token_endpoint)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device.device_code.as_str()),
                ("client_id", args.client_id.as_str()),
            ])
            .send()
            .await?
            .json()
            .await
            .context("the IdP's token answer")?;
        match answer.error.as_deref() {
            None => break answer,
            Some("authorization_pending") => {}
            Some("slow_down") => interval += DEFAULT_INTERVAL,
            Some("access_denied") => bail!("the sign-in was declined"),
            Some("expired_token") => bail!("the sign-in code expired; run taskgate login again"),
            Some(other) => bail!(
                "the IdP refused the sign-in: {other}: {}",
                answer.error_description.unwrap_or_default()
            ),
        }
    };
    let login = Login {
        issuer: args.issuer,
        client_id: args.client_id,
        token_endpoint: discovery.token_endpoint,
        access_token: answer
            .access_token
            .context("the IdP's answer has no access token")?,
        refresh_token: answer.refresh_token,
        expires_at: answer.expires_in.map(|s| now() + s),
    };
    let path = save(&login)?;
    eprintln!("Signed in; the token is kept in {}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn save(login: &Login) -> anyhow::Result<std::path::PathBuf> {
    let path = state::config_dir()?.join(FILE);
    state::write_private(&path, &serde_json::to_string_pretty(login)?)?;
    Ok(path)
}

/// The token `taskgate login` kept, refreshed first if it has expired; None
/// without a login.
pub async fn cached_token() -> anyhow::Result<Option<String>> {
    let path = state::config_dir()?.join(FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let mut login: Login = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged: run taskgate login again", path.display()))?;
    let fresh = login
        .expires_at
        .is_none_or(|at| at - EXPIRY_MARGIN_SECS > now());
    if fresh {
        return Ok(Some(login.access_token));
    }
    let Some(refresh) = login.refresh_token.clone() else {
        bail!("the token from taskgate login has expired: run taskgate login again");
    };
    let answer: TokenAnswer = http()?
        .post(&login.token_endpoint)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", login.client_id.as_str()),
        ])
        .send()
        .await
        .context("cannot reach the IdP to refresh the token")?
        .json()
        .await
        .context("the IdP's refresh answer")?;
    let Some(access) = answer.access_token else {
        bail!(
            "the IdP would not refresh the token ({}): run taskgate login again",
            answer.error.unwrap_or_default()
        );
    };
    login.access_token = access;
    login.refresh_token = answer.refresh_token.or(login.refresh_token);
    login.expires_at = answer.expires_in.map(|s| now() + s);
    save(&login)?;
    Ok(Some(login.access_token))
}
