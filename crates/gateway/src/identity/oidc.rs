//! OpenID Connect issuers: a bearer JWT whose `iss` is a configured issuer is
//! verified against the issuer's published keys (discovery, then JWKS),
//! checked for audience, issuer, expiry and not-before with a small clock
//! skew, and for GitHub Actions (or any issuer with trust rules) matched
//! against the rules, then mapped to an [`Identity`].
//!
//! Only RS256, ES256 and EdDSA are accepted, each only with a key of its own
//! type: `alg: none`, HMAC, and a token claiming one algorithm for another's
//! key are refused. Reasons given to the caller never repeat the token's
//! contents; the log carries what an operator needs.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use taskgate_policy::Identity;
use taskgate_policy::config::OidcIssuer;
use tokio::sync::{Mutex, RwLock};
use wildmatch::WildMatch;

use super::{AuthError, AuthFuture, IdentityProvider};

/// Largest discovery document or key set accepted from an issuer.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// One configured issuer and its cached keys.
pub struct OidcProvider {
    issuer: String,
    audience: String,
    resource: Option<String>,
    kind: taskgate_policy::IdentityKind,
    subject_claim: String,
    name_claim: Option<String>,
    groups_claim: Option<String>,
    kept_claims: Vec<String>,
    trust: Vec<BTreeMap<String, String>>,
    refresh: Duration,
    min_refetch: Duration,
    skew: Duration,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// When keys were last asked for (successfully or not): fetches are
    /// never closer together than `min_refetch`. Held while fetching, so
    /// concurrent callers wait for one fetch.
    last_fetch: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Key>,
    fetched: Option<Instant>,
}

struct Key {
    algorithm: Algorithm,
    decoding: DecodingKey,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("cannot build the HTTP client for {issuer}: {error}")]
    Client { issuer: String, error: String },
}

/// The parts of a JWT header this module reads itself, before any library
/// has a say: an algorithm outside the list is refused by name.
#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

fn invalid(reason: impl Into<String>) -> AuthError {
    AuthError::Invalid(reason.into())
}

