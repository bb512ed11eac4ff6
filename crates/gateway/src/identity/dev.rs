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
    #[error("dev identities {first:?} and {second:?} have the same token: each needs its own")]
    SharedToken { first: String, second: String },
    #[error(
        "dev identity {subject:?}: its token has {chars} characters; a dev token needs at least {MIN_TOKEN_CHARS} (anyone could guess a short one)"
    )]
    WeakToken { subject: String, chars: usize },
}

/// Shortest dev token accepted.
pub const MIN_TOKEN_CHARS: usize = 32;

impl DevProvider {
    pub fn from_config<'a>(
        identities: impl IntoIterator<Item = &'a DevIdentity>,
    ) -> Result<Self, DevProviderError> {
        let mut entries: Vec<([u8; 32], Identity)> = Vec::new();
        for dev in identities {
            let reference = dev.token_ref().ok_or_else(|| DevProviderError::NoToken {
                subject: dev.subject.clone(),
            })?;
            let token: Secret =
                secrets::resolve(&reference).map_err(|error| DevProviderError::Token {
                    subject: dev.subject.clone(),
                    error,
                })?;
            let chars = token.expose().chars().count();
            if chars < MIN_TOKEN_CHARS {
                return Err(DevProviderError::WeakToken {
                    subject: dev.subject.clone(),
                    chars,
                });
            }
            let identity = Identity {
                claims: Default::default(),
                groups: dev.groups.clone(),
                issuer: DEV_ISSUER.into(),
                kind: dev.kind,
                subject: dev.subject.clone(),
            };
            let digest = sha256(token.expose());
            if let Some((_, other)) = entries.iter().find(|(d, _)| *d == digest) {
                return Err(DevProviderError::SharedToken {
                    first: other.subject.clone(),
                    second: identity.subject,
                });
            }
            entries.push((digest, identity));
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

#[cfg(test)]
mod tests {
    use super::*;
    use taskgate_policy::IdentityKind;

    fn dev(subject: &str, token_file: &std::path::Path) -> DevIdentity {
        DevIdentity {
            subject: subject.into(),
            kind: IdentityKind::Human,
            groups: vec![],
            token_env: None,
            token_file: Some(token_file.to_path_buf()),
            token: None,
        }
    }

    #[tokio::test]
    async fn tokens_map_to_their_identity_and_must_differ() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let (token_a, token_b) = ("token-a".repeat(5), "token-b".repeat(5));
        std::fs::write(&a, format!("{token_a}\n")).unwrap();
        std::fs::write(&b, &token_b).unwrap();
        let provider = DevProvider::from_config([&dev("alice", &a), &dev("bob", &b)]).unwrap();
        let who = provider.authenticate(&token_b).await.unwrap();
        assert_eq!(who.subject, "bob");
        assert!(matches!(
            provider.authenticate("token-c").await,
            Err(AuthError::NotMine)
        ));

        let shared = DevProvider::from_config([&dev("alice", &a), &dev("mallory", &a)]);
        let error = shared.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            error.contains("\"alice\" and \"mallory\" have the same token"),
            "{error}"
        );
        assert!(!error.contains("token-a"), "{error}");
    }

    #[test]
    fn a_short_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "x").unwrap();
        let error = DevProvider::from_config([&dev("alice", &short)])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("at least 32"), "{error}");
    }
}
