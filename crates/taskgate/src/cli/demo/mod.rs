//! `taskgate demo`: the whole story on a real database, in one command.
//! A throwaway PostgreSQL cluster (or `--target-url`), a temporary store,
//! the gateway on free ports; an agent asks for a task, a human approves,
//! the agent reads, alters (held, then approved) and tries a DROP
//! (denied), the window lapses and its session is cut; then the task's
//! story, the auditor's three questions and `audit verify`. Every step is
//! checked: the demo fails, naming the step, if anything behaves otherwise.

mod cluster;

use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use taskgate_gateway::Gateway;
use taskgate_store::StoreRead;
use taskgate_store::checkpoints::{CheckpointDir, load_or_create_key};
use taskgate_store::sqlite;

use super::output;
use taskgate_pgcluster::Cluster;

/// How long the demo task's window stays open once approved: long enough
/// for the steps before the cut, short enough to watch it lapse.
const WINDOW_SECS: u64 = 12;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Use this PostgreSQL database instead of a throwaway cluster
    /// (`postgres://user:password@host:port/db`; a scratch database: the
    /// demo creates tables `customers` and `orders` there if missing and
    /// adds a column to `orders`).
    #[arg(long)]
    target_url: Option<String>,
}

/// A random secret for the demo's tokens and database password.
fn secret(prefix: &str) -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

struct Tokens {
    agent: String,
    alice: String,
    sam: String,
}

/// The database the gateway fronts.
struct Target {
    address: String,
    database: String,
    user: String,
    password: String,
    /// Kept alive (and stopped on drop) when the demo made it.
    _cluster: Option<Cluster>,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("taskgate-demo-")
        .tempdir()?;
    let target = match &args.target_url {
        None => {
            let password = secret("")?;
            let pg_dir = dir.path().join("pg");
            std::fs::create_dir(&pg_dir)?;
            let cluster = cluster::start(&pg_dir, &password).context(
                "starting PostgreSQL (or pass --target-url for a scratch database of your own)",
            )?;
            println!(
                "taskgate demo: a throwaway PostgreSQL cluster on 127.0.0.1:{}, a temporary store in {}",
                cluster.port(),
                dir.path().display()
            );
            Target {
                address: format!("127.0.0.1:{}", cluster.port()),
                database: "orders".into(),
                user: cluster::ROLE.into(),
                password,
                _cluster: Some(cluster),
            }
        }
        Some(url) => target_from_url(url).await?,
    };
    let tokens = Tokens {
        agent: secret("demo-agent-")?,
        alice: secret("demo-alice-")?,
        sam: secret("demo-sam-")?,
    };
    let config = write_config(dir.path(), &target, &tokens)?;
    let gateway = Gateway::start(config.clone())
        .await
        .context("starting the gateway")?;
    println!(
        "the gateway: API on {}, PostgreSQL listener on {}\n",
        gateway.api_addr(),
        gateway.postgres_addr()
    );
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://{}", gateway.api_addr()),
    };
    let played = play(&api, &gateway, &tokens).await;
    // Stopping signs a last checkpoint covering everything.
    gateway.stop().await;
    let task = played?;
    verify(&config).await?;
    println!("\nthe demo behaved as described; task {task} is in the record above.");
    Ok(ExitCode::SUCCESS)
}

async fn target_from_url(url: &str) -> anyhow::Result<Target> {
    let config = tokio_postgres::Config::from_str(url).context("--target-url")?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => bail!("--target-url must name a TCP host"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().context("--target-url names no user")?;
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .context("--target-url names no password (the gateway logs in with it)")?;
    let database = config.get_dbname().unwrap_or(user).to_owned();
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to --target-url")?;
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS customers (id serial PRIMARY KEY, name text NOT NULL);
             CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, customer_id int,
                                                item text NOT NULL, qty int NOT NULL DEFAULT 1);",
        )
        .await
        .context("creating the demo's tables in --target-url")?;
    println!("taskgate demo: PostgreSQL at {host}:{port}/{database}");
    Ok(Target {
        address: format!("{host}:{port}"),
        database,
        user: user.to_owned(),
        password,
        _cluster: None,
    })
}

