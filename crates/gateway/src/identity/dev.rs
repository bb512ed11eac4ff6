//! The `dev` provider: static bearer tokens from the config, for local use
//! and tests only. It exists so Taskgate runs without an IdP; the gateway
//! logs a warning at start whenever it is configured.

use subtle::ConstantTimeEq;
use taskgate_policy::config::DevIdentity;
use taskgate_policy::{Identity, Secret};

use super::{AuthError, AuthFuture, IdentityProvider};
use crate::secrets::{self, SecretError};
use crate::token::sha256;

/// The issuer recorded for dev identities.
pub const DEV_ISSUER: &str = "dev";

pub struct DevProvider {
    /// SHA-256 of each token, so comparisons are over fixed-size digests.
    entries: Vec<([u8; 32], Identity)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DevProviderError {
    #[error("dev identity {subject:?}: {error}")]
    Token { subject: String, error: SecretError },
    #[error("dev identity {subject:?} has no token_env or token_file")]
    NoToken { subject: String },
}

impl DevProvider {
    pub fn from_config<'a>(
        identities: impl IntoIterator<Item = &'a DevIdentity>,
    ) -> Result<Self, DevProviderError> {
        let mut entries = Vec::new();
        for dev in identities {
            let reference = dev.token_ref().ok_or_else(|| DevProviderError::NoToken {
                subject: dev.subject.clone(),
            })?;
            let token: Secret =
                secrets::resolve(&reference).map_err(|error| DevProviderError::Token {
                    subject: dev.subject.clone(),
                    error,
                })?;
            let identity = Identity {
                claims: Default::default(),
                groups: dev.groups.clone(),
                issuer: DEV_ISSUER.into(),
                kind: dev.kind,
                subject: dev.subject.clone(),
            };
            entries.push((sha256(token.expose()), identity));
        }
        Ok(Self { entries })
    }

    pub fn subjects(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(_, i)| i.subject.as_str())
    }
}

impl IdentityProvider for DevProvider {
    fn name(&self) -> &str {
        DEV_ISSUER
    }

    fn authenticate<'a>(&'a self, bearer: &'a str) -> AuthFuture<'a> {
        let digest = sha256(bearer);
        // Check every entry, so timing does not tell which one matched.
        let mut found = None;
        for (hash, identity) in &self.entries {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(identity.clone());
            }
        }
        Box::pin(async move { found.ok_or(AuthError::NotMine) })
    }
}
