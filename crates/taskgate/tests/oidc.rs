//! OIDC identities end to end: a loopback issuer the test runs (discovery,
//! a JWKS it can rotate, slow down or bloat, and tokens signed with
//! GitHub's claim set), and a real gateway that trusts it. GitHub itself is
//! unreachable from here, so its tokens are made the same way it makes them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::TestGateway;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A signing key the issuer may publish.
#[derive(Clone)]
struct TestKey {
    kid: String,
    algorithm: Algorithm,
    encoding: Arc<EncodingKey>,
    jwk: Value,
}

fn ec_key(kid: &str) -> TestKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = pair.public_key_raw();
    let (x, y) = raw[1..].split_at(32);
    TestKey {
        kid: kid.into(),
        algorithm: Algorithm::ES256,
        encoding: Arc::new(EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                    "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}),
    }
}

fn ed_key(kid: &str) -> TestKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    TestKey {
        kid: kid.into(),
        algorithm: Algorithm::EdDSA,
        encoding: Arc::new(EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
                    "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw())}),
    }
}

/// RS256 with a fixed test key (rcgen cannot make RSA keys).
fn rsa_key(kid: &str) -> TestKey {
    let pem = include_str!("fixtures/oidc-rsa.pem");
    let modulus = hex::decode(include_str!("fixtures/oidc-rsa.modulus.hex").trim()).unwrap();
    TestKey {
        kid: kid.into(),
        algorithm: Algorithm::RS256,
        encoding: Arc::new(EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()),
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                    "n": URL_SAFE_NO_PAD.encode(modulus), "e": "AQAB"}),
    }
}

#[derive(Default)]
struct IssuerState {
    issuer: String,
    keys: Vec<TestKey>,
    /// Pads the key set past the gateway's size cap.
    oversized: bool,
    /// Makes every request hang this long.
    delay: Duration,
    key_fetches: usize,
    /// Signs the tokens its Actions token endpoint hands out.
    actions_key: Option<TestKey>,
}

/// The GitHub Actions token endpoint, as the runner offers it to a job:
/// the request token as bearer, the audience as a query parameter.
async fn actions_token(
    State(state): State<Shared>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<axum::Json<Value>, axum::http::StatusCode> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if bearer != "Bearer runner-request-token" {
        return Err(axum::http::StatusCode::FORBIDDEN);
    }
    let (issuer, key) = {
        let s = state.lock().unwrap();
        (s.issuer.clone(), s.actions_key.clone())
    };
    let key = key.ok_or(axum::http::StatusCode::NOT_FOUND)?;
    let mut claims = github_claims(&issuer);
    claims["aud"] = json!(query.get("audience").cloned().unwrap_or_default());
    Ok(axum::Json(
        json!({"count": 1, "value": sign(&key, &claims)}),
    ))
}

type Shared = Arc<Mutex<IssuerState>>;

/// The loopback issuer: discovery and JWKS over plain HTTP on 127.0.0.1.
struct Issuer {
    url: String,
    state: Shared,
    _runtime: tokio::runtime::Runtime,
}

async fn discovery(State(state): State<Shared>) -> axum::Json<Value> {
    let (issuer, delay) = {
        let s = state.lock().unwrap();
        (s.issuer.clone(), s.delay)
    };
    tokio::time::sleep(delay).await;
    axum::Json(
        json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks"),
                      "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"]}),
    )
}

async fn jwks(State(state): State<Shared>) -> axum::Json<Value> {
    let (keys, oversized, delay) = {
        let mut s = state.lock().unwrap();
        s.key_fetches += 1;
        let keys: Vec<Value> = s.keys.iter().map(|k| k.jwk.clone()).collect();
        (keys, s.oversized, s.delay)
    };
    tokio::time::sleep(delay).await;
    let mut set = json!({"keys": keys});
    if oversized {
        set["padding"] = json!("x".repeat(300 * 1024));
    }
    axum::Json(set)
}

