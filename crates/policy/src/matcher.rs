//! Who a policy or role talks about: `kind:agent`, `group:dba`,
//! `subject:alice`, `issuer:https://...`, or `*` for anyone. A group or
//! subject can name the issuer it must come from, `group:dba@corp-idp`
//! (an OIDC issuer's `name`, its URL, or `dev`): with several issuers, a
//! bare `group:dba` matches a `dba` group any of them claims.

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
    /// A group or subject from one issuer only (its URL, or `dev`, once
    /// the config resolved the name written).
    Scoped {
        matcher: Box<Matcher>,
        issuer: String,
    },
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
            Self::Scoped { matcher, issuer } => {
                identity.issuer == *issuer && matcher.matches(identity)
            }
        }
    }

    /// A bare `group:` or `subject:` matcher, which any issuer's identities
    /// can satisfy.
    pub fn is_unscoped_claim(&self) -> bool {
        matches!(self, Self::Group(_) | Self::Subject(_))
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
            "group" | "subject" => {
                let (name, issuer) = match value.rsplit_once('@') {
                    Some((name, issuer)) if !name.is_empty() && !issuer.is_empty() => {
                        (name, Some(issuer))
                    }
                    Some(_) => return Err(bad()),
                    None => (value, None),
                };
                let inner = if prefix == "group" {
                    Self::Group(name.to_owned())
                } else {
                    Self::Subject(name.to_owned())
                };
                Ok(match issuer {
                    Some(issuer) => Self::Scoped {
                        matcher: Box::new(inner),
                        issuer: issuer.to_owned(),
                    },
                    None => inner,
                })
            }
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
            Self::Scoped { matcher, issuer } => write!(f, "{matcher}@{issuer}"),
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
    fn a_scoped_matcher_needs_its_issuer() {
        let m: Matcher = "group:dba@dev".parse().unwrap();
        assert!(m.matches(&alice()));
        assert_eq!(m.to_string(), "group:dba@dev");
        let other: Matcher = "group:dba@https://idp.example".parse().unwrap();
        assert!(!other.matches(&alice()), "a dba group from another issuer");
        let subject: Matcher = "subject:alice@dev".parse().unwrap();
        assert!(subject.matches(&alice()));
        // The last @ names the issuer: a group may hold one.
        let email: Matcher = "group:dba@corp.com@dev".parse().unwrap();
        assert!(
            matches!(&email, Matcher::Scoped { matcher, .. } if **matcher == Matcher::Group("dba@corp.com".into()))
        );
    }

    #[test]
    fn refuses_malformed_matchers() {
        for text in [
            "alice",
            "grp:dba",
            "kind:robot",
            "group:",
            "",
            "group:dba@",
            "group:@dev",
        ] {
            assert!(text.parse::<Matcher>().is_err(), "{text}");
        }
    }
}
