//! Whole-file checks of meaning: references resolve, names are unique,
//! secrets are by reference, and nothing is configured that this build
//! would silently ignore.

use std::collections::HashSet;

use super::load::{ConfigProblem, Located};
use super::types::{Config, Credential, OidcIssuer, RuleAction, Sink, SinkKind, is_github_actions};

struct Report<'a>(&'a mut Vec<ConfigProblem>);

impl Report<'_> {
    fn at<T>(&mut self, element: &Located<T>, field: &str, message: impl Into<String>) {
        let field = if field.is_empty() {
            element.path.clone()
        } else {
            format!("{}.{field}", element.path)
        };
        self.0.push(ConfigProblem {
            line: Some(element.line),
            column: None,
            field,
            message: message.into(),
        });
    }

    fn global(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            line: None,
            column: None,
            field: field.to_owned(),
            message: message.into(),
        });
    }
}

/// Names used as PostgreSQL database names and in URLs.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) fn validate(config: &Config, problems: &mut Vec<ConfigProblem>) {
    let mut report = Report(problems);
    identities(config, &mut report);
    connections(config, &mut report);
    listener_tls(config, &mut report);
    policies(config, &mut report);
    mcp(config, &mut report);
    console(config, &mut report);
    if config.audit.checkpoint_every == 0 {
        report.global("audit.checkpoint_every", "must be at least 1 event");
    }
    store(config, &mut report);
    let mut names = HashSet::new();
    for sink in &config.sinks {
        sink_config(sink, &mut report);
        if !names.insert(sink.name.as_str()) {
            report.at(
                sink,
                "name",
                "is used by another sink: each needs its own cursor",
            );
        }
    }
}

fn console(config: &Config, report: &mut Report<'_>) {
    let console = &config.console;
    if let Some(issuer) = &console.issuer {
        let known = config
            .identity
            .oidc
            .iter()
            .any(|i| i.issuer == *issuer || i.name.as_deref() == Some(issuer.as_str()));
        if !known {
            report.global(
                "console.issuer",
                format!("{issuer:?} is not the name or URL of an [[identity.oidc]] issuer"),
            );
        }
        if console
            .client_id
            .as_deref()
            .is_none_or(|c| c.trim().is_empty())
        {
            report.global("console.client_id", "is needed to sign in with an issuer");
        }
    }
    if let Some(url) = &console.public_url
        && !url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
    {
        report.global(
            "console.public_url",
            format!("{url:?} is not an http(s) URL such as https://taskgate.example"),
        );
    }
}

fn mcp(config: &Config, report: &mut Report<'_>) {
    if let Some(resource) = &config.mcp.resource {
        match url::Url::parse(resource) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                if url.fragment().is_some() || url.query().is_some() {
                    report.global(
                        "mcp.resource",
                        "must not have a query or fragment (RFC 8707)",
                    );
                }
            }
            _ => report.global(
                "mcp.resource",
                format!("{resource:?} is not an http(s) URL such as https://gateway.example/mcp"),
            ),
        }
    }
    for origin in &config.mcp.allowed_origins {
        if origin != "null" && !origin.contains("://") {
            report.global(
                "mcp.allowed_origins",
                format!("{origin:?} needs a scheme, such as https://app.example:443"),
            );
        }
    }
}

fn identities(config: &Config, report: &mut Report<'_>) {
    if config.identity.dev.is_empty() && config.identity.oidc.is_empty() {
        report.global(
            "identity",
            "no identity provider is configured, so nobody could use the API: add [[identity.dev]] or [[identity.oidc]]",
        );
    }
    let mut subjects = HashSet::new();
    for dev in &config.identity.dev {
        if dev.subject.trim().is_empty() {
            report.at(dev, "subject", "must not be empty");
        } else if !subjects.insert(dev.subject.as_str()) {
            report.at(
                dev,
                "subject",
                format!("{:?} is defined twice", dev.subject),
            );
        }
        if dev.token.is_some() {
            report.at(
                dev,
                "token",
                "inline tokens are not allowed: use token_env or token_file",
            );
        }
        match (&dev.token_env, &dev.token_file) {
            (None, None) => report.at(dev, "", "needs token_env or token_file"),
            (Some(_), Some(_)) => report.at(dev, "", "set token_env or token_file, not both"),
            _ => {}
        }
    }
    let mut issuers = HashSet::new();
    for oidc in &config.identity.oidc {
        oidc_issuer(oidc, report);
        if !issuers.insert(oidc.issuer.as_str()) {
            report.at(oidc, "issuer", "is configured twice");
        }
    }
}

