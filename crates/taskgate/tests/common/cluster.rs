//! A throwaway PostgreSQL cluster for one test: `initdb` in a temp dir,
//! `pg_ctl start` on a free port, `log_statement = all` so tests can check
//! what the database itself saw. Stopped (immediately) on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use taskgate_pgcluster::Cluster;

/// Passwords of the roles the gateway logs in as.
pub const RO_USER: &str = "shop_ro";

/// DDL on shop needs a DBA's review (appended to the agents' policy of
/// [`TestCluster::gateway_config`]).
pub const REVIEW_DDL: &str = r#"
[[policies.statements]]
match = { class = ["ddl"] }
action = "review"
by = ["group:dba"]
"#;
pub const RW_USER: &str = "shop_rw";
pub const ADMIN_USER: &str = "shop_admin";
pub const MD5_USER: &str = "shop_md5";
pub const TRUST_USER: &str = "shop_trust";
/// Logs in with `password` (cleartext) authentication.
pub const CLEAR_USER: &str = "shop_clear";

/// What the database logged from sessions the gateway opened:
/// `app=taskgate/<task> ...  LOG:  statement: <sql>` for the simple
/// protocol, `LOG:  execute <name>: <sql>` for each extended-protocol run.
pub fn statements_via_gateway(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("app=taskgate/tsk_"))
        .filter_map(|l| {
            let (_, logged) = l.split_once("LOG:  ")?;
            let sql = match logged.strip_prefix("statement: ") {
                Some(sql) => sql,
                None => logged.strip_prefix("execute ")?.split_once(": ")?.1,
            };
            Some(normal(sql))
        })
        .collect()
}

/// The gateway records each statement of a query string without its
/// terminating semicolon; the database logs the string as sent.
pub fn normal(sql: &str) -> String {
    sql.trim().trim_end_matches(';').trim().to_owned()
}

/// Every statement the database ran (`logged`) has a `command.started`
/// with its SQL (`started`), as many times as it ran.
pub fn assert_recorded_first(logged: &[String], started: &[String]) {
    let mut recorded: std::collections::HashMap<String, usize> = Default::default();
    for sql in started {
        *recorded.entry(normal(sql)).or_default() += 1;
    }
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    for sql in logged {
        let count = seen.entry(sql.as_str()).or_default();
        *count += 1;
        let found = recorded.get(sql).copied().unwrap_or(0);
        assert!(
            found >= *count,
            "the database ran {sql:?} {count} time(s), the log records it {found} time(s)"
        );
    }
}

pub struct TestCluster {
    // Declared before `dir`, so the server stops before its files go.
    cluster: Cluster,
    pub dir: tempfile::TempDir,
}

/// PostgreSQL's binaries (see `taskgate_pgcluster::bindir`).
pub fn pg_bindir() -> PathBuf {
    taskgate_pgcluster::bindir().unwrap_or_default()
}

pub fn free_port() -> u16 {
    taskgate_pgcluster::free_port().unwrap()
}

