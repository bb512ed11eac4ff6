//! A small client for the gateway's API.

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Global;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// The caller's identity token: `--token` (or `TASKGATE_TOKEN`); inside
/// GitHub Actions, the job's own OIDC token; else what `taskgate login`
/// left. Refused when it would cross the network in clear.
pub async fn identity_token(global: &Global) -> anyhow::Result<String> {
    let token = match global.token.clone().filter(|t| !t.is_empty()) {
        Some(token) => token,
        None => match super::actions::token(&global.audience).await? {
            Some(token) => token,
            None => match super::login::cached_token().await? {
                Some(token) => token,
                None => bail!(
                    "no identity token: run taskgate login, or pass --token or set TASKGATE_TOKEN (inside GitHub Actions, give the job `permissions: id-token: write`)"
                ),
            },
        },
    };
    super::check_plaintext(&global.server, global.allow_plaintext, "your token")?;
    Ok(token)
}

impl Client {
    /// A client acting as `--token` (or `TASKGATE_TOKEN`); inside GitHub
    /// Actions, as the job's own OIDC token; else as `taskgate login` left it.
    pub async fn new(global: &Global) -> anyhow::Result<Self> {
        let token = identity_token(global).await?;
        let mut http = reqwest::Client::builder();
        if let Some(path) = &global.ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
            http = http.add_root_certificate(ca);
        }
        Ok(Self {
            http: http.build()?,
            base: global.server.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<T> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.base))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .context("cannot read the gateway's answer")?;
        if !status.is_success() {
            let parsed: Option<Value> = serde_json::from_slice(&body).ok();
            let error = parsed.as_ref().and_then(|v| v.get("error"));
            let code = error.and_then(|e| e.get("code")).and_then(Value::as_str);
            let message = error.and_then(|e| e.get("message")).and_then(Value::as_str);
            return Err(match (code, message) {
                (Some(code), Some(message)) => {
                    anyhow!("{what}: {message} ({code}, HTTP {})", status.as_u16())
                }
                _ => anyhow!("{what}: the gateway answered HTTP {}", status.as_u16()),
            });
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("{what}: unexpected answer from the gateway"))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str, what: &str) -> anyhow::Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base)), what)
            .await
    }

    pub async fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &(impl Serialize + ?Sized),
        what: &str,
    ) -> anyhow::Result<T> {
        self.send(
            self.http.get(format!("{}{path}", self.base)).query(query),
            what,
        )
        .await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        what: &str,
    ) -> anyhow::Result<T> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(body),
            what,
        )
        .await
    }
}