impl Issuer {
    fn start(keys: Vec<TestKey>) -> Issuer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let url = format!("http://127.0.0.1:{}", addr.port());
        let state = Arc::new(Mutex::new(IssuerState {
            issuer: url.clone(),
            keys,
            ..IssuerState::default()
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/actions/token", get(actions_token))
            .with_state(Arc::clone(&state));
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Issuer {
            url,
            state,
            _runtime: runtime,
        }
    }

    /// A gateway trusting this issuer for agents from acme's repositories.
    fn gateway(&self, extra: &str) -> TestGateway {
        TestGateway::start_with(&format!(
            r#"
[[identity.oidc]]
issuer = "{}"
audience = "taskgate"
kind = "agent"
claims = ["repository", "workflow", "run_id", "actor"]
name_claim = "actor"
jwks_min_refetch = "1s"
timeout = "1s"
clock_skew = "30s"
{extra}

[[identity.oidc.trust]]
repository_owner = "acme"
ref = "refs/heads/*"
"#,
            self.url
        ))
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims as GitHub Actions sets them for a workflow run.
fn github_claims(issuer: &str) -> Value {
    let t = now();
    json!({
        "iss": issuer, "aud": "taskgate",
        "sub": "repo:acme/shop:ref:refs/heads/main",
        "iat": t, "nbf": t - 5, "exp": t + 300,
        "repository": "acme/shop", "repository_id": "123456", "repository_owner": "acme",
        "repository_owner_id": "42", "ref": "refs/heads/main", "workflow": "agent",
        "run_id": "9876543210", "run_attempt": "1", "actor": "octocat", "event_name": "workflow_dispatch",
    })
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// A token built by hand: any header at all, and a given signature.
fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// The answer to a request for a read task, with `token`.
fn request_task(gw: &TestGateway, token: &str) -> (u16, Value) {
    gw.http().post(
        token,
        "/v1/tasks",
        &json!({"name": "read-orders", "connection": "orders-db", "access": "read", "window": "5m"}),
    )
}

fn refused_because(gw: &TestGateway, token: &str, reason: &str) {
    let (status, body) = request_task(gw, token);
    assert_eq!(status, 401, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(reason), "{reason:?} not in {message:?}");
    // No token contents are echoed back.
    for secret in ["acme/shop", "octocat", "9876543210"] {
        assert!(!message.contains(secret), "{message}");
    }
}

#[test]
fn github_shaped_tokens_identify_the_agent_with_its_claims() {
    let keys = vec![rsa_key("rsa-1"), ec_key("ec-1"), ed_key("ed-1")];
    let issuer = Issuer::start(keys.clone());
    let gw = issuer.gateway("");
    let claims = github_claims(&issuer.url);
    for key in &keys {
        let (status, task) = request_task(&gw, &sign(key, &claims));
        assert_eq!(status, 201, "{:?}: {task}", key.algorithm);
        let requester = &task["requester"];
        assert_eq!(requester["subject"], "repo:acme/shop:ref:refs/heads/main");
        assert_eq!(requester["kind"], "agent");
        assert_eq!(requester["issuer"], issuer.url.as_str());
        assert_eq!(requester["claims"]["repository"], "acme/shop");
        assert_eq!(requester["claims"]["run_id"], "9876543210");
        assert_eq!(requester["claims"]["actor"], "octocat");
        assert_eq!(requester["claims"]["name"], "octocat");
        // Only the configured claims are kept.
        assert!(
            requester["claims"].get("event_name").is_none(),
            "{requester}"
        );
    }
    // The identity is in the record as it was.
    let requested = gw.events_of("task.requested");
    assert_eq!(requested[0]["identity"]["claims"]["workflow"], "agent");
    // Keys were fetched once for all three.
    assert_eq!(issuer.state.lock().unwrap().key_fetches, 1);
}

#[test]
fn bad_tokens_are_refused_with_a_reason_and_nothing_echoed() {
    let key = ec_key("ec-1");
    let issuer = Issuer::start(vec![key.clone()]);
    let gw = issuer.gateway("");
    let good = github_claims(&issuer.url);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = good.clone();
        change(&mut claims);
        sign(&key, &claims)
    };
    refused_because(&gw, &with(&|c| c["exp"] = json!(now() - 3600)), "expired");
    refused_because(
        &gw,
        &with(&|c| c["nbf"] = json!(now() + 3600)),
        "not valid yet",
    );
    refused_because(
        &gw,
        &with(&|c| c["aud"] = json!("someone-else")),
        "audience",
    );
    refused_because(
        &gw,
        &with(&|c| c["repository_owner"] = json!("evil")),
        "trust rules",
    );
    refused_because(
        &gw,
        &with(&|c| c["ref"] = json!("refs/pull/1/merge")),
        "trust rules",
    );
    // Another issuer's token is simply not this provider's.
    refused_because(
        &gw,
        &with(&|c| c["iss"] = json!("https://elsewhere.example")),
        "not valid",
    );

    // A changed payload under the old signature.
    let token = sign(&key, &good);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut tampered = good.clone();
    tampered["sub"] = json!("repo:acme/admin:ref:refs/heads/main");
    parts[1] = URL_SAFE_NO_PAD.encode(tampered.to_string());
    refused_because(&gw, &parts.join("."), "signature");

    // alg none, and HS256 keyed with the published public key.
    refused_because(
        &gw,
        &forge(&json!({"alg": "none", "kid": "ec-1"}), &good, b""),
        "not accepted",
    );
    let public = key.jwk.to_string();
    let hs = jsonwebtoken::encode(
        &Header {
            kid: Some("ec-1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &good,
        &EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    refused_because(&gw, &hs, "not accepted");
    // RS256 claimed for the EC key.
    let rsa = rsa_key("ec-1");
    refused_because(&gw, &sign(&rsa, &good), "its key is for");
    // An unknown key id.
    refused_because(&gw, &sign(&ec_key("ec-9"), &good), "unknown kid");

    // The log says which claims failed the trust rules; the client never saw them.
    assert!(gw.log().contains("matched no trust rule"), "{}", gw.log());
    assert!(gw.log().contains("evil"));
}

#[test]
fn a_rotated_key_is_fetched_no_more_often_than_allowed() {
    let old = ec_key("old");
    let issuer = Issuer::start(vec![old.clone()]);
    let gw = issuer.gateway("");
    let claims = github_claims(&issuer.url);
    assert_eq!(request_task(&gw, &sign(&old, &claims)).0, 201);
    // The issuer rotates to a new key; a flood of tokens with it (unknown
    // until the next fetch) causes at most one fetch per second.
    let new = ed_key("new");
    issuer.state.lock().unwrap().keys = vec![new.clone()];
    let fetches = || issuer.state.lock().unwrap().key_fetches;
    let before = fetches();
    let started = Instant::now();
    let mut accepted = false;
    while started.elapsed() < Duration::from_secs(5) {
        if request_task(&gw, &sign(&new, &claims)).0 == 201 {
            accepted = true;
            break;
        }
    }
    assert!(accepted, "the new key was never picked up");
    let elapsed = started.elapsed().as_secs() as usize;
    assert!(
        fetches() - before <= elapsed + 2,
        "{} fetches in {elapsed}s",
        fetches() - before
    );
    // The old key is gone with the rotation.
    refused_because(&gw, &sign(&old, &claims), "unknown kid");
}

#[test]
fn a_hanging_or_bloated_issuer_does_not_stop_the_gateway() {
    let key = ec_key("ec-1");
    let issuer = Issuer::start(vec![key.clone()]);
    issuer.state.lock().unwrap().delay = Duration::from_secs(30);
    let gw = issuer.gateway("");
    let claims = github_claims(&issuer.url);
    let started = Instant::now();
    refused_because(&gw, &sign(&key, &claims), "unknown kid");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
    // Others are served meanwhile.
    let (status, _) = gw.http().get(&gw.tokens.alice, "/v1/tasks");
    assert_eq!(status, 200);

    let bloated = Issuer::start(vec![key.clone()]);
    bloated.state.lock().unwrap().oversized = true;
    let gw = bloated.gateway("");
    refused_because(
        &gw,
        &sign(&key, &github_claims(&bloated.url)),
        "unknown kid",
    );
    // The gateway's log is read on another thread: give it a moment.
    assert!(
        gw.eventually(Duration::from_secs(5), || gw.log().contains("larger than")),
        "{}",
        gw.log()
    );
    assert_eq!(gw.http().get_anonymous("/healthz").0, 200);
}

#[test]
fn inside_github_actions_the_cli_fetches_its_own_token() {
    let key = ec_key("ec-1");
    let issuer = Issuer::start(vec![key.clone()]);
    issuer.state.lock().unwrap().actions_key = Some(key);
    let gw = issuer.gateway("");
    let cli = |audience: &str, args: &[&str]| {
        let out = std::process::Command::new(common::BIN)
            .args(args)
            .env("TASKGATE_SERVER", &gw.base)
            .env_remove("TASKGATE_TOKEN")
            .env("TASKGATE_AUDIENCE", audience)
            .env("TASKGATE_STATE_DIR", gw.dir.path().join("cli-state"))
            .env(
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                format!("{}/actions/token?api-version=2.0", issuer.url),
            )
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-request-token")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = cli(
        "taskgate",
        &[
            "task",
            "request",
            "--name",
            "nightly-report",
            "--connection",
            "orders-db",
            "--access",
            "read",
            "--window",
            "5m",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let task: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        task["requester"]["subject"],
        "repo:acme/shop:ref:refs/heads/main"
    );
    assert_eq!(task["requester"]["claims"]["workflow"], "agent");
    // A token for another audience is refused by the gateway.
    let (code, _, stderr) = cli("someone-else", &["task", "list"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("audience"), "{stderr}");
}
