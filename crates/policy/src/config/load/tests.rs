use super::*;

fn problems(source: &str) -> Vec<String> {
    match parse(source) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
    }
}

const GOOD: &str = r#"
[server]
api_listen = "127.0.0.1:0"

[[identity.dev]]
subject = "alice"
kind = "human"
groups = ["dba"]
token_env = "T_ALICE"

[roles]
admins = ["group:platform"]

[[connections]]
name = "orders-db"
kind = "postgres"
address = "127.0.0.1:5432"
database = "orders"
read = { user = "ro", password_env = "RO" }

[[policies]]
who = ["kind:agent"]
connections = ["orders-db"]
access = ["read"]
max_window = "30m"

[[policies.statements]]
match = { regex = "(?i)^drop" }
action = "deny"
"#;

#[test]
fn a_good_config_loads() {
    let config = match parse(GOOD) {
        Ok(c) => c,
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(config.connections[0].line, 14);
    assert_eq!(config.policies[0].statements.len(), 1);
    assert_eq!(config.server.api_listen.port(), 0);
}

#[test]
fn every_problem_is_reported_with_its_place() {
    let source = r#"
[server]
api_listen = "127.0.0.1:0"
colour = "blue"

[[identity.dev]]
subject = "alice"
kind = "robot"
token_env = "T"

[[identity.dev]]
subject = "bob"
kind = "human"
token = "inline-secret"

[[connections]]
name = "orders-db"
kind = "postgres"
address = "nowhere"
database = "orders"
read = { user = "ro", password = "hunter2" }

[[policies]]
who = ["grp:dba"]
connections = ["orders-db"]
access = ["read"]
max_window = "30m"

[[policies]]
who = ["kind:agent"]
connections = ["billing-db"]
access = ["write"]
max_window = "soon"

[[policies]]
who = ["kind:agent"]
connections = ["orders-db"]
access = ["write"]
max_window = "5m"

[[policies.statements]]
match = { regex = "(unclosed" }
action = "review"
"#;
    let found = problems(source);
    let expect = [
        "line 4, column 1: server: unknown field `colour`",
        "line 8, column 8: identity.dev[0]: unknown variant `robot`",
        "line 11: identity.dev[1].token: inline tokens are not allowed",
        "line 11: identity.dev[1]: needs token_env or token_file",
        "line 16: connections[0].address: \"nowhere\" must be host:port",
        "line 16: connections[0].read.password: inline passwords are not allowed",
        "line 24, column 7: policies[0]: \"grp:dba\" is not a valid identity matcher",
        "line 33, column 14: policies[1]: \"soon\" is not a duration",
        "line 35: policies[2].access: allows write on \"orders-db\", which has no write credential",
        "line 35: policies[2].statements[0].match.regex: invalid regex \"(unclosed\": unclosed group",
        "line 35: policies[2].statements[0].by: a review rule must name who approves",
        "line 35: policies[2]: grants tasks without approval and names no approver, and roles.admins is empty",
    ];
    for want in expect {
        assert!(
            found.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(found.len(), expect.len(), "{}", found.join("\n"));
    assert!(
        !found
            .iter()
            .any(|p| p.contains("hunter2") || p.contains("inline-secret")),
        "a problem echoed a secret: {found:?}"
    );
}

#[test]
fn syntax_errors_have_a_line() {
    let found = problems("[server\napi_listen = 1\n");
    assert!(!found.is_empty());
    assert!(found[0].starts_with("line 1"), "{found:?}");
}

#[test]
fn a_shared_store_is_checked() {
    let store = |body: &str, server: &str| {
        problems(
            &format!("{GOOD}\n[store]\n{body}\n")
                .replace("[server]\n", &format!("[server]\n{server}\n")),
        )
    };
    assert_eq!(
        store(
            "url = \"postgres://tg@db:5432/taskgate\"\npassword_env = \"TG_STORE_PW\"",
            "node = \"gw-a\""
        ),
        Vec::<String>::new()
    );
    let cases = [
        (
            "url = \"postgres://tg:hunter2@db/taskgate\"",
            "must not hold a password",
        ),
        ("url = \"mysql://db/taskgate\"", "is not supported"),
        ("url = \"not a url\"", "is not a URL"),
        ("password_env = \"X\"", "only applies to a shared store"),
        (
            "url = \"postgres://db/t\"\ndurability = \"normal\"",
            "applies to the SQLite store only",
        ),
        (
            "url = \"postgres://db/t\"\npassword_env = \"X\"\npassword_file = \"f\"",
            "not both",
        ),
    ];
    for (body, expect) in cases {
        let found = store(body, "");
        assert!(
            found.iter().any(|p| p.contains(expect)),
            "{body}: {found:?}"
        );
        assert!(
            !found.iter().any(|p| p.contains("hunter2")),
            "echoed a secret: {found:?}"
        );
    }
    let found = store("", "node = \"gw a/1\"");
    assert!(found.iter().any(|p| p.contains("server.node")), "{found:?}");
}

#[test]
fn sinks_are_checked() {
    let sink = |body: &str| problems(&format!("{GOOD}\n[[sinks]]\n{body}\n"));
    let ok = sink(
        "name = \"siem\"\nkind = \"webhook\"\nurl = \"https://siem.example/in\"\nsecret_env = \"WHSEC\"",
    );
    assert!(ok.is_empty(), "{ok:?}");
    let unsigned = sink("name = \"siem\"\nkind = \"webhook\"\nurl = \"https://siem.example/in\"");
    assert!(
        unsigned.iter().any(|p| p.contains("signs every delivery")),
        "{unsigned:?}"
    );
    let no_path = sink("name = \"archive\"\nkind = \"file\"");
    assert!(
        no_path.iter().any(|p| p.contains("directory")),
        "{no_path:?}"
    );
    let bad_name = sink("name = \"a b\"\nkind = \"file\"\npath = \"x\"\nbatch = 0");
    assert!(bad_name.iter().any(|p| p.contains("name")), "{bad_name:?}");
    assert!(bad_name.iter().any(|p| p.contains("batch")), "{bad_name:?}");
    let twice = problems(&format!(
        "{GOOD}\n[[sinks]]\nname = \"a\"\nkind = \"file\"\npath = \"x\"\n\n[[sinks]]\nname = \"a\"\nkind = \"file\"\npath = \"y\"\n"
    ));
    assert!(
        twice.iter().any(|p| p.contains("another sink")),
        "{twice:?}"
    );
}

#[test]
fn oidc_issuers_are_checked() {
    let issuer = |body: &str| problems(&format!("{GOOD}\n[[identity.oidc]]\n{body}\n"));
    let ok = issuer("issuer = \"https://idp.example\"\naudience = \"taskgate\"\nkind = \"human\"");
    assert!(ok.is_empty(), "{ok:?}");
    let loopback =
        issuer("issuer = \"http://127.0.0.1:8123\"\naudience = \"taskgate\"\nkind = \"agent\"");
    assert!(loopback.is_empty(), "{loopback:?}");
    let plain =
        issuer("issuer = \"http://idp.example\"\naudience = \"taskgate\"\nkind = \"human\"");
    assert!(
        plain
            .iter()
            .any(|p| p.contains("issuer") && p.contains("https")),
        "{plain:?}"
    );
    let no_audience =
        issuer("issuer = \"https://idp.example\"\naudience = \" \"\nkind = \"human\"");
    assert!(
        no_audience.iter().any(|p| p.contains("audience")),
        "{no_audience:?}"
    );
    let github = issuer(
        "issuer = \"https://token.actions.githubusercontent.com\"\naudience = \"taskgate\"\nkind = \"agent\"",
    );
    assert!(
        github
            .iter()
            .any(|p| p.contains("trust") && p.contains("every repository")),
        "{github:?}"
    );
    let trusted = issuer(
        "issuer = \"https://token.actions.githubusercontent.com\"\naudience = \"taskgate\"\nkind = \"agent\"\n\n[[identity.oidc.trust]]\nrepository_owner_id = \"42\"\nrepository = \"acme/shop\"\nevent_name = \"push\"\nref = \"refs/heads/*\"",
    );
    assert!(trusted.is_empty(), "{trusted:?}");
}

/// Trust rules that would let in tokens of other repositories or of
/// pull_request_target runs are refused: the findings of a review, and the
/// examples the docs used to show.
#[test]
fn github_trust_rules_must_pin_the_repository_and_the_events() {
    let issuer = |body: &str| problems(&format!("{GOOD}\n[[identity.oidc]]\n{body}\n"));
    let rule = |body: &str| {
        issuer(&format!(
            "issuer = \"https://token.actions.githubusercontent.com\"\naudience = \"taskgate\"\nkind = \"agent\"\n\n[[identity.oidc.trust]]\n{body}"
        ))
    };
    for (body, named) in [
        // Any owner's repository on main.
        (
            "ref = \"refs/heads/main\"\nevent_name = \"push\"",
            "must pin the repository",
        ),
        // The docs' second example: another repository of the organization.
        (
            "repository_owner_id = \"1234567\"\nenvironment = \"production\"\nworkflow = \"migrations\"\nevent_name = \"push\"",
            "must pin the repository",
        ),
        // The docs' first example: pull_request_target runs too.
        (
            "repository_owner_id = \"1234567\"\nrepository = \"acme/shop\"\nref = \"refs/heads/main\"",
            "must name the events",
        ),
        (
            "repository_id = \"99\"\nevent_name = \"pull_*\"",
            "pull_request_target",
        ),
        (
            "repository_owner_id = \"1\"\nrepository = \"*/shop\"\nevent_name = \"push\"",
            "no wildcard in the owner",
        ),
        (
            "repository_id = \"9*\"\nevent_name = \"push\"",
            "must pin the repository",
        ),
    ] {
        let found = rule(body);
        assert!(found.iter().any(|p| p.contains(named)), "{body}: {found:?}");
    }
    for ok in [
        "repository_id = \"99\"\nevent_name = \"push\"",
        "repository_id = \"99\"\nevent_name = \"pull_request_target\"",
        "repository_owner_id = \"1\"\nrepository = \"acme/shop-*\"\nevent_name = \"workflow_dispatch\"\njob_workflow_ref = \"acme/workflows/.github/workflows/migrate.yml@refs/heads/main\"",
    ] {
        assert!(rule(ok).is_empty(), "{ok}: {:?}", rule(ok));
    }
    // An enterprise's own issuer is held to the same rules.
    let enterprise = issuer(
        "issuer = \"https://token.actions.githubusercontent.com/acme-corp\"\naudience = \"taskgate\"\nkind = \"agent\"",
    );
    assert!(
        enterprise.iter().any(|p| p.contains("every repository")),
        "{enterprise:?}"
    );
}

#[test]
fn an_empty_file_says_nobody_could_log_in() {
    let found = problems("");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("no identity provider"));
}

/// With two issuers, `group:platform@corp` is the corp IdP's platform group
/// only: the name resolves to the issuer's URL, an unknown name is refused,
/// and a bare `group:` draws a warning.
#[test]
fn matchers_can_be_scoped_to_an_issuer() {
    let source = GOOD.replace(
        "admins = [\"group:platform\"]",
        "admins = [\"group:platform@corp\"]\nauditors = [\"group:security\"]",
    ) + "\n[[identity.oidc]]\nissuer = \"https://idp.corp.example\"\nname = \"corp\"\naudience = \"taskgate\"\nkind = \"human\"\n";
    let config = crate::config::parse(&source).unwrap();
    let corp = crate::Identity {
        claims: Default::default(),
        groups: vec!["platform".into()],
        issuer: "https://idp.corp.example".into(),
        kind: crate::IdentityKind::Human,
        subject: "pat".into(),
    };
    let other = crate::Identity {
        issuer: "dev".into(),
        ..corp.clone()
    };
    assert!(crate::Matcher::any_matches(&config.roles.admins, &corp));
    assert!(
        !crate::Matcher::any_matches(&config.roles.admins, &other),
        "another issuer's platform group is not the admins"
    );
    let warnings = crate::config::warnings(&config);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("roles.auditors") && w.contains("group:security")),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|w| w.contains("roles.admins")),
        "{warnings:?}"
    );
    let unknown = problems(&source.replace("group:platform@corp", "group:platform@nowhere"));
    assert!(
        unknown
            .iter()
            .any(|p| p.contains("names an issuer this config does not have")),
        "{unknown:?}"
    );
}