fn b64_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A claim's value as text, for trust rules and kept claims.
fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl OidcProvider {
    /// `resource` is the MCP endpoint's URL, when configured: a token whose
    /// audience is that resource (RFC 8707) is accepted beside the issuer's
    /// own `audience`.
    pub fn from_config(config: &OidcIssuer, resource: Option<&str>) -> Result<Self, OidcError> {
        let timeout = config.timeout.0;
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OidcError::Client {
                issuer: config.issuer.clone(),
                error: e.to_string(),
            })?;
        Ok(Self {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            resource: resource.map(str::to_owned),
            kind: config.kind,
            subject_claim: config.subject_claim.clone(),
            name_claim: config.name_claim.clone(),
            groups_claim: config.groups_claim.clone(),
            kept_claims: config.kept_claims(),
            trust: config.trust.clone(),
            refresh: config.jwks_refresh.0,
            min_refetch: config.jwks_min_refetch.0,
            skew: config.clock_skew.0,
            http,
            keys: RwLock::new(Keys::default()),
            last_fetch: Mutex::new(None),
        })
    }

    async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::NotMine);
        };
        // Only tokens claiming this issuer are this provider's to judge.
        let claims: serde_json::Map<String, Value> = b64_json(payload).ok_or(AuthError::NotMine)?;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(AuthError::NotMine);
        }
        let header: Header =
            b64_json(header).ok_or_else(|| invalid("the token's header is not valid JSON"))?;
        let algorithm = match header.alg.as_deref() {
            Some("RS256") => Algorithm::RS256,
            Some("ES256") => Algorithm::ES256,
            Some("EdDSA") => Algorithm::EdDSA,
            Some(other) => {
                return Err(invalid(format!(
                    "tokens signed with {other:?} are not accepted (RS256, ES256 or EdDSA only)"
                )));
            }
            None => return Err(invalid("the token names no algorithm")),
        };
        let kid = header
            .kid
            .ok_or_else(|| invalid("the token names no key (kid)"))?;
        let claims = self.check_signature(token, algorithm, &kid).await?;
        self.check_trust(&claims)?;
        self.identity(&claims)
    }

    /// Verifies signature and registered claims with the key `kid`, fetching
    /// the issuer's keys if they are stale or do not have it.
    async fn check_signature(
        &self,
        token: &str,
        algorithm: Algorithm,
        kid: &str,
    ) -> Result<serde_json::Map<String, Value>, AuthError> {
        let stale = {
            let keys = self.keys.read().await;
            !keys.by_kid.contains_key(kid)
                || keys.fetched.is_none_or(|at| at.elapsed() >= self.refresh)
        };
        if stale {
            self.refetch().await;
        }
        let keys = self.keys.read().await;
        let Some(key) = keys.by_kid.get(kid) else {
            return Err(invalid(format!(
                "the token was signed with a key {} does not publish (unknown kid)",
                self.issuer
            )));
        };
        if key.algorithm != algorithm {
            return Err(invalid(format!(
                "the token claims {algorithm:?}, but its key is for {:?}",
                key.algorithm
            )));
        }
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.issuer]);
        match &self.resource {
            Some(resource) => validation.set_audience(&[&self.audience, resource]),
            None => validation.set_audience(&[&self.audience]),
        }
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.skew.as_secs();
        jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                invalid(match e.kind() {
                    K::ExpiredSignature => "the token has expired".to_owned(),
                    K::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
                    K::InvalidAudience => {
                        format!("the token is not for audience {:?}", self.audience)
                    }
                    K::InvalidIssuer => "the token's issuer does not match".to_owned(),
                    K::InvalidSignature => "the token's signature does not verify".to_owned(),
                    K::MissingRequiredClaim(claim) => format!("the token has no {claim:?} claim"),
                    other => format!("the token is not valid: {other:?}"),
                })
            })
    }

    /// Fetches discovery and keys again, unless a fetch happened within
    /// `min_refetch`. A failure keeps the keys there were.
    async fn refetch(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refetch) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch_keys().await {
            Ok(by_kid) => {
                let mut keys = self.keys.write().await;
                keys.by_kid = by_kid;
                keys.fetched = Some(Instant::now());
            }
            Err(error) => {
                tracing::warn!(issuer = %self.issuer, %error, "cannot fetch the issuer's signing keys; keeping the ones known");
            }
        }
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, Key>, String> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = serde_json::from_slice(&self.get(&discovery_url).await?)
            .map_err(|e| format!("discovery document: {e}"))?;
        if discovery.issuer != self.issuer {
            return Err(format!(
                "the discovery document names issuer {:?}",
                discovery.issuer
            ));
        }
        let set: JwkSet = serde_json::from_slice(&self.get(&discovery.jwks_uri).await?)
            .map_err(|e| format!("key set: {e}"))?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            if let (Some(kid), Some(key)) = (&jwk.common.key_id, usable(jwk)) {
                by_kid.insert(kid.clone(), key);
            }
        }
        Ok(by_kid)
    }

    /// GETs a small JSON document, refusing one over the size cap.
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("{url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// With trust rules, at least one must match every claim it names.
    fn check_trust(&self, claims: &serde_json::Map<String, Value>) -> Result<(), AuthError> {
        if self.trust.is_empty() {
            return Ok(());
        }
        let matches = |rule: &BTreeMap<String, String>| {
            rule.iter().all(|(claim, pattern)| {
                claims
                    .get(claim)
                    .and_then(claim_text)
                    .is_some_and(|value| WildMatch::new(pattern).matches(&value))
            })
        };
        if self.trust.iter().any(matches) {
            return Ok(());
        }
        // The operator learns which claims the token had; the caller only
        // that no rule matched.
        let named: BTreeMap<&String, String> = self
            .trust
            .iter()
            .flat_map(|rule| rule.keys())
            .map(|claim| {
                let value = claims.get(claim).and_then(claim_text);
                (claim, value.unwrap_or_else(|| "<absent>".into()))
            })
            .collect();
        tracing::warn!(issuer = %self.issuer, claims = ?named, rules = ?self.trust, "a token matched no trust rule");
        Err(invalid(format!(
            "the token matches none of the trust rules for {}",
            self.issuer
        )))
    }

    fn identity(&self, claims: &serde_json::Map<String, Value>) -> Result<Identity, AuthError> {
        let subject = claims
            .get(&self.subject_claim)
            .and_then(claim_text)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(format!("the token has no {:?} claim", self.subject_claim)))?;
        let groups = match &self.groups_claim {
            Some(claim) => claims
                .get(claim)
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(claim_text).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let mut kept: BTreeMap<String, String> = self
            .kept_claims
            .iter()
            .filter_map(|claim| {
                claims
                    .get(claim)
                    .and_then(claim_text)
                    .map(|v| (claim.clone(), v))
            })
            .collect();
        if let Some(name) = self
            .name_claim
            .as_ref()
            .and_then(|claim| claims.get(claim))
            .and_then(claim_text)
        {
            kept.insert("name".into(), name);
        }
        Ok(Identity {
            claims: kept,
            groups,
            issuer: self.issuer.clone(),
            kind: self.kind,
            subject,
        })
    }
}

/// A published key as a verifying key, with the one algorithm it may be
/// used with; None for keys not for signatures or of other types.
fn usable(jwk: &Jwk) -> Option<Key> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
    {
        return None;
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        // Symmetric keys are never public keys: refusing them here is what
        // makes "HS256 signed with the public key" impossible.
        _ => return None,
    };
    // A key that names its algorithm must name this one.
    let named = jwk.common.key_algorithm;
    let expected = match algorithm {
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::ES256 => KeyAlgorithm::ES256,
        _ => KeyAlgorithm::EdDSA,
    };
    if named.is_some_and(|n| n != expected) {
        return None;
    }
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        algorithm,
        decoding,
    })
}

impl IdentityProvider for OidcProvider {
    fn name(&self) -> &str {
        &self.issuer
    }

    fn authenticate<'a>(&'a self, bearer: &'a str) -> AuthFuture<'a> {
        Box::pin(self.verify(bearer))
    }
}