fn sink_config(sink: &Located<Sink>, report: &mut Report<'_>) {
    let config = &sink.value;
    if !is_plain_name(&config.name) {
        report.at(sink, "name", "must be 1-63 letters, digits, '-' or '_'");
    }
    if sink.batch == Some(0) {
        report.at(sink, "batch", "must be at least 1");
    }
    match sink.kind {
        SinkKind::Webhook => {
            match sink.url.as_deref().map(url::Url::parse) {
                None => report.at(sink, "url", "a webhook sink needs the url to POST to"),
                Some(Err(e)) => report.at(sink, "url", format!("is not a URL: {e}")),
                Some(Ok(url)) if !matches!(url.scheme(), "http" | "https") => {
                    report.at(sink, "url", "must be http or https")
                }
                Some(Ok(_)) => {}
            }
            if sink.secret_ref().is_none() {
                report.at(
                    sink,
                    "secret_env",
                    "a webhook sink signs every delivery: give secret_env or secret_file (whsec_...)",
                );
            }
        }
        SinkKind::File => {
            if config.path.is_none() {
                report.at(sink, "path", "a file sink needs the directory to write to");
            }
        }
        SinkKind::Nats => match config.url.as_deref().map(url::Url::parse) {
            None => report.at(
                sink,
                "url",
                "a nats sink needs the server's url (nats://host:4222)",
            ),
            Some(Err(e)) => report.at(sink, "url", format!("is not a URL: {e}")),
            Some(Ok(url)) if !matches!(url.scheme(), "nats" | "tls") => {
                report.at(sink, "url", "must be nats:// or tls://")
            }
            Some(Ok(_)) => {}
        },
    }
}

fn oidc_issuer(oidc: &Located<OidcIssuer>, report: &mut Report<'_>) {
    match url::Url::parse(&oidc.issuer) {
        Err(e) => report.at(oidc, "issuer", format!("is not a URL: {e}")),
        Ok(url) => {
            let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                report.at(
                    oidc,
                    "issuer",
                    "must be an https URL (plain http only for a loopback test issuer)",
                );
            }
        }
    }
    if oidc.audience.trim().is_empty() {
        report.at(
            oidc,
            "audience",
            "must not be empty: tokens for other audiences must be refused",
        );
    }
    let github = is_github_actions(&oidc.issuer);
    if github && oidc.trust.is_empty() {
        report.at(
            oidc,
            "trust",
            "GitHub Actions issues tokens to every repository on GitHub: add [[identity.oidc.trust]] rules naming yours (repository_id, or repository_owner_id and repository, and event_name)",
        );
    }
    for (i, rule) in oidc.trust.iter().enumerate() {
        if rule.is_empty() {
            report.at(
                oidc,
                &format!("trust[{i}]"),
                "an empty rule would trust every token",
            );
        } else if github {
            for problem in github_rule_problems(rule) {
                report.at(oidc, &format!("trust[{i}]"), problem);
            }
        }
    }
}