/// The demo's config: three dev identities (an agent, a DBA, an auditor),
/// one connection, and a policy where write access and DDL need a DBA.
fn write_config(
    dir: &Path,
    target: &Target,
    tokens: &Tokens,
) -> anyhow::Result<taskgate_policy::config::Config> {
    for (file, secret) in [
        ("agent.token", &tokens.agent),
        ("alice.token", &tokens.alice),
        ("sam.token", &tokens.sam),
        ("orders.password", &target.password),
    ] {
        std::fs::write(dir.join(file), secret)?;
    }
    let text = format!(
        r#"
[server]
api_listen = "127.0.0.1:0"
postgres_listen = "127.0.0.1:0"
review_hold = "60s"

[store]
path = "taskgate.db"

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
subject = "sam"
kind = "human"
groups = ["security"]
token_file = "sam.token"

[roles]
auditors = ["group:security"]

[[connections]]
name = "orders-db"
kind = "postgres"
address = "{address}"
database = "{database}"
write = {{ user = "{user}", password_file = "orders.password" }}

[[policies]]
name = "agents-on-orders"
who = ["kind:agent"]
connections = ["orders-db"]
access = ["write"]
max_window = "30m"
approve = {{ when = ["write"], by = ["group:dba"] }}

[[policies.statements]]
match = {{ class = ["ddl"] }}
action = "review"
by = ["group:dba"]

[[policies.statements]]
match = {{ command = ["DROP", "TRUNCATE"] }}
action = "deny"
"#,
        address = target.address,
        database = target.database,
        user = target.user,
    );
    let path = dir.join("taskgate.toml");
    std::fs::write(&path, &text)?;
    let mut config = taskgate_policy::config::parse(&text).map_err(|problems| {
        anyhow::anyhow!(
            "the demo's own config is invalid: {}",
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    config.resolve_paths(dir);
    Ok(config)
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    async fn get(&self, token: &str, path: &str) -> anyhow::Result<Value> {
        let (status, value) = self.call(token, reqwest::Method::GET, path, None).await?;
        ensure!(status == 200, "GET {path}: {status} {value}");
        Ok(value)
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(token, reqwest::Method::POST, path, Some(body))
            .await
    }
}

fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map(|e| e.code().code().to_owned())
        .unwrap_or_default()
}

fn message(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_else(|| error.to_string())
}

/// The story, step by step; returns the task's id.
async fn play(api: &Api, gateway: &Gateway, tokens: &Tokens) -> anyhow::Result<String> {
    // 1. The agent asks.
    let (status, task) = api
        .post(
            &tokens.agent,
            "/v1/tasks",
            json!({"name": "migrate-orders", "connection": "orders-db", "access": "write",
                   "window": format!("{WINDOW_SECS}s"), "reason": "add a note column to orders",
                   "ref": "acme/shop#1234"}),
        )
        .await?;
    ensure!(status == 201, "step 1, the request: {status} {task}");
    ensure!(
        task["status"] == "pending",
        "step 1: the write task should wait for approval: {task}"
    );
    let id = task["id"]
        .as_str()
        .context("step 1: no task id")?
        .to_owned();
    let token = task["token"]
        .as_str()
        .context("step 1: no token")?
        .to_owned();
    let review = task["review"]
        .as_str()
        .context("step 1: no review")?
        .to_owned();
    println!(
        "1. copilot-agent (agent) asks for write access to orders-db for task migrate-orders (acme/shop#1234)\n   -> pending: write access needs a DBA's approval (review {review}); the task token is shown once"
    );

    // 2. A human approves.
    let (status, decided) = api
        .post(
            &tokens.alice,
            &format!("/v1/reviews/{review}/approve"),
            json!({"comment": "go ahead"}),
        )
        .await?;
    ensure!(
        status == 200 && decided["task"]["status"] == "active",
        "step 2, the approval: {status} {decided}"
    );
    println!(
        "2. alice (human, dba) approves: the task is active until {}",
        decided["task"]["ends_at"].as_str().unwrap_or("?")
    );

    // 3. The agent connects with its task token and reads.
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(gateway.postgres_addr().port())
        .user(&id)
        .password(&token)
        .dbname("orders-db")
        .application_name("demo-agent")
        .connect(tokio_postgres::NoTls)
        .await
        .context("step 3: the agent's login through the gateway")?;
    let connection = tokio::spawn(connection);
    let client = Arc::new(client);
    let row = client
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .context("step 3: SELECT count(*) FROM orders")?;
    let count: i64 = row.get(0);
    println!(
        "3. the agent connects as postgres://{id}:<token>@{}/orders-db (the gateway holds the database password)\n   SELECT count(*) FROM orders -> {count}",
        gateway.postgres_addr()
    );

    // 4. A DDL statement is held until a DBA approves it.
    let alter = "ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text";
    let held = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { client.simple_query(alter).await.map(|_| ()) })
    };
    let statement_review = wait_for_statement_review(api, &tokens.alice, &id).await?;
    println!("4. {alter}\n   -> held: review {statement_review}; only this session waits");
    let (status, body) = api
        .post(
            &tokens.alice,
            &format!("/v1/reviews/{statement_review}/approve"),
            json!({"comment": "reviewed the migration"}),
        )
        .await?;
    ensure!(
        status == 200,
        "step 4, approving the statement: {status} {body}"
    );
    held.await?
        .map_err(|e| anyhow::anyhow!("step 4: the approved ALTER TABLE failed: {}", message(&e)))?;
    println!("   alice approves it -> ALTER TABLE ran");

    // 5. A DROP is denied outright, and the session goes on.
    match client.simple_query("DROP TABLE orders").await {
        Ok(_) => bail!("step 5: DROP TABLE orders ran; it must be denied"),
        Err(e) if sqlstate(&e) == "42501" => {
            println!("5. DROP TABLE orders\n   -> ERROR 42501: {}", message(&e));
        }
        Err(e) => bail!("step 5: DROP TABLE orders failed, but not as denied: {e}"),
    }

    // 6. The window lapses and the session is cut: the gateway ends the
    // connection itself (the agent sends nothing meanwhile).
    let limit = Duration::from_secs(WINDOW_SECS + 10);
    let ended = tokio::time::timeout(limit, connection)
        .await
        .map_err(|_| {
            anyhow::anyhow!("step 6: the session is still open {limit:?} after the window")
        })??;
    let (code, text) = match &ended {
        Err(cut) => (sqlstate(cut), message(cut)),
        Ok(()) => (String::new(), "the connection was closed".into()),
    };
    ensure!(
        code == "57P01",
        "step 6: the session ended, but not by the gateway's cut: {text}"
    );
    drop(client);
    // The session's own timer cuts it at the window's end; the scheduler
    // records the task's expiry at the same moment, give or take.
    let mut state = Value::Null;
    for _ in 0..40 {
        state = api.get(&tokens.agent, &format!("/v1/tasks/{id}")).await?;
        if state["status"] == "expired" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        state["status"] == "expired",
        "step 6: the task should be expired: {state}"
    );
    println!(
        "6. the window lapses -> the gateway cuts the session: FATAL {code}: {text}; the task is expired"
    );

    story_and_questions(api, &tokens.sam, &id).await?;
    Ok(id)
}

