//! A real OpenID Provider (`oidc-provider`, tests/idp/idp.mjs) on a free
//! port, stopped on drop: for the identity and console tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::cluster::free_port;

pub struct Idp {
    pub url: String,
    child: Child,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_idp() -> Idp {
    start_idp_on(free_port())
}

/// Starts the provider on `port`; each start signs with a new key.
pub fn start_idp_on(port: u16) -> Idp {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp");
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "run `npm ci` in {} (.ci/run does)",
        dir.display()
    );
    let mut child = Command::new("node")
        .arg("idp.mjs")
        .arg(port.to_string())
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.starts_with("ready "), "{ready}");
    // Keep reading, so the provider never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Idp {
        url: format!("http://127.0.0.1:{port}"),
        child,
    }
}
