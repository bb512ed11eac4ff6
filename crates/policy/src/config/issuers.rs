//! Matchers scoped to an issuer (`group:dba@corp-idp`): names resolved to
//! the issuer's URL once the file is read, and a warning for bare `group:`
//! and `subject:` matchers when several issuers could claim them.

use super::load::ConfigProblem;
use super::types::Config;
use crate::Matcher;

/// Every matcher of the config, with where it is written.
fn matchers_mut(config: &mut Config) -> Vec<(String, Option<usize>, &mut Matcher)> {
    let mut out = Vec::new();
    for m in &mut config.roles.admins {
        out.push(("roles.admins".to_owned(), None, m));
    }
    for m in &mut config.roles.auditors {
        out.push(("roles.auditors".to_owned(), None, m));
    }
    for policy in &mut config.policies {
        let (path, line) = (policy.path.clone(), Some(policy.line));
        let p = &mut policy.value;
        for m in &mut p.who {
            out.push((format!("{path}.who"), line, m));
        }
        if let Some(approve) = &mut p.approve {
            for m in &mut approve.by {
                out.push((format!("{path}.approve.by"), line, m));
            }
        }
        for (i, rule) in p.statements.iter_mut().enumerate() {
            for m in &mut rule.by {
                out.push((format!("{path}.statements[{i}].by"), line, m));
            }
        }
    }
    out
}

/// Replaces each scoped matcher's issuer name with the issuer's URL (`dev`
/// stays `dev`); an issuer the config does not have is a problem.
pub(super) fn resolve(config: &mut Config, problems: &mut Vec<ConfigProblem>) {
    let issuers: Vec<(Option<String>, String)> = config
        .identity
        .oidc
        .iter()
        .map(|o| (o.value.name.clone(), o.value.issuer.clone()))
        .collect();
    for (field, line, matcher) in matchers_mut(config) {
        let Matcher::Scoped { issuer, .. } = matcher else {
            continue;
        };
        if issuer == "dev" || issuers.iter().any(|(_, url)| url == issuer) {
            continue;
        }
        match issuers.iter().find(|(name, _)| name.as_deref() == Some(issuer.as_str())) {
            Some((_, url)) => *issuer = url.clone(),
            None => problems.push(ConfigProblem {
                line,
                column: None,
                field,
                message: format!(
                    "{matcher} names an issuer this config does not have: use an [[identity.oidc]] name or issuer URL, or dev"
                ),
            }),
        }
    }
}

/// Bare `group:` and `subject:` matchers when identities come from more
/// than one issuer: each issuer's tokens can claim any group or subject.
pub fn warnings(config: &Config) -> Vec<String> {
    let issuers = config.identity.oidc.len() + usize::from(!config.identity.dev.is_empty());
    if issuers < 2 {
        return Vec::new();
    }
    // The matchers are collected from a copy: the walk is written once,
    // for the resolution that changes them.
    let mut copy = config.clone();
    matchers_mut(&mut copy)
        .into_iter()
        .filter(|(_, _, m)| m.is_unscoped_claim())
        .map(|(field, _, m)| {
            format!(
                "{field}: {m} matches that {} from any of the {issuers} issuers; scope it to one ({m}@NAME, NAME an [[identity.oidc]] name or dev)",
                if matches!(m, Matcher::Group(_)) { "group" } else { "subject" }
            )
        })
        .collect()
}