/// Whether a trust pattern matches more than one value (`*` any run, `?`
/// any one character).
fn is_wild(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// What keeps a GitHub Actions trust rule from naming one repository and
/// the events it accepts. Workflow and environment names are free text (a
/// workflow can create the environment it names) and a `ref` is the same
/// in every repository, so neither pins anything; repository names can be
/// registered again after a rename, so the numeric ids come first.
fn github_rule_problems(rule: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let exact = |claim: &str| rule.get(claim).filter(|p| !is_wild(p));
    let repository_pinned = exact("repository_id").is_some()
        || (exact("repository_owner_id").is_some()
            && rule
                .get("repository")
                .and_then(|r| r.split_once('/'))
                .is_some_and(|(owner, _)| !owner.is_empty() && !is_wild(owner)));
    if !repository_pinned {
        problems.push(
            "must pin the repository: repository_id, or repository_owner_id with repository (no wildcard in the owner); otherwise a token from any repository, of any owner, that matches the rest is trusted"
                .to_owned(),
        );
    }
    match rule.get("event_name") {
        None => problems.push(
            "must name the events it accepts (event_name = \"push\", \"workflow_dispatch\", ...): a pull_request_target run gets a token with the base repository's ref"
                .to_owned(),
        ),
        Some(pattern)
            if is_wild(pattern)
                && wildmatch::WildMatch::new(pattern).matches("pull_request_target") =>
        {
            problems.push(
                "event_name matches pull_request_target, which runs a fork's changes with the base repository's token: name the events one by one (a separate rule per event), pull_request_target only if meant"
                    .to_owned(),
            );
        }
        Some(_) => {}
    }
    problems
}

fn credential(report: &mut Report<'_>, element: &Located<impl Sized>, field: &str, c: &Credential) {
    if c.user.trim().is_empty() {
        report.at(element, &format!("{field}.user"), "must not be empty");
    }
    if c.password.is_some() {
        report.at(
            element,
            &format!("{field}.password"),
            "inline passwords are not allowed: use password_env or password_file",
        );
    }
    if c.password_env.is_some() && c.password_file.is_some() {
        report.at(
            element,
            field,
            "set password_env or password_file, not both",
        );
    }
}

/// The shared store: a `postgres://` URL without a password in it (the
/// password comes from `password_env` or `password_file`, like a
/// connection's), and a node name that can go in events.
fn store(config: &Config, report: &mut Report<'_>) {
    let store = &config.store;
    if let Some(node) = &config.server.node {
        let fits = !node.is_empty()
            && node.len() <= 64
            && node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !fits {
            report.global(
                "server.node",
                "must be 1 to 64 letters, digits, '-', '_' or '.'",
            );
        }
    }
    let Some(url) = &store.url else {
        for (field, set) in [
            ("store.password_env", store.password_env.is_some()),
            ("store.password_file", store.password_file.is_some()),
            ("store.tls", store.tls.is_some()),
        ] {
            if set {
                report.global(field, "only applies to a shared store: set store.url");
            }
        }
        return;
    };
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "postgres" | "postgresql") => {
            if parsed.password().is_some() {
                report.global(
                    "store.url",
                    "must not hold a password: use store.password_env or store.password_file",
                );
            }
            if parsed.host_str().is_none_or(str::is_empty) {
                report.global("store.url", "names no host");
            }
        }
        Ok(parsed) => report.global(
            "store.url",
            format!(
                "scheme {:?} is not supported: the shared store is PostgreSQL (postgres://user@host:port/database)",
                parsed.scheme()
            ),
        ),
        Err(error) => report.global(
            "store.url",
            format!("is not a URL ({error}): write postgres://user@host:port/database"),
        ),
    }
    if store.password_env.is_some() && store.password_file.is_some() {
        report.global("store", "set password_env or password_file, not both");
    }
    if store.durability.is_some() {
        report.global(
            "store.durability",
            "applies to the SQLite store only: a shared store is as durable as its own synchronous_commit (and its replication) make it",
        );
    }
}

fn listener_tls(config: &Config, report: &mut Report<'_>) {
    let server = &config.server;
    match (&server.tls_cert, &server.tls_key) {
        (Some(_), None) => {
            report.global("server.tls_key", "tls_cert is set, so tls_key must be too")
        }
        (None, Some(_)) => {
            report.global("server.tls_cert", "tls_key is set, so tls_cert must be too")
        }
        (None, None) if server.require_tls => report.global(
            "server.require_tls",
            "requires TLS but no certificate is configured: set tls_cert and tls_key",
        ),
        _ => {}
    }
    match (&server.api_tls_cert, &server.api_tls_key) {
        (Some(_), None) => report.global(
            "server.api_tls_key",
            "api_tls_cert is set, so api_tls_key must be too",
        ),
        (None, Some(_)) => report.global(
            "server.api_tls_cert",
            "api_tls_key is set, so api_tls_cert must be too",
        ),
        _ => {}
    }
    if !server.allow_plaintext {
        if !server.api_listen.ip().is_loopback() && server.api_tls_cert.is_none() {
            report.global(
                "server.api_listen",
                format!(
                    "{} is reachable from other machines and has no TLS: bearer tokens and task tokens would cross the network in clear; set api_tls_cert and api_tls_key, or allow_plaintext = true behind a TLS proxy",
                    server.api_listen
                ),
            );
        }
        if !server.postgres_listen.ip().is_loopback() && server.tls_cert.is_none() {
            report.global(
                "server.postgres_listen",
                format!(
                    "{} is reachable from other machines and has no TLS: set tls_cert and tls_key (and require_tls), or allow_plaintext = true",
                    server.postgres_listen
                ),
            );
        }
    }
    if server.max_connections == 0 {
        report.global("server.max_connections", "must be at least 1");
    }
    if server.max_connections_per_task == 0 {
        report.global("server.max_connections_per_task", "must be at least 1");
    }
    if server.max_open_tasks_per_identity == 0 {
        report.global("server.max_open_tasks_per_identity", "must be at least 1");
    }
    if server.max_held_statements_per_identity == 0 {
        report.global(
            "server.max_held_statements_per_identity",
            "must be at least 1",
        );
    }
}

