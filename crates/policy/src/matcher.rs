//! Who a policy or role talks about: `kind:agent`, `group:dba`,
//! `subject:alice`, `issuer:https://...`, or `*` for anyone.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::{Identity, IdentityKind};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    Anyone,
    Kind(IdentityKind),
    Group(String),
    Subject(String),
    Issuer(String),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a valid identity matcher (expected kind:agent, kind:human, group:NAME, subject:NAME, issuer:URL or *)"
)]
pub struct MatcherError(String);

impl Matcher {
    pub fn matches(&self, identity: &Identity) -> bool {
        match self {
            Self::Anyone => true,
            Self::Kind(kind) => identity.kind == *kind,
            Self::Group(group) => identity.groups.iter().any(|g| g == group),
            Self::Subject(subject) => identity.subject == *subject,
            Self::Issuer(issuer) => identity.issuer == *issuer,
        }
    }

    pub fn any_matches(matchers: &[Matcher], identity: &Identity) -> bool {
        matchers.iter().any(|m| m.matches(identity))
    }
}

impl FromStr for Matcher {
    type Err = MatcherError;

    fn from_str(text: &str) -> Result<Self, MatcherError> {
        let bad = || MatcherError(text.to_owned());
        if text == "*" {
            return Ok(Self::Anyone);
        }
        let (prefix, value) = text.split_once(':').ok_or_else(bad)?;
        if value.is_empty() {
            return Err(bad());
        }
        match prefix {
            "kind" => match value {
                "agent" => Ok(Self::Kind(IdentityKind::Agent)),
                "human" => Ok(Self::Kind(IdentityKind::Human)),
                _ => Err(bad()),
            },
            "group" => Ok(Self::Group(value.to_owned())),
            "subject" => Ok(Self::Subject(value.to_owned())),
            "issuer" => Ok(Self::Issuer(value.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anyone => f.write_str("*"),
            Self::Kind(kind) => write!(f, "kind:{kind}"),
            Self::Group(g) => write!(f, "group:{g}"),
            Self::Subject(s) => write!(f, "subject:{s}"),
            Self::Issuer(i) => write!(f, "issuer:{i}"),
        }
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            claims: Default::default(),
            groups: vec!["dba".into()],
            issuer: "dev".into(),
            kind: IdentityKind::Human,
            subject: "alice".into(),
        }
    }

    #[test]
    fn matches_by_each_attribute() {
        let cases = [
            ("*", true),
            ("kind:human", true),
            ("kind:agent", false),
            ("group:dba", true),
            ("group:ops", false),
            ("subject:alice", true),
            ("subject:bob", false),
            ("issuer:dev", true),
        ];
        for (text, expected) in cases {
            let m: Matcher = text.parse().unwrap_or(Matcher::Subject("never".into()));
            assert_eq!(m.matches(&alice()), expected, "{text}");
            assert_eq!(m.to_string(), text);
        }
    }

    #[test]
    fn refuses_malformed_matchers() {
        for text in ["alice", "grp:dba", "kind:robot", "group:", ""] {
            assert!(text.parse::<Matcher>().is_err(), "{text}");
        }
    }
}
