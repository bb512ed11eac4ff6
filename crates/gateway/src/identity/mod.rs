//! Who is calling. Providers turn a bearer token into an [`Identity`]; the
//! [`Authenticator`] asks each in turn. OIDC plugs in here as another
//! provider; nothing else changes.

pub mod dev;
pub mod oidc;

use std::future::Future;
use std::pin::Pin;

pub use dev::DevProvider;
pub use oidc::OidcProvider;
use taskgate_policy::Identity;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token is not one this provider issued or accepts: try the next.
    #[error("token not recognized")]
    NotMine,
    /// The token is this provider's, but it is not valid (expired, revoked).
    #[error("{0}")]
    Invalid(String),
}

pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Identity, AuthError>> + Send + 'a>>;

/// A source of identities.
pub trait IdentityProvider: Send + Sync {
    /// A short name for logs: `dev`, or an issuer URL.
    fn name(&self) -> &str;
    fn authenticate<'a>(&'a self, bearer: &'a str) -> AuthFuture<'a>;
}

/// Every configured provider, asked in order.
#[derive(Default)]
pub struct Authenticator {
    providers: Vec<Box<dyn IdentityProvider>>,
}

impl Authenticator {
    pub fn new(providers: Vec<Box<dyn IdentityProvider>>) -> Self {
        Self { providers }
    }

    pub async fn authenticate(&self, bearer: &str) -> Result<Identity, AuthError> {
        for provider in &self.providers {
            match provider.authenticate(bearer).await {
                Err(AuthError::NotMine) => continue,
                other => return other,
            }
        }
        Err(AuthError::NotMine)
    }
}