async fn wait_for_statement_review(api: &Api, token: &str, task: &str) -> anyhow::Result<String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let reviews = api.get(token, "/v1/reviews").await?;
        let found = reviews.as_array().and_then(|all| {
            all.iter()
                .find(|r| r["kind"] == "statement" && r["task"]["id"] == task)
                .and_then(|r| r["id"].as_str().map(str::to_owned))
        });
        if let Some(id) = found {
            return Ok(id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("step 4: the ALTER TABLE was not held for review")
}

async fn story_and_questions(api: &Api, auditor: &str, task: &str) -> anyhow::Result<()> {
    let story = api
        .get(auditor, &format!("/v1/audit/tasks/{task}/story"))
        .await?;
    let text = story["text"].as_str().unwrap_or_default();
    for expected in [
        "task=migrate-orders ref=acme/shop#1234",
        "(approved by alice",
        "ended: window passed",
        "SELECT count(*) FROM orders",
        "ALTER TABLE orders ADD COLUMN IF NOT EXISTS note",
        "DENIED",
        "session closed: task window ended",
    ] {
        ensure!(
            text.contains(expected),
            "the story lacks {expected:?}:\n{text}"
        );
    }
    println!("\nThe task's story, from the audit log:\n\n{text}");

    println!("The auditor's questions:\n");
    println!(
        "Who changed orders? (taskgate audit search --table orders --class write,ddl --since 1h)"
    );
    let changed = search(api, auditor, "table=orders&class=write,ddl&since=1h").await?;
    ensure!(
        hits(&changed)
            .iter()
            .any(|h| h["event"]["type"] == "command.started"
                && h["event"]["identity"]["subject"] == "copilot-agent"),
        "question 1: the agent's ALTER TABLE is not among the changes: {changed}"
    );
    output::search_page(&changed);

    println!(
        "\nDid any agent read customers? (taskgate audit search --table customers --kind agent --since 1h)"
    );
    let read = search(api, auditor, "table=customers&kind=agent&since=1h").await?;
    ensure!(
        hits(&read).is_empty(),
        "question 2: no agent read customers: {read}"
    );
    output::search_page(&read);

    println!(
        "\nWhich task authorized the schema change, and who approved it? (taskgate audit search --table orders --class ddl --type command.started)"
    );
    let ddl = search(api, auditor, "table=orders&class=ddl&type=command.started").await?;
    let hit = hits(&ddl)
        .first()
        .cloned()
        .context("question 3: no DDL found")?;
    ensure!(
        hit["task"]["name"] == "migrate-orders" && hit["approval"]["by"] == "alice",
        "question 3: the DDL should name migrate-orders and alice's approval: {hit}"
    );
    output::search_page(&ddl);
    println!(
        "   -> task {} ({}), requested by {}; the grant approved by {}, the statement approved by {}",
        hit["task"]["name"].as_str().unwrap_or("?"),
        hit["task"]["ref"].as_str().unwrap_or("?"),
        hit["task"]["requester"].as_str().unwrap_or("?"),
        hit["task"]["decision"]["by"].as_str().unwrap_or("?"),
        hit["approval"]["by"].as_str().unwrap_or("?"),
    );
    Ok(())
}

async fn search(api: &Api, token: &str, query: &str) -> anyhow::Result<Value> {
    api.get(token, &format!("/v1/audit/events?{query}")).await
}

fn hits(page: &Value) -> Vec<Value> {
    page["hits"].as_array().cloned().unwrap_or_default()
}

/// `audit verify` on the stopped gateway's store, with its key and copies.
async fn verify(config: &taskgate_policy::config::Config) -> anyhow::Result<()> {
    let key = load_or_create_key(&config.audit.signing_key)?.public_key();
    let external = CheckpointDir::read_all(&config.audit.checkpoint_dir)?;
    let reader = sqlite::open_read_only(&config.store.path)?;
    let report =
        tokio::task::spawn_blocking(move || reader.verify_chain(Some(key), &external)).await??;
    ensure!(
        report.ok() && report.signatures_checked && report.checkpoints > 0,
        "audit verify: {report:?}"
    );
    println!(
        "\naudit verify: ok: {} events, {} signed checkpoint(s) checked against key {}, {} external copies",
        report.events,
        report.checkpoints,
        key.key_id(),
        report.external_checkpoints
    );
    Ok(())
}
