//! The web console's sign-ins in the shared store, so a browser signed in
//! through one node is signed in on every node behind the balancer. Keys
//! are stored hashed by the caller (a reader of the store cannot take over
//! a session); rows end with their expiry.

use std::time::Duration;

use super::PgOptions;
use super::read::PgReader;
use crate::Result;

pub struct PgConsole {
    pool: PgReader,
}

/// A live session as stored.
pub struct StoredSession {
    /// The signed-in identity, as JSON.
    pub identity: String,
    pub csrf: String,
    /// How long it has left.
    pub remaining: Duration,
}

impl PgConsole {
    pub fn new(options: PgOptions) -> Self {
        Self {
            pool: PgReader::new(options),
        }
    }

    /// Stores a session (and forgets expired ones).
    pub fn open(&self, key: &[u8], identity: &str, csrf: &str, lifetime: Duration) -> Result<()> {
        self.pool.with(|c| {
            c.execute(
                "DELETE FROM taskgate.console_sessions WHERE expires_at <= now()",
                &[],
            )?;
            c.execute(
                "INSERT INTO taskgate.console_sessions (key, identity, csrf, expires_at)
                 VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
                &[&key, &identity, &csrf, &lifetime.as_secs_f64()],
            )?;
            Ok(())
        })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<StoredSession>> {
        self.pool.with(|c| {
            let row = c.query_opt(
                "SELECT identity, csrf, extract(epoch FROM expires_at - now())::float8
                 FROM taskgate.console_sessions WHERE key = $1 AND expires_at > now()",
                &[&key],
            )?;
            Ok(row.map(|r| StoredSession {
                identity: r.get(0),
                csrf: r.get(1),
                remaining: Duration::from_secs_f64(r.get::<_, f64>(2).max(0.0)),
            }))
        })
    }

    pub fn close(&self, key: &[u8]) -> Result<()> {
        self.pool.with(|c| {
            c.execute(
                "DELETE FROM taskgate.console_sessions WHERE key = $1",
                &[&key],
            )?;
            Ok(())
        })
    }

    /// Stores a sign-in begun at the IdP (and forgets stale ones).
    pub fn begin_login(
        &self,
        key: &[u8],
        state: &str,
        verifier: &str,
        window: Duration,
    ) -> Result<()> {
        self.pool.with(|c| {
            c.execute(
                "DELETE FROM taskgate.console_logins WHERE started_at <= now() - make_interval(secs => $1)",
                &[&window.as_secs_f64()],
            )?;
            c.execute(
                "INSERT INTO taskgate.console_logins (key, state, verifier, started_at) VALUES ($1, $2, $3, now())",
                &[&key, &state, &verifier],
            )?;
            Ok(())
        })
    }

    /// Takes a sign-in, once, if it began within `window`: its state and
    /// PKCE verifier.
    pub fn finish_login(&self, key: &[u8], window: Duration) -> Result<Option<(String, String)>> {
        self.pool.with(|c| {
            let row = c.query_opt(
                "DELETE FROM taskgate.console_logins WHERE key = $1
                 RETURNING state, verifier, started_at > now() - make_interval(secs => $2)",
                &[&key, &window.as_secs_f64()],
            )?;
            Ok(row
                .filter(|r| r.get::<_, bool>(2))
                .map(|r| (r.get(0), r.get(1))))
        })
    }
}
