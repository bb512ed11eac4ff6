//! Who acted. Events keep the identity as it was when they happened, so the
//! record stays true after the IdP changes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether an identity is a program acting on someone's behalf or a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    Agent,
    Human,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Human => "human",
        }
    }
}

impl fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated identity. Fields are declared in alphabetical order: the
/// canonical encoding of events relies on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Claims worth keeping (repository, workflow, run id...), by name.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Who vouched for the identity: an OIDC issuer URL, or `dev` for the
    /// local-only provider.
    pub issuer: String,
    pub kind: IdentityKind,
    pub subject: String,
}

impl Identity {
    /// Two identities are the same principal when issuer and subject agree.
    pub fn same_principal(&self, other: &Identity) -> bool {
        self.issuer == other.issuer && self.subject == other.subject
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {})", self.subject, self.kind, self.issuer)
    }
}
