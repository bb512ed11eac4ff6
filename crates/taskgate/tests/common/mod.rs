//! A real gateway process for end-to-end tests: the `taskgate` binary,
//! started on port 0 with a config in a temp dir, its log captured so tests
//! can assert on it. Real HTTP, real CLI invocations, real SQLite file.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod cluster;
pub mod idp;
pub mod raw;
pub mod webhook;

pub const BIN: &str = env!("CARGO_BIN_EXE_taskgate");

/// The dev identities every test gateway has, with fresh random tokens.
pub struct Tokens {
    pub agent: String,
    pub alice: String,
    pub bob: String,
    pub auditor: String,
    pub admin: String,
}

fn random_token(who: &str) -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).unwrap();
    format!("devtok-{who}-{}", hex::encode(bytes))
}

/// An upstream password the tests make sure never leaks.
pub const UPSTREAM_PASSWORD: &str = "upstream-pw-never-shown-7f1c";

pub struct TestGateway {
    pub dir: tempfile::TempDir,
    pub tokens: Tokens,
    pub base: String,
    /// The gateway's PostgreSQL listener.
    pub postgres: std::net::SocketAddr,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    extra_config: String,
    server_config: String,
    /// Lines added to `[store]` (a fleet member's shared store), and
    /// tables after it.
    store_config: String,
    file_limit: Option<u64>,
}

/// The password of the role fleet members log in to their shared store as.
pub const STORE_PASSWORD: &str = "store-pw-never-shown-3b9d";

impl TestGateway {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts a gateway whose config has `extra` appended (more policies).
    pub fn start_with(extra: &str) -> Self {
        Self::start_full("", extra)
    }

    /// Like [`start_with`], with `server` added to the `[server]` table.
    pub fn start_full(server: &str, extra: &str) -> Self {
        let mut gateway = Self::prepare(server, extra);
        gateway.spawn();
        gateway
    }

    fn prepare(server: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens {
            agent: random_token("agent"),
            alice: random_token("alice"),
            bob: random_token("bob"),
            auditor: random_token("auditor"),
            admin: random_token("admin"),
        };
        for (name, token) in [
            ("agent", &tokens.agent),
            ("alice", &tokens.alice),
            ("bob", &tokens.bob),
            ("auditor", &tokens.auditor),
            ("admin", &tokens.admin),
        ] {
            std::fs::write(
                dir.path().join(format!("{name}.token")),
                format!("{token}\n"),
            )
            .unwrap();
        }
        let gateway = TestGateway {
            dir,
            tokens,
            base: String::new(),
            postgres: ([127, 0, 0, 1], 0).into(),
            child: None,
            log: Arc::new(Mutex::new(String::new())),
            extra_config: extra.to_owned(),
            server_config: server.to_owned(),
            store_config: String::new(),
            file_limit: None,
        };
        gateway.write_config();
        gateway
    }

    /// A node of a fleet on the shared store at `store_url` (its password
    /// in `STORE_PASSWORD`), named `node`. Every member after the first
    /// gets the first's identity tokens and signing key: one fleet, one
    /// set of callers, one key.
    pub fn start_member(
        first: Option<&TestGateway>,
        node: &str,
        store_url: &str,
        server: &str,
        extra: &str,
    ) -> Self {
        let mut gateway = Self::prepare(&format!("node = \"{node}\"\n{server}"), extra);
        let key = match first {
            Some(first) => {
                for name in ["agent", "alice", "bob", "auditor", "admin"] {
                    let file = format!("{name}.token");
                    std::fs::copy(first.dir.path().join(&file), gateway.dir.path().join(&file))
                        .unwrap();
                }
                gateway.tokens = Tokens {
                    agent: first.tokens.agent.clone(),
                    alice: first.tokens.alice.clone(),
                    bob: first.tokens.bob.clone(),
                    auditor: first.tokens.auditor.clone(),
                    admin: first.tokens.admin.clone(),
                };
                first.dir.path().join("taskgate-audit.key")
            }
            None => gateway.dir.path().join("taskgate-audit.key"),
        };
        gateway.store_config = format!(
            "url = \"{store_url}\"\npassword_env = \"TG_TEST_STORE_PW\"\n\n[audit]\nsigning_key = \"{}\"\n",
            key.display()
        );
        gateway.write_config();
        gateway.spawn();
        gateway
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("taskgate.toml")
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("taskgate.db")
    }

