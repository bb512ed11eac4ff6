//! People and services signing in at a real OpenID Provider: the npm
//! package `oidc-provider` on loopback (installed by `.ci/run`), in front of
//! a real gateway. The device flow runs end to end through `taskgate login`,
//! with the browser's part played over HTTP; client-credential tokens are
//! the service's way in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestGateway;
use common::cluster::free_port;
use common::idp::{Idp, start_idp, start_idp_on};
use serde_json::{Value, json};

fn gateway(idp: &Idp) -> TestGateway {
    TestGateway::start_with(&format!(
        r#"
[[identity.oidc]]
issuer = "{}"
audience = "taskgate"
kind = "human"
groups_claim = "groups"
claims = ["email", "client_id"]
jwks_min_refetch = "1s"
"#,
        idp.url
    ))
}

fn service_token(idp: &Idp) -> String {
    let answer: Value = browser()
        .post(format!("{}/token", idp.url))
        .basic_auth("taskgate-agent", Some("agent-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "groups")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

fn browser() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

/// The value of a hidden form field in a page.
fn field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

#[test]
fn a_service_signs_in_with_client_credentials() {
    let idp = start_idp();
    let gw = gateway(&idp);
    let token = service_token(&idp);
    let (status, tasks) = gw.http().get(&token, "/v1/tasks");
    assert_eq!(status, 200, "{tasks}");
    // Anything that is not one of its tokens is refused.
    let (status, _) = gw.http().get("not-a-jwt", "/v1/tasks");
    assert_eq!(status, 401);
}

#[test]
fn a_person_signs_in_with_the_device_flow_and_the_token_is_kept_and_refreshed() {
    let idp = start_idp();
    let gw = gateway(&idp);
    let config = gw.dir.path().join("login-config");
    let mut login = Command::new(common::BIN)
        .args(["login", "--issuer", &idp.url, "--client-id", "taskgate-cli"])
        .args(["--scope", "openid offline_access groups"])
        .env("TASKGATE_CONFIG_DIR", &config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = login.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("To sign in, open ")
        .unwrap_or_else(|| panic!("{first}"));

    // The person, in a browser: confirm the code, then sign in as alice.
    let browser = browser();
    let page = browser.get(url).send().unwrap().text().unwrap();
    let page = browser
        .post(format!("{}/device", idp.url))
        .form(&[
            ("xsrf", field(&page, "xsrf").as_str()),
            ("user_code", field(&page, "user_code").as_str()),
            ("confirm", "yes"),
        ])
        .send()
        .unwrap();
    let interaction = page.url().to_string();
    assert!(interaction.contains("/interaction/"), "{interaction}");
    let done = browser
        .post(&interaction)
        .form(&[("prompt", "login"), ("login", "alice"), ("password", "any")])
        .send()
        .unwrap();
    assert!(done.status().is_success(), "{}", done.status());

    let status = login.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{rest:?}");
    assert!(rest.iter().any(|l| l.starts_with("Signed in")), "{rest:?}");
    let kept = config.join("login.json");
    let mode = std::fs::metadata(&kept).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    // Later commands act as alice, with the IdP's groups and claims.
    let cli = |args: &[&str]| {
        let out = Command::new(common::BIN)
            .args(args)
            .env_remove("TASKGATE_TOKEN")
            .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
            .env("TASKGATE_SERVER", &gw.base)
            .env("TASKGATE_CONFIG_DIR", &config)
            .env("TASKGATE_STATE_DIR", gw.dir.path().join("state"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let task: Value = serde_json::from_str(&cli(&[
        "task",
        "request",
        "--name",
        "fix-orders",
        "--connection",
        "orders-db",
        "--access",
        "write",
        "--window",
        "5m",
        "--format",
        "json",
    ]))
    .unwrap();
    let requester = &task["requester"];
    assert_eq!(requester["subject"], "alice");
    assert_eq!(requester["issuer"], idp.url.as_str());
    assert_eq!(requester["groups"], json!(["dba"]));
    assert_eq!(requester["claims"]["email"], "alice@acme.example");
    // Alice is a DBA per the IdP, so the policy sends her write to a DBA.
    assert_eq!(task["status"], "pending");

    // An expired token is refreshed with the refresh token, and kept.
    let before: Value = serde_json::from_str(&std::fs::read_to_string(&kept).unwrap()).unwrap();
    let mut expired = before.clone();
    expired["expires_at"] = json!(0);
    std::fs::write(&kept, expired.to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    cli(&["task", "list"]);
    let after: Value = serde_json::from_str(&std::fs::read_to_string(&kept).unwrap()).unwrap();
    assert_ne!(after["access_token"], before["access_token"]);
    assert!(after["expires_at"].as_i64().unwrap() > 0);
}

#[test]
fn the_gateway_follows_the_provider_s_key_rotation() {
    let port = free_port();
    let idp = start_idp_on(port);
    let gw = gateway(&idp);
    let old = service_token(&idp);
    assert_eq!(gw.http().get(&old, "/v1/tasks").0, 200);
    // The provider restarts with a new key: the gateway fetches it on the
    // first token that names it, and the old key is gone with it.
    drop(idp);
    let idp = start_idp_on(port);
    std::thread::sleep(Duration::from_millis(1100));
    let new = service_token(&idp);
    let (status, body) = gw.http().get(&new, "/v1/tasks");
    assert_eq!(status, 200, "{body}");
    let (status, body) = gw.http().get(&old, "/v1/tasks");
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("unknown kid"),
        "{body}"
    );
}
