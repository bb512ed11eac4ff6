//! A throwaway PostgreSQL cluster for one test: `initdb` in a temp dir,
//! `pg_ctl start` on a free port, `log_statement = all` so tests can check
//! what the database itself saw. Stopped (immediately) on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Passwords of the roles the gateway logs in as.
pub const RO_USER: &str = "shop_ro";
pub const RW_USER: &str = "shop_rw";
pub const ADMIN_USER: &str = "shop_admin";
pub const MD5_USER: &str = "shop_md5";
pub const TRUST_USER: &str = "shop_trust";
/// Logs in with `password` (cleartext) authentication.
pub const CLEAR_USER: &str = "shop_clear";

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

/// PostgreSQL's binaries: `TASKGATE_PG_BINDIR`, else the newest under
/// /usr/lib/postgresql, else whatever is on PATH.
pub fn pg_bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("TASKGATE_PG_BINDIR") {
        return dir.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found.pop().unwrap_or_default()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl TestCluster {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("tg-pg-").tempdir().unwrap();
        let as_postgres = is_root();
        let cluster = TestCluster {
            port: free_port(),
            bin: pg_bindir(),
            as_postgres,
            dir,
        };
        if as_postgres {
            // initdb refuses to run as root; the cluster belongs to postgres.
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(cluster.dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the cluster dir failed");
        }
        cluster.run_ok(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        std::fs::write(
            cluster.data().join("pg_hba.conf"),
            format!(
                "local all all trust\n\
                 host all {TRUST_USER} 127.0.0.1/32 trust\n\
                 host all {MD5_USER} 127.0.0.1/32 md5\n\
                 host all {CLEAR_USER} 127.0.0.1/32 password\n\
                 host all postgres 127.0.0.1/32 trust\n\
                 host all all 127.0.0.1/32 scram-sha-256\n"
            ),
        )
        .unwrap();
        cluster.chown_data();
        cluster.pg_ctl_start();
        cluster.setup();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Everything the server logged: with `log_statement = all`, every
    /// statement it received.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn chown_data(&self) {
        if self.as_postgres {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(self.dir.path())
                .status()
                .unwrap();
        }
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run_ok(&self, program: &str, args: &[&str]) -> Output {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c log_statement=all \
             -c log_line_prefix='%m [%p] app=%a ' -c max_connections=300 -c shared_buffers=32MB",
            self.port,
            self.socket_dir().display()
        );
        self.run_ok(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-l",
                &self.log_path().display().to_string(),
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
    }

    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                &self.data().display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }

    pub fn restart(&self) {
        self.stop();
        self.pg_ctl_start();
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
        self.chown_data();
        self.psql("postgres", "ALTER SYSTEM SET ssl = on");
        self.psql("postgres", "SELECT pg_reload_conf()");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    /// Runs SQL as the superuser over the local socket.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.run_ok(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &self.socket_dir().display().to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
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
        let init = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pgbench"))
            .args(["-i", "-q", "-s", "1", "-h"])
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "shop"])
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        self.psql(
            "shop",
            &format!("GRANT ALL ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO {RW_USER}"),
        );
    }

    /// Config for a gateway in front of this cluster: connections named
    /// `shop` (SCRAM), `shop-md5` and `shop-trust`, and a policy letting
    /// agents take any access without approval, with two statement rules.
    pub fn gateway_config(&self) -> String {
        let port = self.port;
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

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