    fn write_config(&self) {
        let config = format!(
            r#"
[server]
api_listen = "127.0.0.1:0"
postgres_listen = "127.0.0.1:0"
{}

[store]
path = "taskgate.db"
{}

[[identity.dev]]
subject = "copilot-agent"
kind = "agent"
token_file = "agent.token"

[[identity.dev]]
subject = "alice"
kind = "human"
groups = ["dba"]
token_file = "alice.token"

[[identity.dev]]
subject = "bob"
kind = "human"
groups = ["dev"]
token_file = "bob.token"

[[identity.dev]]
subject = "sam"
kind = "human"
groups = ["security"]
token_file = "auditor.token"

[[identity.dev]]
subject = "pat"
kind = "human"
groups = ["platform"]
token_file = "admin.token"

[roles]
admins = ["group:platform"]
auditors = ["group:security"]

[[connections]]
name = "orders-db"
kind = "postgres"
address = "127.0.0.1:5432"
database = "orders"
read = {{ user = "orders_ro", password_env = "TG_TEST_UPSTREAM_PW" }}
write = {{ user = "orders_rw", password_env = "TG_TEST_UPSTREAM_PW" }}

[[policies]]
who = ["kind:agent"]
connections = ["orders-db"]
access = ["read", "write"]
max_window = "30m"
approve = {{ when = ["write"], by = ["group:dba"], timeout = "10m" }}

[[policies]]
who = ["group:dba"]
connections = ["orders-db"]
access = ["write"]
max_window = "30m"
approve = {{ when = ["write"], by = ["group:dba"] }}
{}
"#,
            self.server_config, self.store_config, self.extra_config
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    /// Starts a gateway that may write files of at most `blocks` × 512
    /// bytes (`ulimit -f`, with SIGXFSZ ignored so a write past it fails
    /// with EFBIG): a real full disk for the audit store, no mock.
    pub fn start_with_file_limit(blocks: u64, extra: &str) -> Self {
        let mut gateway = Self::prepare("", extra);
        gateway.file_limit = Some(blocks);
        gateway.spawn();
        gateway
    }

    fn spawn(&mut self) {
        let mut command = match self.file_limit {
            None => Command::new(BIN),
            Some(blocks) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!(
                        "trap '' XFSZ; ulimit -S -f {blocks}; exec \"$0\" \"$@\""
                    ))
                    .arg(BIN);
                c
            }
        };
        let mut child = command
            .args(["serve", "--config"])
            .arg(self.config_path())
            .env("TG_TEST_UPSTREAM_PW", UPSTREAM_PASSWORD)
            .env("TG_TEST_STORE_PW", STORE_PASSWORD)
            .env("TASKGATE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                log.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("taskgate api listening on ")
            .unwrap_or_else(|| panic!("gateway did not start: {first:?}\n{}", self.log()))
            .to_owned();
        let mut second = String::new();
        stdout.read_line(&mut second).unwrap();
        self.postgres = second
            .trim()
            .strip_prefix("taskgate postgres listening on ")
            .unwrap_or_else(|| panic!("no postgres listener: {second:?}\n{}", self.log()))
            .parse()
            .unwrap();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let _ = stdout.read_to_end(&mut Vec::new());
        });
        self.base = addr;
        self.child = Some(child);
    }

    /// Everything the gateway has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM and wait: a clean shutdown.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// The gateway process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn http(&self) -> Http {
        Http {
            client: reqwest::blocking::Client::new(),
            base: self.base.clone(),
        }
    }

    /// Runs the CLI against this gateway as the holder of `token`.
    pub fn cli(&self, token: &str, args: &[&str]) -> CliOutput {
        let output = Command::new(BIN)
            .args(args)
            .env("TASKGATE_SERVER", &self.base)
            .env("TASKGATE_TOKEN", token)
            .env("TASKGATE_STATE_DIR", self.dir.path().join("cli-state"))
            .env("TASKGATE_CONFIG_DIR", self.dir.path().join("cli-config"))
            .output()
            .unwrap();
        CliOutput {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Requests a task as the agent and returns the API's answer.
    pub fn request(&self, access: &str, window: &str) -> Value {
        let (status, body) = self.http().post(
            &self.tokens.agent,
            "/v1/tasks",
            &serde_json::json!({
                "name": "migrate-orders", "connection": "orders-db", "access": access,
                "window": window, "reason": "add a note column", "ref": "acme/shop#1234"
            }),
        );
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Requests a task the policy grants at once, as the agent: (id, token).
    pub fn active_task(&self, connection: &str, access: &str, window: &str) -> (String, String) {
        let (status, body) = self.http().post(
            &self.tokens.agent,
            "/v1/tasks",
            &serde_json::json!({
                "name": "fix-orders", "connection": connection, "access": access,
                "window": window, "reason": "data plane test", "ref": "acme/shop#7"
            }),
        );
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["status"], "active", "{body}");
        (
            body["id"].as_str().unwrap().to_owned(),
            body["token"].as_str().unwrap().to_owned(),
        )
    }

    /// Every event of type `kind`, in log order, once every command's
    /// outcome is in.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        settle(self);
        event_bodies(&self.store_path())
            .iter()
            .map(|b| serde_json::from_str::<Value>(b).unwrap())
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// Every event body in the store, once it holds every event the
    /// running gateway has committed so far: events reach the store from
    /// the gateway's journal a moment after they are committed.
    pub fn event_bodies(&self) -> Vec<String> {
        if self.pid().is_some() {
            let sealed = self.metric("taskgate_audit_sealed_seq");
            self.eventually(Duration::from_secs(5), || {
                self.metric("taskgate_audit_stored_seq") >= sealed
            });
        }
        event_bodies(&self.store_path())
    }

    /// `taskgate audit verify --store` on this gateway's store: (exit code,
    /// report).
    pub fn verify_offline(&self) -> (i32, String) {
        let store = self.store_path();
        let out = self.cli("", &["audit", "verify", "--store", store.to_str().unwrap()]);
        (out.code, out.stdout)
    }

    /// A gauge or counter from `/metrics` (0 if absent).
    pub fn metric(&self, name: &str) -> u64 {
        let (_, text) = self.http().get_anonymous("/metrics");
        text.lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// Waits until `check` holds, for at most `limit`.
    pub fn eventually(&self, limit: Duration, mut check: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if check() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        check()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub struct Http {
    client: reqwest::blocking::Client,
    base: String,
}

impl Http {
    fn finish(response: reqwest::blocking::Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub fn get(&self, token: &str, path: &str) -> (u16, Value) {
        Self::finish(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(token)
                .send()
                .unwrap(),
        )
    }

    pub fn get_anonymous(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    }

    pub fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        Self::finish(
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth(token)
                .json(body)
                .send()
                .unwrap(),
        )
    }

    /// Posts raw bytes with the given headers (for malformed input).
    pub fn post_raw(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Self::finish(request.send().unwrap())
    }
}

/// Waits (up to 5 s) until every recorded `command.started` has its
/// `command.completed`: outcomes are committed with the session's next
/// statement or a moment after the last one.
pub fn settle(gw: &TestGateway) {
    let counts = || {
        let bodies = gw.event_bodies();
        let count = |kind: &str| {
            bodies
                .iter()
                .filter(|b| b.contains(&format!("\"type\":\"{kind}\"")))
                .count()
        };
        (count("command.started"), count("command.completed"))
    };
    gw.eventually(Duration::from_secs(5), || {
        let (started, completed) = counts();
        started == completed
    });
}

/// Every event body in the store, as text, read directly from the file.
pub fn event_bodies(store: &Path) -> Vec<String> {
    use taskgate_store::StoreRead;
    let reader = taskgate_store::sqlite::open_read_only(store).unwrap();
    let mut bodies = Vec::new();
    reader
        .scan_events(&mut |row| {
            bodies.push(String::from_utf8_lossy(&row.body).into_owned());
            true
        })
        .unwrap();
    bodies
}

/// A single-threaded runtime for a test's async client code.
/// The pending statement review of `task`, once it shows up for Alice.
pub fn pending_review(gw: &TestGateway, task: &str) -> Value {
    let start = Instant::now();
    loop {
        let (status, reviews) = gw.http().get(&gw.tokens.alice, "/v1/reviews");
        assert_eq!(status, 200, "{reviews}");
        if let Some(review) = reviews
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "statement" && r["task"]["id"] == task)
        {
            return review.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no review appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A random pause between `min` and `max` milliseconds.
pub fn random_ms(min: u64, max: u64) -> Duration {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    Duration::from_millis(min + u64::from_le_bytes(bytes) % (max - min))
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A tokio-postgres session through the gateway's PostgreSQL listener.
pub async fn connect(
    gw: &TestGateway,
    user: &str,
    password: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_port(gw.postgres.port(), user, password, db).await
}

/// A tokio-postgres session to whatever listens on `port` (a gateway, or a
/// load balancer in front of several).
pub async fn connect_port(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(db)
        .application_name("e2e-test")
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Signs in to a gateway's console with `token`: a client that follows no
/// redirects, and the session cookie's value.
pub fn console_sign_in(base: &str, token: &str) -> (reqwest::blocking::Client, String) {
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = http
        .post(format!("{base}/ui/login/token"))
        .form(&[("token", token)])
        .send()
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("tg_console="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    (http, cookie)
}