fn connections(config: &Config, report: &mut Report<'_>) {
    let mut names = HashSet::new();
    for conn in &config.connections {
        if !is_plain_name(&conn.name) {
            report.at(
                conn,
                "name",
                format!(
                    "{:?} must be 1-63 characters of letters, digits, '-' or '_'",
                    conn.name
                ),
            );
        } else if !names.insert(conn.name.as_str()) {
            report.at(conn, "name", format!("{:?} is defined twice", conn.name));
        }
        let port_ok = conn
            .address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            report.at(
                conn,
                "address",
                format!("{:?} must be host:port", conn.address),
            );
        }
        if conn.database.trim().is_empty() {
            report.at(conn, "database", "must not be empty");
        }
        let creds = [
            ("read", &conn.read),
            ("write", &conn.write),
            ("admin", &conn.admin),
        ];
        if creds.iter().all(|(_, c)| c.is_none()) {
            report.at(
                conn,
                "",
                "has no credential: set read, write or admin = { user = ..., password_env = ... }",
            );
        }
        for (field, c) in creds {
            if let Some(c) = c {
                credential(report, conn, field, c);
            }
        }
    }
}

fn policies(config: &Config, report: &mut Report<'_>) {
    for policy in &config.policies {
        if policy.who.is_empty() {
            report.at(policy, "who", "must name at least one identity matcher");
        }
        if policy.connections.is_empty() {
            report.at(policy, "connections", "must name at least one connection");
        }
        if policy.access.is_empty() {
            report.at(policy, "access", "must name at least one access level");
        }
        for name in &policy.connections {
            if name == "*" {
                continue;
            }
            let Some(conn) = config.connection(name) else {
                report.at(
                    policy,
                    "connections",
                    format!("unknown connection {name:?}"),
                );
                continue;
            };
            for access in &policy.access {
                if conn.credential(*access).is_none() {
                    report.at(
                        policy,
                        "access",
                        format!("allows {access} on {name:?}, which has no {access} credential"),
                    );
                }
            }
        }
        let grants_at_once = policy
            .access
            .iter()
            .any(|a| policy.approval_for(*a).is_none());
        if grants_at_once
            && config.roles.admins.is_empty()
            && policy.named_approvers().next().is_none()
        {
            report.at(
                policy,
                "",
                "grants tasks without approval and names no approver, and roles.admins is empty: no one could revoke such a task; name admins in [roles], or approvers in the policy",
            );
        }
        if let Some(approve) = &policy.approve {
            if approve.by.is_empty() {
                report.at(policy, "approve.by", "must name who approves");
            }
            if approve.when.is_empty() {
                report.at(
                    policy,
                    "approve.when",
                    "must name the access levels that need approval",
                );
            }
        }
        for (i, rule) in policy.statements.iter().enumerate() {
            let field = format!("statements[{i}]");
            let m = &rule.matches;
            if m.command.is_empty()
                && m.class.is_empty()
                && m.tables.is_empty()
                && m.regex.is_none()
            {
                report.at(
                    policy,
                    &format!("{field}.match"),
                    "needs at least one of command, class, tables or regex",
                );
            }
            for (j, command) in m.command.iter().enumerate() {
                if !taskgate_sqlclass::is_known_command(command) {
                    report.at(
                        policy,
                        &format!("{field}.match.command[{j}]"),
                        format!(
                            "{command:?} names no statement PostgreSQL runs (a command is its leading keywords, as in \"DROP TABLE\" or \"TRUNCATE\")"
                        ),
                    );
                }
            }
            if let Some(pattern) = &m.regex
                && let Err(e) = regex::Regex::new(pattern)
            {
                report.at(
                    policy,
                    &format!("{field}.match.regex"),
                    format!(
                        "invalid regex {pattern:?}: {}",
                        e.to_string()
                            .lines()
                            .last()
                            .unwrap_or("")
                            .trim_start_matches("error: ")
                    ),
                );
            }
            match (rule.action, rule.by.is_empty()) {
                (RuleAction::Review, true) => report.at(
                    policy,
                    &format!("{field}.by"),
                    "a review rule must name who approves",
                ),
                (RuleAction::Allow | RuleAction::Deny, false) => report.at(
                    policy,
                    &format!("{field}.by"),
                    "only review rules have approvers",
                ),
                _ => {}
            }
        }
    }
}
