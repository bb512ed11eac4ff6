//! Whether an identity may request a task, and on what terms.
//!
//! Policies grant: a request is allowed when any policy covers the identity,
//! the connection, the access level and the window. It is granted without a
//! human only when some covering policy asks for no approval at that access
//! level; otherwise every covering policy's approvers may decide it.
//! (Statement rules, which restrict, combine the other way: strictest wins.)

use std::time::Duration;

use crate::config::{Config, DEFAULT_APPROVAL_TIMEOUT};
use crate::{Access, Identity, Matcher};

/// What a caller asks for.
#[derive(Clone, Debug)]
pub struct TaskRequest {
    pub name: String,
    pub connection: String,
    pub access: Access,
    pub window: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantDecision {
    /// No policy allows it; the reason says what would have to change.
    Refused(String),
    /// Allowed at once; `approvers` are those the covering policies name
    /// anywhere (they decide its statement reviews and may revoke it).
    Granted { approvers: Vec<Matcher> },
    /// Allowed once one of `approvers` approves, within `timeout`.
    NeedsApproval {
        approvers: Vec<Matcher>,
        timeout: Duration,
    },
}

fn describe(identity: &Identity) -> String {
    let groups = if identity.groups.is_empty() {
        String::new()
    } else {
        format!(", groups {}", identity.groups.join(","))
    };
    format!("{} ({}{groups})", identity.subject, identity.kind)
}

/// Whether someone other than `requester` could match one of `approvers`
/// (a requester never decides its own request): false only when there are
/// none, or each names the requester by subject.
pub fn may_be_approved_by_another(approvers: &[Matcher], requester: &Identity) -> bool {
    approvers.iter().any(|m| {
        let names_the_requester =
            |m: &Matcher| matches!(m, Matcher::Subject(s) if *s == requester.subject);
        match m {
            Matcher::Scoped { matcher, issuer } => {
                !(names_the_requester(matcher) && *issuer == requester.issuer)
            }
            m => !names_the_requester(m),
        }
    })
}

pub fn evaluate_request(
    config: &Config,
    identity: &Identity,
    request: &TaskRequest,
) -> GrantDecision {
    let Some(connection) = config.connection(&request.connection) else {
        return GrantDecision::Refused(format!(
            "there is no connection named {:?}",
            request.connection
        ));
    };
    if connection.credential(request.access).is_none() {
        return GrantDecision::Refused(format!(
            "connection {:?} has no {} credential",
            request.connection, request.access
        ));
    }
    let covering: Vec<_> = config
        .policies
        .iter()
        .map(|p| &p.value)
        .filter(|p| {
            Matcher::any_matches(&p.who, identity)
                && p.covers_connection(&request.connection)
                && p.access.contains(&request.access)
        })
        .collect();
    if covering.is_empty() {
        return GrantDecision::Refused(format!(
            "no policy lets {} request {} access to {:?}",
            describe(identity),
            request.access,
            request.connection
        ));
    }
    let fitting: Vec<_> = covering
        .iter()
        .filter(|p| request.window <= p.max_window.0)
        .collect();
    if fitting.is_empty() {
        let longest = covering.iter().map(|p| p.max_window).max();
        return GrantDecision::Refused(format!(
            "a window of {} is longer than policy allows for this request (at most {})",
            humantime::format_duration(request.window),
            longest.map(|d| d.to_string()).unwrap_or_default()
        ));
    }
    if fitting
        .iter()
        .any(|p| p.approval_for(request.access).is_none())
    {
        let mut approvers: Vec<Matcher> = Vec::new();
        for m in fitting.iter().flat_map(|p| p.named_approvers()) {
            if !approvers.contains(m) {
                approvers.push(m.clone());
            }
        }
        return GrantDecision::Granted { approvers };
    }
    let mut approvers: Vec<Matcher> = Vec::new();
    let mut timeout = Duration::MAX;
    for approval in fitting
        .iter()
        .filter_map(|p| p.approval_for(request.access))
    {
        for m in &approval.by {
            if !approvers.contains(m) {
                approvers.push(m.clone());
            }
        }
        timeout = timeout.min(approval.timeout.map_or(DEFAULT_APPROVAL_TIMEOUT, |t| t.0));
    }
    if !may_be_approved_by_another(&approvers, identity) {
        return GrantDecision::Refused(format!(
            "{} access to {:?} needs an approval, but no one other than the requester may approve it (approvers: {})",
            request.access,
            request.connection,
            approvers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    GrantDecision::NeedsApproval { approvers, timeout }
}

/// What an identity may ask for on one connection at one access level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub connection: String,
    pub access: Access,
    /// The longest window any covering policy allows.
    pub max_window: Duration,
    /// Asking for `max_window` is granted at once, or needs one of these.
    pub approvers: Option<Vec<Matcher>>,
}

/// Every connection and access level `identity` may request, as
/// [`evaluate_request`] would decide a request for the longest window.
pub fn offers(config: &Config, identity: &Identity) -> Vec<Offer> {
    let mut offers = Vec::new();
    for connection in config.connections.iter().map(|c| &c.value) {
        for access in [Access::Read, Access::Write, Access::Admin] {
            let longest = config
                .policies
                .iter()
                .map(|p| &p.value)
                .filter(|p| {
                    Matcher::any_matches(&p.who, identity)
                        && p.covers_connection(&connection.name)
                        && p.access.contains(&access)
                })
                .map(|p| p.max_window.0)
                .max();
            let Some(max_window) = longest else { continue };
            let request = TaskRequest {
                name: String::new(),
                connection: connection.name.clone(),
                access,
                window: max_window,
            };
            let approvers = match evaluate_request(config, identity, &request) {
                GrantDecision::Refused(_) => continue,
                GrantDecision::Granted { .. } => None,
                GrantDecision::NeedsApproval { approvers, .. } => Some(approvers),
            };
            offers.push(Offer {
                connection: connection.name.clone(),
                access,
                max_window,
                approvers,
            });
        }
    }
    offers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentityKind;
    use crate::config::parse;

    const CONFIG: &str = r#"
[[identity.dev]]
subject = "alice"
kind = "human"
token_env = "T_ALICE"

[[connections]]
name = "orders-db"
kind = "postgres"
address = "127.0.0.1:5432"
database = "orders"
read = { user = "ro", password_env = "RO" }
write = { user = "rw", password_env = "RW" }

[[policies]]
who = ["kind:agent"]
connections = ["orders-db"]
access = ["read", "write"]
max_window = "30m"
approve = { when = ["write"], by = ["group:dba"], timeout = "10m" }
"#;

    fn agent() -> Identity {
        Identity {
            claims: Default::default(),
            groups: vec![],
            issuer: "dev".into(),
            kind: IdentityKind::Agent,
            subject: "copilot".into(),
        }
    }

    fn request(access: Access, minutes: u64) -> TaskRequest {
        TaskRequest {
            name: "migrate-orders".into(),
            connection: "orders-db".into(),
            access,
            window: Duration::from_secs(minutes * 60),
        }
    }

    #[test]
    fn decides_per_access_window_and_identity() {
        let config = match parse(CONFIG) {
            Ok(c) => c,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(
            evaluate_request(&config, &agent(), &request(Access::Read, 15)),
            // Granted at once; the policy's write approvers may revoke it.
            GrantDecision::Granted {
                approvers: vec![Matcher::Group("dba".into())]
            }
        );
        assert_eq!(
            evaluate_request(&config, &agent(), &request(Access::Write, 15)),
            GrantDecision::NeedsApproval {
                approvers: vec![Matcher::Group("dba".into())],
                timeout: Duration::from_secs(600)
            }
        );
        let too_long = evaluate_request(&config, &agent(), &request(Access::Read, 60));
        assert!(
            matches!(&too_long, GrantDecision::Refused(r) if r.contains("at most 30m")),
            "{too_long:?}"
        );
        let human = Identity {
            kind: IdentityKind::Human,
            ..agent()
        };
        let refused = evaluate_request(&config, &human, &request(Access::Read, 5));
        assert!(
            matches!(&refused, GrantDecision::Refused(r) if r.contains("no policy lets copilot (human)")),
            "{refused:?}"
        );
        let admin = evaluate_request(&config, &agent(), &request(Access::Admin, 5));
        assert!(
            matches!(&admin, GrantDecision::Refused(r) if r.contains("no admin credential")),
            "{admin:?}"
        );
        let mut unknown = request(Access::Read, 5);
        unknown.connection = "nope".into();
        assert!(matches!(
            evaluate_request(&config, &agent(), &unknown),
            GrantDecision::Refused(_)
        ));
    }

    #[test]
    fn a_request_only_its_requester_could_approve_is_refused_at_once() {
        let config =
            match parse(&CONFIG.replace("by = [\"group:dba\"]", "by = [\"subject:copilot\"]")) {
                Ok(c) => c,
                Err(e) => panic!("{e:?}"),
            };
        let refused = evaluate_request(&config, &agent(), &request(Access::Write, 15));
        assert!(
            matches!(&refused, GrantDecision::Refused(r) if r.contains("no one other than the requester")),
            "{refused:?}"
        );
    }

    #[test]
    fn offers_say_what_may_be_asked_and_on_what_terms() {
        let config = match parse(CONFIG) {
            Ok(c) => c,
            Err(e) => panic!("{e:?}"),
        };
        let offers = offers(&config, &agent());
        let shown: Vec<_> = offers
            .iter()
            .map(|o| {
                (
                    o.connection.as_str(),
                    o.access,
                    o.max_window.as_secs(),
                    o.approvers.clone(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("orders-db", Access::Read, 1800, None),
                (
                    "orders-db",
                    Access::Write,
                    1800,
                    Some(vec![Matcher::Group("dba".into())])
                ),
            ]
        );
        let human = Identity {
            kind: IdentityKind::Human,
            ..agent()
        };
        assert!(super::offers(&config, &human).is_empty());
    }
}