/// A listener other machines can reach needs TLS, unless plain text is
/// asked for in so many words.
#[test]
fn listeners_off_loopback_need_tls() {
    let with = |server: &str| problems(&GOOD.replace("api_listen = \"127.0.0.1:0\"", server));
    let open = with("api_listen = \"0.0.0.0:8080\"");
    assert!(
        open.iter()
            .any(|p| p.contains("server.api_listen") && p.contains("in clear")),
        "{open:?}"
    );
    let pg = with("api_listen = \"127.0.0.1:0\"\npostgres_listen = \"0.0.0.0:15432\"");
    assert!(
        pg.iter().any(|p| p.contains("server.postgres_listen")),
        "{pg:?}"
    );
    assert!(with("api_listen = \"0.0.0.0:8080\"\npostgres_listen = \"0.0.0.0:15432\"\nallow_plaintext = true").is_empty());
    let half = with("api_listen = \"127.0.0.1:0\"\napi_tls_cert = \"c.pem\"");
    assert!(half.iter().any(|p| p.contains("api_tls_key")), "{half:?}");
}

#[test]
fn the_mcp_section_is_checked() {
    let good = format!(
        "{GOOD}\n[mcp]\nresource = \"https://gw.example/mcp\"\nallowed_hosts = [\"gw.internal\"]\nallowed_origins = [\"https://app.example:443\"]\n"
    );
    let config = match parse(&good) {
        Ok(c) => c,
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(
        config.mcp.resource.as_deref(),
        Some("https://gw.example/mcp")
    );
    let bad = format!(
        "{GOOD}\n[mcp]\nresource = \"gw.example/mcp\"\nallowed_origins = [\"app.example\"]\ncolour = 1\n"
    );
    let found = problems(&bad);
    assert!(found.iter().any(|p| p.contains("colour")), "{found:?}");
    let bad = format!(
        "{GOOD}\n[mcp]\nresource = \"gw.example/mcp\"\nallowed_origins = [\"app.example\"]\n"
    );
    let found = problems(&bad);
    assert!(
        found
            .iter()
            .any(|p| p.contains("mcp.resource") && p.contains("not an http(s) URL")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("mcp.allowed_origins") && p.contains("needs a scheme")),
        "{found:?}"
    );
}
