//! The demo's throwaway PostgreSQL: `initdb` in a temporary directory and
//! `pg_ctl start` on a free loopback port, stopped and removed on drop.
//! Needs only PostgreSQL's server binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// As root, the cluster runs as the `postgres` user (initdb refuses root).
    as_postgres: bool,
}

/// The password of the demo's database role, which only the gateway knows.
pub const ROLE: &str = "orders_rw";

/// Where PostgreSQL's binaries are: `TASKGATE_PG_BINDIR`, the newest
/// version under /usr/lib/postgresql, or the directory of `initdb` on PATH.
fn bindir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("TASKGATE_PG_BINDIR") {
        return Ok(dir.into());
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
    if let Some(dir) = found.pop() {
        return Ok(dir);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").exists())
        .context("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: install them (Debian: apt-get install postgresql), set TASKGATE_PG_BINDIR, or pass --target-url")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    /// Creates and starts a cluster with a database `orders` owned by
    /// [`ROLE`] (password `password`), holding `orders` and `customers`.
    pub fn start(dir: &Path, password: &str) -> anyhow::Result<Cluster> {
        let cluster = Cluster {
            dir: dir.to_path_buf(),
            bin: bindir()?,
            port: free_port()?,
            as_postgres: is_root(),
        };
        cluster.chown()?;
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        std::fs::write(
            cluster.dir.join("data/pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )?;
        cluster.chown()?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            cluster.port,
            cluster.dir.display()
        );
        let log = cluster.dir.join("postgres.log").display().to_string();
        cluster.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-o", &options, "start"],
        )?;
        cluster.psql(
            "postgres",
            &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'"),
        )?;
        cluster.psql("postgres", &format!("CREATE DATABASE orders OWNER {ROLE}"))?;
        cluster.psql(
            "orders",
            &format!(
                "SET ROLE {ROLE};
                 CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
                 CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers,
                                      item text NOT NULL, qty int NOT NULL DEFAULT 1);
                 INSERT INTO customers (name) VALUES ('ada'), ('grace');
                 INSERT INTO orders (customer_id, item, qty) VALUES (1, 'apple', 3), (2, 'pear', 5), (1, 'fig', 1);"
            ),
        )?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn chown(&self) -> anyhow::Result<()> {
        if self.as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&self.dir)
                .status()?
                .success();
            if !ok {
                bail!("cannot give {} to the postgres user", self.dir.display());
            }
        }
        Ok(())
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

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs SQL as the superuser over the cluster's own socket.
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let socket = self.dir.display().to_string();
        let port = self.port.to_string();
        self.run(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &socket,
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ],
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}