impl TestCluster {
    /// A cluster with `log_statement = all` and the test roles, database
    /// and tables (see `setup`).
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("tg-pg-").tempdir().unwrap();
        let hba = format!(
            "local all all trust\n\
             host all {TRUST_USER} 127.0.0.1/32 trust\n\
             host all {MD5_USER} 127.0.0.1/32 md5\n\
             host all {CLEAR_USER} 127.0.0.1/32 password\n\
             host all postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n"
        );
        let cluster = Cluster::start(
            dir.path(),
            &hba,
            &[
                "log_statement=all",
                "log_line_prefix='%m [%p] app=%a '",
                "max_connections=300",
                "shared_buffers=32MB",
            ],
        )
        .unwrap();
        let cluster = TestCluster { cluster, dir };
        cluster.setup();
        cluster
    }

    pub fn port(&self) -> u16 {
        self.cluster.port()
    }

    fn data(&self) -> PathBuf {
        self.cluster.data()
    }

    pub fn socket_dir(&self) -> &Path {
        self.cluster.socket_dir()
    }

    pub fn log_path(&self) -> PathBuf {
        self.cluster.log_path()
    }

    /// Everything the server logged: with `log_statement = all`, every
    /// statement it received.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the server at once, as a crash would.
    pub fn stop(&self) {
        self.cluster.stop();
    }

    /// Starts it again after [`TestCluster::stop`].
    pub fn resume(&self) {
        self.cluster.resume().unwrap();
    }

    pub fn restart(&self) {
        self.stop();
        self.cluster.resume().unwrap();
    }

    /// Turns on TLS with this PEM certificate and key (and a reload).
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str) {
        let (cert, key) = (
            self.data().join("server.crt"),
            self.data().join("server.key"),
        );
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        Command::new("chmod").arg("600").arg(&key).status().unwrap();
        self.cluster.chown().unwrap();
        self.psql("postgres", "ALTER SYSTEM SET ssl = on");
        self.psql("postgres", "SELECT pg_reload_conf()");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    /// Runs SQL as the superuser over the local socket.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.cluster.psql(db, sql).unwrap()
    }

    /// Installs the catalog trigger `taskgate connection prepare` installs
    /// on database `shop`, as an operator would before gateways start.
    pub fn prepare_catalog_watch(&self) {
        self.psql("shop", taskgate_gateway::pg::catalog_watch::PREPARE_SQL);
    }

    fn setup(&self) {
        let pw = super::UPSTREAM_PASSWORD;
        self.psql(
            "postgres",
            &format!(
                "CREATE ROLE {RO_USER} LOGIN PASSWORD '{pw}';
                 CREATE ROLE {RW_USER} LOGIN PASSWORD '{pw}';
                 CREATE ROLE {ADMIN_USER} LOGIN SUPERUSER PASSWORD '{pw}';
                 CREATE ROLE {TRUST_USER} LOGIN;
                 CREATE ROLE {CLEAR_USER} LOGIN PASSWORD '{pw}';
                 SET password_encryption = 'md5';
                 CREATE ROLE {MD5_USER} LOGIN PASSWORD '{pw}';"
            ),
        );
        // CREATE DATABASE cannot share a (multi-statement) transaction.
        self.psql("postgres", &format!("CREATE DATABASE shop OWNER {RW_USER}"));
        self.psql(
            "shop",
            &format!(
                "SET ROLE {RW_USER};
                 CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, qty int NOT NULL DEFAULT 1);
                 CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
                 INSERT INTO orders (item, qty) VALUES ('apple', 3), ('pear', 5);
                 INSERT INTO customers (name) VALUES ('ada'), ('grace');
                 GRANT SELECT ON ALL TABLES IN SCHEMA public TO {RO_USER}, {MD5_USER}, {TRUST_USER};
                 GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {RO_USER};"
            ),
        );
    }

    /// Creates pgbench's tables (scale 1) in `shop`, writable by the
    /// gateway's write role.
    pub fn pgbench_init(&self) {
        let (socket, port) = (
            self.socket_dir().display().to_string(),
            self.port().to_string(),
        );
        self.cluster
            .run(
                "pgbench",
                &[
                    "-i", "-q", "-s", "1", "-h", &socket, "-p", &port, "-U", "postgres", "shop",
                ],
            )
            .unwrap();
        self.psql(
            "shop",
            &format!("GRANT ALL ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO {RW_USER}"),
        );
    }

    /// Config for `shop` where agents' write access needs a DBA (`group:dba`)
    /// and their DDL is held for a DBA's review: the MCP and console tests'.
    pub fn reviewed_config(&self) -> String {
        let port = self.port();
        format!(
            r#"
[[connections]]
name = "shop"
kind = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
read = {{ user = "{RO_USER}", password_env = "TG_TEST_UPSTREAM_PW" }}
write = {{ user = "{RW_USER}", password_env = "TG_TEST_UPSTREAM_PW" }}

[[policies]]
name = "agents-on-shop"
who = ["kind:agent"]
connections = ["shop"]
access = ["read", "write"]
max_window = "30m"
approve = {{ when = ["write"], by = ["group:dba"] }}

[[policies.statements]]
match = {{ class = ["ddl"] }}
action = "review"
by = ["group:dba"]
"#
        )
    }

    /// Config for a gateway in front of this cluster: connections named
    /// `shop` (SCRAM), `shop-md5` and `shop-trust`, and a policy letting
    /// agents take any access without approval, with two statement rules.
    pub fn gateway_config(&self) -> String {
        let port = self.port();
        format!(
            r#"
[[connections]]
name = "shop"
kind = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
read = {{ user = "{RO_USER}", password_env = "TG_TEST_UPSTREAM_PW" }}
write = {{ user = "{RW_USER}", password_env = "TG_TEST_UPSTREAM_PW" }}
admin = {{ user = "{ADMIN_USER}", password_env = "TG_TEST_UPSTREAM_PW" }}

[[connections]]
name = "shop-md5"
kind = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
read = {{ user = "{MD5_USER}", password_env = "TG_TEST_UPSTREAM_PW" }}

[[connections]]
name = "shop-clear"
kind = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
read = {{ user = "{CLEAR_USER}", password_env = "TG_TEST_UPSTREAM_PW" }}

[[connections]]
name = "shop-trust"
kind = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
read = {{ user = "{TRUST_USER}" }}

[[policies]]
name = "agents-read-elsewhere"
who = ["kind:agent"]
connections = ["shop-md5", "shop-trust", "shop-clear"]
access = ["read"]
max_window = "30m"

[[policies]]
name = "agents-on-shop"
who = ["kind:agent"]
connections = ["shop"]
access = ["read", "write", "admin"]
max_window = "30m"

[[policies.statements]]
match = {{ regex = "(?i)^\\s*drop\\b" }}
action = "deny"

[[policies.statements]]
match = {{ tables = ["customers"], class = ["write"] }}
action = "deny"
"#
        )
    }
}
