//! A throwaway PostgreSQL cluster: `initdb` in a directory the caller owns,
//! `pg_ctl start` on a free loopback port, stopped (immediately) on drop.
//! Needs only PostgreSQL's server binaries. As root, the cluster runs as
//! the `postgres` user, since `initdb` refuses root.
//!
//! The demo starts one to show the story; the test harness starts one per
//! test, adding its own roles, settings and faults on top.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    /// Extra `-c name=value` server settings, kept for restarts.
    settings: Vec<String>,
}

/// Where PostgreSQL's binaries are: `TASKGATE_PG_BINDIR`, the newest
/// version under /usr/lib/postgresql, or the directory of `initdb` on PATH.
pub fn bindir() -> anyhow::Result<PathBuf> {
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
        .context("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: install them (Debian: apt-get install postgresql) or set TASKGATE_PG_BINDIR")
}

/// A loopback port nobody listens on now.
pub fn free_port() -> anyhow::Result<u16> {
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
    /// Creates a cluster in `dir/data` with `pg_hba` as its `pg_hba.conf`,
    /// and starts it with `fsync=off` plus `settings` (each `name=value`).
    /// Its socket is in `dir`, its log `dir/postgres.log`.
    pub fn start(dir: &Path, pg_hba: &str, settings: &[&str]) -> anyhow::Result<Cluster> {
        let cluster = Cluster {
            dir: dir.to_path_buf(),
            bin: bindir()?,
            port: free_port()?,
            as_postgres: is_root(),
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
        };
        cluster.chown()?;
        let data = cluster.data().display().to_string();
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
        std::fs::write(cluster.data().join("pg_hba.conf"), pg_hba)?;
        cluster.chown()?;
        cluster.resume()?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the cluster's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// Starts the server again after [`Cluster::stop`].
    pub fn resume(&self) -> anyhow::Result<()> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        for setting in &self.settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        let (data, log) = (
            self.data().display().to_string(),
            self.log_path().display().to_string(),
        );
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-o", &options, "start"],
        )
        .map(drop)
    }

    /// Stops the server at once (`-m immediate`), as a crash would.
    pub fn stop(&self) {
        let data = self.data().display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }

    /// Gives the cluster's directory (and everything in it) to the user the
    /// server runs as.
    pub fn chown(&self) -> anyhow::Result<()> {
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

    /// One of PostgreSQL's programs, run as the user the server runs as.
    pub fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// Runs one of PostgreSQL's programs; its trimmed output, or an error
    /// with everything it printed.
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs SQL as the superuser over the cluster's own socket.
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let (socket, port) = (self.dir.display().to_string(), self.port.to_string());
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
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn starts_answers_survives_a_restart_and_stops_on_drop() {
        let dir = std::env::temp_dir().join(format!("tg-pgcluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cluster =
            Cluster::start(&dir, "local all all trust\n", &["max_connections=20"]).unwrap();
        assert_eq!(
            cluster.psql("postgres", "SHOW max_connections").unwrap(),
            "20"
        );
        cluster.stop();
        assert!(cluster.psql("postgres", "SELECT 1").is_err());
        cluster.resume().unwrap();
        assert_eq!(cluster.psql("postgres", "SELECT 1").unwrap(), "1");
        let port = cluster.port();
        drop(cluster);
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the server outlived its cluster"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
