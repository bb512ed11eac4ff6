//! TLS on both sides of the gateway: clients that ask for it get it (and,
//! with `require_tls`, clients that do not are refused), and the gateway
//! verifies the target's certificate against the configured CA.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::TestGateway;
use common::cluster::{TestCluster, pg_bindir};
use serde_json::Value;

/// A self-signed certificate for 127.0.0.1 and localhost: (cert, key) PEM.
fn certificate() -> (String, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (cert.cert.pem(), cert.key_pair.serialize_pem())
}

fn task(gw: &TestGateway, connection: &str) -> (String, String) {
    gw.active_task(connection, "read", "10m")
}

/// psql through the gateway with `sslmode`; (success, stdout+stderr).
fn psql(
    gw: &TestGateway,
    t: &(String, String),
    db: &str,
    sslmode: &str,
    sql: &str,
) -> (bool, String) {
    let out = Command::new(pg_bindir().join("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &gw.postgres.port().to_string(),
        ])
        .args(["-U", &t.0, "-d", db, "-c", sql])
        .env("PGPASSWORD", &t.1)
        .env("PGSSLMODE", sslmode)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn clients_get_tls_and_require_tls_refuses_plain_text() {
    let cluster = TestCluster::start();
    let (cert, key) = certificate();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("gw.crt"), &cert).unwrap();
    std::fs::write(work.path().join("gw.key"), &key).unwrap();
    let server = format!(
        "tls_cert = {:?}\ntls_key = {:?}\nrequire_tls = true",
        work.path().join("gw.crt"),
        work.path().join("gw.key")
    );
    let gw = TestGateway::start_full(&server, &cluster.gateway_config());
    let t = task(&gw, "shop");
    let (ok, out) = psql(&gw, &t, "shop", "require", "SELECT 1");
    assert!(ok, "{out}");
    // libpq's hardening setting: the exchange must be bound to the TLS
    // channel (SCRAM-SHA-256-PLUS, tls-server-end-point), or libpq refuses.
    let bound = Command::new(pg_bindir().join("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &gw.postgres.port().to_string(),
        ])
        .args(["-U", &t.0, "-d", "shop", "-c", "SELECT 'bound'"])
        .env("PGPASSWORD", &t.1)
        .env("PGSSLMODE", "require")
        .env("PGCHANNELBINDING", "require")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&bound.stdout),
        String::from_utf8_lossy(&bound.stderr)
    );
    assert!(bound.status.success(), "{text}");
    assert_eq!(text.trim(), "bound");
    let (ok, out) = psql(&gw, &t, "shop", "disable", "SELECT 1");
    assert!(!ok);
    assert!(out.contains("requires TLS"), "{out}");
    let opened: Vec<Value> = gw
        .event_bodies()
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap())
        .filter(|e| e["type"] == "session.opened")
        .collect();
    assert_eq!(opened.len(), 2);
    assert!(opened.iter().all(|o| o["payload"]["tls"] == true));
}

#[test]
fn the_target_certificate_is_verified() {
    let cluster = TestCluster::start();
    let (cert, key) = certificate();
    cluster.enable_tls(&cert, &key);
    let (other_cert, _) = certificate();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("ca.pem"), &cert).unwrap();
    std::fs::write(work.path().join("other-ca.pem"), &other_cert).unwrap();
    let port = cluster.port();
    let extra = format!(
        r#"{}
[[connections]]
name = "shop-tls"
kind = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
read = {{ user = "shop_ro", password_env = "TG_TEST_UPSTREAM_PW" }}
tls = {{ ca_file = {:?} }}

[[connections]]
name = "shop-wrong-ca"
kind = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
read = {{ user = "shop_ro", password_env = "TG_TEST_UPSTREAM_PW" }}
tls = {{ ca_file = {:?} }}

[[policies]]
who = ["kind:agent"]
connections = ["shop-tls", "shop-wrong-ca"]
access = ["read"]
max_window = "30m"
"#,
        cluster.gateway_config(),
        work.path().join("ca.pem"),
        work.path().join("other-ca.pem"),
    );
    let gw = TestGateway::start_with(&extra);
    let t = task(&gw, "shop-tls");
    // Asked through the gateway, the database reports on its own
    // connection: the gateway's, encrypted. The target offers
    // SCRAM-SHA-256-PLUS over TLS, so the gateway's login is bound to the
    // channel too: a wrong binding would be refused by the target.
    let (ok, out) = psql(
        &gw,
        &t,
        "shop-tls",
        "disable",
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert!(ok, "{out}\n{}", gw.log());
    assert_eq!(out.trim(), "t");
    let t = task(&gw, "shop-wrong-ca");
    let (ok, out) = psql(&gw, &t, "shop-wrong-ca", "disable", "SELECT 1");
    assert!(!ok);
    assert!(out.contains("TLS to the database failed"), "{out}");
    // The reason is in the gateway's log (read as it arrives).
    let logged = gw.eventually(std::time::Duration::from_secs(5), || {
        let log = gw.log();
        log.contains("UnknownIssuer") || log.contains("invalid peer certificate")
    });
    assert!(logged, "{}", gw.log());
}

/// HTTPS on the API: the CLI trusts the gateway's CA with TASKGATE_CA_FILE
/// and refuses a certificate it cannot verify; curl works with --cacert; and
/// the CLI will not send a token over plain http to another machine.
#[test]
fn the_api_serves_https_and_the_cli_keeps_tokens_off_plain_text() {
    let (cert, key) = certificate();
    let work = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (work.path().join("api.crt"), work.path().join("api.key"));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let server = format!("api_tls_cert = {cert_path:?}\napi_tls_key = {key_path:?}");
    let gw = TestGateway::start_full(&server, "");
    let base = gw.base.clone();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let cli = |ca: Option<&std::path::Path>, server: &str, args: &[&str]| {
        let mut command = Command::new(common::BIN);
        command
            .args(args)
            .env("TASKGATE_SERVER", server)
            .env("TASKGATE_TOKEN", &gw.tokens.agent)
            .env("TASKGATE_STATE_DIR", work.path().join("state"))
            .env_remove("TASKGATE_ALLOW_PLAINTEXT");
        if let Some(ca) = ca {
            command.env("TASKGATE_CA_FILE", ca);
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let request = [
        "task",
        "request",
        "--name",
        "over-tls",
        "--connection",
        "orders-db",
        "--access",
        "read",
        "--window",
        "5m",
        "--reason",
        "tls check",
    ];
    let (ok, out) = cli(Some(&cert_path), &base, &request);
    assert!(ok, "{out}");
    assert!(out.contains("status     active"), "{out}");
    let (ok, out) = cli(None, &base, &["task", "list"]);
    assert!(!ok, "an unknown certificate must be refused: {out}");
    let curl = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&cert_path)
        .arg(format!("{base}/healthz"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&curl.stdout).contains("\"status\":\"ok\""),
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    // Refused before any connection is made.
    let (ok, out) = cli(None, "http://gateway.example:8080", &["task", "list"]);
    assert!(!ok);
    assert!(
        out.contains("refusing to send your token in clear text"),
        "{out}"
    );
}
